"""Writing a file whole or not at all, once for every file rnncli writes (checkpoints, the kernel
tuning file, the token cache's records, the inspect page): readers find the previous file or the
whole new one, never a part, even after a crash or a full disk."""

from __future__ import annotations

import os
from pathlib import Path

from rnncli.base.errors import RnncliError


def replace_atomic(path: str | os.PathLike, write) -> None:
    """write(f) into `.NAME.tmpPID` beside `path`, fsync, rename over `path`, fsync the directory.
    An OSError goes to the caller (the temporary file removed): for callers that have their own
    answer to a failed write, such as a cache that then works without the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_atomic(path: str | os.PathLike, write, what: str) -> None:
    """replace_atomic, with a failure to write told as one RnncliError naming `what`."""
    try:
        replace_atomic(path, write)
    except OSError as e:
        raise RnncliError(
            f"cannot write {what} {path}: {e.strerror} (the previous one, if any, is intact)"
        ) from None
