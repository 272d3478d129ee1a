"""The overnight run: workers killed again and again, disks that cannot lock, a full or read-only
disk, stuck jobs, many workers on tiny tiles, and folders anyone could write to."""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, wait

from jobrunner.executors import BATCHES_PER_WORKER, batch_size, batches
from jobrunner.locking import Mount, choose_mode, find_mount

STEP = 0.02  # a 200 x 200 grid


def done_count(project) -> int:
    return sum(record["state"] == "done" for record in project.records().values())


def wait_until(condition, timeout: float = PROCESS_TIMEOUT, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pool_children(parent_pid: int) -> list[int]:
    """The supervisor's pool processes: its forked children (same command line as the parent)."""
    try:
        children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
        own = Path(f"/proc/{parent_pid}/cmdline").read_bytes()
    except OSError:
        return []
    pids = []
    for pid in map(int, children):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == own:
                pids.append(pid)
        except OSError:
            pass
    return pids


def stray_files(project) -> list[Path]:
    """Anything in outputs/ that is neither a tile nor a product: half-written or temporary files."""
    expected = {"stitched.npy", "stitched.png", "stitched.json", "owner.json"}
    return [
        path
        for path in project.outputs.rglob("*")
        if path.is_file()
        and not (path.parent.parent.name == "tiles" and path.suffix == ".npy")
        and path.name not in expected
    ]


# -- 1. chaos ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.both_lock_modes
def test_chaos_kills_workers_and_pool_processes_again_and_again(project, serial_reference):
    project.run("plan", "--step", STEP, "--tiles", "12x10", "--kernel", "jr_test_kernels:slow", "--param", "delay=0.3")
    rng = random.Random(20261124)
    workers = [project.start("work") for _ in range(2)]
    supervisor = project.start("supervise", "--workers", "2")
    kills = Counter()
    deadline = time.monotonic() + 240
    while done_count(project) < 120 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.2, 0.6))
        if sum(kills.values()) >= 30:
            continue  # enough: let the survivors finish
        children = pool_children(supervisor.pid)
        alive = [w for w in workers if w.poll() is None]
        if children and (rng.random() < 0.5 or not alive):
            os.kill(rng.choice(children), signal.SIGKILL)
            kills["pool process"] += 1
        elif alive:
            victim = rng.choice(alive)
            victim.kill()  # not reaped until the end: a zombie must not pass for a live worker
            kills["work"] += 1
            workers.append(project.start("work"))  # and a new worker takes its place
    code, stdout, stderr = wait(supervisor)
    assert code == 0, stderr  # survived every broken pool and finished
    for worker in workers:
        wait(worker)
    assert kills["pool process"] >= 5 and kills["work"] >= 5, kills

    records = project.records()
    assert len(records) == 120 and all(r["state"] == "done" for r in records.values())
    attempts = Counter()
    for record in records.values():
        outcomes = [a["outcome"] for a in record["attempts"]]
        assert outcomes.count("done") == 1 and outcomes[-1] == "done", outcomes
        attempts[len(outcomes)] += 1
    assert sum(n for count, n in attempts.items() if count > 1) > 0, "the kills should have cost some attempts"
    print(f"\nkills {dict(kills)}; tiles by attempts taken {dict(sorted(attempts.items()))}")
    assert stray_files(project) == [] and project.leftovers() == []
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


# -- 2. disks that cannot lock --------------------------------------------------------------------

NOFLOCK_SHIM = r"""
#include <errno.h>
/* Lustre mounted -o noflock: every flock() call fails with ENOSYS. */
int flock(int fd, int operation) { (void)fd; (void)operation; errno = ENOSYS; return -1; }
"""


