"""The GPU backend's arrays: kernels/cpu/backend.py's array helpers (asarray, to_host, zeros, empty, copy,
copy_into, transpose_view) on numba.cuda device arrays, and Scratch, the device memory a model keeps
between calls. The products, loss and optimizer are in cuda/ops.py.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32
from numba.cuda.cudadrv import devicearray as _devicearray

from rnncli.kernels.jit import gpu_kernel

_DeviceNDArray = getattr(_devicearray, "DeviceNDArray", None)  # absent in the simulator


class Scratch:
    """Device memory kept between calls (for one model): `buffer` hands out arrays whose contents do
    not survive the next call with the same key. `store` is a free dict for other modules (cuda_recur
    keeps per-layer things there)."""

    def __init__(self):
        self._flat: dict = {}
        self.store: dict = {}

    def buffer(self, key, shape, dtype=np.float32):
        """A C-contiguous device array of `shape`, a view into memory kept under `key`, grown as needed."""
        n = int(np.prod(shape))
        if n == 0:
            return cuda.device_array(shape, dtype)
        flat = self._flat.get(key)
        if flat is None or flat.size < n or flat.dtype != np.dtype(dtype):
            flat = self._flat[key] = cuda.device_array(max(n, 1), dtype)
        return flat[:n].reshape(shape)


def is_device(a) -> bool:
    return getattr(a, "__cuda_ndarray__", False)


def grid_blocks(n: int, per: int = 256, cap: int = 4096) -> int:
    """Blocks of `per` threads for n items, at most `cap` (the kernels loop over the rest)."""
    return max(1, min(cap, -(-n // per)))


# ---------------------------------------------------------------- array helpers
@gpu_kernel
def _zero(x):
    """x[:] = 0 for flat x."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] = 0


@gpu_kernel
def _copy3(dst, src):
    """dst[...] = src for 3-d arrays of any strides, one thread per element (grid-stride)."""
    n1, n2 = dst.shape[1], dst.shape[2]
    for i in range(cuda.grid(1), dst.shape[0] * n1 * n2, cuda.gridsize(1)):
        a, b = i // (n1 * n2), i % (n1 * n2)
        dst[a, b // n2, b % n2] = src[a, b // n2, b % n2]


def asarray(a):
    """A device copy of host array `a` (dtype kept); a device array comes back as it is."""
    return a if is_device(a) else cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    return a.copy_to_host() if is_device(a) else np.asarray(a)


def empty(shape, dtype=np.float32):
    return cuda.device_array(shape, dtype)


def zeros(shape, dtype=np.float32):
    return zeros_into(cuda.device_array(shape, dtype))


def zeros_into(a):
    """a[...] = 0 for a contiguous device array; returns a."""
    if a.size:
        _zero[grid_blocks(a.size), 256](a.reshape(a.size))
    return a


def copy(a):
    out = cuda.device_array(a.shape, a.dtype)
    copy_into(out, a)
    return out


def transpose_view(a):
    """a.T of a 2-d device array as a view (numba's DeviceNDArray.T makes a transposed copy)."""
    if _DeviceNDArray is not None and isinstance(a, _DeviceNDArray):
        return _DeviceNDArray(tuple(a.shape)[::-1], tuple(a.strides)[::-1], a.dtype, gpu_data=a.gpu_data)
    return a.T


def _as3d(a):
    """`a` (ndim <= 3) as a 3-d view with leading axes of length 1."""
    pad = 3 - a.ndim
    if pad == 0:
        return a
    if _DeviceNDArray is not None and isinstance(a, _DeviceNDArray):
        return _DeviceNDArray(
            (1,) * pad + tuple(a.shape),
            (a.dtype.itemsize,) * pad + tuple(a.strides),
            a.dtype,
            gpu_data=a.gpu_data,
        )
    return a[(None,) * pad]


def copy_into(dst, src):
    """dst[...] = src, same shapes; either may be a strided view (a host src is uploaded first)."""
    if dst.size == 0 and src.size == 0:
        # (before comparing shapes: numba gives an empty device array zero strides, and its slices of
        # such an array take every stride-0 axis as length 1, so that cs[:, t] of an (L, T+1, B, 0)
        # array is (1, 1, 0), and two views of equal empty arrays need not have equal shapes)
        return
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"copy_into: shapes {tuple(dst.shape)} and {tuple(src.shape)} differ")
    if not is_device(src):
        src = cuda.to_device(np.ascontiguousarray(src, dtype=dst.dtype))
    if dst.is_c_contiguous() and src.is_c_contiguous():
        dst.copy_to_device(src)  # one device-to-device memcpy
    elif dst.ndim > 3:
        for i in range(dst.shape[0]):
            copy_into(dst[i], src[i])
    else:
        _copy3[grid_blocks(dst.size), 256](_as3d(dst), _as3d(src))


PTX = [
    (k.py_func.__name__, k.py_func, sig)
    for k, sig in [
        (_zero, (float32[::1],)),
        (_copy3, (float32[:, :, :],) * 2),
    ]
]
