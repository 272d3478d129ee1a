"""The overnight run: workers killed again and again, disks that cannot lock, a full or read-only
disk, stuck jobs, many workers on tiny tiles, and folders anyone could write to."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, all_threads_stopped, open_the_tally, wait

from jobrunner.executors import BATCHES_PER_WORKER, MAX_BROKEN_POOLS, batch_size, batches
from jobrunner.locking import Mount, choose_mode, find_mount
from jobrunner.records import MAX_LOST_ATTEMPTS

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


@contextmanager
def cleaned_up(processes: list[subprocess.Popen]):
    """Whatever of ``processes`` still runs when the block ends is killed: a test that fails while
    tiles wait at a gate leaves no process behind."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                for child in pool_children(process.pid):
                    os.kill(child, signal.SIGKILL)
                process.kill()
                process.communicate()


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


def unfinished(project) -> str:
    """The attempts of every job not done, for a failure message."""
    return "".join(
        f"\n{job_id}: {record['state']}: {record['attempts']}"
        for job_id, record in project.records().items()
        if record["state"] != "done"
    )


# -- 1. chaos ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.both_lock_modes
def test_chaos_kills_workers_and_pool_processes_again_and_again(project, serial_reference):
    # Every tile waits at the gate until the kills are over, so each kill lands on a process that
    # holds a claim and cannot finish its tile: each kill must cost exactly the attempt it cut short.
    project.gated_plan("--step", STEP, "--tiles", "4x4")
    workers = [project.start("work") for _ in range(2)]
    supervisor = project.start("supervise", "--workers", "2")
    with cleaned_up(workers), cleaned_up([supervisor]):
        kills, killed, old_pools, kills_by_job = Counter(), set(), set(), Counter()

        def victim(kind: str, claims: dict[str, dict]) -> tuple[str, int] | None:
            """The job and process to kill: of the jobs in flight in ``kind``, the one killed least so far.

            A job freed by a kill is the first the next pool takes, so always killing the first job
            in flight would kill one job MAX_LOST_ATTEMPTS times, and rightly leave it failed.
            """
            if kind == "work":
                candidates = {w.pid for w in workers} - killed
            else:  # a process of the pool in use: not one of a broken pool's, which are being stopped
                candidates = set(pool_children(supervisor.pid)) - old_pools
            held = [(kills_by_job[job], job, c["pid"]) for job, c in claims.items() if c["pid"] in candidates]
            held = [(job, pid) for times, job, pid in sorted(held) if times < MAX_LOST_ATTEMPTS - 1]
            return held[0] if held else None

        # No tile finishes before the gate opens, and a pool that breaks MAX_BROKEN_POOLS times in a row
        # without finishing one is reported as a problem: one pool kill fewer than that, between work kills.
        for kind in ["work", "pool process"] * (MAX_BROKEN_POOLS - 1) + ["work"]:
            claims = project.wait_for_claims(lambda c, kind=kind: victim(kind, c), f"a {kind} in the middle of a tile")
            job, pid = victim(kind, claims)
            if kind == "pool process":
                old_pools |= set(pool_children(supervisor.pid))
            os.kill(pid, signal.SIGKILL)  # a work process is not reaped until the end: a zombie must not pass for live
            killed.add(pid)
            kills[kind] += 1
            kills_by_job[job] += 1
            if kind == "work":
                workers.append(project.start("work"))  # and a new worker takes its place
        project.open_gate()
        code, stdout, stderr = wait(supervisor)
        assert code == 0, stderr + unfinished(project)  # survived every broken pool and finished
        for worker in workers:
            code, _, stderr = wait(worker)
            assert code == (-signal.SIGKILL if worker.pid in killed else 0), stderr
    assert kills["pool process"] >= 4 and kills["work"] >= 5, kills

    records = project.records()
    assert len(records) == 16 and all(r["state"] == "done" for r in records.values())
    attempts = Counter()
    for record in records.values():
        outcomes = [a["outcome"] for a in record["attempts"]]
        assert outcomes.count("done") == 1 and outcomes[-1] == "done", outcomes
        attempts[len(outcomes)] += 1
    lost = sorted(a["pid"] for r in records.values() for a in r["attempts"] if a["outcome"] == "lost")
    assert lost == sorted(killed), "each kill should have cost the attempt it cut short, recorded lost"
    print(f"\nkills {dict(kills)}, by job {dict(kills_by_job)}; tiles by attempts {dict(sorted(attempts.items()))}")
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_workers_that_disagree_on_the_lock_mode_are_refused(project):
    project.run("plan", "--step", STEP, "--tiles", "2x2")
    project.run("work", "--lock", "lease")
    refused = project.run("work", "--lock", "flock", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "drained with lease locks" in refused.stderr and "locking.json" in refused.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_a_lease_that_runs_out_lets_another_worker_finish_and_the_late_holder_drops_its_result(
    project, serial_reference
):
    """A holder on "another machine" (a UTS namespace with its own hostname) freezes mid-tile; its
    lease runs out, a worker here takes the job over and finishes it; the holder, thawed, finds
    its lease gone, drops its result and writes nothing."""
    project.gated_plan("--step", STEP, "--tiles", "1x1")
    project.env["JOBRUNNER_LOCK"], project.env["JOBRUNNER_LEASE_SECONDS"] = "lease", "1"
    other_node = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname node-b && exec "$@"', "sh", *project.command("work")],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with cleaned_up([other_node]):
        job_id, claim = project.wait_for_claim()  # its tile waits at the gate
        assert claim["host"] == "node-b"
        other_node.send_signal(signal.SIGSTOP)  # its heartbeat stops with it
        try:
            wait_until(lambda: all_threads_stopped(other_node.pid), what="node-b's worker to stop")
            project.open_gate()  # the tile is quick now, for whoever computes it
            result = project.run("work")  # waits out the lease (it cannot see node-b's processes), then takes over
            assert "computed 1 tile in" in result.stdout
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


def _held_first_tile(project) -> dict:
    """The claim on the grid's first tile, once a worker holds it at the gate (other claims come and go)."""
    return project.wait_for_claims(lambda claims: "tile-r000-c000" in claims, "the first tile held at the gate")[
        "tile-r000-c000"
    ]


def _hold_the_first_tile_while_another_worker_does_the_rest(project, worker: subprocess.Popen) -> set[str]:
    """``worker`` holds the gated first tile in flight; every other tile is done by another worker meanwhile."""
    assert _held_first_tile(project)["pid"] == worker.pid
    project.run("work")  # leaves the held tile to its live holder
    done = {job for job, r in project.records().items() if r["state"] == "done"}
    assert len(done) == 15
    return done


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


@pytest.mark.slow
def test_a_full_disk_stops_the_worker_with_one_line_and_loses_nothing(project, serial_reference):
    project.gated_plan("--step", STEP, "--tiles", "4x4", first_only=True)
    holder = project.start("work")
    with cleaned_up([holder]):
        done_before = _hold_the_first_tile_while_another_worker_does_the_rest(project, holder)
        holder.send_signal(signal.SIGINT)  # its attempt is recorded interrupted: the tile is claimable again
        wait(holder)
    hashes = {job: (project.tiles / f"{job}.npy").read_bytes() for job in done_before}
    project.open_gate()
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


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="remounting read-only needs root")
def test_an_outputs_folder_that_turns_read_only_stops_the_worker_with_one_line(project, serial_reference):
    project.outputs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=755", "tmpfs", str(project.outputs)], check=True)
    try:
        project.gated_plan("--step", STEP, "--tiles", "4x4", first_only=True)
        worker = project.start("work")
        with cleaned_up([worker]):
            done_before = _hold_the_first_tile_while_another_worker_does_the_rest(project, worker)
            hashes = {job: (project.tiles / f"{job}.npy").read_bytes() for job in done_before}
            wait_until(lambda: _remount(project.outputs, "ro"), what="a read-only remount")  # EBUSY mid-write
            project.open_gate()  # the held tile is computed now, and its write refused
            code, _, stderr = wait(worker)
        assert code == 1
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


