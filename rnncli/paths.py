"""Where rnncli keeps its per-user files (compiled kernels, token caches): one root, computed
without importing anything heavy, so that reading a corpus never loads Numba."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$RNNCLI_CACHE_DIR, else $XDG_CACHE_HOME/rnncli, else ~/.cache/rnncli."""
    root = os.environ.get("RNNCLI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rnncli"
    )
    return Path(root)
