"""Reduce through the library: stitching in many row blocks, holes, and the figure's decimated copy."""

import numpy as np
import pytest

import jobrunner.stitch as reduce_module
from jobrunner import Plan, Spool, compute_serial, reduce, work
from jobrunner.drawer import Drawer
from jobrunner.figures import decimation


@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_stitching_in_row_blocks_of_any_size(tmp_path, monkeypatch, block_rows):
    plan = Plan.create(step=0.03, tiles=(3, 5), kernel="numpy")  # a 134 x 134 grid
    monkeypatch.setattr(reduce_module, "BLOCK_BYTES", block_rows * plan.shape[1] * 8)
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs")
    assert work(spool).ok
    result = reduce(spool)
    assert np.array_equal(np.load(result.array), compute_serial(plan.grid))


def test_holes_are_nan_and_everything_else_is_exact(tmp_path, monkeypatch):
    plan = Plan.create(step=0.03, tiles=(4, 3), kernel="numpy")
    monkeypatch.setattr(reduce_module, "BLOCK_BYTES", 5 * plan.shape[1] * 8)
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs")
    work(spool)
    holes = ["tile-r001-c001", "tile-r003-c000"]
    for job_id in holes:
        assert spool.requeue(job_id, bad_tile=True)  # its tile goes: pending again
    result = reduce(spool, partial=True)
    stitched, serial = np.load(result.array), compute_serial(plan.grid)
    tiles = plan.tile_by_id()
    expected = serial.copy()
    for job_id in holes:
        expected[tiles[job_id].slices] = np.nan
    assert np.array_equal(stitched, expected, equal_nan=True)
    assert sorted(result.missing) == holes


def test_the_figure_is_drawn_from_a_decimated_copy(tmp_path, monkeypatch):
    """A grid larger than the figure: the preview gathered while stitching is the strided array."""
    captured = {}
    real = Drawer.png
    monkeypatch.setattr(
        Drawer, "png", lambda self, values, *a: (captured.update(values=values), real(self, values, *a))[1]
    )
    plan = Plan.create(step=0.003, tiles=(3, 2), kernel="numpy", extent=(-2, 2, -0.5, 0.5))  # 1334 x 334
    monkeypatch.setattr(reduce_module, "BLOCK_BYTES", 100 * plan.shape[1] * 8)
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs")
    work(spool)
    result = reduce(spool)
    stride = decimation(plan.shape)
    assert stride == 2
    full = np.load(result.array)
    assert np.array_equal(captured["values"], full[::stride, ::stride])
    assert result.figure.stat().st_size > 10_000
