"""The GPU backend's tests: PTX compiles in the ordinary test process (test_ptx.py); the rest run
kernels in numba's CUDA simulator, in a second process started with NUMBA_ENABLE_CUDASIM=1."""

import sys

import pytest


@pytest.fixture(autouse=True, scope="module")
def _quick_barriers():
    """The simulator runs a block's threads as Python threads that meet at every barrier; with the
    default 5 ms switch interval each meeting waits out switches: 50 us makes the tests ~10x quicker."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(old)
