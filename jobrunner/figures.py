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
from jobrunner.plan import Plan

#: The longest side, in cells, that a figure draws; larger fields are strided down to this.
MAX_DRAWN_CELLS = 1200


def field_title(plan: Plan, what: str, note: str = "") -> str:
    nx, ny = plan.shape
    name = "2-D Gaussian" if plan.kernel in ("loop", "numpy") else plan.kernel
    params = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in plan.params.items())
    head = f"{name} ({params})" if params else name
    return f"{head}, {what}\n{nx} x {ny} points, step {plan.grid.step:g}" + (f"\n{note}" if note else "")


def save_field_figure(values: np.ndarray, plan: Plan, title: str, target: Path) -> None:
    """Draw a field over the plan's grid to ``target`` as PNG, atomically.

    ``values`` is the whole field, or a copy already decimated by a whole stride (as reduce
    gathers it); a field larger than MAX_DRAWN_CELLS a side is strided down here.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stride = max(1, math.ceil(max(values.shape) / MAX_DRAWN_CELLS))
    view = np.asarray(values[::stride, ::stride])
    stride = max(1, round(plan.shape[0] / view.shape[0]))  # what the figure shows, counted on the full grid
    x, y = plan.grid.axes()
    half = plan.grid.step / 2
    extent = (x[0] - half, x[-1] + half, y[0] - half, y[-1] + half)

    figure = Figure(figsize=(7.2, 6.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # Arrays are indexed [x, y]; imshow draws [row, column] = [y, x], so transpose, and put row 0 at the bottom.
    colormap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # NaN holes of a partial reduce in grey
    image = axes.imshow(np.ma.masked_invalid(view.T), origin="lower", extent=extent, cmap=colormap, aspect="equal")
    label = "g(x, y)" if plan.kernel in ("loop", "numpy") else "f(x, y)"
    figure.colorbar(image, ax=axes, label=label, shrink=0.9)
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_title(title + (f"  (drawn every {stride}th cell)" if stride > 1 else ""), fontsize=10)
    write_atomically(target, lambda file: figure.savefig(file, format="png", dpi=110))
