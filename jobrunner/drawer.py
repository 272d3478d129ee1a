"""reduce's figure, drawn by a second process started before the tiles are checked.

Drawing ``stitched.png`` costs 0.6-1 s before its first line: matplotlib's import, its font
cache, the Agg renderer's first text.  That is as long as checking and stitching 10,000 tiles,
or the 128 MB of the lab's main job.  So for a reduce that large, where a second CPU is free,
reduce first starts a drawer, which loads all that while reduce works and draws the view once
it is handed over: the figure then costs reduce only its drawing (0.2-0.4 s).  A smaller reduce
has too little work to hide the drawer's start behind, and with one CPU the drawer would only
take turns with reduce (:func:`pays_off`): there the figure is drawn in-process, as it is
whenever the drawer does not deliver.

The drawer is ``python -I -c`` importing this module from where this process imports (its
``sys.path``), never from the current folder as such, where anyone who may write it could plant a
``matplotlib.py``.  Over its pipes:

=========  =========================================================================================
``stdin``  one pickled :class:`Request` (what :func:`jobrunner.figures.field_figure_png` takes),
           then end of file; end of file alone: reduce gave up (it refused, failed or was killed),
           and the drawer exits having drawn nothing
``stdout`` the PNG's bytes, then exit status 0
``stderr`` discarded: whatever failed there is drawn again in-process, where its error is
           reported as any of reduce's is
=========  =========================================================================================

The drawer never writes a file: reduce writes the PNG it is given as its own partial, so a drawer
killed leaves nothing behind, and every disk error is reduce's to report.  A reduce that dies, even
of SIGKILL, closes the drawer's stdin with it: the drawer reads end of file and exits.
"""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from jobrunner.cpus import usable_cpus
from jobrunner.figures import FigureView, field_figure_png, plain_text
from jobrunner.plan import Plan

#: How long the drawer may take once handed its view, before reduce kills it and draws here.  The
#: view is at most MAX_DRAWN_CELLS a side: drawing it takes well under a second.
DRAW_SECONDS = 60.0
#: From how many tiles, or bytes of result, checking and stitching take long enough (a few tenths
#: of a second) that a drawer started beside them gains more than its own start costs.
PAYS_FROM_TILES, PAYS_FROM_BYTES = 2_000, 32 * 2**20
#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Request:
    """A figure to draw: :func:`jobrunner.figures.field_figure_png`'s arguments."""

    values: np.ndarray
    plan: Plan
    title: str
    view: FigureView

    def png(self) -> bytes:
        return field_figure_png(self.values, self.plan, self.title, self.view)


class Drawer:
    """The process that will draw a figure, started ahead (or none: the figure is drawn here).

    Use as a context manager: leaving it stops a drawer that was never handed a figure."""

    def __init__(self, process: subprocess.Popen | None) -> None:
        self._process = process

    @classmethod
    def start(cls, plan: Plan) -> Drawer:
        """A drawer for a reduce of ``plan``, started now if it pays off, or none."""
        if not pays_off(math.prod(plan.tiling), math.prod(plan.shape) * plan.tile_dtype.itemsize, usable_cpus().count):
            return cls(None)
        # sys.path as this process has it, in the drawer's own isolated interpreter (-I: no
        # current folder, no PYTHON* variables): the very jobrunner and matplotlib this one imports.
        boot = f"import sys; sys.path[:] = {sys.path!r}; from jobrunner.drawer import serve; sys.exit(serve())"
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", boot],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:  # no interpreter to start (an embedded Python), no processes left
            return cls(None)
        return cls(process)

    def png(self, values: np.ndarray, plan: Plan, title: str, view: FigureView) -> bytes:
        """The figure :func:`jobrunner.figures.field_figure_png` draws: by the drawer, or here if it did not."""
        request = Request(np.ascontiguousarray(values), plan, title, view)
        drawn = self._drawn_there(request)
        return drawn if drawn is not None else request.png()

    def _drawn_there(self, request: Request) -> bytes | None:
        process, self._process = self._process, None
        if process is None:
            return None
        try:
            # communicate() writes, reads and waits at once: a drawer that died makes a broken pipe,
            # which it ignores, and a non-zero status.
            png, _ = process.communicate(pickle.dumps(request, pickle.HIGHEST_PROTOCOL), timeout=DRAW_SECONDS)
        except subprocess.TimeoutExpired:  # stopped (SIGSTOP), or starved: not waited on further
            _stop(process)
            return None
        if process.returncode != 0 or not png.startswith(PNG_SIGNATURE):
            return None
        return png

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _stop(process)  # never handed a figure: reduce refused or failed first

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def pays_off(tiles: int, result_bytes: int, cpus: int) -> bool:
    """Whether a reduce of this many tiles and bytes gains by starting a drawer beside it."""
    return cpus >= 2 and (tiles >= PAYS_FROM_TILES or result_bytes >= PAYS_FROM_BYTES)


def _stop(process: subprocess.Popen) -> None:
    process.kill()
    process.communicate()  # reaped, and its pipes closed


@plain_text
def _warm_up() -> None:
    """Draw a small figure of the kind reduce draws, to nowhere: what the first figure of a process
    costs (the font cache, the first glyphs, the colormap) is paid before reduce needs it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid([[0.0, np.nan], [1.0, 2.0]]), origin="lower", extent=(0, 1, 0, 1))
    figure.colorbar(image, ax=axes, label="value [1]")
    axes.set(title="warm-up", xlabel="x [km]", ylabel="y [km]")
    figure.savefig(io.BytesIO(), format="png", dpi=110)


def serve() -> int:
    """The drawer's side: get ready to draw, then draw what reduce sends, to stdout."""
    _warm_up()
    payload = sys.stdin.buffer.read()
    if not payload:
        return 0  # reduce gave up before it had a figure to draw
    request = pickle.loads(payload)  # from the process that started this one, through its own pipe
    sys.stdout.buffer.write(request.png())
    sys.stdout.buffer.flush()
    return 0
