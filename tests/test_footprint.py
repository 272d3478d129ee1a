"""What a plan will cost its disks, said before anything is computed, and true once it is done."""

import os
import re
import subprocess

import pytest

STEP = "0.05"  # an 80 x 80 grid


def in_bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]


def files_and_bytes(folder) -> tuple[int, int]:
    """Every file and folder under ``folder`` (each an inode), and the bytes in its files."""
    entries = list(folder.rglob("*"))
    return len(entries), sum(entry.stat().st_size for entry in entries if entry.is_file())


@pytest.mark.parametrize("lock", ["flock", "lease"])
def test_plan_says_what_the_spool_and_outputs_will_hold_when_done(project, lock):
    said = project.run("plan", "--step", STEP, "--tiles", "3x4", "--kernel", "numpy").stdout
    promised = re.search(
        r"the spool will hold ([\d,]+) files \(([\d.]+ \w+)\) and the outputs ([\d,]+) files \(([\d.]+ \w+)", said
    )
    assert promised, said
    spool_files, outputs_files = (int(promised.group(n).replace(",", "")) for n in (1, 3))
    spool_bytes, outputs_bytes = (in_bytes(promised.group(n)) for n in (2, 4))
    project.run("work", "--lock", lock)
    project.run("reduce")
    held_spool, held_spool_bytes = files_and_bytes(project.spool)
    held_outputs, held_outputs_bytes = files_and_bytes(project.outputs)
    journals = list((project.plan_folder / "journals").glob("*.jsonl"))
    assert len(journals) == 1  # one worker process; lease markers and claims are gone once released
    assert held_spool == spool_files + len(journals)
    assert held_outputs == outputs_files
    assert abs(held_spool_bytes - spool_bytes) < 0.1 * spool_bytes  # journal lines differ in host names and times
    figure = (project.outputs / "stitched.png").stat().st_size + (project.outputs / "stitched.json").stat().st_size
    # stitched.nc's HDF5 metadata and coordinates, and owner.json: some kB whatever the grid
    assert abs(held_outputs_bytes - figure - outputs_bytes) < 0.01 * outputs_bytes + 16e3


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_plan_that_would_take_most_of_the_free_inodes_is_warned_about_not_refused(project):
    disk = project.root / "disk"  # the spool and the outputs on one small disk
    disk.mkdir()
    mounted = ["mount", "-t", "tmpfs", "-o", "nr_inodes=400,size=20m,mode=755", "tmpfs", str(disk)]
    subprocess.run(mounted, check=True)
    project.env.update(JOBRUNNER_SPOOL=str(disk / "jobs"), JOBRUNNER_OUTPUTS=str(disk / "outputs"))
    try:
        # plan makes ~210 files (a spec and a lock file per job); the workers and reduce ~105 more
        result = project.run("plan", "--step", STEP, "--tiles", "10x10", "--kernel", "numpy")
        assert result.returncode == 0 and "Traceback" not in result.stderr
        assert "warning:" in result.stderr and "free inodes" in result.stderr and str(disk) in result.stderr
        doctor = project.run("doctor", process=True)
        assert "free inodes" in doctor.stdout and "warning" in doctor.stdout
        quiet = project.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy", "--replace")
        assert "warning:" not in quiet.stderr  # a few files of 400 is no concern
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_the_specs_bytes_are_counted_exactly_without_writing_them():
    from jobrunner import Grid
    from jobrunner.footprint import _spec_bytes
    from jobrunner.plan import Plan
    from jobrunner.spool import spec_json

    plan = Plan(Grid.lab(-2, 2, -2, 2, step=0.01), (7, 13), "numpy", {})  # uneven tiles, 1- to 3-digit bounds
    tiles = plan.tiles()
    assert _spec_bytes(plan, tiles) == sum(len(spec_json(tile, "20260101-000000-00000000")) for tile in tiles)
