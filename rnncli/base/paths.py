"""Where rnncli keeps its per-user files (compiled kernels, token caches): one root, computed
without importing anything heavy, so that reading a corpus never loads Numba; and the channel
through which the caches say, once each, that a file was rebuilt or could not be written."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$RNNCLI_CACHE_DIR, else $XDG_CACHE_HOME/rnncli, else ~/.cache/rnncli."""
    root = os.environ.get("RNNCLI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rnncli"
    )
    return Path(root)


notes = None  # callable(str) or None: the CLI prints what it is told on stderr (the library never prints)
_said: set[str] = set()


def note_once(key: str, message: str) -> None:
    """Tell `notes` `message`, the first time in this process that `key` comes up."""
    if key not in _said:
        _said.add(key)
        if notes is not None:
            notes(message)


def said(key: str) -> bool:
    return key in _said
