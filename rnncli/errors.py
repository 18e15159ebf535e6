"""The one exception type the library raises for problems a user can fix; the CLI prints it as one line."""


class RnncliError(Exception):
    """A bad input, a bad setting or a bad file, explained in one sentence."""
