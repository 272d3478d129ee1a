"""A job's record: its state and the history of its attempts.  Pure values and transitions, no I/O.

The record is the single source of truth for whether a job is done or failed; only the holder
of the job's lock rewrites it (see :mod:`jobrunner.spool` for the protocol).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

#: Outcomes of one attempt.  ``lost``: its worker died (SIGKILL, out of memory, node failure) and a
#: later claimant found the attempt still open; ``interrupted``: stopped by Ctrl-C or SIGTERM.
ATTEMPT_OUTCOMES = ("running", "done", "failed", "lost", "interrupted")

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
    outcome: str = "running"
    error: str | None = None
    traceback: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class JobRecord:
    id: str
    state: str = PENDING
    failures: int = 0  # kernel failures counted against --retries
    lost: int = 0  # attempts whose worker died
    attempts: list[Attempt] = field(default_factory=list)

    # -- transitions, applied by the lock holder ------------------------------------------------
    @property
    def open_attempt(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.outcome == "running" else None

    def close_lost_attempt(self, now: float) -> Attempt | None:
        """The open attempt, whose holder must have died (we hold its lock now), marked lost."""
        attempt = self.open_attempt
        if attempt is not None:
            attempt.ended, attempt.outcome = now, "lost"
            attempt.error = "the worker died before finishing this attempt (killed, out of memory or crashed)"
            self.lost += 1
            self.state = PENDING
            if self.lost >= MAX_LOST_ATTEMPTS:
                self.state = FAILED
        return attempt

    def start_attempt(self, host: str, pid: int, now: float) -> Attempt:
        attempt = Attempt(len(self.attempts) + 1, host, pid, now)
        self.attempts.append(attempt)
        self.state = RUNNING
        return attempt

    def finish(self, now: float) -> None:
        attempt = self.attempts[-1]
        attempt.ended, attempt.outcome = now, "done"
        self.state = DONE

    def fail(self, now: float, error: str, traceback: str, retries: int, permanent: bool = False) -> None:
        attempt = self.attempts[-1]
        attempt.ended, attempt.outcome, attempt.error, attempt.traceback = now, "failed", error, traceback
        self.failures += 1
        self.state = FAILED if permanent or self.failures > retries else PENDING

    def interrupt(self, now: float, why: str) -> None:
        attempt = self.attempts[-1]
        attempt.ended, attempt.outcome, attempt.error = now, "interrupted", why
        self.state = PENDING

    def requeue(self) -> None:
        """Make a failed (or suspect) job claimable again, with a fresh allowance of retries."""
        self.state, self.failures, self.lost = PENDING, 0, 0

    # -- reading ---------------------------------------------------------------------------------
    @property
    def last_error(self) -> str | None:
        for attempt in reversed(self.attempts):
            if attempt.error:
                return attempt.error
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        document: dict[str, Any] = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("it is not a JSON object")
        attempts = [Attempt(**attempt) for attempt in document.pop("attempts")]
        record = cls(**document, attempts=attempts)
        if record.state not in (PENDING, RUNNING, DONE, FAILED):
            raise ValueError(f"unknown state {record.state!r}")
        return record


def job_state(record: JobRecord | None, lock_held: bool) -> str:
    """What a job is now, from its record and whether its lock is held this moment.

    A record that says running but whose lock is free belongs to a worker that died: the
    job is pending again (the next claimant closes the attempt as lost).
    """
    if record is None:
        return RUNNING if lock_held else PENDING
    if record.state == RUNNING:
        return RUNNING if lock_held else PENDING
    return record.state
