"""When a worker stops claiming: a drain asked for the whole spool, or a deadline it would overrun.

Both are judged between tiles, never in the middle of one, so stopping this way leaves nothing
interrupted:

* **drain**: while ``<spool>/DRAIN`` exists (``jobrunner drain`` writes it, ``jobrunner resume``
  removes it), every worker, wherever it runs and however it was started, finishes the tile it
  has and exits.  Workers look for the file before each claim: one ``stat`` per job, no polling.
* **deadline**: ``--max-time`` of ``work`` and ``supervise`` and, inside a Slurm job, the job's
  end time (read once at start).  A job is claimed only if its tile would finish before the
  deadline, judged by the median duration of the tiles finished so far, in the whole spool and
  by this run; with no tile finished anywhere, only before the deadline itself.  The run checks
  before each pass and each job it hands out, and each process of its executor checks again
  before it claims (:func:`jobrunner.protocol.attempt_job`), so jobs already queued on a pool
  are not started late.  The far side reads its own clock: on a cluster's nodes, kept by NTP,
  that is the one the Slurm end time is on.

Signals are the other way to stop, and they do interrupt: SIGTERM (what ``scancel`` and a
Slurm walltime send) and Ctrl-C abandon the tile in flight; see :mod:`jobrunner.protocol`.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass

from jobrunner.errors import JobRunnerError
from jobrunner.files import write_text
from jobrunner.paths import SpoolPaths
from jobrunner.writer import writer_tag


def draining_message(paths: SpoolPaths) -> str:
    """Why a run stopped claiming while ``<spool>/DRAIN`` exists, and how to undo it."""
    return f"the spool is being drained (`{paths.command('resume')}` lets workers claim again)"


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_WITH_UNITS = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))+")
_CLOCK = re.compile(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)")  # Slurm's [D-][HH:]MM:SS


def parse_duration(text: str, option: str = "--max-time") -> float:
    """Seconds in ``3h``, ``90m``, ``45s``, ``1h30m``, ``01:00:00``, ``2-00:00:00`` or a bare number of seconds."""
    text = text.strip().lower()
    seconds: float | None = None
    if _WITH_UNITS.fullmatch(text):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([dhms])", text))
    elif clock := _CLOCK.fullmatch(text):
        days, hours, minutes, secs = (int(part or 0) for part in clock.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    else:
        try:
            seconds = float(text)
        except ValueError:
            pass
    if seconds is None or not seconds > 0:
        raise JobRunnerError(f"{option} takes a duration such as 3h, 90m, 45s or 01:00:00, not {text!r}")
    if not seconds <= MAX_DURATION:  # inf, nan, or a typo of many digits
        raise JobRunnerError(f"{option} {text!r} is more than a year: give a duration such as 3h or 2-00:00:00")
    return seconds


#: The longest duration accepted anywhere (a year): anything longer is a typo, or inf.
MAX_DURATION = 366 * 24 * 3600.0


@dataclass(frozen=True)
class Deadline:
    at: float  # seconds since the epoch
    what: str  # where it comes from, for messages: "--max-time 3h", "the Slurm job's end"


def earliest(*deadlines: Deadline | None) -> Deadline | None:
    known = [d for d in deadlines if d is not None]
    return min(known, key=lambda d: d.at) if known else None


def run_deadline(max_time: str | None, started: float) -> Deadline | None:
    """When a run that started at ``started`` must stop claiming: ``--max-time`` after its start,
    or its Slurm job's end (inside one), whichever comes first; None for neither."""
    from jobrunner.slurm import job_end_time  # not at the top: jobrunner.slurm imports this module

    limit = Deadline(started + parse_duration(max_time), f"--max-time {max_time}") if max_time else None
    return earliest(limit, job_end_time())


def latest_claim(deadline: Deadline, durations: list[float]) -> float:
    """The last moment a tile may be claimed and still finish by the deadline, judged by the median
    so far; with nothing to judge by yet, the deadline itself."""
    return deadline.at - (statistics.median(durations) if durations else 0.0)


@dataclass(frozen=True)
class ClaimLimit:
    """A deadline as a process of an executor judges it, before each claim of the jobs it was handed.

    ``median``: the median tile known to the run when it handed the jobs out; None if no tile had
    finished yet, and then the process judges by the tiles it has finished itself.
    """

    deadline_at: float
    median: float | None

    def claim_until(self, durations_here: list[float]) -> float:
        if self.median is not None:
            return self.deadline_at - self.median
        return self.deadline_at - (statistics.median(durations_here) if durations_here else 0.0)


def next_tile_fits(now: float, deadline: Deadline, durations: list[float]) -> bool:
    """Whether a tile claimed at ``now`` would finish by the deadline."""
    return now <= latest_claim(deadline, durations)


def overrun_message(deadline: Deadline, durations: list[float]) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(deadline.at))
    if not durations:
        return f"{deadline.what} ended at {clock}"
    median = statistics.median(durations)
    return f"the next tile (median {median:.1f} s) would not finish before {deadline.what} at {clock}"


# -- drain and resume ------------------------------------------------------------------------------
def drain_requested(paths: SpoolPaths) -> bool:
    return paths.drain_file.exists()


def request_drain(paths: SpoolPaths) -> bool:
    """Ask every worker of the spool to stop after its current tile; False if that was asked already."""
    if paths.drain_file.exists():
        return False
    write_text(paths.drain_file, f"drain asked by {writer_tag()} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return True


def cancel_drain(paths: SpoolPaths) -> bool:
    """Let workers claim again; False if no drain was asked."""
    try:
        paths.drain_file.unlink()
    except FileNotFoundError:
        return False
    return True
