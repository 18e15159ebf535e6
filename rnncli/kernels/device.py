"""Which kernel backend a command runs on: `--device cpu|cuda|auto`.

The CPU backend is kernels/cpu/backend.py; the GPU one, kernels/cuda/backend.py, is imported only
when CUDA is asked for, or when `auto` finds an NVIDIA driver on this machine, so that CPU users
never pay for importing numba.cuda. Both have the same kernel API, so the model, the optimizer and
the decoder run unchanged on either, and checkpoints are the same whichever device wrote them.
"""

from __future__ import annotations

import os

from rnncli.base.errors import RnncliError

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when a GPU is there


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise RnncliError(f"unknown --device {device!r}: choose one of {', '.join(DEVICES)}")


def backend(name: str = "auto"):
    """The kernels module for a --device value."""
    check_device(name)
    if name == "cpu" or (name == "auto" and not _driver_present()):
        from rnncli.kernels.cpu import backend as cpu

        return cpu
    why = cuda_unusable()
    if why is None:
        from rnncli.kernels.cuda import backend as cuda

        return cuda
    if name == "auto":
        from rnncli.kernels.cpu import backend as cpu

        return cpu
    raise RnncliError(f"--device cuda: {why}")


def _driver_present() -> bool:
    """A cheap look for an NVIDIA driver (or numba's CUDA simulator), before importing anything."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def cuda_unusable() -> str | None:
    """Why the CUDA backend cannot run here, or None when it can."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        return 'numba-cuda is not installed (pip install "rnncli[cuda]")'
    try:
        from numba import cuda
    except Exception as e:  # a broken install: say what it said, in one line
        return f"numba.cuda cannot be imported: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    try:
        if cuda.is_available():
            return None
        cuda.current_context()  # raises, saying why
        reason = ""
    except Exception as e:
        # numba words it as "Error at driver init: \n\nCUDA driver library cannot be found. ..."
        lines = [x.strip(" :") for x in str(e).splitlines() if x.strip(" :")]
        reason = next((x for x in lines if not x.startswith("Error at")), lines[0] if lines else "")
    return f"no CUDA GPU found{f' ({reason.rstrip(chr(46))})' if reason else ''}; use --device cpu"
