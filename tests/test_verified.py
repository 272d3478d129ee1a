"""Every tile verified: what reduce stitches is bit for bit what a worker computed, or it refuses.

A flipped bit with the header intact, a tile rewritten in another dtype, another file format at
a tile's path, a FIFO there: each was stitched (or hung reduce) before tiles had checksums."""

import os

import numpy as np
import pytest
from test_bad_input import assert_one_line_error

from jobrunner.tilefile import TILE_DTYPE, check_tile, write_tile

STEP = 0.1  # a 40 x 40 grid


def flip_an_exponent_bit(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x20  # the last value's top byte (little-endian): its exponent; the header is intact
    path.write_bytes(bytes(data))


def rewrite_as(dtype):
    def rewrite(path):
        values = np.load(path)
        np.save(path, values.astype(dtype))

    return rewrite


def an_npz_in_its_place(path):
    values = np.load(path)
    with open(path, "wb") as file:
        np.savez(file, values=values)


DAMAGES = {
    "flipped bit": flip_an_exponent_bit,
    "float32": rewrite_as(np.float32),
    "float16": rewrite_as(np.float16),
    "npz": an_npz_in_its_place,
}


@pytest.mark.slow
def test_a_tile_changed_after_its_worker_wrote_it_is_requeued_never_stitched(project, serial_reference):
    """Each damage in turn, to the same tile, recomputed after each (one spool for all four)."""
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    project.run("reduce")
    earlier = {name: (project.outputs / name).read_bytes() for name in ("stitched.npy", "stitched.png")}
    tile = project.tiles / "tile-r000-c000.npy"
    for damage, damage_tile in DAMAGES.items():
        damage_tile(tile)
        result = project.run("reduce", check=False)
        assert_one_line_error(result, "tile-r000-c000.npy is bad", "pending again", "jobrunner supervise")
        assert earlier == {name: (project.outputs / name).read_bytes() for name in earlier}, damage  # nothing replaced
        assert project.records()["tile-r000-c000"]["state"] == "pending", damage
        assert "computed 1 tile in" in project.run("work").stdout, damage  # the advice works
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.slow
def test_a_fifo_at_a_tiles_path_is_refused_at_once_and_nothing_is_requeued(project, serial_reference):
    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    tile = project.tiles / "tile-r001-c000.npy"
    tile.unlink()
    os.mkfifo(tile)
    done = project.records()
    result = project.run("reduce", check=False, timeout=30)  # it hung here before
    assert_one_line_error(result, "is a FIFO", "nothing was requeued")
    assert project.records() == done
    tile.unlink()  # as the message says: then its job is computed again (a job is done while its tile is there)
    assert_one_line_error(project.run("reduce", check=False), "1 of 4 tiles are missing", "pending: tile-r001-c000")
    project.run("work")
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def test_check_tile_accepts_exactly_what_write_tile_wrote(tmp_path):
    path = tmp_path / "tile.npy"
    values = np.arange(6.0).reshape(2, 3)
    with open(path, "wb") as file:
        checksum = write_tile(file, values.astype(np.float32))  # stored as float64 whatever the kernel gave
    assert np.load(path).dtype == TILE_DTYPE
    assert check_tile(path, (2, 3), checksum) is None
    assert "expected float64 (3, 2)" in check_tile(path, (3, 2), checksum)
    assert check_tile(path, (2, 3), "sha256:" + "0" * 64).startswith("changed since")
    assert check_tile(path, (2, 3), set()).startswith("no worker's journal gives its checksum")
    assert check_tile(path, (2, 3), {"sha256:" + "0" * 64, checksum}) is None  # one of those its workers gave
    path.write_bytes(path.read_bytes()[:-8])
    assert "truncated" in check_tile(path, (2, 3), checksum)
    assert check_tile(tmp_path / "absent.npy", (2, 3), checksum) == "missing"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small disk needs root")
def test_reduce_without_room_for_the_result_says_so_and_leaves_no_partial(project):
    """It died of SIGBUS through its memory map before, leaving a full-size partial behind."""
    import subprocess

    small = project.root / "a small disk"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k,mode=755", "tmpfs", str(small)], check=True)
    try:
        project.env["JOBRUNNER_OUTPUTS"] = str(small)
        project.run("plan", "--step", 0.02, "--tiles", "2x2", "--kernel", "numpy")  # 200 x 200: 320 KB of tiles
        project.run("supervise", "--workers", "2")
        result = project.run("reduce", check=False)
        needed = 128 + 200 * 200 * 8  # a .npy header (padded to 128 bytes), then the float64 values
        assert_one_line_error(result, "no room for the stitched array", str(small), f"{needed:,} bytes")
        assert not list(small.glob("*.partial")) and not (small / "stitched.npy").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_reduce_removes_the_partials_of_a_killed_reduce_of_this_host(project, serial_reference):
    import subprocess

    from jobrunner.writer import writer_tag

    project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy")
    project.run("supervise", "--workers", "2")
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = project.outputs / f".stitched.npy.{writer_tag(pid=gone.pid)}.partial"
    dead.write_bytes(b"\0" * 4096)  # what a reduce killed mid-way leaves
    elsewhere = project.outputs / ".stitched.npy.node-b-12345.partial"  # another host's: it may be running
    elsewhere.write_bytes(b"")
    project.run("reduce")
    assert not dead.exists() and elsewhere.exists()
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def spool_read_in_pieces(tmp_path, monkeypatch):
    """A done spool of 2 x 2 tiles of 20 x 20 cells, stitched 3 rows at a time: every tile is read in 7 pieces."""
    import jobrunner.stitch as stitch
    from jobrunner import Plan, Spool, work

    plan = Plan.create(step=STEP, tiles=(2, 2), kernel="numpy")
    monkeypatch.setattr(stitch, "BLOCK_BYTES", 3 * plan.shape[1] * 8)
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs")
    assert work(spool).ok
    return spool


def test_stitching_reads_only_the_very_file_it_began_to_read(tmp_path, monkeypatch):
    """A group member renaming another valid tile over one half read, mid-reduce, is caught."""
    from jobrunner.errors import JobRunnerError
    from jobrunner.stitch import _CheckedReads

    spool = spool_read_in_pieces(tmp_path, monkeypatch)
    tile, other = spool.tiles["tile-r000-c000"], spool.paths.tile("tile-r001-c001")
    reads = _CheckedReads(spool, spool.checksums(list(spool.journal_lines(done_only=True))))
    assert np.array_equal(reads.rows(tile, 0, 3), np.load(spool.paths.tile(tile.id))[:3])
    other.replace(spool.paths.tile(tile.id))  # a whole valid tile, of the same shape
    with pytest.raises(JobRunnerError, match="changed while reduce was stitching"):
        reads.rows(tile, 3, 6)


@pytest.mark.parametrize("where", ["first rows", "last rows"])
def test_a_changed_tile_read_in_pieces_is_found_bad_and_requeued(tmp_path, monkeypatch, serial_reference, where):
    """The checksum covers every piece: a flipped bit in the first piece or in the last is caught."""
    from jobrunner import reduce, work
    from jobrunner.errors import JobRunnerError

    spool = spool_read_in_pieces(tmp_path, monkeypatch)
    path = spool.paths.tile("tile-r001-c000")
    data = bytearray(path.read_bytes())
    at = len(data) - 8 * 20 * 20 + 7 if where == "first rows" else len(data) - 1  # a value's top byte
    data[at] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(JobRunnerError, match="tile-r001-c000.npy is bad: changed since its worker wrote it"):
        reduce(spool)
    assert not (spool.paths.outputs / "stitched.npy").exists()  # nothing put in place
    assert not list(spool.paths.outputs.glob(".stitched*"))  # and no partial left
    assert not path.exists()  # requeued: its job is pending again
    assert work(spool).ok
    assert np.array_equal(np.load(reduce(spool).array), serial_reference(STEP))


def test_a_plan_planted_in_the_spool_cannot_make_plan_delete_another_projects_results(tmp_path):
    """A retired plan's plan.json names its outputs; a planted one names someone else's project."""
    import json
    import shutil

    from jobrunner.grid import Grid
    from jobrunner.identity import new_plan_id
    from jobrunner.plan import Plan
    from jobrunner.spool import Spool

    spool, _ = Spool.create(Plan(Grid.lab(step=0.5), (2, 2), "numpy"), tmp_path / "jobs", tmp_path / "outputs")
    victim = tmp_path / "another project" / "outputs"
    planted_id = new_plan_id()
    (victim / "tiles" / planted_id).mkdir(parents=True)
    (victim / "tiles" / planted_id / "tile-r000-c000.npy").write_bytes(b"their work")
    (victim / "stitched.json").write_text(json.dumps({"plan": planted_id}))
    (victim / "stitched.npy").write_bytes(b"their result")
    planted = spool.paths.plans / planted_id
    shutil.copytree(spool.paths.plan_folder(), planted)
    manifest = json.loads((planted / "plan.json").read_text())
    manifest.update(id=planted_id, outputs=str(victim))
    (planted / "plan.json").write_text(json.dumps(manifest))
    (planted / "successor.json").write_text("{}")  # looks retired: the next plan's sweep removes it
    Spool.create(Plan(Grid.lab(step=0.25), (2, 2), "numpy"), tmp_path / "jobs", replace=True)
    assert not planted.exists()
    assert (victim / "tiles" / planted_id / "tile-r000-c000.npy").read_bytes() == b"their work"
    assert (victim / "stitched.npy").read_bytes() == b"their result"
