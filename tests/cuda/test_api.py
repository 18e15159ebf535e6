"""The two backends are twins: kernels/cpu/backend.py and kernels/cuda/backend.py export the same
names, and each function (or class) takes the same parameters, so that model.py, optim.py and
sample.py, written once against one of them, run on the other. Runs in both test processes: the
CUDA backend imports without a GPU (nothing compiles until a launch)."""

import inspect

import pytest

pytest.importorskip("numba_cuda", reason='numba-cuda is not installed (pip install -e ".[dev]")')


def backends():
    from rnncli.kernels.cpu import backend as cpu
    from rnncli.kernels.cuda import backend as cuda

    return cpu, cuda


def parameters(fn) -> list[tuple]:
    """(name, kind, default) of each parameter a caller may pass, annotations aside (each backend
    names its own array type). A backend's own knob, keyword-only with a default (the GPU
    decoder's threads per block), is not part of the API: the model never passes it."""
    params = inspect.signature(fn).parameters.values()
    return [
        (p.name, p.kind, p.default)
        for p in params
        if not (p.kind is p.KEYWORD_ONLY and p.default is not p.empty)
    ]


def test_both_backends_define_every_name_of_the_api():
    from rnncli.kernels.api import API

    cpu, cuda = backends()
    assert cpu.__all__ == cuda.__all__ == list(API)
    for module in (cpu, cuda):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__} lists names it does not define: {missing}"


def test_every_function_takes_the_same_parameters():
    cpu, cuda = backends()
    for name in cpu.__all__:
        a, b = getattr(cpu, name), getattr(cuda, name)
        assert callable(a) == callable(b), name
        if callable(a):
            assert parameters(a) == parameters(b), (
                f"{name}: cpu{inspect.signature(a)} cuda{inspect.signature(b)}"
            )
        else:
            assert type(a) is type(b), name
