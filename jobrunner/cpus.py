"""The CPUs this run may use, and where that number came from.

``os.cpu_count()`` counts the machine's logical CPUs, not the ones a process may run on: under
``taskset -c 0`` it still says 64 on a 64-CPU node, and so does a Slurm job step given
``--cpus-per-task=4`` there.  Workers beyond the CPUs a run may use only take turns on them.  In
order of trust:

==============================  ================================================================
source                          when it is used
==============================  ================================================================
``SLURM_CPUS_PER_TASK``         inside a Slurm job that asked for ``--cpus-per-task``: the
                                allocation per task, whatever the node has
``SLURM_CPUS_ON_NODE``          inside a Slurm job without it: the CPUs the job has on this node
CPU affinity                    ``os.sched_getaffinity(0)``: the CPUs this process may run on
                                (``taskset``, cgroup cpusets, a container's ``--cpuset-cpus``)
``os.cpu_count()``              where affinity is not known (macOS, Windows)
==============================  ================================================================

A Slurm count is never taken above the affinity: the job step's cpuset is the one the kernel
enforces, and a variable inherited by a process started outside the step (``ssh`` to the node,
``srun --overlap`` with fewer CPUs) may claim more than it has.

All of these count logical CPUs: with hyperthreading two of them share one physical core, and a
floating-point kernel gains little from the second.  :attr:`CpuCount.physical` says how many
cores they sit on where Linux tells us.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jobrunner.wording import count_of


@dataclass(frozen=True)
class CpuCount:
    count: int  # logical CPUs this run may use
    source: str  # where the count came from, as a user would name it
    physical: int | None = None  # the physical cores those CPUs sit on, where known

    def describe(self) -> str:
        """One phrase for a printout or a figure: ``2 logical CPUs from CPU affinity, on 1 physical core``."""
        if self.physical is None:
            cores = "physical cores unknown"
        else:
            cores = f"on {count_of(self.physical, 'physical core')}"
        return f"{count_of(self.count, 'logical CPU')} from {self.source}, {cores}"


def usable_cpus(environ: dict[str, str] | None = None) -> CpuCount:
    """The CPUs this process may use; see the module's table for the order of sources."""
    environ = os.environ if environ is None else environ
    affinity = _affinity()
    physical = _physical_cores(affinity)
    for variable in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        slurm = _positive_int(environ.get(variable, ""))
        if slurm is not None:
            if affinity is not None and len(affinity) < slurm:
                break  # the variable promises more than this process may use: the affinity rules
            return CpuCount(slurm, variable, physical if affinity is not None and len(affinity) == slurm else None)
    if affinity is not None:
        return CpuCount(len(affinity), "CPU affinity", physical)
    return CpuCount(os.cpu_count() or 1, "os.cpu_count()")


def _affinity() -> set[int] | None:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not on Linux
        return None


def _positive_int(text: str) -> int | None:
    """A Slurm count: ``4``; ``SLURM_CPUS_ON_NODE`` is a plain number too.  None for anything else."""
    text = text.strip()
    # isdecimal, not isdigit: "²" is a digit that int() refuses
    return int(text) if text.isascii() and text.isdecimal() and int(text) > 0 else None


def _physical_cores(cpus: set[int] | None) -> int | None:
    """How many distinct physical cores the logical CPUs ``cpus`` sit on, from Linux's topology."""
    if not cpus:
        return None
    cores = set()
    for cpu in cpus:
        # The CPUs that share this one's core (itself, and its hyperthread siblings): one entry per
        # core.  Not (package, core_id): core ids may repeat across dies on some machines.
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
        except OSError:
            return None
        cores.add(siblings.strip())
    return len(cores)
