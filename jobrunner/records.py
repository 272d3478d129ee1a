"""A job's record and the claim of the attempt in flight.  Pure values and transitions, no I/O.

A job is done while its tile is in place.  Its record (``records/<id>.json`` in its plan's
folder) exists only once an attempt ended otherwise: it says whether the job is failed, counts
the failures and lost attempts that lead there, names its plan, and keeps each such attempt,
with the plan id, kernel code fingerprint and versions that ran it.  An attempt that ends done
is a line of its worker's journal instead (:mod:`jobrunner.journal`), not a file per job.  The
attempt in flight lives in the job's claim (the lock file in flock mode), written by the lock's
holder (see :mod:`jobrunner.protocol`): a claim whose lock is free belongs to a worker that died.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from jobrunner.vocabulary import RECORDED_STATES, AttemptOutcome, JobState
from jobrunner.writer import Writer

#: A job's states by their names (what each means: :mod:`jobrunner.vocabulary`).
PENDING, RUNNING, DONE, FAILED = JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.FAILED

#: A job whose workers died this many times is left failed, so a tile that kills its worker
#: (a segfault, an out-of-memory kill) cannot take down worker after worker forever.
MAX_LOST_ATTEMPTS = 5


@dataclass
class Attempt:
    attempt: int
    host: str
    pid: int
    started: float
    ended: float | None = None
    outcome: AttemptOutcome | None = None  # None while in flight
    error: str | None = None
    traceback: str | None = None
    via: str = "work"  # how its worker was started: work, supervise, a Slurm array task
    plan: str = ""  # the plan id it computed for
    code: str = ""  # the kernel's code fingerprint in its worker (jobrunner.identity)
    versions: str = ""  # python, numpy and jobrunner in its worker

    @property
    def writer(self) -> Writer:
        """The process that ran (or runs) this attempt."""
        return Writer(self.host, self.pid, self.via)

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def claim_fields(self) -> dict[str, Any]:
        """What names an attempt in flight: its claim, and its journal's start line."""
        return {
            "attempt": self.attempt,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "via": self.via,
            "plan": self.plan,
        }

    def claim_json(self) -> bytes:
        return json.dumps(self.claim_fields()).encode()

    @classmethod
    def from_claim(cls, data: bytes) -> Attempt:
        """The attempt a lock file names; a torn or garbled claim still counts, as an unknown worker."""
        try:
            claim = json.loads(data)
            via, plan = str(claim.get("via", "work")), str(claim.get("plan", ""))
            return cls(
                int(claim["attempt"]),
                str(claim["host"]),
                int(claim["pid"]),
                float(claim["started"]),
                via=via,
                plan=plan,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return cls(0, "unknown", 0, 0.0)


@dataclass
class JobRecord:
    id: str
    plan: str  # the plan id this record belongs to (its folder's)
    state: JobState = PENDING
    failures: int = 0  # kernel failures counted against --retries
    lost: int = 0  # attempts whose worker died
    tile: str | None = None  # once done: "sha256:<hex>" of the tile's bytes, as its worker wrote them
    attempts: list[Attempt] = field(default_factory=list)

    # -- transitions, applied by the lock holder ------------------------------------------------
    def next_attempt(self, host: str, pid: int, now: float, via: str = "work", code: str = "", versions: str = ""):
        return Attempt(len(self.attempts) + 1, host, pid, now, via=via, plan=self.plan, code=code, versions=versions)

    def _close(self, attempt: Attempt, now: float, outcome: AttemptOutcome, error: str | None = None) -> None:
        attempt.ended, attempt.outcome, attempt.error = now, outcome, error
        self.attempts.append(attempt)

    def close_lost(self, attempt: Attempt, now: float, why: str) -> None:
        """A claim left behind: its worker died holding the job, or lost its lease (we hold it now)."""
        attempt.attempt = len(self.attempts) + 1
        self._close(attempt, now, AttemptOutcome.LOST, why)
        self.lost += 1
        self.state = FAILED if self.lost >= MAX_LOST_ATTEMPTS else PENDING

    def close_timed_out(self, attempt: Attempt, now: float, why: str, retries: int) -> None:
        """A claim whose process was ended for running too long: a failure, counted against retries."""
        attempt.attempt = len(self.attempts) + 1
        self._close(attempt, now, AttemptOutcome.TIMED_OUT, why)
        self.failures += 1
        self.state = FAILED if self.failures > retries else PENDING

    def finish(self, attempt: Attempt, now: float, checksum: str) -> None:
        self._close(attempt, now, AttemptOutcome.DONE)
        self.state, self.tile = DONE, checksum

    def fail(self, attempt: Attempt, now: float, error: str, traceback: str, retries: int, permanent=False) -> None:
        self._close(attempt, now, AttemptOutcome.FAILED, error)
        attempt.traceback = traceback
        self.failures += 1
        self.state = FAILED if permanent or self.failures > retries else PENDING

    def interrupt(self, attempt: Attempt, now: float, why: str) -> None:
        self._close(attempt, now, AttemptOutcome.INTERRUPTED, why)
        self.state = PENDING

    def abandon(self, attempt: Attempt, now: float, why: str) -> None:
        """The tile could not be saved: not the kernel's fault, so not counted against retries."""
        self._close(attempt, now, AttemptOutcome.ABANDONED, why)
        self.state = PENDING

    def requeue(self) -> None:
        """Make a failed (or suspect) job claimable again, with a fresh allowance of retries."""
        self.state, self.failures, self.lost, self.tile = PENDING, 0, 0, None

    # -- reading ---------------------------------------------------------------------------------
    @property
    def last_error(self) -> str | None:
        for attempt in reversed(self.attempts):
            if attempt.error:
                return attempt.error
        return None

    def to_json(self) -> str:
        """The record with one attempt per line: easy to read with ``cat``, and written by json's C
        encoder (``indent=`` would switch to the pure-Python one, a quarter of a job's cost here)."""
        head = json.dumps({key: value for key, value in vars(self).items() if key != "attempts"})
        attempts = ",\n".join(json.dumps(vars(attempt)) for attempt in self.attempts)
        return f'{head[:-1]}, "attempts": [\n{attempts}\n]}}\n'

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        """A record as written by :meth:`to_json`; ValueError for anything else (hand-edited, planted)."""
        document: Any = json.loads(text)  # RecursionError for JSON nested absurdly deep: the caller's
        if isinstance(document, dict):
            document.setdefault("tile", None)  # a record from before tiles had checksums: reduce recomputes it
        _check_fields(document, _RECORD_FIELDS, "the record")
        if not isinstance(document["attempts"], list):
            raise ValueError("its attempts are not a list")
        for attempt in document["attempts"]:
            _check_fields(attempt, _ATTEMPT_FIELDS, "an attempt")
        attempts = [Attempt(**attempt) for attempt in document.pop("attempts")]
        for attempt in attempts:
            if attempt.outcome is not None:
                attempt.outcome = AttemptOutcome(attempt.outcome)  # ValueError for a word we never write
        record = cls(**document, attempts=attempts)
        record.state = JobState(record.state)
        if record.state not in RECORDED_STATES:
            raise ValueError(f"state {record.state} is never recorded")
        return record


_NUMBER, _TEXT, _COUNT = (int, float), (str,), (int,)
_OPTIONAL_NUMBER, _OPTIONAL_TEXT = (int, float, type(None)), (str, type(None))
#: The type of every field a record file may hold (attempts are checked on their own).
_RECORD_FIELDS = {
    "id": _TEXT, "plan": _TEXT, "state": _TEXT, "failures": _COUNT, "lost": _COUNT,
    "tile": _OPTIONAL_TEXT, "attempts": (list,),
}  # fmt: skip
_ATTEMPT_FIELDS = {
    "attempt": _COUNT, "host": _TEXT, "pid": _COUNT, "started": _NUMBER, "ended": _OPTIONAL_NUMBER,
    "outcome": _OPTIONAL_TEXT, "error": _OPTIONAL_TEXT, "traceback": _OPTIONAL_TEXT, "via": _TEXT,
    "plan": _TEXT, "code": _TEXT, "versions": _TEXT,
}  # fmt: skip


def _check_fields(document: Any, types: dict[str, tuple], what: str) -> None:
    """Exactly the fields of ``types``, each of its type (a bool is not a number here)."""
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    if set(document) != set(types):
        odd = sorted(set(document) ^ set(types))
        raise ValueError(f"{what} has the wrong fields ({', '.join(map(str, odd))})")
    for name, allowed in types.items():
        value = document[name]
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ValueError(f"{what}'s {name} is {type(value).__name__} {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{what}'s {name} is {value}")
        if allowed is _COUNT and value < 0:
            raise ValueError(f"{what}'s {name} is negative")


def job_state(tile_in_place: bool, record: JobRecord | None, claim_is_live: bool) -> JobState:
    """What a job is now: done while its tile is in place; failed if its record says so; else
    running while a live worker claims it.  (A record that says done without its tile in place,
    from a spool planned before journals, is a job to do again.)"""
    if tile_in_place:
        return DONE
    if record is not None and record.state == FAILED:
        return FAILED
    return RUNNING if claim_is_live else PENDING
