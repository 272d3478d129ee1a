"""Two machines sharing one disk, simulated: two FUSE (bindfs) mounts of one folder, and workers
with a hostname of their own (a UTS namespace) on each.  As on an NFS mount with ``nolock``, a
flock taken through one mount is not seen through the other, so only leases keep the tiles
exactly once."""

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, Project, engine_missing, open_the_tally, records_of, wait
from filelock import FileLock, Timeout

STEP = 0.02


@pytest.fixture(autouse=True)
def _needs_fuse_and_namespaces() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.path.exists("/dev/fuse"):
        pytest.skip("simulating two machines needs root (mounts, hostnames), unshare(1) and /dev/fuse")
    # Every tool the fixtures call: a missing one skips here (fails under CI), never errors mid-test.
    for tool in ("bindfs", "fusermount3"):
        if not shutil.which(tool):
            engine_missing(f"{tool} is not installed: `bash scripts/engines.sh` (as root) installs bindfs with fuse3")


class Node:
    """One simulated machine: its own mount of the shared folder and its own hostname."""

    def __init__(self, name: str, mount: Path, project: Project) -> None:
        self.name, self.mount, self.project = name, mount, project
        self.env = {
            **project.env,
            "JOBRUNNER_SPOOL": str(mount / "jobs"),
            "JOBRUNNER_OUTPUTS": str(mount / "outputs"),
        }

    def command(self, *args: str, clock: str | None = None) -> list[str]:
        """``clock``: a faketime offset for this node's clock, such as ``-60s``."""
        skew = ["faketime", "-f", clock] if clock else []
        hostname = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name]
        return [*hostname, *skew, *self.project.command(*args)]

    def start(self, *args: str, clock: str | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args, clock=clock),
            cwd=self.mount,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*args), cwd=self.mount, env=self.env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT
        )
        assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def two_nodes(project):
    shared = project.root / "shared disk"
    shared.mkdir()
    mounts = []
    try:
        for name in ("node-a", "node-b"):
            mount = project.root / f"mounted on {name}"
            mount.mkdir()
            mounted = subprocess.run(["bindfs", "--no-allow-other", str(shared), str(mount)], capture_output=True)
            if mounted.returncode != 0:
                engine_missing(f"bindfs cannot mount here: {mounted.stderr.decode().strip()}")
            mounts.append(mount)
        yield shared, [Node(name, mount, project) for name, mount in zip(("node-a", "node-b"), mounts, strict=True)]
    finally:
        for mount in mounts:
            subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True)
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_flock_through_one_mount_is_not_seen_through_the_other(two_nodes):
    """Why leases are needed here: the premise of this file, measured."""
    shared, (a, b) = two_nodes
    (shared / "probe.lock").touch()
    held = FileLock(a.mount / "probe.lock", blocking=False)
    with held.acquire():
        other = FileLock(b.mount / "probe.lock", blocking=False)
        try:
            with other.acquire():
                excluded = False
        except Timeout:
            excluded = True
    assert not excluded, "bindfs now passes flocks through; these tests no longer simulate a lockless share"


def _plan_folder(shared: Path) -> Path:
    plan_id = json.loads((shared / "jobs" / "plan.json").read_text())["id"]
    return shared / "jobs" / "plans" / plan_id


