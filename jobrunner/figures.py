"""Figures of a field over the grid: real axes in grid units, y up, a labelled colorbar.

Matplotlib is imported only here and only when a figure is drawn, so workers never pay for it.
Large fields are decimated to about screen size before drawing: ``imshow`` of a full
10,000 x 10,000 array would take several GB.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from jobrunner.files import write_atomically
from jobrunner.kernels import load_kernel
from jobrunner.plan import Plan

#: The longest side, in cells, that a figure draws; larger fields are strided down to this.
MAX_DRAWN_CELLS = 1200


def decimation(shape: tuple[int, ...]) -> int:
    """Every how many cells a figure samples, so that it draws at most MAX_DRAWN_CELLS a side."""
    return max(1, math.ceil(max(shape) / MAX_DRAWN_CELLS))


def _kernel_attribute(plan: Plan, name: str, default: str) -> str:
    return str(getattr(load_kernel(plan.kernel), name, default))


def field_title(plan: Plan, what: str, note: str = "") -> str:
    nx, ny = plan.shape
    name = _kernel_attribute(plan, "title", plan.kernel)
    params = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in plan.params.items())
    plan_id = f", plan {plan.id}" if plan.id else ""
    lines = [f"{name}, {what}", params, f"{nx} x {ny} points, step {plan.grid.step:g}{plan_id}", note]
    return "\n".join(line for line in lines if line)


def save_field_figure(values: np.ndarray, plan: Plan, title: str, target: Path) -> None:
    """Draw a field over the plan's grid to ``target`` as PNG, atomically.

    ``values`` is the whole field, or a copy already decimated by a whole stride (as reduce
    gathers it); a field larger than MAX_DRAWN_CELLS a side is strided down here.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    view = np.asarray(values[:: decimation(values.shape), :: decimation(values.shape)])
    stride = decimation(plan.shape)  # what the figure shows, counted on the full grid
    x, y = plan.grid.axes()
    half = plan.grid.step / 2
    extent = (x[0] - half, x[-1] + half, y[0] - half, y[-1] + half)

    figure = Figure(figsize=(7.2, 6.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # Arrays are indexed [x, y]; imshow draws [row, column] = [y, x], so transpose, and put row 0 at the bottom.
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN holes of a partial reduce in grey
    image = axes.imshow(np.ma.masked_invalid(view.T), origin="lower", extent=extent, cmap=colormap, aspect="equal")
    label = _kernel_attribute(plan, "label", "f(x, y)")
    figure.colorbar(image, ax=axes, label=label, shrink=0.9)
    unit = _kernel_attribute(plan, "axis_unit", "")
    axes.set_xlabel(f"x [{unit}]" if unit else "x")
    axes.set_ylabel(f"y [{unit}]" if unit else "y")
    axes.set_title(title + (f"  (drawn every {stride}th cell)" if stride > 1 else ""), fontsize=10)
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


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
    nx, ny = study.plan.shape
    figure.suptitle(
        f"Scaling on {study.cores} cores: {nx} x {ny} grid, step {study.plan.grid.step:g}, "
        f"{study.plan.tiling[0]}x{study.plan.tiling[1]} tiles, kernel {study.plan.kernel}",
        fontsize=11,
    )

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


OUTCOME_COLOURS = {
    "done": "tab:green",
    "failed": "tab:red",
    "lost": "black",
    "interrupted": "tab:orange",
    None: "tab:blue",  # still running
}


def save_timeline_figure(run, title: str, target: Path) -> None:
    """One row per worker, one bar per attempt, coloured by outcome, in seconds since the first start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = len(run.workers)
    figure = Figure(figsize=(10, 1.6 + 0.28 * min(rows, 60)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for row, worker in enumerate(run.workers):
        for outcome, colour in OUTCOME_COLOURS.items():
            bars = [
                (a.started - run.start, (a.ended or run.end) - a.started)
                for _, a in worker.attempts
                if a.outcome == outcome
            ]
            if bars:
                axes.broken_barh(bars, (row - 0.4, 0.8), facecolors=colour, edgecolors="white", linewidth=0.3)
    labels = [f"{w.name} ({w.via}) {100 * run.busy_fraction(w):.0f}% busy" for w in run.workers]
    axes.set_yticks(range(rows), labels, fontsize=8 if rows < 30 else 5)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_xlim(0, run.span)
    axes.set_xlabel("seconds since the first attempt started")
    axes.set_title(title, fontsize=10)
    axes.grid(True, axis="x", alpha=0.3)
    handles = [Patch(color=c, label=o or "running") for o, c in OUTCOME_COLOURS.items()]
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))


STATE_COLOURS = {"pending": "0.85", "running": "tab:blue", "done": "tab:green", "failed": "tab:red"}


def save_tile_map(plan: Plan, states: dict[str, str], title: str, target: Path) -> None:
    """The plan's tiles over the grid, each coloured by its state, to ``target`` as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    x, y = plan.grid.axes()
    figure = Figure(figsize=(6.4, 6.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    edge = plan.tiling[0] * plan.tiling[1] <= 2500
    for tile in plan.tiles():
        x0, x1 = x[tile.row_start], x[tile.row_stop - 1] + plan.grid.step
        y0, y1 = y[tile.col_start], y[tile.col_stop - 1] + plan.grid.step
        colour = to_rgb(STATE_COLOURS[states.get(tile.id, "pending")])
        axes.fill([x0, x1, x1, x0], [y0, y0, y1, y1], color=colour, ec="white" if edge else colour, lw=0.5)
    axes.set_xlim(x[0], x[-1] + plan.grid.step)
    axes.set_ylim(y[0], y[-1] + plan.grid.step)
    axes.set_aspect("equal")
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_title(title, fontsize=10)
    handles = [Patch(color=c, label=s) for s, c in STATE_COLOURS.items()]
    axes.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=100))
