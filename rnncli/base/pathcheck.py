"""Paths people name on the command line, checked before any work starts: each problem is one
RnncliError that names the path and says what is wrong with it. Nothing here reads or writes a
file's contents; the readers and writers still handle what changes between the check and the use."""

from __future__ import annotations

import os
import stat
import tempfile

from rnncli.base.errors import RnncliError


def _stat(path: str, doing: str) -> os.stat_result | None:
    """os.stat, None for a path that does not exist, one line ("{doing} PATH: ...") for anything else
    that is wrong with it (a NUL in it, a name too long, a loop of links)."""
    if "\0" in path:
        raise RnncliError(f"{doing} {path!r}: a file name cannot hold a NUL character")
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise RnncliError(f"{doing} {path}: {e.strerror}") from None


def readable_file(path: str, what: str) -> None:
    """`path` is a file (not a folder) that can be opened for reading; `what` names it in the message
    ("checkpoint", "text file"). `-` (standard input) is left to the caller."""
    st = _stat(path, "cannot read")
    if st is None:
        raise RnncliError(f"no such {'file' if what == 'text file' else what}: {path}")
    if stat.S_ISDIR(st.st_mode):
        raise RnncliError(f"{path} is a directory, not a {what}")
    if not stat.S_ISREG(
        st.st_mode
    ):  # (a FIFO or <(command) is left alone: opening it is the writer's signal)
        return
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        raise RnncliError(f"cannot read {path}: {e.strerror}") from None


def writable_file(path: str, what: str, sources=()) -> None:
    """`path` can be written the way rnncli writes files (a temporary file beside it, renamed over
    it): not a folder, not a device, pipe or socket (a rename would replace it), not one of the files
    `sources` being read, in a folder that exists and takes new files. `what`: "the checkpoint"..."""
    where = f"cannot write {what} {path}"
    st = _stat(path, f"cannot write {what}")
    if path.endswith(os.sep) or (st is not None and stat.S_ISDIR(st.st_mode)):
        raise RnncliError(f"{where}: it is a folder; name a file inside it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise RnncliError(
            f"{where}: it is not a regular file (a device, pipe or socket), which writing would replace"
        )
    for src in sources:
        if (
            st is not None
            and src != "-"
            and (other := _stat(src, "cannot read"))
            and os.path.samestat(st, other)
        ):
            raise RnncliError(f"{where}: it is {src}, which this command reads; name another file")
    folder = os.path.dirname(os.path.abspath(path))
    there = _stat(folder, f"cannot write {what} in")
    if there is None:
        raise RnncliError(f"{where}: the folder {folder} does not exist")
    if not stat.S_ISDIR(there.st_mode):
        raise RnncliError(f"{where}: {folder} is not a folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise RnncliError(f"{where}: the folder {folder} does not take new files ({e.strerror})") from None
