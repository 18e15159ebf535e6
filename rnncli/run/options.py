"""How a run is carried out, as opposed to what it learns: where it writes, what it continues, which
device and how many threads, whether the kernels' measured choices are used. One frozen object,
handed down to the call that needs it; nothing travels through the environment or a module global."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from rnncli.base.errors import RnncliError
from rnncli.kernels.device import check_device


@dataclass(frozen=True)
class RunOptions:
    """Options of one training run (the device and threads also of scoring and generation).

    out: the checkpoint to write (None: rnncli.safetensors, or the resumed file); resume: continue
    the run saved in this checkpoint; more: with resume, how much more ("30s", "10m", "500steps",
    "2epochs"); force: replace another run's checkpoint at `out`; allow_new_corpus: with resume,
    continue on other text; distributed: one rank of an MPI job (None: as the environment says);
    tune: the recurrent products take the path measured fastest on this CPU (False: fixed rules);
    notes: called with what people should hear about the kernels' tuning file (None: nothing).

    >>> RunOptions(device="cpu", threads=2).device
    'cpu'
    """

    device: str = "auto"
    threads: int | None = None
    out: str | None = None
    resume: str | None = None
    more: str | None = None
    force: bool = False
    allow_new_corpus: bool = False
    distributed: bool | None = None
    tune: bool = True
    notes: Callable[[str], None] | None = None

    def __post_init__(self):
        check_device(self.device)
        if self.threads is not None and self.threads < 1:
            raise RnncliError(f"--threads must be at least 1, not {self.threads}")

    def train_fields(self) -> dict:
        """The options a checkpoint records among its training settings (threads, device, out)."""
        given = {"threads": self.threads, "out": self.out}
        return {**{k: v for k, v in given.items() if v is not None}, "device": self.device}

    @contextlib.contextmanager
    def applied(self):
        """The kernels' tuning as these options say, for the length of one call; as before after it."""
        from rnncli.kernels.cpu import tune

        with tune.configured(self.tune, self.notes):
            yield