def _wait_for_a_claim(shared: Path) -> Path:
    """Block until node-b's worker holds a job (lease mode: a ``.claim`` file); the locks folder."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    claims = _plan_folder(shared) / "locks"
    while not list(claims.glob("*.claim")):
        assert time.monotonic() < deadline, "node-b never claimed a job"
        time.sleep(0.02)
    return claims


def _records(shared: Path) -> dict[str, dict]:
    plan = _plan_folder(shared)
    return records_of(plan, shared / "outputs" / "tiles" / plan.name)


@pytest.mark.slow
def test_workers_on_two_nodes_finish_every_tile_exactly_once_with_leases(
    two_nodes, project, tmp_path, serial_reference
):
    shared, (a, b) = two_nodes
    tally = tmp_path / "computed"
    os.mkfifo(tally)  # the gate: see open_the_tally
    a.run(
        "plan", "--step", STEP, "--tiles", "6x6", "--kernel", "jr_test_kernels:counted", "--param", f'tally="{tally}"'
    )
    assert "lease markers  works" in a.run("doctor").stdout
    workers = [node.start("work") for node in (a, b, a, b)]
    try:
        # Each of the four workers holds a tile before any finishes one: both nodes race for the rest.
        claims = _plan_folder(shared) / "locks"
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while len({json.loads(c.read_text())["pid"] for c in claims.glob("*.claim")}) < 4:
            assert time.monotonic() < deadline, "each worker should hold a tile"
            time.sleep(0.02)
        stop_reading = open_the_tally(tally)
        for worker in workers:
            code, _, stderr = wait(worker)
            assert code == 0, stderr
        computed = stop_reading()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()

    locking = json.loads((shared / "jobs" / "locking.json").read_text())
    assert locking["mode"] == "lease" and "fuse" in locking["reason"]
    records = _records(shared)
    assert len(records) == 36 and all(r["state"] == "done" for r in records.values())
    done = [a for r in records.values() for a in r["attempts"] if a["outcome"] == "done"]
    assert len(done) == 36
    assert Counter(line.rsplit(",", 1)[0] for line in computed).most_common(1)[0][1] == 1
    assert len(computed) == 36
    assert {attempt["host"] for attempt in done} == {"node-a", "node-b"}  # each tile says where it ran

    assert "locks: lease" in b.run("status").stdout
    report = b.run("report").stdout
    assert "node-a" in report and "node-b" in report
    b.run("reduce")
    assert np.array_equal(np.load(shared / "outputs" / "stitched.npy"), serial_reference(STEP))


@pytest.mark.slow
def test_a_node_that_dies_mid_tile_gives_its_tile_back_when_its_lease_runs_out(two_nodes, project, serial_reference):
    shared, (a, b) = two_nodes
    for node in (a, b):
        node.env["JOBRUNNER_LEASE_SECONDS"] = "1"
    gate = ["--param", f'gate="{project.gate}"']
    a.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "jr_test_kernels:gated", *gate)
    doomed = b.start("work")
    try:
        _wait_for_a_claim(shared)  # its tile waits at the gate
        doomed.send_signal(signal.SIGKILL)  # node-b is gone: node-a cannot see its processes
        wait(doomed)
    finally:
        project.open_gate()
    a.run("work")
    records = _records(shared)
    lost = [r for r in records.values() if any(x["outcome"] == "lost" for x in r["attempts"])]
    assert len(lost) == 1
    outcomes = [(x["host"], x["outcome"]) for x in lost[0]["attempts"]]
    assert outcomes == [("node-b", "lost"), ("node-a", "done")], outcomes
    # It had to wait out the lease: a whole lease (on node-a's clock, less a little for a pass over
    # the jobs) from its first attempt to taking the job over, when it closed node-b's attempt.
    first_attempt = min(x["started"] for r in records.values() for x in r["attempts"] if x["host"] == "node-a")
    taken_over = lost[0]["attempts"][0]["ended"]
    assert taken_over - first_attempt >= 1 - 0.25, (first_attempt, taken_over)
    assert not list(shared.rglob("*.partial"))
    a.run("reduce")
    assert np.array_equal(np.load(shared / "outputs" / "stitched.npy"), serial_reference(STEP))


@pytest.mark.slow
def test_a_replaced_plans_worker_on_a_node_whose_clock_runs_behind_writes_nothing_into_the_new_plan(
    two_nodes, project, serial_reference
):
    """Node-b's clock is a minute slow; its worker is mid-tile when node-a replaces the plan (leases)."""
    if not shutil.which("faketime"):
        engine_missing("faketime is not installed: `bash scripts/engines.sh` (as root) installs it")
    shared, (a, b) = two_nodes
    a.run(
        "plan", "--step", STEP, "--tiles", "2x2", "--kernel", "jr_test_kernels:gated",
        "--param", f'gate="{project.gate}"', "--sigma", "2",
    )  # fmt: skip
    straggler = b.start("work", clock="-60s")
    try:
        claims = _wait_for_a_claim(shared)  # its tile waits at the gate
        claim = json.loads(next(claims.glob("*.claim")).read_text())
        assert claim["host"] == "node-b" and claim["started"] < time.time() - 50  # its clock really is behind
        a.run("plan", "--step", STEP, "--tiles", "2x2", "--kernel", "numpy", "--replace")
        a.run("work")  # drains the new plan while node-b still computes the old plan's tile
    finally:
        project.open_gate()
    code, _, stderr = wait(straggler)
    # Node-b's mount may still show the old plan's plan.json for up to a second after node-a removed
    # it (FUSE caches names, as NFS clients cache attributes); its worker then finds the locks folder
    # gone before it finds its plan retired, and says so: both lines tell the user the plan changed.
    replaced = "was replaced" in stderr or "(its plan replaced" in stderr
    assert code == 1 and replaced and "Traceback" not in stderr, stderr
    plan_id = json.loads((shared / "jobs" / "plan.json").read_text())["id"]
    records = _records(shared)
    assert len(records) == 4
    for record in records.values():
        assert record["plan"] == plan_id and record["state"] == "done"
        assert [(x["host"], x["plan"]) for x in record["attempts"]] == [("node-a", plan_id)]
    a.run("reduce")
    assert np.array_equal(np.load(shared / "outputs" / "stitched.npy"), serial_reference(STEP))
