"""The closed vocabularies: every value has its one row of meaning and look, and every attempt
of a timeline is drawn, whatever its outcome.  Pure values, in process."""

import json

import pytest

from jobrunner.figures import timeline_bars
from jobrunner.records import Attempt, JobRecord
from jobrunner.timeline import RunTimeline, WorkerTimeline
from jobrunner.vocabulary import (
    IN_FLIGHT,
    OUTCOMES,
    RESULTS,
    STATE_LOOKS,
    AttemptOutcome,
    AttemptResult,
    JobState,
    outcome_meaning,
)


def test_every_value_has_its_row_and_every_label_is_its_own():
    assert set(STATE_LOOKS) == set(JobState) and all(look.colour and look.mark for look in STATE_LOOKS.values())
    assert set(OUTCOMES) == set(AttemptOutcome)
    labels = [meaning.label for meaning in (*OUTCOMES.values(), IN_FLIGHT)]
    colours = [meaning.look.colour for meaning in (*OUTCOMES.values(), IN_FLIGHT)]
    assert len(set(labels)) == len(labels) and len(set(colours)) == len(colours) and all(labels)
    assert set(RESULTS) == set(AttemptResult) and all(meaning.meaning for meaning in RESULTS.values())
    assert [outcome for outcome, m in OUTCOMES.items() if m.counts_against_retries] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.TIMED_OUT,
    ]


def test_the_words_are_what_records_hold_and_f_strings_show():
    assert json.dumps([JobState.DONE, AttemptOutcome.TIMED_OUT]) == '["done", "timed-out"]'
    assert f"{JobState.FAILED} {AttemptOutcome.LOST:>6}" == "failed   lost"
    record = JobRecord("tile-r000-c000", "plan")
    attempt = record.next_attempt("host", 1, 1.0)
    record.close_timed_out(attempt, 2.0, "too long", retries=0)
    again = JobRecord.from_json(record.to_json())
    assert again.state is JobState.FAILED and again.attempts[0].outcome is AttemptOutcome.TIMED_OUT


def test_a_record_with_a_word_jobrunner_never_writes_is_unreadable():
    record = JobRecord("tile-r000-c000", "plan")
    record.finish(record.next_attempt("host", 1, 1.0), 2.0, "sha256:00")
    with pytest.raises(ValueError, match="'exploded' is not a valid AttemptOutcome"):
        JobRecord.from_json(record.to_json().replace('"outcome": "done"', '"outcome": "exploded"'))
    with pytest.raises(ValueError, match="never recorded"):
        JobRecord.from_json(record.to_json().replace('"state": "done"', '"state": "running"'))


def test_every_attempt_of_a_timeline_is_drawn_whatever_its_outcome():
    """A worker with done, timed-out and abandoned attempts once showed one bar of three."""
    worker = WorkerTimeline("host", 1, "supervise")
    for k, outcome in enumerate([*AttemptOutcome, None]):
        ended = None if outcome is None else 10.0 * k + 5
        attempt = Attempt(k + 1, "host", 1, 10.0 * k, ended=ended, outcome=outcome)
        worker.attempts.append((f"tile-r000-c{k:03d}", attempt))
    run = RunTimeline([worker], start=0.0, end=70.0, running=1)
    bars = timeline_bars(run)
    assert sum(len(drawn) for drawn in bars.values()) == len(worker.attempts)
    assert set(bars) == {outcome_meaning(outcome).label for outcome in [*AttemptOutcome, None]}
    assert bars[OUTCOMES[AttemptOutcome.ABANDONED].label] == [(0, 40.0, 5.0)]
    assert bars[IN_FLIGHT.label] == [(0, 60.0, 10.0)]  # still running: drawn to the timeline's end
