"""CPU time per unit of work, for the worker processes and for the in-process baselines.

On the 2-core machine the broker, the bench's clients and the worker share the cores, so
events/s moves with whatever else runs; the CPU one process spends per event moves far
less (PERF-NOTES.md), which is why every row reports it beside the rate. A worker is a
separate process: its user+system time comes from /proc/<pid>/stat (Linux; no psutil in
the lock). A baseline runs in the bench's own process with nothing else in it, so
`time.process_time` around its loop is its cost.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# /proc/<pid>/stat fields counted from the one after "(comm)": state is field 3 (index 0),
# utime field 14, stime field 15 (proc(5)).
_UTIME = 14 - 3
_STIME = 15 - 3


@dataclass(frozen=True)
class CpuTimes:
    """User and system CPU seconds of one process (all its threads)."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)


def clock_ticks() -> int:
    """Kernel clock ticks per second, the unit of /proc CPU times."""
    return os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str, ticks_per_s: int) -> CpuTimes:
    """CPU times from the text of /proc/<pid>/stat.

    The command name is in parentheses and may itself hold spaces or ')', so the fields
    are counted from the last ')'.
    """
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) <= _STIME:
        raise ValueError("not a /proc/<pid>/stat line")
    return CpuTimes(int(fields[_UTIME]) / ticks_per_s, int(fields[_STIME]) / ticks_per_s)


def process_cpu(pid: int) -> CpuTimes:
    """CPU a running process has used so far (raises OSError once it is gone)."""
    return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text(), clock_ticks())


def own_cpu() -> float:
    """CPU seconds of the bench's own process (every thread) so far."""
    return time.process_time()


def per_unit_us(cpu_seconds: float, units: int) -> float | None:
    """Microseconds of CPU per unit; None when nothing was done (no honest figure)."""
    if units <= 0:
        return None
    return cpu_seconds * 1e6 / units
