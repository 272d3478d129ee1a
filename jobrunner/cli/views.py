"""What the commands show: progress bars, tables, the live watch of a spool, a run's summary line.

Output goes to two consoles, ``out`` (results) and ``err`` (progress and warnings), so that a
script can read one without the other.  Nothing here decides anything about a spool: the views
draw what the library returns.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from jobrunner.records import DONE, FAILED, RUNNING
from jobrunner.stopping import Deadline, run_deadline
from jobrunner.vocabulary import STATE_LOOKS
from jobrunner.wording import count_of

if TYPE_CHECKING:  # for the annotations only: `status` or `plan` need not import the drain loop
    from jobrunner.drain import WorkSummary
    from jobrunner.spool import Spool

# markup=False: what the views print is full of the user's own text (folder names, parameters,
# units such as [mGal], kernels' error messages), which rich would read as styles, dropping words
# or raising MarkupError.  A styled word is made explicitly, with :func:`styled`.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and ``(text, style)`` pairs, as one line: ``styled(("error:", "red"), " ", message)``."""
    return Text.assemble(*parts)


#: Plans up to this many tiles a side get a tile map in the terminal.
TERMINAL_MAP_SIDE = 60


def counts_table(counts) -> Table:
    table = Table("state", "jobs", box=None)
    for state, look in STATE_LOOKS.items():
        table.add_row(Text(state, style=look.style), str(counts[state]))
    return table


def watch_spool(the_spool, interval: float) -> None:
    """Redraw workers, counts and the tile map until every job is done or failed (or Ctrl-C)."""
    import time
    from collections import Counter

    from rich.console import Group
    from rich.live import Live

    from jobrunner.figures import save_tile_map
    from jobrunner.status import tile_map
    from jobrunner.timeline import timeline

    the_spool.check_outputs()  # never make a moved-away outputs folder again: reduce would requeue everything
    the_spool.follow_journals()  # each refresh reads only the lines written since the last
    target = the_spool.paths.product("tiles.png")

    def snapshot():
        statuses = the_spool.statuses()  # one read of the spool per refresh
        run = timeline(the_spool, statuses)
        states = {s.id: s.state for s in statuses}
        counts = Counter({state: 0 for state in STATE_LOOKS}) + Counter(states.values())
        current = {(s.claim.host, s.claim.pid): s.id for s in statuses if s.claim is not None}
        workers = Table("worker", "started by", "current tile", "tiles done", "tiles/min", box=None)
        for worker in run.workers:
            live = (worker.host, worker.pid) in current
            lived = worker.lived(run.end)  # its own lifetime: a worker started late is not slow
            rate = 60 * worker.tiles_done / lived if lived > 0 else 0
            workers.add_row(
                worker.name,
                worker.via,
                current.get((worker.host, worker.pid), "-" if not live else ""),
                str(worker.tiles_done),
                f"{rate:.1f}",
                style=None if live else "dim",
            )
        parts = [Text(f"{the_spool.plan.describe()}, spool {the_spool.paths.spool}"), counts_table(counts), workers]
        drawn = tile_map(the_spool.plan, states)
        if max(len(drawn.rows), len(drawn.rows[0])) <= TERMINAL_MAP_SIDE:
            parts.append(tile_map_text(drawn))
        done = counts[DONE] + counts[FAILED] == len(states)
        return Group(*parts), states, counts, done

    last_map = 0.0
    try:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                view, states, counts, done = snapshot()
                live.update(view, refresh=True)
                if done or time.monotonic() - last_map > 5:
                    what = f"{counts[DONE]} done, {counts[RUNNING]} running, {counts[FAILED]} failed of {len(states)}"
                    save_tile_map(the_spool.plan, states, what, target)
                    last_map = time.monotonic()
                if done:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    out.print(f"wrote {target}")


def tile_map_text(drawn) -> Text:
    """A :class:`jobrunner.status.TileMap` as marks, one a tile, the way ``tiles.png`` draws it:
    the first axis across, the second up, each named at its arrow."""
    text = Text(f"↑ {drawn.up}\n" if drawn.up else "")
    for row in drawn.rows:
        text.append("│ ")
        for state in row:
            look = STATE_LOOKS[state]
            text.append(look.mark, style=look.style)
        text.append("\n")
    text.append("└" + "─" * (len(drawn.rows[0]) + 1) + f"→ {drawn.across}\n")
    return text


#: At most this many failed jobs are named at the end of a run; `status` lists them all.
FAILED_LISTED = 10


#: A failed job's error is cut to this many characters in a run's last lines (status shows it whole).
ERROR_SHOWN = 300


def shortened(text: str, limit: int = ERROR_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_summary(summary: WorkSummary, who: str, spool: Spool) -> None:
    """The last lines of ``work`` and ``supervise``: what this run did, and what is left to do."""
    paths = spool.paths
    if summary.already_finished:
        done = f"{summary.total}/{count_of(summary.total, 'tile')} of plan {spool.plan.id} done"
        out.print(
            f"{who}: nothing to do, the spool was already finished ({done}): `{paths.command('reduce')}` "
            "stitches them; to compute them again (to time another way of running, say), plan them anew: "
            f"`{paths.replan_command(spool.plan)}`",
            highlight=False,
        )
        return
    line = (
        f"{who}: computed {count_of(summary.done_here, 'tile')} in {summary.seconds:.1f} s; "
        f"spool {summary.done}/{summary.total} done"
    )
    if summary.busy:
        line += f", {count_of(summary.busy, 'claim')} skipped (held by other workers)"
    if summary.failed:
        err.print(styled((f"{line}, {len(summary.failed)} failed for good:", "red")), highlight=False)
        for job_id, why in list(summary.failed.items())[:FAILED_LISTED]:
            err.print(f"  {job_id}: {shortened(why)}", highlight=False)
        more = len(summary.failed) - FAILED_LISTED
        err.print(
            (f"  and {more} more; " if more > 0 else "  ")
            + f"`{paths.command('status')}` lists them, `{paths.command('work', '--retry-failed')}` runs them again",
            highlight=False,
        )
        raise typer.Exit(1)
    out.print(line, highlight=False)
    if summary.stopped and summary.done < summary.total:
        out.print(f"stopped claiming: {summary.stopped}", highlight=False)


class RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} {self.unit}/s", style="cyan")


@contextmanager
def progress_bar(description: str, unit: str):
    """A rich progress bar on a terminal; nothing when output goes to a file or a pipe.

    The bar (and its refresh thread) starts at the first update, which the supervisor sends only
    after its pool has forked: forking while another thread runs can deadlock the children.
    """
    if not err.is_terminal:
        yield lambda done, total: None
        return
    columns = [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    bar = Progress(*columns, console=err)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def announced_deadline(max_time: str | None, started: float) -> Deadline | None:
    """The run's deadline (``--max-time``, a Slurm job's end), said once on stderr when there is one."""
    deadline = run_deadline(max_time, started)
    if deadline is not None:
        clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(deadline.at))
        err.print(f"stops claiming tiles that would not finish before {clock} ({deadline.what})", highlight=False)
    return deadline
