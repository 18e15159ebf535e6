"""How much memory this machine (or its container) can give, so that a run too large for it is
refused with a sentence before it allocates, not with an allocator's traceback after."""

from __future__ import annotations

from pathlib import Path

from rnncli.base.errors import RnncliError


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """MemAvailable, or less where a cgroup (v2) limit leaves less; None where neither is known."""
    have = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                have = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        have = limit - used if have is None else min(have, limit - used)
    return have


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


# require's words for a run
TRAINING = (
    "training this model",
    "lower --hidden, --layers, --embed, --batch or --seq",
)


def require(need: int, what: str, advice: str) -> None:
    """Refuse, naming the estimate and what is available, when `need` bytes will not fit."""
    have = available_bytes()
    if have is not None and need > have:
        raise RnncliError(
            f"{what} needs about {human(need)} of memory, more than the {human(have)} available; {advice}"
        )
