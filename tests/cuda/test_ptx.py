"""Every GPU kernel compiled to PTX for sm_80 and sm_90 with NVRTC/NVVM (no GPU needed), then
assembled by ptxas -v: type errors the simulator cannot see fail here, and registers per thread and
spills are known without a GPU. Runs in the ordinary (not simulated) test process."""

import functools
import os
import re
import subprocess
from pathlib import Path

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip(
        "PTX is compiled in the ordinary test process, not under the simulator", allow_module_level=True
    )
pytest.importorskip("numba_cuda", reason='numba-cuda is not installed (pip install -e ".[dev]")')

pytestmark = pytest.mark.cuda
ARCHS = [(8, 0), (9, 0)]
REGISTER_FILE = 65536  # 32-bit registers an SM has for a block, on both


def ptxas() -> str | None:
    try:
        import nvidia.cu13
    except ImportError:
        return None
    for root in nvidia.cu13.__path__:
        found = Path(root) / "bin" / "ptxas"
        if found.exists():
            return str(found)
    return None


def kernels():
    from rnncli.kernels.cuda import (
        arrays as cuda_arrays,
    )
    from rnncli.kernels.cuda import (
        decode as cuda_decode,
    )
    from rnncli.kernels.cuda import (
        ops as cuda_ops,
    )
    from rnncli.kernels.cuda import (
        recur as cuda_recur,
    )

    for module in (cuda_arrays, cuda_ops, cuda_recur, cuda_decode):
        for name, fn, argtypes in module.PTX:
            yield pytest.param(
                module.__name__.rsplit(".", 1)[1], fn, argtypes, id=f"{module.__name__[15:]}.{name}"
            )


def assemble(ptx: str, cc, tmp_path) -> dict:
    """ptxas -v's report for one kernel: registers per thread, spill stores and loads (bytes)."""
    tool = ptxas()
    if tool is None:
        pytest.skip('ptxas is not installed (the nvidia-cuda-nvcc wheel; pip install -e ".[dev]")')
    src = tmp_path / "k.ptx"
    src.write_text(ptx)
    done = subprocess.run(
        [tool, "-v", f"-arch=sm_{cc[0]}{cc[1]}", str(src), "-o", os.devnull], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    report = done.stderr
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", report)]
    stores = [int(x) for x in re.findall(r"(\d+) bytes spill stores", report)]
    loads = [int(x) for x in re.findall(r"(\d+) bytes spill loads", report)]
    # one entry, its lines all read (a report in another format must fail here, not pass as no spills)
    assert report.count("Compiling entry function") == len(regs) == len(stores) == len(loads) == 1, report
    return {"registers": regs[0], "spill_stores": stores[0], "spill_loads": loads[0], "report": report}


@functools.cache
def lowered(fn, argtypes):
    """A kernel typed and lowered to NVVM IR once, for every architecture: numba-cuda's lowering
    looks at the compute capability only below sm_80 (tanh.approx from 7.5, float64 atomics from 6.0),
    so sm_80's IR is sm_90's, and NVVM compiles it for each arch (what compile_ptx does, less the
    second typing and lowering). Each kernel's two archs run one after the other."""
    from numba.cuda.compiler import _compile_pyfunc_with_fixup

    return _compile_pyfunc_with_fixup(fn, argtypes, device=False, abi="numba", cc=ARCHS[0])[0]


@pytest.mark.parametrize("cc", ARCHS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("module,fn,argtypes", list(kernels()))
def test_kernel_compiles_and_assembles(module, fn, argtypes, cc, tmp_path):
    (ptx,) = lowered(fn, argtypes).get_asm_strs(cc=cc)
    found = assemble(ptx, cc, tmp_path)
    assert found["spill_stores"] == 0 and found["spill_loads"] == 0, found["report"]  # no kernel spills
    if module == "cuda_recur":  # a block of the threads its launcher aims at fits the register file
        from rnncli.kernels.cuda.recur import THREADS

        assert found["registers"] * THREADS <= REGISTER_FILE, found["report"]
