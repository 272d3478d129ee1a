"""What ``report`` and ``status --watch`` compute and draw, as pure values, in process: busy
fractions over each worker's lifetime, a bar and a legend entry for every outcome, and one
orientation of the tile map in the terminal and in ``tiles.png``.  (Real runs: test_report.py.)"""

import numpy as np
import pytest

from jobrunner.cli.views import tile_map_text
from jobrunner.figures import save_tile_map, timeline_bars, timeline_legend
from jobrunner.grid import grid_from_options
from jobrunner.plan import Plan
from jobrunner.records import Attempt
from jobrunner.status import tile_map
from jobrunner.timeline import RunTimeline, WorkerTimeline, covered
from jobrunner.vocabulary import IN_FLIGHT, OUTCOMES, STATE_LOOKS, AttemptOutcome, JobState, outcome_meaning


def worker(pid: int, *spans: tuple[float, float | None], outcome=AttemptOutcome.DONE, via="work") -> WorkerTimeline:
    """A worker whose attempts ran over ``spans`` (an end of None: still in flight)."""
    made = WorkerTimeline("host", pid, via)
    for k, (start, end) in enumerate(spans):
        attempt = Attempt(1, "host", pid, start, end, None if end is None else outcome, via=via)
        made.attempts.append((f"tile-r000-c{k:03d}", attempt))
    return made


def run_of(*workers: WorkerTimeline, now: float | None = None) -> RunTimeline:
    ends = [end for w in workers for _, end in w.intervals(now or 0.0)]
    return RunTimeline(list(workers), min(w.lifetime(0.0)[0] for w in workers), now or max(ends), running=0)


def test_a_worker_restarted_after_ctrl_c_was_busy_all_the_time_it_lived():
    """Ctrl-C at 10 s, a new process from 20 s to 30 s: each was busy all its life, not a third of the run."""
    before = worker(101, (0, 5), (5, 9), (9, 10), outcome=AttemptOutcome.INTERRUPTED)
    after = worker(202, (20, 24), (24, 30))
    run = run_of(before, after)
    assert run.span == 30
    assert [w.lived(run.end) for w in run.workers] == [10, 10]
    assert run.busy_fraction(before) == pytest.approx(1.0) and run.busy_fraction(after) == pytest.approx(1.0)
    assert run.imbalance == pytest.approx(1.0)  # the same work each, over the run


def test_a_pool_started_after_a_hand_started_worker_is_measured_from_its_own_first_claim():
    hand = worker(1, (0, 1), (1, 2), (2, 3))
    pool = [worker(pid, (0.67, 1.67), (1.67, 3.0), via="supervise") for pid in (2, 3)]
    run = run_of(hand, *pool)
    assert all(run.busy_fraction(w) == pytest.approx(1.0) for w in run.workers)
    assert run.imbalance == pytest.approx(3 / ((3 + 2.33 + 2.33) / 3))  # over the run: the pool did less


def test_idle_time_between_claims_counts_against_the_busy_fraction_and_uneven_work_shows():
    gappy = worker(1, (0, 2), (3, 4))  # one second between its tiles, of four lived
    one_big_tile = worker(2, (0, 10))
    run = run_of(gappy, one_big_tile)
    assert run.busy_fraction(gappy) == pytest.approx(3 / 4)
    assert run.imbalance == pytest.approx(10 / ((3 + 10) / 2))


def test_an_attempt_in_flight_runs_to_now_and_overlaps_count_once():
    live = worker(1, (0, 4), (6, None))
    run = run_of(live, now=10.0)
    assert live.lifetime(run.end) == (0, 10) and run.busy_fraction(live) == pytest.approx(8 / 10)
    assert covered([(0, 4), (2, 6), (8, 9), (8.5, 8.7)]) == pytest.approx(7)


def test_every_outcome_gets_its_bar_and_its_legend_entry():
    outcomes = [*AttemptOutcome, None]
    spans = [(10.0 * k, None if outcome is None else 10.0 * k + 0.001) for k, outcome in enumerate(outcomes)]
    one = WorkerTimeline("host", 1, "supervise")
    for k, (outcome, (start, end)) in enumerate(zip(outcomes, spans, strict=True)):
        one.attempts.append((f"tile-r000-c{k:03d}", Attempt(k + 1, "host", 1, start, end, outcome)))
    run = RunTimeline([one], 0.0, 10.0 * len(outcomes), running=1)
    bars = timeline_bars(run)
    assert {label: len(drawn) for label, drawn in bars.items()} == {outcome_meaning(o).label: 1 for o in outcomes}
    legend = timeline_legend(bars)
    meanings = [*OUTCOMES.values(), IN_FLIGHT]
    assert [(label, colour) for label, _, colour in legend] == [(m.label, m.look.colour) for m in meanings]
    assert all(text.endswith("(1)") for _, text, _ in legend)


def test_a_run_without_some_outcomes_still_explains_every_colour():
    legend = timeline_legend(timeline_bars(run_of(worker(1, (0, 1)))))
    assert len(legend) == len(AttemptOutcome) + 1
    assert [text for _, text, _ in legend if not text.endswith("(0)")] == ["done (1)"]


# -- the tile map: one orientation, as stitched.png draws the field: the first axis across, the second up --
def test_the_terminal_map_and_tiles_png_put_each_tile_in_the_same_place(tmp_path):
    # 2 tiles along x, 3 along depth.  The last x tile at the deepest depth failed; the first tile runs.
    plan = Plan(grid_from_options(["x=0:1:0.1", "depth=0:9/6"], {"depth": "m"}), (2, 3), "numpy")
    states = {"tile-r001-c002": JobState.FAILED, "tile-r000-c000": JobState.RUNNING}
    drawn = tile_map(plan, states)
    assert drawn.rows == [
        [JobState.PENDING, JobState.FAILED],  # top: the end of the second axis
        [JobState.PENDING, JobState.PENDING],
        [JobState.RUNNING, JobState.PENDING],  # bottom: its start
    ]
    assert drawn.across == "x" and drawn.up == "depth [m]"

    text = tile_map_text(drawn).plain.splitlines()
    squares = [line[2:] for line in text if line.startswith("│ ")]
    assert text[0].startswith("↑ depth") and text[-1].endswith("→ x")
    assert squares == ["·x", "··", "▶·"]

    target = tmp_path / "tiles.png"
    save_tile_map(plan, states, "a test", target)
    failed, running = (_centre_of(target, STATE_LOOKS[state].colour) for state in (JobState.FAILED, JobState.RUNNING))
    assert failed[0] < running[0] and failed[1] > running[1]  # image rows run down: failed is up and right


def test_a_one_axis_plan_is_one_row_across():
    plan = Plan(grid_from_options(["x=0:1:0.1"]), (3,), "numpy")
    drawn = tile_map(plan, {"tile-002": JobState.DONE})
    assert drawn.rows == [[JobState.PENDING, JobState.PENDING, JobState.DONE]] and drawn.up == ""
    assert [line for line in tile_map_text(drawn).plain.splitlines() if line.startswith("│ ")] == ["│ ··█"]


def _centre_of(png, colour: str) -> tuple[float, float]:
    """Where in the image (row, column) the pixels of ``colour`` are, on average; legend swatches
    are below the axes, so only the map's squares are counted."""
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    image = imread(png)[..., :3]
    legend_top = int(image.shape[0] * 0.85)
    hits = np.argwhere(np.all(np.abs(image[:legend_top] - to_rgb(colour)) < 0.02, axis=-1))
    assert len(hits) > 100, f"no square of {colour} drawn"
    return float(hits[:, 0].mean()), float(hits[:, 1].mean())
