"""The closed vocabularies: what a job is, how an attempt ended, what one try at a job came to.

Each is an enum whose values are the very words written in records and shown to users, and each
has one table below that says what every value means, counts as and looks like; every other
module reads these tables rather than listing values of its own.

What a job is now (:class:`JobState`; records hold pending, done or failed; running is seen):

=========  ================================================  ============  ===============
state      meaning                                           figures       terminal
=========  ================================================  ============  ===============
pending    not finished; any worker may claim it             light grey    white ``·``
running    a live worker holds its claim                     blue          cyan ``▶``
done       its tile is in place, its checksum recorded       green         green ``█``
failed     out of retries, or its worker died too often      red           red ``x``
=========  ================================================  ============  ===============

How a finished attempt ended (:class:`AttemptOutcome`, a record's ``outcome``; an attempt in
flight has none and is drawn as running):

=============  =========================================================  =======  ==========
outcome        meaning                                                    retries  figures
=============  =========================================================  =======  ==========
done           the tile was published and recorded                        no       green
failed         the kernel raised (or the spec is invalid)                 counted  red
lost           its worker died, or its lease ran out; found by the next   no (5    black
               claimant                                                   at most)
interrupted    Ctrl-C or SIGTERM: the job was left for another worker     no       orange
abandoned      the tile could not be saved (a full or read-only disk)     no       purple
timed-out      ended by ``supervise --job-timeout``                       counted  brown
=============  =========================================================  =======  ==========

What one call of :func:`jobrunner.protocol.attempt_job` came to (:class:`AttemptResult`, never
written): whether this worker ran an attempt (``claimed``), and how it counts in the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Word(str, Enum):
    """An enum whose members are their words: JSON writes, and f-strings show, the value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# -- jobs ---------------------------------------------------------------------------------------
class JobState(Word):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Look:
    """How a value is drawn: a matplotlib colour, and a rich style and mark for the terminal."""

    colour: str
    style: str = ""
    mark: str = ""


STATE_LOOKS: dict[JobState, Look] = {
    JobState.PENDING: Look("0.85", "white", "·"),
    JobState.RUNNING: Look("tab:blue", "cyan", "▶"),
    JobState.DONE: Look("tab:green", "green", "█"),
    JobState.FAILED: Look("tab:red", "red", "x"),
}

#: The states a record may hold (running is seen in a live claim, never written).
RECORDED_STATES = (JobState.PENDING, JobState.DONE, JobState.FAILED)
#: Which state a square of the tile map shows when tiles along further axes differ: the first that applies.
MAP_PRECEDENCE = (JobState.FAILED, JobState.RUNNING, JobState.PENDING, JobState.DONE)


# -- attempts -----------------------------------------------------------------------------------
class AttemptOutcome(Word):
    DONE = "done"
    FAILED = "failed"
    LOST = "lost"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"
    TIMED_OUT = "timed-out"


@dataclass(frozen=True)
class OutcomeMeaning:
    counts_against_retries: bool
    look: Look
    label: str


OUTCOMES: dict[AttemptOutcome, OutcomeMeaning] = {
    AttemptOutcome.DONE: OutcomeMeaning(False, Look("tab:green"), "done"),
    AttemptOutcome.FAILED: OutcomeMeaning(True, Look("tab:red"), "failed (kernel raised)"),
    AttemptOutcome.LOST: OutcomeMeaning(False, Look("black"), "lost (worker died)"),
    AttemptOutcome.INTERRUPTED: OutcomeMeaning(False, Look("tab:orange"), "interrupted"),
    AttemptOutcome.ABANDONED: OutcomeMeaning(False, Look("tab:purple"), "abandoned (tile not saved)"),
    AttemptOutcome.TIMED_OUT: OutcomeMeaning(True, Look("tab:brown"), "timed out"),
}
#: An attempt still in flight (its outcome is None).
IN_FLIGHT = OutcomeMeaning(False, Look("tab:blue"), "running")


def outcome_meaning(outcome: AttemptOutcome | str | None) -> OutcomeMeaning:
    """The row of :data:`OUTCOMES` for an attempt's outcome (None: still running)."""
    return IN_FLIGHT if outcome is None else OUTCOMES[AttemptOutcome(outcome)]


# -- one try at a job -----------------------------------------------------------------------------
class AttemptResult(Word):
    DONE_HERE = "done"
    FAILED_FOR_GOOD = "failed"
    WILL_RETRY = "retry"
    BUSY = "busy"
    DONE_ELSEWHERE = "done-elsewhere"
    LEASE_LOST = "lease-lost"
    FAILED_ELSEWHERE = "failed-elsewhere"
    STOPPED = "stopped"
    PAST_DEADLINE = "past-deadline"


@dataclass(frozen=True)
class ResultMeaning:
    meaning: str
    claimed: bool = False  # this worker ran an attempt, so the spool changed because of it
    done: bool = False  # the job is done: counts in the spool's done total
    failed: bool = False  # the job is failed for good
    computed_here: bool = False  # this worker published its tile


RESULTS: dict[AttemptResult, ResultMeaning] = {
    AttemptResult.DONE_HERE: ResultMeaning("we computed and published the tile", True, True, computed_here=True),
    AttemptResult.FAILED_FOR_GOOD: ResultMeaning("it failed and is out of retries (or its spec is invalid)", True,
                                                 failed=True),
    AttemptResult.WILL_RETRY: ResultMeaning("the kernel failed; the job is claimable again", True),
    AttemptResult.BUSY: ResultMeaning("another worker holds it now"),
    AttemptResult.DONE_ELSEWHERE: ResultMeaning("someone else finished it before we looked", done=True),
    AttemptResult.LEASE_LOST: ResultMeaning(
        "our lease ran out and another worker took the job over; our result was dropped", True
    ),
    AttemptResult.FAILED_ELSEWHERE: ResultMeaning("already failed for good (or its record is unreadable)",
                                                  failed=True),
    AttemptResult.STOPPED: ResultMeaning("not tried: the spool is being drained (jobrunner.stopping)"),
    AttemptResult.PAST_DEADLINE: ResultMeaning("not tried: it would not finish before the run's deadline"),
}  # fmt: skip
