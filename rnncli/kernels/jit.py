"""The one place where rnncli's compiled functions get their Numba options and their disk cache.

Every kernel is cached on disk, in a per-user folder (so a read-only install works) whose name
carries a hash of the kernel sources and the Numba version: Numba alone only notices edits to the
file of the function it caches, not to the inlined helpers it calls from other files.
error_model="numpy" drops Python's zero-division checks, which otherwise stop LLVM from
vectorizing loops; fastmath only allows fused multiply-add, nothing that changes IEEE semantics.
The disk cache takes a damaged file for a miss (cache.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba
from numba import njit

from rnncli.base.paths import cache_root
from rnncli.kernels.cache import cache_for

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


def cache_dir() -> Path:
    """Where compiled kernels live: $RNNCLI_CACHE_DIR, else the user cache folder, one subfolder
    per version of the kernel sources."""
    digest = hashlib.sha256(numba.__version__.encode())
    here = Path(__file__).parent
    for src in sorted(here.rglob("*.py")):
        # every kernel source, the GPU's too: numba keys a cached kernel by its own file's time
        # alone, and the GPU kernels compile in device functions from other files (cells.py,
        # cuda/sampler.py). The backend choice and the tuning file's reader compile nothing.
        if src.name not in ("device.py", "tune.py"):
            digest.update(src.read_bytes())
    return cache_root() / f"kernels-{digest.hexdigest()[:16]}"


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = str(cache_dir())


def kernel(fn=None, *, parallel: bool = False, inline: bool = False, reassociate: bool = False):
    """Compile `fn` with the project's options: @kernel, @kernel(parallel=True), @kernel(inline=True).
    reassociate=True also lets LLVM reorder float sums, so that it can vectorize a dot product
    (as every BLAS does); keep it to the functions that need it."""

    def wrap(f):
        options = dict(OPTIONS, fastmath=OPTIONS["fastmath"] | {"reassoc"}) if reassociate else OPTIONS
        dispatcher = njit(
            parallel=parallel, inline="always" if inline else "never", **dict(options, cache=False)
        )(f)
        dispatcher._cache = cache_for(
            f
        )  # (what cache=True would set up, with damaged files taken for misses)
        return dispatcher

    return wrap(fn) if fn is not None else wrap


def callback(signature):
    """Compile a function as a C callback of `signature` (numba.cfunc: blas.py's fallback bindings),
    cached on disk as the kernels are."""

    def wrap(f):
        from numba.core import sigutils
        from numba.core.ccallback import CFunc

        compiled = CFunc(f, sigutils.normalize_signature(signature), locals={}, options=dict(nopython=True))
        compiled._cache = cache_for(f)  # (what cache=True would set up)
        compiled.compile()
        return compiled

    return wrap


def gpu_kernel(fn=None, *, device: bool = False):
    """Compile `fn` with numba.cuda: a kernel, cached on disk beside the CPU's kernels, or with
    device=True a device function, inlined into the kernels that call it. Only the cuda_* modules
    call this, and they are imported only when CUDA is asked for, so numba.cuda is imported here,
    at their first kernel, and nowhere on the CPU's path."""
    from numba import cuda

    def wrap(f):
        return cuda.jit(device=True, inline="always")(f) if device else cuda.jit(cache=True)(f)

    return wrap(fn) if fn is not None else wrap


def compiled_on_disk(kernel_name: str = "sequence_backward", exact: bool = False) -> bool:
    """Whether a kernel is already in the disk cache (if not, its first call compiles it): the one of
    that name if `exact`, else any whose name starts so (sequence_forward: either split's)."""
    pattern = (
        f"**/*.{kernel_name}-*.nbi" if exact else f"**/*.{kernel_name}*.nbi"
    )  # (module.name-line.pyXY.nbi)
    return any(Path(numba.config.CACHE_DIR).glob(pattern))
