"""Where one attempt's time and CPU go: a clock the runtime marks at the end of each step, read
back as one ``-- cost:`` line of the task's log (``scripts/bench/task_cost.py`` parses it).

CPU is the process's and its finished children's (``getrusage``): git, the agent, tar. The
first step, ``startup``, is the process's life before the clock was made (interpreter, imports),
from ``/proc/self/stat`` where there is one.
"""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass, field

COST_PREFIX = "-- cost:"
"""How the cost line of a task's log starts."""
_STEP = re.compile(r"(?P<name>[a-z_-]+) (?P<wall>\d+)/(?P<cpu>\d+) ms")


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def process_age_s() -> float:
    """Seconds since this process started (0 where ``/proc`` does not say)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            fields = stat.read().rsplit(")", 1)[1].split()
            now = float(uptime.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    return max(0.0, now - int(fields[19]) / os.sysconf("SC_CLK_TCK"))


@dataclass
class StepClock:
    """Wall and CPU milliseconds per step, in the order the steps ended."""

    steps: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Step name -> (wall ms, CPU ms); a step marked twice adds up."""
    _wall: float = field(default_factory=time.monotonic)
    _cpu: float = field(default_factory=cpu_s)

    @classmethod
    def from_process_start(cls) -> StepClock:
        """A clock whose first step, ``startup``, is what the process spent before now."""
        clock = cls()
        clock.steps["startup"] = (process_age_s() * 1000, clock._cpu * 1000)
        return clock

    def mark(self, name: str) -> None:
        """End step ``name`` now (it began at the previous mark)."""
        wall, cpu = time.monotonic(), cpu_s()
        before = self.steps.get(name, (0.0, 0.0))
        self.steps[name] = (
            before[0] + (wall - self._wall) * 1000,
            before[1] + (cpu - self._cpu) * 1000,
        )
        self._wall, self._cpu = wall, cpu

    def line(self) -> str:
        """``-- cost: startup 310/280 ms, claim 4/3 ms, ...`` (wall/CPU)."""
        parts = [f"{name} {wall:.0f}/{cpu:.0f} ms" for name, (wall, cpu) in self.steps.items()]
        return f"{COST_PREFIX} {', '.join(parts)} (wall/CPU)"


def parse_cost_line(line: str) -> dict[str, tuple[float, float]]:
    """The steps of a ``-- cost:`` line (empty when it is not one)."""
    if not line.startswith(COST_PREFIX):
        return {}
    return {m["name"]: (float(m["wall"]), float(m["cpu"])) for m in _STEP.finditer(line)}
