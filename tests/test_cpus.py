"""The CPUs a run may use: Slurm's variables, CPU affinity (taskset), and which one wins."""

import os
import shutil
import subprocess
import sys

import pytest

from jobrunner.cpus import usable_cpus

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this system")


def _affinity() -> set[int]:
    return os.sched_getaffinity(0)


@needs_affinity
def test_without_slurm_the_count_is_the_cpu_affinity():
    cpus = usable_cpus(environ={})
    assert (cpus.count, cpus.source) == (len(_affinity()), "CPU affinity")


@needs_affinity
def test_slurm_cpus_per_task_is_the_count_when_the_affinity_allows_it():
    cpus = usable_cpus(environ={"SLURM_CPUS_PER_TASK": "1", "SLURM_CPUS_ON_NODE": str(len(_affinity()))})
    assert (cpus.count, cpus.source) == (1, "SLURM_CPUS_PER_TASK")
    cpus = usable_cpus(environ={"SLURM_CPUS_ON_NODE": "1"})
    assert (cpus.count, cpus.source) == (1, "SLURM_CPUS_ON_NODE")


@needs_affinity
def test_a_slurm_count_above_the_affinity_falls_back_to_the_affinity():
    # an inherited variable (ssh to the node, a step with fewer CPUs) may promise more than the kernel allows
    cpus = usable_cpus(environ={"SLURM_CPUS_PER_TASK": str(len(_affinity()) + 1)})
    assert (cpus.count, cpus.source) == (len(_affinity()), "CPU affinity")


@needs_affinity
def test_a_slurm_variable_that_is_no_count_is_ignored():
    for text in ("", "0", "-2", "four", "2(x3)"):
        assert usable_cpus(environ={"SLURM_CPUS_PER_TASK": text}).source == "CPU affinity"


def _count_under_taskset(extra_env: dict[str, str]) -> str:
    """``usable_cpus()`` printed by a Python pinned with ``taskset`` to one CPU this process may use."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}  # CI may run in Slurm
    script = "from jobrunner.cpus import usable_cpus; c = usable_cpus(); print(c.count, c.source, sep='|')"
    command = ["taskset", "-c", str(min(_affinity())), sys.executable, "-c", script]
    result = subprocess.run(command, env={**env, **extra_env}, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


@needs_affinity
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_taskset_to_one_cpu_gives_one_cpu_from_the_affinity_whatever_slurm_says():
    assert _count_under_taskset({}) == "1|CPU affinity"
    assert _count_under_taskset({"SLURM_CPUS_PER_TASK": "4"}) == "1|CPU affinity"
    assert _count_under_taskset({"SLURM_CPUS_PER_TASK": "1"}) == "1|SLURM_CPUS_PER_TASK"