@pytest.mark.slow
def test_status_marks_a_job_that_runs_far_longer_than_finished_tiles(project):
    project.gated_plan("--step", STEP, "--tiles", "3x3", first_only=True)
    workers = [project.start("work") for _ in range(2)]
    with cleaned_up(workers):
        wait_until(lambda: done_count(project) == 8, what="every tile but the held one")
        claim = _held_first_tile(project)

        def stuck_line(report: str) -> str:
            return next(line for line in report.splitlines() if "running tile-r000-c000" in line)

        assert "overdue" not in stuck_line(project.run("status").stdout)  # not yet: it started moments ago
        report = _status_seconds_later(project, claim["started"] + 5.5)  # past the 5 s floor and 4x the median
        assert "overdue" in stuck_line(report) and "pid" in stuck_line(report) and " for " in stuck_line(report)
        assert sum("overdue" in line for line in report.splitlines()) == 1
        project.open_gate()
        for worker in workers:
            code, _, stderr = wait(worker)
            assert code == 0, stderr


def _status_seconds_later(project, when: float) -> str:
    """``jobrunner status`` as it reads at the time ``when``: on a clock set forward (faketime), or once it is then."""
    ahead = when - time.time()
    if shutil.which("faketime"):
        command = ["faketime", "-f", f"+{max(ahead, 0):.3f}s", *project.command("status")]
    else:
        time.sleep(max(ahead, 0))
        command = project.command("status")
    result = subprocess.run(
        command, cwd=project.root, env=project.env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
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
        f'tally="{tally}"',
        "--param",
        "hang_times=1",
    )
    started = time.monotonic()
    result = project.run("supervise", "--workers", "2", "--job-timeout", "1")
    assert time.monotonic() - started < 40  # not the 60 s the stuck tile would have hung
    records = project.records()
    assert all(r["state"] == "done" for r in records.values())
    outcomes = [a["outcome"] for a in records["tile-r000-c000"]["attempts"]]
    assert outcomes == ["timed-out", "done"], outcomes
    assert "--job-timeout 1 s" in records["tile-r000-c000"]["attempts"][0]["error"]
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
def test_sixteen_workers_on_four_hundred_tiny_tiles_compute_each_exactly_once(project, tmp_path):
    tally = tmp_path / "computed"
    os.mkfifo(tally)  # the gate: see open_the_tally
    project.run(
        "plan",
        "--step",
        0.01,  # a 400 x 400 grid, in tiles of 20 x 20 points
        "--tiles",
        "20x20",
        "--kernel",
        "jr_test_kernels:counted",
        "--param",
        f'tally="{tally}"',
    )

    def holders(claims: dict[str, dict]) -> int:
        return len({claim["pid"] for claim in claims.values()})

    processes = [project.start("supervise", "--workers", "4")]
    with cleaned_up(processes):
        # Every one of the sixteen processes holds a tile before any finishes one: they all race from here.
        # The pool first: its first wave (a job for each pool process) must not find a job held already.
        project.wait_for_claims(lambda claims: holders(claims) == 4, "a tile held by each pool process")
        processes += [project.start("work") for _ in range(12)]
        project.wait_for_claims(lambda claims: holders(claims) == 16, "a tile held by each process")
        stop_reading = open_the_tally(tally)
        for process in processes:
            code, _, stderr = wait(process)
            assert code == 0, stderr
        computed = stop_reading()
    records = project.records()
    assert len(records) == 400
    successes = [a for r in records.values() for a in r["attempts"] if a["outcome"] == "done"]
    assert len(successes) == 400 and all(r["state"] == "done" for r in records.values())
    tiles_computed = Counter(line.rsplit(",", 1)[0] for line in computed)
    assert len(computed) == 400 and len(tiles_computed) == 400, "a tile was computed (and written) twice"
    workers_seen = {a["pid"] for a in successes}
    assert len(workers_seen) == 16, "the work should have been shared"


