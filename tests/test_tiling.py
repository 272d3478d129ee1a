"""The grid and its tiling, as pure functions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobrunner import Grid, JobRunnerError, parse_tiling, tile_grid
from jobrunner.grid import JOB_ID_PATTERN, job_ids


@given(nx=st.integers(1, 60), ny=st.integers(1, 60), data=st.data())
def test_tiles_cover_every_cell_exactly_once(nx, ny, data):
    rows = data.draw(st.integers(1, nx))
    cols = data.draw(st.integers(1, ny))
    cover = np.zeros((nx, ny), dtype=int)
    tiles = tile_grid((nx, ny), (rows, cols))
    for tile in tiles:
        cover[tile.slices] += 1
    assert (cover == 1).all()
    assert len(tiles) == rows * cols
    ids = [tile.id for tile in tiles]
    assert ids == sorted(ids), "ids must sort in plan order"
    assert all(JOB_ID_PATTERN.fullmatch(i) for i in ids)
    assert job_ids((rows, cols)) == ids  # what status lists, without building the tiles


@pytest.mark.parametrize("tiling", [(3,), (1200, 1), (2, 3, 4), (2, 1, 1, 3)])
def test_job_ids_name_the_tiles_in_plan_order_on_any_grid(tiling):
    shape = tuple(2 * t for t in tiling)
    assert job_ids(tiling) == [tile.id for tile in tile_grid(shape, tiling)]


def test_uneven_edges_differ_by_at_most_one():
    tiles = tile_grid((400, 400), (3, 5))
    heights = {t.shape[0] for t in tiles}
    widths = {t.shape[1] for t in tiles}
    assert max(heights) - min(heights) <= 1 and max(widths) - min(widths) <= 1
    assert tiles[0].id == "tile-r000-c000" and tiles[-1].id == "tile-r002-c004"


def test_ids_stay_sortable_past_a_thousand_rows():
    tiles = tile_grid((1200, 1), (1200, 1))
    assert tiles[-1].id == "tile-r1199-c0000"
    assert [t.id for t in tiles] == sorted(t.id for t in tiles)


@pytest.mark.parametrize("text", ["0x2", "2x0", "banana", "2x", "x3", "-1x2", "2.5x2"])
def test_bad_tilings_are_refused(text):
    with pytest.raises(JobRunnerError):
        parse_tiling(text)


def test_more_tiles_than_rows_is_refused():
    with pytest.raises(JobRunnerError, match="more tiles than the grid has"):
        tile_grid((10, 10), (11, 1))


@pytest.mark.parametrize(
    "kwargs",
    [{"step": 0}, {"step": -0.1}, {"step": float("nan")}, {"xmin": 1, "xmax": 1}, {"ymin": 2, "ymax": -2}],
)
def test_bad_grids_are_refused(kwargs):
    with pytest.raises(JobRunnerError):
        Grid.lab(**kwargs)


def test_grid_axes_are_the_labs_arange():
    grid = Grid.lab(-2, 2, -1, 3, step=0.01)
    x, y = grid.points()
    assert np.array_equal(x, np.arange(-2.0, 2.0, 0.01)) and np.array_equal(y, np.arange(-1.0, 3.0, 0.01))
    assert grid.shape == (len(x), len(y))
