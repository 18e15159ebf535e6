"""The one place where rnncli's compiled functions get their Numba options.

Every kernel is cached on disk (Numba falls back to a per-user cache directory when the package
directory is read-only). error_model="numpy" drops Python's zero-division checks, which otherwise
stop LLVM from vectorizing loops; fastmath only allows fused multiply-add, nothing that changes
IEEE semantics of inf, nan or signed zeros.
"""
from __future__ import annotations

from numba import njit

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


def kernel(fn=None, *, parallel: bool = False, inline: bool = False):
    """Compile `fn` with the project's options: @kernel, @kernel(parallel=True), @kernel(inline=True)."""

    def wrap(f):
        return njit(parallel=parallel, inline="always" if inline else "never", **OPTIONS)(f)

    return wrap(fn) if fn is not None else wrap


def compiled_on_disk() -> bool:
    """Whether the training kernels are in Numba's on-disk cache (if not, the first call compiles)."""
    from rnncli.kernels import cpu

    try:
        return all(cpu.sequence_forward._cache._cache_file._load_index() for _ in [0])
    except Exception:
        return True
