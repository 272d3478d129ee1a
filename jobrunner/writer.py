"""Who writes: a process, named by its host and pid and how it was started, and whether it is alive.

Every file a worker writes is either published from a partial name of its own or names it (a
claim, a lease marker, a plan's ``created_by``), so that the next process to look can tell a
live writer's work in progress from a dead one's leftovers.  This module is the one place that
judges that: a writer of *this* host is alive if its pid is (and not a zombie); a writer of
another host cannot be judged by pid at all, and each caller says what it does then (a lock
probe, a lease running out, leaving the leftovers for the final sweep).

A writer's *tag*, ``host-pid``, names its partial files and scratch folders.  Its host part is
sanitised to letters, digits, dots and dashes (RFC 1123 host names are unchanged by that), and
"this host" is judged on the sanitised name, so a tag read back from a file name and a claim
that names the host in full agree on where their writer lives.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


def _sanitised(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", host) or "host"


@dataclass(frozen=True)
class Writer:
    """A process that writes into a spool or outputs folder: its host, its pid, how it was started."""

    host: str
    pid: int
    via: str = ""

    @classmethod
    def this_process(cls, via: str = "") -> Writer:
        # Looked up at each call, never kept at import: a forked pool process is a writer of its own.
        return cls(socket.gethostname(), os.getpid(), via)

    @classmethod
    def from_tag(cls, tag: str) -> Writer | None:
        """The writer a tag names (its host as sanitised), or None if ``tag`` is not a ``host-pid``."""
        host, _, pid = tag.rpartition("-")
        return cls(host, int(pid)) if host and pid.isdigit() else None

    @property
    def tag(self) -> str:
        """``host-pid``: the name of this writer's partial files and scratch folders."""
        return f"{_sanitised(self.host)}-{self.pid}"

    def is_here(self) -> bool:
        """Whether this writer runs (or ran) on this host."""
        return _sanitised(self.host) == _sanitised(socket.gethostname())

    def is_this_process(self) -> bool:
        return self.is_here() and self.pid == os.getpid()

    def alive_here(self) -> bool:
        """A process of this host that is alive and working; False for another host's (not known here)."""
        return self.is_here() and pid_alive(self.pid)

    def stopped_here(self) -> bool:
        """A process of this host that is stopped (SIGSTOP, Ctrl-Z): it holds its job and makes no progress."""
        return self.is_here() and process_stopped(self.pid)

    def dead_here(self) -> bool:
        """A process of this host that is gone: its partial files are leftovers nobody will finish."""
        return self.is_here() and not pid_alive(self.pid)


def writer_tag(host: str | None = None, pid: int | None = None) -> str:
    """``host-pid`` of a process (this one by default): names its partial files, so no two writers share one."""
    here = Writer.this_process()
    return Writer(here.host if host is None else host, here.pid if pid is None else pid).tag


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive and working (a zombie is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    # A killed worker whose parent has not reaped it yet is a zombie: kill(0) finds it, but it
    # holds nothing and will never finish its tile.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_stopped(pid: int) -> bool:
    """Whether a process of this host is stopped (state T, or t under a tracer)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def launched_via(via: str | None = None) -> str:
    """How this worker was started, for the records: a Slurm array task says which; else ``via``,
    which the executors give (``supervise <pid>``, an MPI rank, a Dask worker); else ``work``, and
    a terminal says so."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is not None:
        return f"slurm {os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{task}"
    if via is not None:
        return via
    if sys.stdin is not None and sys.stdin.isatty():
        return "work in a terminal"
    return "work"