# -- 6. a spool nobody can subvert ---------------------------------------------------------------------


@pytest.mark.slow
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


def test_a_sticky_folder_of_ones_own_gets_chmod_advice(tmp_path):
    from jobrunner.files import world_writable_problem

    tmp_path.chmod(0o1777)
    assert "chmod o-w" in world_writable_problem(tmp_path, "spool") and "mktemp" not in world_writable_problem(
        tmp_path, "spool"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to make a sticky folder owned by someone else as /tmp is")
def test_a_shared_scratch_folder_is_refused_with_advice_to_make_a_private_one_in_it(project, tmp_path):
    scratch = tmp_path / "scratch"  # like /tmp or a cluster's /scratch: everyone's, sticky, not ours
    for folder in (scratch, scratch / "run"):
        folder.mkdir(mode=0o777)
        folder.chmod(0o1777)
        os.chown(folder, 65534, 65534)  # nobody's
    for option in ("--spool", "--outputs"):
        folder = scratch / "run" if option == "--spool" else scratch
        refused = project.run("plan", "--step", STEP, option, folder, check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert "shared scratch folder" in refused.stderr and "mktemp -d" in refused.stderr
        assert "chmod" not in refused.stderr, "never advise taking o-w from everyone's folder"
        template = re.search(r"`mktemp -d (\S+)`", refused.stderr).group(1)
        private = Path(subprocess.run(["mktemp", "-d", template], capture_output=True, text=True).stdout.strip())
        assert private.parent == folder and oct(private.stat().st_mode & 0o777) == "0o700"  # the advice works
    assert not any(scratch.rglob("*.json")), "nothing was planned into it"


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
