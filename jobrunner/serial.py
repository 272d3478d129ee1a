"""The lab's Task 1: the whole grid, point by point, in one process.  The reference for everything else."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobrunner.files import ensure_folder, write_atomically
from jobrunner.grid import Grid, split
from jobrunner.kernels import gaussian_loop
from jobrunner.paths import SpoolPaths
from jobrunner.plan import Plan


@dataclass(frozen=True)
class SerialResult:
    values: np.ndarray
    seconds: float
    array: Path
    figure: Path


def compute_serial(grid: Grid, sigma: float = 1.0, on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``Z[i, j] = g(X[i], Y[j])`` by the lab's loop, in row blocks so progress can be shown."""
    x, y = grid.axes()
    values = np.empty((len(x), len(y)))
    blocks = split(len(x), min(len(x), 100))
    for done, (start, stop) in enumerate(blocks, 1):
        values[start:stop] = gaussian_loop(x[start:stop].reshape(-1, 1), y.reshape(1, -1), sigma)
        if on_progress:
            on_progress(done, len(blocks))
    return values


def run_serial(
    grid: Grid,
    outputs: str | Path = "outputs",
    sigma: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> SerialResult:
    """Time the serial loop and save ``<outputs>/serial.npy`` and ``serial.png``."""
    from jobrunner.figures import field_title, save_field_figure

    plan = Plan(grid, (1, 1), "loop", {"sigma": sigma})  # validates sigma like any plan
    paths = SpoolPaths.outputs_only(outputs)
    ensure_folder(paths.outputs, "outputs", "--outputs")
    started = time.perf_counter()
    values = compute_serial(grid, sigma, on_progress)
    seconds = time.perf_counter() - started
    array, figure = paths.product("serial.npy"), paths.product("serial.png")
    write_atomically(array, lambda file: np.save(file, values, allow_pickle=False))
    save_field_figure(values, plan, field_title(plan, f"serial loop, {seconds:.1f} s"), figure)
    return SerialResult(values, seconds, array, figure)
