"""Data-parallel training over MPI: which rank this process is, which of the global batch's streams
it reads, and the one Allreduce per step that averages gradients (and agrees on the clock and on
stopping). mpi4py is imported only when a run is distributed; a single process pays nothing.
"""

from __future__ import annotations

import os
import time

import numpy as np

from rnncli.base.errors import RnncliError
from rnncli.base.machine import usable_cores

# set by the launchers of MPICH/Intel MPI/MVAPICH (PMI), Open MPI and PMIx-based ones (Slurm's srun --mpi)
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
INSTALL = "pip install 'rnncli[mpi]' (mpi4py and MPICH)"
EXTRA = 3  # slots after the gradients in the reduced buffer: loss share, the lead's clock, stop votes


def launched_size() -> int:
    """How many processes an MPI launcher started this one among (1 outside mpiexec)."""
    for name in SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


class Solo:
    """One process: rank 0 of 1; every exchange is the identity."""

    rank, size, lead = 0, 1, True

    def part(self, batch: int) -> tuple[int, int]:
        return 0, batch

    def barrier(self) -> None:
        pass

    def gather_streams(self, a: np.ndarray, batch: int) -> np.ndarray:
        return a

    def share(self, value):
        return value

    def agree(self, what: str, value) -> None:
        pass

    def threads(self) -> int | None:
        return None

    def abort(self, code: int) -> None:
        pass


class Mpi(Solo):
    """One rank of an MPI job (COMM_WORLD): rank 0 leads (validates, saves, prints)."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise RnncliError(f"distributed training needs mpi4py and an MPI library: {INSTALL}") from None
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.lead = self.rank == 0
        if self.size == 1 and launched_size() > 1:  # e.g. Open MPI's mpirun starting MPICH's mpi4py
            raise RnncliError(
                f"the launcher started {launched_size()} processes but MPI sees each alone: run "
                "mpiexec from the same MPI that mpi4py uses (the one in this environment)"
            )

    def _wait(self, request) -> None:
        """Wait for a nonblocking exchange without spinning a core (a rank waiting on the lead's
        validation or cache build would otherwise take a core from it)."""
        while not request.Test():
            time.sleep(0.002)

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier())

    def share(self, value):
        """The lead's value (a number or None), on every rank."""
        buf = np.array([np.nan if value is None else value, value is None], np.float64)
        self._wait(self.comm.Ibcast(buf, root=0))
        return None if buf[1] else float(buf[0])

    def agree(self, what: str, value) -> None:
        """Refuse, on every rank, when the ranks hold different `value`s (a corpus or model that
        differs between machines would otherwise train on silently, or hang an exchange)."""
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values):
            raise RnncliError(
                f"the ranks disagree on {what}: rank 0 has {values[0]}, "
                f"rank {next(i for i, v in enumerate(values) if v != values[0])} has "
                f"{next(v for v in values if v != values[0])}"
            )

    def threads(self) -> int | None:
        """Each rank's share of its machine's cores, when --threads is not given."""
        local = next(
            (
                int(os.environ[v])
                for v in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
                if os.environ.get(v, "").isdigit()
            ),
            1,
        )
        return max(1, usable_cores() // max(1, local))

    def part(self, batch: int) -> tuple[int, int]:
        """This rank's rows [b0, b1) of the batch's streams: as even a split as whole streams allow."""
        if batch < self.size:
            raise RnncliError(
                f"--batch {batch} has fewer streams than the {self.size} ranks; give each rank one at least"
            )
        return self._rows(self.rank, batch)

    def _rows(self, rank: int, batch: int) -> tuple[int, int]:
        return rank * batch // self.size, (rank + 1) * batch // self.size

    def average(self, K, buf, share: float, extras: list[float]) -> np.ndarray:
        """Allreduce a flat buffer (the gradients, then EXTRA slots) as a weighted average: each rank's
        gradients are the mean over its own tokens, so weighing them by its `share` of the global
        batch gives the mean over all. extras: this rank's loss (averaged the same way), its clock
        (only the lead's counts, so every rank sees the same) and its stop vote (summed). Returns the
        reduced extras; the buffer holds the average, on its backend."""
        host = K.to_host(buf)
        n = len(host) - EXTRA
        if share != 1.0:
            host[:n] *= np.float32(share)
        host[n:] = (extras[0] * share, extras[1] if self.lead else 0.0, extras[2])
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        if host is not buf:
            K.copy_into(buf, K.asarray(host))
        return host[n:].astype(np.float64)

    def gather_streams(self, a: np.ndarray, batch: int) -> np.ndarray | None:
        """The per-stream states (L, b, H) of all ranks as (L, batch, H) on the lead (None elsewhere)."""
        rows = np.ascontiguousarray(np.swapaxes(a, 0, 1))  # (b, L, H): ranks' rows follow each other
        counts = [(b1 - b0) * rows[0].size for b0, b1 in (self._rows(r, batch) for r in range(self.size))]
        out = np.empty((batch,) + rows.shape[1:], np.float32) if self.lead else None
        self.comm.Gatherv(rows, [out, counts] if self.lead else None, root=0)
        return np.ascontiguousarray(np.swapaxes(out, 0, 1)) if self.lead else None

    def abort(self, code: int) -> None:
        """End every rank (one that failed alone would leave the others waiting in an exchange)."""
        self.comm.Abort(code)


def world(distributed: bool | None = None):
    """Solo, or this process's rank of an MPI job: asked for (--distributed), or found (a launcher
    started more than one process). Under mpiexec without mpi4py, N copies of one run would write
    the same checkpoint: that is refused, not done."""
    if distributed is False:
        return Solo()
    size = launched_size()
    if distributed or size > 1:
        global ACTIVE
        ACTIVE = Mpi()
        return ACTIVE
    return Solo()


ACTIVE: Mpi | None = None  # this process's MPI job, once it has joined one
