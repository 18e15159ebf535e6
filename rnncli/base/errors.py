"""The exceptions the CLI turns into exit statuses: each is one line on stderr, or none."""


class RnncliError(Exception):
    """A bad input, a bad setting or a bad file, explained in one sentence (exit 1)."""


class OutputError(Exception):
    """Standard output could not be written: a closed pipe (exit 141, silently, as a program killed
    by SIGPIPE) or a full disk and the like (one line, exit 1). Not an OSError, so that nothing on
    the way up mistakes it for a problem with a file."""

    def __init__(self, error: OSError):
        super().__init__(error.strerror or str(error))
        self.errno, self.strerror = error.errno, error.strerror or str(error)


class Stopped(Exception):
    """A run stopped by a signal after saving; the process exits 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
