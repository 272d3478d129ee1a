"""Figures of a field over the grid: real axes in grid units, y up, a labelled colorbar.

Matplotlib is imported only here and only when a figure is drawn, so workers never pay for it.
Large fields are decimated to about screen size before drawing: ``imshow`` of a full
10,000 x 10,000 array would take several GB.
"""

from __future__ import annotations

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
MAX_DRAWN_CELLS = 1200


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
    """Draw a field over the plan's grid to ``target`` as PNG, atomically.

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
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


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


def save_scale_figure(study, target: Path) -> None:
    """Runtime against workers (log x) with the ideal line, and speedup and efficiency, to ``target``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [row for row in study.rows if row.seconds]
    workers = np.array([row.workers for row in rows], dtype=float)
    median = np.array([row.median for row in rows])
    low = median - np.array([min(row.seconds) for row in rows])
    high = np.array([max(row.seconds) for row in rows]) - median

    figure = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    runtime, scaling = figure.subplots(1, 2)
    figure.suptitle(f"Scaling on {study.cores} cores: {study.plan.describe()}", fontsize=11)

    runtime.errorbar(workers, median, yerr=[low, high], fmt="o-", capsize=3, label="plan + supervise (median, min-max)")
    runtime.axhline(study.serial_seconds, color="0.4", linestyle=":", label=f"serial, {study.serial_seconds:.2f} s")
    if len(rows):
        t1 = rows[0].median * rows[0].workers
        span = np.geomspace(1, max(workers.max(), study.cores), 200)
        runtime.plot(
            span, t1 / np.minimum(span, study.cores), "--", color="tab:green", label="ideal T1/N, capped at cores"
        )
    for row in study.rows:
        if row.outcome == "failed":
            runtime.axvline(row.workers, color="tab:red", linewidth=1)
            runtime.annotate("failed", (row.workers, study.serial_seconds), color="tab:red", rotation=90, fontsize=8)
    runtime.set_xscale("log", base=2)
    runtime.set_xlabel("workers (max_workers)")
    runtime.set_ylabel("wall time [s]")
    runtime.set_title("Runtime", fontsize=10)

    speedup = study.serial_seconds / median if len(rows) else median
    scaling.plot(workers, speedup, "o-", color="tab:blue", label="speedup (serial / parallel)")
    scaling.plot(workers, speedup / np.maximum(workers, 1), "s-", color="tab:orange", label="efficiency (speedup / N)")
    scaling.axhline(1, color="0.6", linewidth=0.8)
    scaling.set_xscale("log", base=2)
    scaling.set_xlabel("workers (max_workers)")
    scaling.set_ylabel("speedup, efficiency")
    scaling.set_title("Speedup and parallel efficiency", fontsize=10)

    from matplotlib.ticker import FuncFormatter

    for axes in (runtime, scaling):
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.axvline(study.cores, color="0.3", linestyle="-.", linewidth=1)
        axes.annotate(
            f" {study.cores} cores", (study.cores, 0.03), xycoords=("data", "axes fraction"), fontsize=8, va="bottom"
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8, loc="best")
    if study.stop_reason:
        figure.text(0.5, 0.005, study.stop_reason, ha="center", va="bottom", fontsize=8, color="tab:red")
        figure.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


def timeline_bars(run) -> dict[str, list[tuple[int, float, float]]]:
    """Every attempt of ``run`` as a bar ``(worker row, start, length)`` in seconds since the first
    start, by the label of its outcome (:data:`jobrunner.vocabulary.OUTCOMES`; running ones too)."""
    bars: dict[str, list[tuple[int, float, float]]] = {}
    for row, worker in enumerate(run.workers):
        for _, attempt in worker.attempts:
            label = outcome_meaning(attempt.outcome).label
            bars.setdefault(label, []).append(
                (row, attempt.started - run.start, (attempt.ended or run.end) - attempt.started)
            )
    return bars


def save_timeline_figure(run, title: str, target: Path) -> None:
    """One row per worker, one bar per attempt, coloured by outcome, in seconds since the first start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = len(run.workers)
    figure = Figure(figsize=(10, 1.6 + 0.28 * min(rows, 60)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = {meaning.label: meaning.look.colour for meaning in (*OUTCOMES.values(), IN_FLIGHT)}
    for label, bars in timeline_bars(run).items():
        for row, start, length in bars:
            axes.broken_barh([(start, length)], (row - 0.4, 0.8), facecolors=colours[label], edgecolors="white",
                             linewidth=0.3)  # fmt: skip
    labels = [f"{w.name} ({w.via}) {100 * run.busy_fraction(w):.0f}% busy" for w in run.workers]
    axes.set_yticks(range(rows), labels, fontsize=8 if rows < 30 else 5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_xlim(0, run.span)
    axes.set_xlabel("seconds since the first attempt started")
    axes.set_title(title, fontsize=10)
    axes.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=colour, label=label) for label, colour in colours.items()]
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


def save_tile_map(plan: Plan, states: dict[str, str], title: str, target: Path) -> None:
    """The plan's tiles over its first two axes, each coloured by its state, to ``target`` as PNG
    (tiles that differ only along further axes share a square: see :func:`jobrunner.status.state_map`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from jobrunner.status import state_map

    drawn = state_map(plan, states)
    points = plan.grid.points()
    x = _edges(points[0])
    y = _edges(points[1]) if len(points) > 1 else np.array([0.0, 1.0])
    figure = Figure(figsize=(6.4, 6.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    edge = len(drawn) * len(drawn[0]) <= 2500
    for tile in plan.tiles():
        if any(tile.index[2:]):
            continue  # one square per tile of the first two axes
        (a0, a1), (b0, b1) = tile.bounds[0], tile.bounds[1] if len(tile.bounds) > 1 else (0, 1)
        x0, x1, y0, y1 = x[a0], x[a1], y[b0], y[b1]
        state = drawn[tile.index[0]][tile.index[1] if len(tile.index) > 1 else 0]
        colour = to_rgb(STATE_LOOKS[state].colour)
        axes.fill([x0, x1, x1, x0], [y0, y0, y1, y1], color=colour, ec="white" if edge else colour, lw=0.5)
    axes.set_xlim(x[0], x[-1])
    axes.set_ylim(y[0], y[-1])
    axes.set_xlabel(labels.axis_label(plan, 0))
    if len(points) > 1:
        axes.set_ylabel(labels.axis_label(plan, 1))
        if plan.grid.axes[0].unit == plan.grid.axes[1].unit:
            axes.set_aspect("equal")
    else:
        axes.set_yticks([])
    axes.set_title(title, fontsize=10)
    handles = [Patch(color=look.colour, label=str(state)) for state, look in STATE_LOOKS.items()]
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=100))