@pytest.fixture(scope="session")
def noflock_shim(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to build the LD_PRELOAD shim that makes flock fail like Lustre's noflock")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "noflock.c").write_text(NOFLOCK_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", "noflock.so", "noflock.c"], cwd=folder, check=True)
    return folder / "noflock.so"


def test_a_disk_whose_flock_fails_like_lustre_noflock_gets_leases(project, noflock_shim, serial_reference):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    project.env["LD_PRELOAD"] = str(noflock_shim)

    doctor = project.run("doctor")
    assert "flock" in doctor.stdout and "Function not implemented" in doctor.stdout
    assert "lease: flock fails on this disk (ENOSYS" in doctor.stdout

    refused = project.run("work", "--lock", "flock", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "flock fails" in refused.stderr and "--lock lease" in refused.stderr

    project.run("work")  # auto
    assert json.loads((project.spool / "locking.json").read_text())["mode"] == "lease"
    assert "locks: lease (flock fails on this disk (ENOSYS" in project.run("status").stdout
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


def test_doctor_on_a_local_disk(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    report = project.run("doctor").stdout
    assert "flock" in report and "works" in report and "--lock auto" in report and "flock:" in report
    assert "advice:" in report


def test_workers_that_disagree_on_the_lock_mode_are_refused(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    project.run("work", "--lock", "lease")
    refused = project.run("work", "--lock", "flock", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "drained with lease locks" in refused.stderr and "locking.json" in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_a_lease_that_runs_out_lets_another_worker_finish_and_the_late_holder_drops_its_result(
    project, serial_reference
):
    """A holder on "another machine" (a UTS namespace with its own hostname) freezes mid-tile; its
    lease runs out, a worker here takes the job over and finishes it; the holder, thawed, finds
    its lease gone, drops its result and writes nothing."""
    project.run("plan", "--step", STEP, "--tiles", "1x1", "--kernel", "jr_test_kernels:slow", "--param", "delay=2")
    project.env["JOBRUNNER_LOCK"], project.env["JOBRUNNER_LEASE_SECONDS"] = "lease", "2"
    other_node = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname node-b && exec "$@"', "sh", *project.command("work")],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id, claim = project.wait_for_claim()
    assert claim["host"] == "node-b"
    other_node.send_signal(signal.SIGSTOP)  # its heartbeat stops with it
    try:
        result = project.run("work")  # waits out the lease (it cannot see node-b's processes), then takes over
        assert "computed 1 tiles" in result.stdout
    finally:
        other_node.send_signal(signal.SIGCONT)
    code, stdout, stderr = wait(other_node)
    assert code == 0, stderr
    assert "computed 0 tiles" in stdout
    record = project.records()[job_id]
    outcomes = [(a["host"], a["outcome"]) for a in record["attempts"]]
    assert outcomes[0] == ("node-b", "lost") and outcomes[-1][1] == "done" and len(outcomes) == 2, outcomes
    assert project.leftovers() == []
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


# -- 3. a full disk, a read-only folder --------------------------------------------------------------


def _finish_some_tiles_then_interrupt(project, at_least: int) -> set[str]:
    worker = project.start("work")
    wait_until(lambda: done_count(project) >= at_least, what=f"{at_least} tiles")
    worker.send_signal(signal.SIGINT)
    wait(worker)
    return {job for job, r in project.records().items() if r["state"] == "done"}


def _check_the_refused_tile(project, stderr: str, folder_words: str, done_before: set[str], hashes: dict) -> None:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert f"{project.outputs / 'tiles'}" in stderr and folder_words in stderr
    records = project.records()
    abandoned = [r for r in records.values() if r["attempts"] and r["attempts"][-1]["outcome"] == "abandoned"]
    assert len(abandoned) == 1, records
    assert abandoned[0]["state"] == "pending"  # claimable again
    assert str(project.outputs / "tiles") in abandoned[0]["attempts"][-1]["error"]
    # Nothing half-written; on a read-only disk the worker's own folder for partials stays, empty.
    assert [p for p in project.leftovers() if not (p.is_dir() and not any(p.iterdir()))] == []
    assert stray_files(project) == []
    for job in done_before:  # nothing finished is lost or touched
        assert records[job]["state"] == "done"
        assert (project.tiles / f"{job}.npy").read_bytes() == hashes[job]


def test_a_full_disk_stops_the_worker_with_one_line_and_loses_nothing(project, serial_reference):
    project.run("plan", "--step", STEP, "--tiles", "4x4", "--kernel", "jr_test_kernels:slow", "--param", "delay=0.2")
    done_before = _finish_some_tiles_then_interrupt(project, 3)
    hashes = {job: (project.tiles / f"{job}.npy").read_bytes() for job in done_before}
    # A 20 KB tile against a 8 KB file-size limit: the write fails with EFBIG, as on a full disk.
    limited = subprocess.run(
        ["bash", "-c", 'ulimit -f 8 && exec "$@"', "bash", *project.command("work")],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
    assert limited.returncode == 1
    _check_the_refused_tile(project, limited.stderr, "File too large", done_before, hashes)
    project.run("work")  # space freed: the rest finishes
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


@pytest.mark.skipif(os.geteuid() != 0, reason="remounting read-only needs root")
def test_an_outputs_folder_that_turns_read_only_stops_the_worker_with_one_line(project, serial_reference):
    project.outputs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=755", "tmpfs", str(project.outputs)], check=True)
    try:
        project.run(
            "plan", "--step", STEP, "--tiles", "4x4", "--kernel", "jr_test_kernels:slow", "--param", "delay=0.3"
        )
        worker = project.start("work")
        wait_until(lambda: done_count(project) >= 2, what="two tiles")
        done_before = {job for job, r in project.records().items() if r["state"] == "done"}
        hashes = {job: (project.tiles / f"{job}.npy").read_bytes() for job in done_before}
        wait_until(lambda: _remount(project.outputs, "ro"), what="a read-only remount")  # EBUSY mid-write
        code, _, stderr = wait(worker)
        assert code == 1
        done_before = {job for job, r in project.records().items() if r["state"] == "done"}
        hashes.update({job: (project.tiles / f"{job}.npy").read_bytes() for job in done_before})
        _check_the_refused_tile(project, stderr, "Read-only file system", done_before, hashes)
        subprocess.run(["mount", "-o", "remount,rw", str(project.outputs)], check=True)
        project.run("work")
        project.run("reduce")
        assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))
        assert project.leftovers() == []  # swept once every job is done
    finally:
        subprocess.run(["umount", "-l", str(project.outputs)], check=False)


def _remount(folder: Path, mode: str) -> bool:
    return subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], capture_output=True).returncode == 0


# -- 4. stuck jobs -------------------------------------------------------------------------------------


def test_status_marks_a_job_that_runs_far_longer_than_finished_tiles(project):
    project.run("plan", "--step", STEP, "--tiles", "3x3", "--kernel", "jr_test_kernels:stuck", "--param", "delay=0.1")
    workers = [project.start("work") for _ in range(2)]
    try:
        wait_until(lambda: done_count(project) == 8, what="every tile but the stuck one")
        time.sleep(5.5)  # the stuck one is past the 5 s floor and 4x the median by now
        report = project.run("status").stdout
        stuck_line = next(line for line in report.splitlines() if "running tile-r000-c000" in line)
        assert "overdue" in stuck_line and "pid" in stuck_line and " for " in stuck_line
        assert sum("overdue" in line for line in report.splitlines()) == 1
    finally:
        for worker in workers:
            worker.kill()
            wait(worker)


def test_supervise_job_timeout_ends_a_stuck_job_and_puts_it_back(project, tmp_path, serial_reference):
    tally = tmp_path / "tally"
    tally.mkdir()
    project.run(
        "plan",
        "--step",
        STEP,
        "--tiles",
        "3x3",
        "--kernel",
        "jr_test_kernels:stuck",
        "--param",
        "delay=0.1",
        "--param",
        f'tally="{tally}"',
        "--param",
        "hang_times=1",
    )
    started = time.monotonic()
    result = project.run("supervise", "--workers", "2", "--job-timeout", "3")
    assert time.monotonic() - started < 40  # not the 60 s the stuck tile would have hung
    records = project.records()
    assert all(r["state"] == "done" for r in records.values())
    outcomes = [a["outcome"] for a in records["tile-r000-c000"]["attempts"]]
    assert outcomes == ["timed-out", "done"], outcomes
    assert "--job-timeout 3 s" in records["tile-r000-c000"]["attempts"][0]["error"]
    assert records["tile-r000-c000"]["failures"] == 1  # counted against --retries
    assert "computed" in result.stdout and project.leftovers() == []
    project.run("reduce")
    assert np.array_equal(project.load("stitched.npy"), serial_reference(STEP))


# -- 5. exactly once under contention -----------------------------------------------------------------


def test_the_pool_gets_batches_of_jobs_only_when_tiles_are_quick():
    assert batch_size(2500, 2, []) == 1  # nothing timed yet: one job per future
    assert batch_size(2500, 2, [1.0, 1.2, 0.9]) == 1  # lab-sized tiles
    assert batch_size(2500, 2, [0.001] * 5) == 50  # millisecond tiles: about 50 ms per future
    assert batch_size(40, 2, [0.001] * 5) == 40 // (2 * BATCHES_PER_WORKER)  # still futures for every worker
    assert batch_size(3, 2, [0.0] * 5) == 1
    jobs = [f"tile-r000-c{c:03d}" for c in range(7)]
    assert batches(jobs, 3) == [jobs[0:3], jobs[3:6], jobs[6:7]]


@pytest.mark.slow
@pytest.mark.both_lock_modes
def test_sixteen_workers_on_two_thousand_tiny_tiles_compute_each_exactly_once(project, tmp_path):
    tally = tmp_path / "computed"
    project.run(
        "plan",
        "--step",
        0.002,  # a 2000 x 2000 grid
        "--tiles",
        "50x40",
        "--kernel",
        "jr_test_kernels:counted",
        "--param",
        f'tally="{tally}"',
    )
    hand_started = [project.start("work") for _ in range(12)]
    supervisor = project.start("supervise", "--workers", "4")
    for process in [*hand_started, supervisor]:
        code, _, stderr = wait(process, timeout=400)
        assert code == 0, stderr
    records = project.records()
    assert len(records) == 2000
    successes = [a for r in records.values() for a in r["attempts"] if a["outcome"] == "done"]
    assert len(successes) == 2000 and all(r["state"] == "done" for r in records.values())
    computed = tally.read_text().splitlines()
    tiles_computed = Counter(line.rsplit(",", 1)[0] for line in computed)
    assert len(computed) == 2000 and len(tiles_computed) == 2000, "a tile was computed (and written) twice"
    workers_seen = {a["pid"] for a in successes}
    assert len(workers_seen) >= 8, "the work should have been shared"


# -- 6. a spool nobody can subvert ---------------------------------------------------------------------


def test_a_world_writable_spool_or_outputs_is_refused_and_a_group_shared_one_is_fine(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    project.spool.chmod(0o777)
    refused = project.run("work", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "every user of this machine" in refused.stderr and "chmod o-w" in refused.stderr
    assert str(project.spool) in refused.stderr

    project.spool.chmod(0o2770)  # a project folder shared with a group
    project.outputs.chmod(0o777)
    refused = project.run("work", check=False)
    assert refused.returncode == 1 and str(project.outputs) in refused.stderr and "chmod o-w" in refused.stderr
    assert not (project.outputs / "tiles").exists()

    project.outputs.chmod(0o2775)
    project.run("work")
    assert done_count(project) == 4
    assert "problem" not in project.run("doctor").stderr


# -- what --lock auto chooses, filesystem by filesystem (the README's table) ----------------------------


@pytest.mark.parametrize(
    "fstype, options, flock_errno, mode",
    [
        ("ext4", "rw,relatime", None, "flock"),
        ("tmpfs", "rw", None, "flock"),
        ("nfs4", "rw,vers=4.2,local_lock=none", None, "flock"),
        ("nfs", "rw,vers=3", None, "flock"),
        ("nfs", "rw,vers=3,nolock", None, "lease"),
        ("nfs4", "rw,vers=4.1,local_lock=flock", None, "lease"),
        ("nfs", "rw,vers=3", errno.ENOLCK, "lease"),
        ("lustre", "rw,flock", None, "flock"),
        ("lustre", "rw,localflock", None, "lease"),
        ("lustre", "rw,noflock", errno.ENOSYS, "lease"),
        ("fuse.bindfs", "rw,nosuid", None, "lease"),
        ("fuse.sshfs", "rw", None, "lease"),
        ("cifs", "rw", None, "lease"),
    ],
)
def test_what_auto_chooses_on_each_filesystem(fstype, options, flock_errno, mode):
    mount = Mount("/shared", fstype, "server:/export", tuple(options.split(",")))
    error = OSError(flock_errno, os.strerror(flock_errno)) if flock_errno else None
    choice = choose_mode(mount, error)
    assert choice.mode == mode, choice
    assert choice.reason


def test_the_mount_of_a_folder_with_spaces_is_found(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw,relatime 0 0\n"
        "server:/export /scratch/my\\040project nfs rw,vers=3,nolock 0 0\n"
        "server:/other /scratch/my nfs4 rw 0 0\n"
    )
    found = find_mount(Path("/scratch/my project/jobs"), str(mounts))
    assert found.point == "/scratch/my project" and found.fstype == "nfs" and "nolock" in found.lock_options
    assert find_mount(Path("/scratch/my/jobs"), str(mounts)).fstype == "nfs4"
    assert find_mount(Path("/home/me"), str(mounts)).point == "/"
