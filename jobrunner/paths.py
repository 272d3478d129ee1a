"""Every path jobrunner reads or writes, owned by one object.  No other module joins path strings."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


def writer_tag(host: str | None = None, pid: int | None = None) -> str:
    """``host-pid`` of a process (this one by default): names its partial files, so no two writers share one."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname() if host is None else host) or "host"
    return f"{host}-{os.getpid() if pid is None else pid}"


def local_pid(tag: str) -> int | None:
    """The pid of a writer tag from this host, or None for another host's (or no tag at all)."""
    host, _, pid = tag.rpartition("-")
    return int(pid) if pid.isdigit() and host == writer_tag(pid=0).rpartition("-")[0] else None


@dataclass(frozen=True)
class SpoolPaths:
    spool: Path
    outputs: Path

    def __init__(self, spool: str | os.PathLike, outputs: str | os.PathLike) -> None:
        object.__setattr__(self, "spool", Path(spool).absolute())
        object.__setattr__(self, "outputs", Path(outputs).absolute())

    @classmethod
    def outputs_only(cls, outputs: str | os.PathLike) -> SpoolPaths:
        """Paths for a command with no spool (``serial``): only the outputs half is meaningful."""
        return cls(outputs, outputs)

    # -- the spool: the plan, one spec, lock and record per job ---------------------------------
    @cached_property
    def manifest(self) -> Path:
        return self.spool / "plan.json"

    @cached_property
    def specs(self) -> Path:
        return self.spool / "specs"

    @cached_property
    def locks(self) -> Path:
        return self.spool / "locks"

    @cached_property
    def records(self) -> Path:
        return self.spool / "records"

    def spec(self, job_id: str) -> Path:
        return self.specs / f"{job_id}.json"

    @cached_property
    def locking(self) -> Path:
        """Which lock mode the spool's workers use, chosen once (see :mod:`jobrunner.locking`)."""
        return self.spool / "locking.json"

    def lock(self, job_id: str) -> Path:
        return self.locks / f"{job_id}.lock"

    def lease(self, job_id: str) -> Path:
        return self.locks / f"{job_id}.lease"

    def claim(self, job_id: str) -> Path:
        """The attempt in flight, in lease mode (in flock mode it is written into the lock file)."""
        return self.locks / f"{job_id}.claim"

    def record(self, job_id: str) -> Path:
        return self.records / f"{job_id}.json"

    @cached_property
    def drain_file(self) -> Path:
        """While this file exists, every worker finishes its current tile and exits (``jobrunner drain``)."""
        return self.spool / "DRAIN"

    # -- Slurm: the batch script and one log per array task --------------------------------------
    @cached_property
    def slurm(self) -> Path:
        return self.spool / "slurm"

    @cached_property
    def sbatch_script(self) -> Path:
        return self.slurm / "jobrunner.sbatch"

    @cached_property
    def slurm_logs(self) -> Path:
        return self.slurm / "logs"

    @cached_property
    def slurm_log_pattern(self) -> Path:
        """Slurm fills in %A (the array's job id) and %a (the task's index)."""
        return self.slurm_logs / "task-%A_%a.log"

    # -- the outputs: tiles and the products made from them -------------------------------------
    @cached_property
    def tiles(self) -> Path:
        return self.outputs / "tiles"

    def tile(self, job_id: str) -> Path:
        return self.tiles / f"{job_id}.npy"

    def product(self, name: str) -> Path:
        """``serial.npy``, ``stitched.png`` and the like, directly under the outputs folder."""
        return self.outputs / name

    @staticmethod
    def partial(target: Path, writer: str) -> Path:
        """Where ``writer`` writes ``target`` before renaming it into place: same folder, so the rename is atomic."""
        return target.with_name(f".{target.name}.{writer}.partial")

    @staticmethod
    def scratch(folder: Path, writer: str) -> Path:
        """``writer``'s own folder for partial files, inside a folder that many workers fill at once.

        Creating a file holds its folder's lock while the disk allocates an inode; on this ext4
        that takes 0.3-0.9 ms, and two workers creating in one folder took three times as long
        each as in folders of their own.  A rename into place holds the lock only briefly.
        """
        return folder / f".{writer}.partial"

    @staticmethod
    def scratch_writer(scratch: Path) -> str:
        """The writer a scratch folder was made for (the inverse of :meth:`scratch`)."""
        return scratch.name[1 : -len(".partial")]

    def tile_partial(self, job_id: str, writer: str) -> Path:
        return self.scratch(self.tiles, writer) / f"{job_id}.npy"

    def record_partial(self, job_id: str, writer: str) -> Path:
        return self.scratch(self.records, writer) / f"{job_id}.json"

    def claim_partial(self, job_id: str, writer: str) -> Path:
        return self.scratch(self.locks, writer) / f"{job_id}.claim"
