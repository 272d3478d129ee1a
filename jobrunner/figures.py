"""Figures of a field over the grid: real axes in grid units, y up, a labelled colorbar.

Matplotlib is imported only here and only when a figure is drawn, so workers never pay for it.
Large fields are decimated to about screen size before drawing: ``imshow`` of a full
10,000 x 10,000 array would take several GB.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner import labels
from jobrunner.errors import JobRunnerError
from jobrunner.files import write_atomically
from jobrunner.plan import Plan, lab_step
from jobrunner.vocabulary import IN_FLIGHT, OUTCOMES, STATE_LOOKS, outcome_meaning

#: The longest side, in cells, that a figure draws; larger fields are strided down to this.
MAX_DRAWN_CELLS = 800


def plain_text(draw):
    """Draw with every text as written: a figure's titles and notes carry the user's own words
    (parameters, units, a kernel's error), where matplotlib would take a ``$`` for the start of
    TeX maths and fail to parse it."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn


def decimation(shape: tuple[int, ...]) -> int:
    """Every how many cells a figure samples, so that it draws at most MAX_DRAWN_CELLS a side."""
    return max(1, math.ceil(max(shape) / MAX_DRAWN_CELLS))


@dataclass(frozen=True)
class FigureView:
    """What a figure of a field over the grid draws: the first two axes (the only one, on a 1-D
    grid), every ``stride``-th cell, at one index ``fixed`` along each further axis, of the field
    ``field`` (None: the array has no fields, it is the field)."""

    shape_of_grid: tuple[int, ...]
    stride: int
    fixed: tuple[int, ...] = ()
    field: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the decimated view."""
        return tuple(-(-n // self.stride) for n in self.shape_of_grid[:2])

    def gather(self, rows: np.ndarray, row_start: int, row_stop: int, into: np.ndarray) -> None:
        """Copy the view's cells from ``rows`` (indices ``[row_start, row_stop)`` of the first axis) ``into`` it."""
        first = -(-row_start // self.stride) * self.stride  # the first sampled index in this block
        block = rows[first - row_start :: self.stride]
        if len(self.shape_of_grid) > 1:
            block = block[(slice(None), slice(None, None, self.stride), *self.fixed)]
        into[first // self.stride : -(-row_stop // self.stride)] = block[self.field] if self.field else block

    def of(self, values: np.ndarray) -> np.ndarray:
        """The view of a whole field."""
        view = np.full(self.shape, np.nan)
        self.gather(values, 0, len(values), view)
        return view


def parse_slices(texts: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``--slice NAME=VALUE`` options: where along each further axis a figure is drawn."""
    at: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if name.strip() in at:
            raise JobRunnerError(f"--slice {name.strip()} is given twice: give each axis once")
        try:
            at[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or not math.isfinite(at.get(name.strip(), math.nan)):
            raise JobRunnerError(f"--slice takes NAME=VALUE, a point along a further axis (depth=10), not {text!r}")
    return at


def slice_indices(plan: Plan, at: dict[str, float] | None = None) -> tuple[int, ...]:
    """The index along each axis past the first two where a figure is drawn: the point nearest the
    value ``at`` gives for it, else the middle one."""
    at = at or {}
    names, points = plan.grid.names, plan.grid.points()
    for name in at:
        if name not in names:
            raise JobRunnerError(f"--slice names no axis: {name} (the axes are {', '.join(names)})")
        if name in names[:2]:
            further = ", ".join(names[2:]) or "none here"
            raise JobRunnerError(
                f"--slice {name}=...: the figure draws {' and '.join(names[:2])} whole; it slices only the axes "
                f"after them ({further})"
            )
    fixed = []
    for name, values in zip(names[2:], points[2:], strict=True):
        if name not in at:
            fixed.append(len(values) // 2)
            continue
        value, ordered = at[name], np.sort(values)
        low, high = ordered[0], ordered[-1]
        # Off the axis: farther out than half the spacing next to its end (a cell's half width).
        below = (ordered[1] - low) / 2 if len(ordered) > 1 else 0.0
        above = (high - ordered[-2]) / 2 if len(ordered) > 1 else 0.0
        if not low - below <= value <= high + above:
            raise JobRunnerError(f"--slice {name}={value:g} is off the axis, which runs from {low:g} to {high:g}")
        fixed.append(int(np.argmin(np.abs(values - value))))
    return tuple(fixed)


def figure_view(plan: Plan, at: dict[str, float] | None = None, field: str | None = None) -> FigureView:
    """The plan's figures draw its first two axes at the middle of every further axis (or ``at`` the
    points given), of its first field (or ``field``)."""
    shape = plan.shape
    chosen = labels.field(plan, field).name  # an unknown name is refused, with the known ones
    return FigureView(shape, decimation(shape[:2]), slice_indices(plan, at), chosen if plan.fields else None)


def field_title(plan: Plan, what: str, note: str = "", view: FigureView | None = None) -> str:
    view = view or figure_view(plan)
    name = labels.title(plan)
    params = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in plan.params.items())
    plan_id = f", plan {plan.id}" if plan.id else ""
    size = " x ".join(str(n) for n in plan.shape)
    step = lab_step(plan.grid)
    grid = f"step {step:g}" if step is not None else plan.grid.describe()
    points = plan.grid.points()
    at = ", ".join(
        f"{plan.grid.axes[k].name} = {points[k][i]:g} {labels.axis_unit(plan, k)}".rstrip()
        for k, i in enumerate(view.fixed, start=2)
    )
    at = f"at {at}" if at else ""
    if view.field:
        name = f"{name}: {view.field}"
    lines = [f"{name}, {what}", params, *textwrap.wrap(f"{size} points, {grid}{plan_id}", 90), at, note]
    return "\n".join(line for line in lines if line)


def save_field_figure(values: np.ndarray, plan: Plan, title: str, target: Path, view: FigureView | None = None) -> None:
    """Draw a field over the plan's grid to ``target`` as PNG, atomically (see :func:`field_figure_png`)."""
    png = field_figure_png(values, plan, title, view)
    write_atomically(target, lambda file: file.write(png))


@plain_text
def field_figure_png(values: np.ndarray, plan: Plan, title: str, view: FigureView | None = None) -> bytes:
    """A field over the plan's grid, drawn as a PNG.

    ``values`` is the whole result, or ``view`` of it (as reduce gathers it); the view is taken here
    otherwise (default: :func:`figure_view`).  Two axes or more: an image over the first two, the
    first across; one axis: a line.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    view = view or figure_view(plan)
    drawn = np.asarray(values) if values.shape == view.shape and not values.dtype.names else view.of(values)
    points = [p[:: view.stride] for p in plan.grid.points()[:2]]
    label = labels.field(plan, view.field).label

    figure = Figure(figsize=(7.2, 6.0 if len(points) > 1 else 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xlabel(labels.axis_label(plan, 0))
    if len(points) == 1:
        axes.plot(points[0], drawn, color="tab:blue")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    else:
        # Arrays are indexed [first axis, second axis]; an image is [row, column] = [second, first],
        # so transpose, and put row 0 at the bottom.
        colormap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN holes of a partial reduce
        field = np.ma.masked_invalid(drawn.T)
        if all(_evenly_spaced(p) for p in points):
            extent = (*_span(points[0]), *_span(points[1]))
            image = axes.imshow(field, origin="lower", extent=extent, cmap=colormap, aspect="auto")
        else:  # uneven values (depths 0, 5, 10, 20, 40): one cell per point, bounded halfway to its neighbours
            image = axes.pcolormesh(_edges(points[0]), _edges(points[1]), field, cmap=colormap)
        if labels.axis_unit(plan, 0) == labels.axis_unit(plan, 1):
            axes.set_aspect("equal")  # a map: the same unit both ways
        figure.colorbar(image, ax=axes, label=label, shrink=0.9)
        axes.set_ylabel(labels.axis_label(plan, 1))
        for name, first, second in labels.markers(plan, *plan.grid.names[:2]):  # stations, wells: on the map
            axes.plot(first, second, marker="^", color="white", markeredgecolor="black", linestyle="none")
            axes.annotate(name, (first, second), xytext=(4, 4), textcoords="offset points", fontsize=7, color="white")
    stride = view.stride
    axes.set_title(title + (f"  (drawn every {stride}th cell)" if stride > 1 else ""), fontsize=10)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110)
    return png.getvalue()


def _evenly_spaced(points: np.ndarray) -> bool:
    steps = np.diff(points)
    return len(steps) == 0 or bool(np.allclose(steps, steps[0], rtol=1e-6, atol=0))


def _span(points: np.ndarray) -> tuple[float, float]:
    """The extent of an evenly spaced axis drawn as cells centred on its points."""
    half = (points[1] - points[0]) / 2 if len(points) > 1 else 0.5
    return float(points[0] - half), float(points[-1] + half)


def _edges(points: np.ndarray) -> np.ndarray:
    """Cell edges halfway between points, and as far beyond the ends."""
    if len(points) == 1:
        return np.array([points[0] - 0.5, points[0] + 0.5])
    middle = (points[1:] + points[:-1]) / 2
    return np.concatenate([[2 * points[0] - middle[0]], middle, [2 * points[-1] - middle[-1]]])


@plain_text
def save_scale_figure(study, target: Path) -> None:
    """Runtime, speedup and one tile's compute time against workers (log x), each with its ideal, to ``target``.

    ``study`` is a :class:`jobrunner.scaling.ScaleStudy`; its notes (the CPUs and where their count
    came from, the serial spread, one tile's overhead, flagged speedups) go under the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    notes = [*study.notes(), *([study.stop_reason] if study.stop_reason else [])]
    figure = Figure(figsize=(15, 4.9 + 0.2 * len(notes)), layout="constrained")
    FigureCanvasAgg(figure)
    runtime, scaling, tiles = figure.subplots(1, 3)

    figure.suptitle(f"Scaling on {study.cpus.describe()}: {study.plan.describe()}", fontsize=11)
    rows = [row for row in study.rows if row.seconds]
    if rows:
        _scale_runtime_panel(runtime, study, rows)
        _scale_speedup_panel(scaling, study, rows)
        _scale_tile_panel(tiles, study, rows)
    for axes in (runtime, scaling, tiles):
        _scale_axes(axes, study)
    figure.text(0.01, 0.005, "\n".join(notes), ha="left", va="bottom", fontsize=8)
    figure.get_layout_engine().set(rect=(0, 0.03 + 0.035 * len(notes), 1, 0.97 - 0.035 * len(notes)))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


def _scale_runtime_panel(axes, study, rows) -> None:
    workers = np.array([row.workers for row in rows], dtype=float)
    median = np.array([row.median for row in rows])
    spread = [median - [min(row.seconds) for row in rows], [max(row.seconds) for row in rows] - median]
    axes.errorbar(workers, median, yerr=spread, fmt="o-", capsize=3, label="plan + supervise (median, min-max)")
    axes.axhline(study.serial_seconds, color="0.4", linestyle=":", label=f"serial, {study.serial_seconds:.2f} s")
    axes.axhspan(min(study.serial), max(study.serial), color="0.5", alpha=0.15, label="serial min-max")
    span = _scale_span(study, workers)
    ideal = [study.ideal_seconds(n) for n in span]
    axes.plot(span, ideal, "--", color="tab:green", label="ideal: serial / min(N, CPUs)")
    for row in study.rows:
        if row.outcome == "failed":
            axes.axvline(row.workers, color="tab:red", linewidth=1)
            axes.annotate("failed", (row.workers, study.serial_seconds), color="tab:red", rotation=90, fontsize=8)
    axes.set_ylabel("wall time [s]")
    axes.set_title("Runtime", fontsize=10)


def _scale_speedup_panel(axes, study, rows) -> None:
    workers = np.array([row.workers for row in rows], dtype=float)
    speedup = np.array([study.speedup(row) for row in rows])
    span = _scale_span(study, workers)
    axes.plot(span, [study.ideal_speedup(n) for n in span], "--", color="tab:green", label="ideal: min(N, CPUs)")
    axes.plot(workers, speedup, "o-", color="tab:blue", label="speedup: serial / parallel (medians)")
    axes.plot(workers, speedup / workers, "s-", color="tab:orange", label="efficiency: speedup / N")
    flagged = [(row.workers, study.speedup(row), ", ".join(study.flags(row))) for row in rows if study.flags(row)]
    if flagged:
        at, values = [n for n, _, _ in flagged], [s for _, s, _ in flagged]
        axes.plot(at, values, "o", mfc="none", mec="tab:red", ms=12, label="flagged: above the ideal")
        for n, s, flags in flagged:
            axes.annotate(flags, (n, s), xytext=(4, 6), textcoords="offset points", color="tab:red", fontsize=7)
    axes.axhline(1, color="0.6", linewidth=0.8)
    axes.set_ylabel("speedup [x], efficiency [fraction]")
    axes.set_title("Speedup over the serial loop, and efficiency", fontsize=10)


def _scale_tile_panel(axes, study, rows) -> None:
    timed = [row for row in rows if row.median_tile is not None]
    workers = np.array([row.workers for row in timed], dtype=float)
    axes.plot(workers, [row.median_tile * 1000 for row in timed], "o-", color="tab:purple", label="median tile")
    span = _scale_span(study, workers if len(workers) else np.array([1.0]))
    expected = [study.expected_tile_seconds(n) * 1000 for n in span]
    label = f"serial time / tiles ({study.serial_tile_seconds * 1000:.3g} ms) x max(1, N / CPUs)"
    axes.plot(span, expected, "--", color="tab:green", label=label)
    # Log y: taking turns multiplies a tile's time by N / CPUs, a straight line on log-log axes.
    from matplotlib.ticker import FuncFormatter, LogLocator

    axes.set_yscale("log", base=2)
    axes.yaxis.set_minor_locator(LogLocator(base=2, subs=(1.5,)))
    for formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
        formatter(FuncFormatter(lambda value, _: f"{value:.0f}" if value >= 100 else f"{value:.3g}"))
    axes.set_ylabel("compute time of one tile [ms]")
    axes.set_title(f"One tile's compute time ({study.tiles} tiles, from the journals)", fontsize=10)


def _scale_span(study, workers: np.ndarray) -> np.ndarray:
    return np.geomspace(1, max(workers.max(), study.cpus.count), 200)


def _scale_axes(axes, study) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.set_xscale("log", base=2)
    axes.set_xlabel("workers N (max_workers)")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.axvline(study.cpus.count, color="0.3", linestyle="-.", linewidth=1)
    axes.annotate(
        f"{study.cpus.count} CPUs ",
        (study.cpus.count, 0.97),
        xycoords=("data", "axes fraction"),
        rotation=90,
        ha="right",
        va="top",
        fontsize=8,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="best")


#: The shortest bar drawn, as a fraction of the timeline's span: an attempt abandoned or failed in
#: a few milliseconds would otherwise be thinner than a pixel, and look as if it were not there.
MIN_BAR_FRACTION = 0.003


def timeline_bars(run) -> dict[str, list[tuple[int, float, float]]]:
    """Every attempt of ``run`` as a bar ``(worker row, start, length)`` in seconds since the first
    start, by the label of its outcome (:data:`jobrunner.vocabulary.OUTCOMES`; running ones too)."""
    bars: dict[str, list[tuple[int, float, float]]] = {}
    for row, worker in enumerate(run.workers):
        for _, attempt in worker.attempts:
            ended = run.end if attempt.ended is None else attempt.ended
            label = outcome_meaning(attempt.outcome).label
            bars.setdefault(label, []).append((row, attempt.started - run.start, ended - attempt.started))
    return bars


def timeline_legend(bars: dict[str, list]) -> list[tuple[str, str, str]]:
    """``(label, legend text, colour)`` for every outcome and for running, in the table's order,
    whether or not this run has one: the legend says what each colour means, with how many."""
    return [
        (meaning.label, f"{meaning.label} ({len(bars.get(meaning.label, []))})", meaning.look.colour)
        for meaning in (*OUTCOMES.values(), IN_FLIGHT)
    ]


@plain_text
def save_timeline_figure(run, title: str, target: Path) -> None:
    """One row per worker, one bar per attempt, coloured by outcome, in seconds since the first
    start; a grey line behind each row spans the worker's lifetime, which its busy % is of."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = len(run.workers)
    figure = Figure(figsize=(10, 2.4 + 0.28 * min(rows, 60)), layout="constrained")  # room for the legend
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bars = timeline_bars(run)
    legend = timeline_legend(bars)
    colours = {label: colour for label, _, colour in legend}
    for row, worker in enumerate(run.workers):
        first, last = worker.lifetime(run.end)
        axes.hlines(row, first - run.start, last - run.start, color="0.6", linewidth=1.2, zorder=1)
    shortest = MIN_BAR_FRACTION * run.span
    for label, drawn in bars.items():
        for row, start, length in drawn:
            axes.broken_barh([(start, max(length, shortest))], (row - 0.4, 0.8), facecolors=colours[label],
                             edgecolors="white", linewidth=0.3, zorder=2)  # fmt: skip
    names = [
        f"{w.name} ({w.via}) {100 * run.busy_fraction(w):.0f}% busy of {w.lived(run.end):.1f} s" for w in run.workers
    ]
    axes.set_yticks(range(rows), names, fontsize=8 if rows < 30 else 5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_xlim(0, run.span)
    axes.set_ylabel("worker")
    axes.set_xlabel("time since the first attempt started [s]")
    axes.set_title(title, fontsize=10)
    axes.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=colour, label=text) for _, text, colour in legend]
    handles.append(Line2D([], [], color="0.6", linewidth=1.2, label="lifetime: first claim to last release"))
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="attempt outcome")
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


def tile_map_title(plan: Plan, what: str) -> str:
    """The kernel and ``what`` (the counts), the plan, and what a square stands for on a grid of more axes."""
    plan_id = f", plan {plan.id}" if plan.id else ""
    lines = [f"{labels.title(plan)}: tiles, {what}", *textwrap.wrap(f"{plan.describe()}{plan_id}", 90)]
    if len(plan.tiling) > 2:
        further = ", ".join(plan.grid.names[2:])
        lines.append(
            f"each square: its {math.prod(plan.tiling[2:])} tiles along {further} "
            "(failed if any failed, else running, else pending, else done)"
        )
    return "\n".join(lines)


@plain_text
def save_tile_map(plan: Plan, states: dict[str, str], what: str, target: Path) -> None:
    """The plan's tiles over its first two axes, each coloured by its state, to ``target`` as PNG,
    oriented as the terminal's map and the stitched figure (:func:`jobrunner.status.tile_map`):
    the first axis across, the second up, in grid units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from jobrunner.status import tile_map

    drawn = tile_map(plan, states)
    order = list(STATE_LOOKS)
    codes = np.array([[order.index(state) for state in row] for row in drawn.rows])
    points = plan.grid.points()
    x = _edges(points[0])[drawn.columns]
    y = _edges(points[1])[drawn.rows_at] if len(points) > 1 else np.array(drawn.rows_at, dtype=float)
    figure = Figure(figsize=(7.2, 6.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = ListedColormap([look.colour for look in STATE_LOOKS.values()])
    edge = "white" if codes.size <= 2500 else "face"  # white seams show the tiles, until they would hide them
    # ``y`` runs top to bottom like ``drawn.rows``: row 0 is drawn at the top of an axis that runs up.
    axes.pcolormesh(x, y, codes, cmap=colours, vmin=-0.5, vmax=len(order) - 0.5, edgecolors=edge, linewidth=0.5)
    axes.set_xlim(x[0], x[-1])
    axes.set_ylim(min(y), max(y))
    axes.set_xlabel(drawn.across)
    _tile_indices(axes.secondary_xaxis("top"), x).set_xlabel(f"tile index along {plan.grid.names[0]}", fontsize=8)
    if drawn.up:
        axes.set_ylabel(drawn.up)
        side = _tile_indices(axes.secondary_yaxis("right"), y[::-1])
        side.set_ylabel(f"tile index along {plan.grid.names[1]}", fontsize=8)
        if labels.axis_unit(plan, 0) == labels.axis_unit(plan, 1):
            axes.set_aspect("equal")  # a map: the same unit both ways, as in the stitched figure
    else:
        axes.set_yticks([])
    axes.set_title(tile_map_title(plan, what), fontsize=10)
    counts = {state: sum(row.count(state) for row in drawn.rows) for state in order}
    handles = [Patch(color=look.colour, label=f"{state} ({counts[state]})") for state, look in STATE_LOOKS.items()]
    figure.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=len(handles), title="each square")
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=100))


def _tile_indices(axis, edges: np.ndarray):
    """Number the tiles at their centres (``edges`` ascending), as their ids count them, on a side
    axis: a square on the map can then be found in ``status`` and the records."""
    centres = (edges[:-1] + edges[1:]) / 2
    every = max(1, math.ceil(len(centres) / 20))  # at most about 20 numbers a side
    axis.set_ticks(centres[::every], [str(k) for k in range(0, len(centres), every)], fontsize=7)
    return axis
