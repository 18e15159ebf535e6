"""What this machine is, described once: its CPU (model name, family and model numbers, vector
width and registers) and the cores this process may use. The vector table is the one place that
says what an instruction set gives; `cpu_description` reads the CPU's flags from /proc/cpuinfo, and
the kernels read the features their compiler targets through the same `vector_shape`."""

from __future__ import annotations

import os
import platform

# flag -> (float32 lanes of the widest vector unit, vector registers), widest first
VECTORS = (
    ("avx512f", 16, 32),
    ("avx2", 8, 16),
    ("avx", 8, 16),
    ("asimd", 4, 32),
    ("neon", 4, 32),
    ("sse2", 4, 16),
)


def vector_shape(flags: set[str]) -> tuple[int, int]:
    """(float32 lanes, vector registers) of the widest vector unit the flags name; (4, 16) if none."""
    return next(((lanes, regs) for flag, lanes, regs in VECTORS if flag in flags), (4, 16))


def cpu_description(cpuinfo: str | None = None) -> tuple[str, int]:
    """The CPU's model name (with its family and model numbers, which tell apart what a vague name
    such as "AMD EPYC" does not) and the float32 lanes of its widest vector unit, from /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return name, vector_shape(flags)[0]


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
