"""The entry point: the app run with every failure turned into one line on stderr and an exit status,
a closed pipe into silence, and the other ranks of an MPI job ended with this one."""

from __future__ import annotations

import errno
import os
import sys

from rnncli.base.errors import OutputError, RnncliError, Stopped
from rnncli.cli.app import app


class _Stdout:
    """sys.stdout whose write failures (a closed pipe, a full disk) become OutputError, so that
    main can tell them from every other error."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            raise OutputError(e) from None
        except UnicodeEncodeError as e:
            raise RnncliError(
                f"standard output ({e.encoding}) cannot show {e.object[e.start : e.end]!r}; "
                "set PYTHONIOENCODING=utf-8"
            ) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            raise OutputError(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _error(message: str) -> None:
    """One line, whatever the message quotes (a file name may hold a newline or other control characters)."""
    one_line = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode() for ch in message
    )
    print(f"rnncli: error: {one_line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every failure into one line on stderr (a closed pipe
    into silence) and its exit status."""
    from typer._click import exceptions as click_exceptions

    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    together = False  # an exit every rank of an MPI job takes at the same step (a stop by signal)
    try:
        code = app(args=argv, prog_name="rnncli", standalone_mode=False)
        sys.stdout.flush()
    except RnncliError as e:
        _error(str(e))
        code = 1
    except Stopped as e:
        code, together = 128 + e.signum, True
    except OutputError as e:
        if e.errno != errno.EPIPE:
            _error(f"cannot write the output: {e.strerror}")
        code = 141 if e.errno == errno.EPIPE else 1
        try:  # what is still buffered goes nowhere, so the interpreter's last flush cannot fail
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        except (OSError, ValueError):
            pass
    except MemoryError:
        _error("out of memory: the machine could not give what this run needs; try a smaller model or batch")
        code = 1
    except click_exceptions.NoArgsIsHelpError as e:
        print(e.format_message(), file=sys.stderr)
        code = 2
    except click_exceptions.UsageError as e:
        _error(e.format_message())
        code = 2
    except (
        Exception,
        KeyboardInterrupt,
    ):  # a bug, or a second Ctrl-C: other ranks must not wait for this one
        if _mpi_job():
            import traceback

            traceback.print_exc()
            _mpi_job().abort(1)
        raise
    finally:
        sys.stdout = stdout
    if isinstance(code, int) and code and not together and _mpi_job():
        _mpi_job().abort(code)  # the other ranks of an MPI job end too
    sys.exit(code if isinstance(code, int) else 0)


def _mpi_job():
    """This process's MPI job when it is one rank of several, else None (no import: only a run that
    joined one has loaded rnncli.run.distributed)."""
    job = getattr(sys.modules.get("rnncli.run.distributed"), "ACTIVE", None)
    return job if job is not None and job.size > 1 else None
