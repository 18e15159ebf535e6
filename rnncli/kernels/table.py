"""The cell table: what each cell is, as numbers, read by the settings (model/config.py), the CPU and
CUDA kernels (cells.py and what calls it) and the tests. No numba here, so that the settings can read
it at start-up. A new cell is a row here, its per-unit functions and step loops in cells.py, and its
equations in reference.py; tests/test_cells.py says what it must define.
"""

# Per cell code: GATES blocks of H gate pre-activations (in gx, gh and the rows of W_ih, W_hh; in
# PyTorch's order), ACTS blocks of H that `act` keeps for backward, CSTATE blocks of H of cell state
# c, and APART: 1 when the recurrent side of a step's gradient differs from its input side (dgh an
# array of its own). Slot k of a unit j is at k * H + j in each. What the slots hold:
#   rnn  gates a                     act: nothing (h is enough)
#   gru  gates r, z, n               act: r, z, n, hn (hn = W_hn h + b_hn)
#   lstm gates i, f, g, o            act: i, f, g, o (after their nonlinearities);  c
# Module-level tuples: numba freezes them into the compiled code as constants.
NAMES = ("rnn", "gru", "lstm")
GATES = (1, 3, 4)
ACTS = (0, 4, 4)
CSTATE = (0, 0, 1)
APART = (0, 1, 0)
MAX_GATES = 4  # the per-unit functions take and return this many slots (unused ones 0)
