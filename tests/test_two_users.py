"""A project folder shared by a group (g+w, as jobrunner allows): a member plants symbolic links to
make another member's worker or reduce overwrite that user's private file.  Two real users of
one real group, made here by root; nothing the victim runs may follow a planted link."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import HELPERS, PROCESS_TIMEOUT, engine_missing

GROUP, VICTIM, ATTACKER = "jrproject", "jrvictim", "jrattacker"
SECRET = b"the victim's private notes\n"


class Shared:
    """The shared project folder, the victim's private file, and ways to act as either user."""

    def __init__(self, base: Path, python: str, pythonpath: str) -> None:
        self.base, self.python = base, python
        self.project = base / "project"
        self.secret = base / "victim only" / "notes.txt"
        self.spool, self.outputs = self.project / "jobs", self.project / "outputs"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": pythonpath,
            "MPLCONFIGDIR": str(base / "mpl"),
            "JOBRUNNER_SPOOL": str(self.spool),
            "JOBRUNNER_OUTPUTS": str(self.outputs),
            "COLUMNS": "200",
        }
        self.started: list[subprocess.Popen] = []  # the victim's workers, reaped when the test ends

    def start(self, *args: str) -> subprocess.Popen:
        """A worker of the victim's, in the background."""
        process = subprocess.Popen(
            self.as_victim(*args), cwd=self.project, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.started.append(process)
        return process

    def reap(self) -> None:
        """When the test ends, passed or failed: no worker of it is left waiting on the gate."""
        self.open_gate()
        for process in self.started:
            try:
                process.communicate(timeout=PROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()

    def as_victim(self, *args: str) -> list[str]:
        # umask 002: what members of a shared project use, so the group may write what they make
        command = " ".join(["umask 002 &&", "exec", *(f"'{a}'" for a in (self.python, "-m", "jobrunner", *args))])
        return ["runuser", "-u", VICTIM, "--", "sh", "-c", command]

    def victim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.as_victim(*args), cwd=self.project, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert not check or result.returncode == 0, result.stderr
        return result

    def attacker(self, *command: str) -> None:
        # umask 002, as the victim's: what the attacker makes, the group (the victim) may write in too
        as_attacker = ["runuser", "-u", ATTACKER, "--", "sh", "-c", 'umask 002 && exec "$@"', "sh", *command]
        subprocess.run(as_attacker, check=True, capture_output=True)

    def attacker_python(self, script: str, *args: str) -> None:
        self.attacker("env", f"PYTHONPATH={self.env['PYTHONPATH']}", self.python, "-c", script, *args)

    def plant_link(self, at: Path) -> None:
        self.attacker("ln", "-sfn", str(self.secret), str(at))

    @property
    def gate(self) -> Path:
        """The file ``jr_test_kernels:gated`` tiles wait for; the victim sees it (``base`` is 0755)."""
        return self.base / "gate"

    def gated_plan(self, *args: str) -> None:
        """The victim plans the gated kernel: its tiles wait, in flight, until :meth:`open_gate`."""
        self.victim("plan", "--kernel", "jr_test_kernels:gated", "--param", f'gate="{self.gate}"', *args)

    def open_gate(self) -> None:
        self.gate.touch()

    def plan_folder(self) -> Path:
        import json

        return self.spool / "plans" / json.loads((self.spool / "plan.json").read_text())["id"]

    def secret_untouched(self) -> bool:
        return self.secret.read_bytes() == SECRET


# Under scripts/test.sh's two test processes, one of them runs these tests: both would make the
# same users at once, and useradd and groupadd lock /etc/passwd and /etc/group (the loser fails).
pytestmark = pytest.mark.xdist_group("system-users")


def _ensure_user(name: str) -> None:
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-N", "-g", GROUP, "-s", "/bin/sh", name], check=True, capture_output=True)


@pytest.fixture(scope="module")
def python_for_others():
    """The two users and their group, and a Python the victim can run with jobrunner: made and checked
    once for this module's tests (the interpreter is read-only to them; each test gets its own folders)."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("runuser", "useradd", "groupadd")):
        pytest.skip("two real users need root, useradd and runuser")
    subprocess.run(["groupadd", "-f", GROUP], check=True, capture_output=True)
    for name in (VICTIM, ATTACKER):
        _ensure_user(name)
    home = Path(tempfile.mkdtemp(prefix="jr two users python ", dir="/tmp"))
    mounted = None
    try:
        home.chmod(0o755)
        python, pythonpath, mounted = _python_for_others(home)
        probe = subprocess.run(
            ["runuser", "-u", VICTIM, "--", "env", f"PYTHONPATH={pythonpath}", python, "-c", "import jobrunner"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            engine_missing(f"user {VICTIM} cannot run {python} with jobrunner: {probe.stderr.strip()}")
        yield python, pythonpath
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mounted)], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def shared(python_for_others):
    python, pythonpath = python_for_others
    base = Path(tempfile.mkdtemp(prefix="jr two users ", dir="/tmp"))
    try:
        base.chmod(0o755)
        folders = {"project": 0o2770, "victim only": 0o700, "mpl": 0o700}
        for name, mode in folders.items():
            (base / name).mkdir()
            shutil.chown(base / name, VICTIM, GROUP)
            (base / name).chmod(mode)
        shared = Shared(base, python, pythonpath)
        shared.secret.write_bytes(SECRET)
        shutil.chown(shared.secret, VICTIM, GROUP)
        shared.secret.chmod(0o600)
        yield shared
        shared.reap()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _python_for_others(base: Path) -> tuple[str, str, Path | None]:
    """This Python, runnable by another user, and the PYTHONPATH that finds jobrunner and its packages.

    A Python installed under root's home (pyenv's) cannot be run by other users; a read-only bind
    mount of its installation under ``base`` can, and it finds its standard library from there.
    """
    import sysconfig

    import jobrunner

    pythonpath = os.pathsep.join(
        [str(HELPERS), str(Path(jobrunner.__file__).parents[1]), sysconfig.get_paths()["purelib"]]
    )
    if subprocess.run(["runuser", "-u", VICTIM, "--", sys.executable, "-c", ""], capture_output=True).returncode == 0:
        return sys.executable, pythonpath, None
    mount = base / "python"
    mount.mkdir(mode=0o755)
    subprocess.run(["mount", "--bind", "-o", "ro", sys.base_prefix, str(mount)], check=True, capture_output=True)
    return str(mount / "bin" / Path(os.path.realpath(sys.executable)).name), pythonpath, mount


#: Run by the attacker: for each of the next pids, a scratch folder of the victim's worker, full of
#: links to the victim's file, in the tiles folder and the records folder.
PLANT_SCRATCH = """
import os, socket, sys
secret, tiles, records = sys.argv[1:]
os.makedirs(tiles, exist_ok=True)
last = int(open("/proc/sys/kernel/ns_last_pid").read())
for pid in range(last + 1, last + 80):
    for folder, suffix in ((tiles, ".npy"), (records, ".json")):
        scratch = os.path.join(folder, f".{socket.gethostname()}-{pid}.partial")
        os.mkdir(scratch)
        for job in ("tile-r000-c000", "tile-r000-c001"):
            os.symlink(secret, os.path.join(scratch, job + suffix))
"""

#: Run by the attacker: links at the names of reduce's partial files for the next pids.
PLANT_PARTIALS = """
import os, socket, sys
secret, outputs = sys.argv[1:]
last = int(open("/proc/sys/kernel/ns_last_pid").read())
for pid in range(last + 1, last + 80):
    for name in ("stitched.npy", "stitched.png", "stitched.json"):
        os.symlink(secret, os.path.join(outputs, f".{name}.{socket.gethostname()}-{pid}.partial"))
"""


@pytest.mark.slow
def test_a_lock_file_swapped_for_a_link_while_held_does_not_truncate_the_victims_file(shared):
    shared.gated_plan("--step", "0.1", "--tiles", "1x2")
    worker = shared.start("work")
    locks = shared.plan_folder() / "locks"
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not [p for p in locks.glob("*.lock") if p.stat().st_size]:  # a claim names the attempt in flight
        assert time.monotonic() < deadline and worker.poll() is None, "the victim's worker never claimed a job"
        time.sleep(0.02)
    held = next(p for p in locks.glob("*.lock") if p.stat().st_size)
    shared.plant_link(held)  # the victim clears the claim in its lock file when the tile is done
    shared.open_gate()
    worker.communicate(timeout=PROCESS_TIMEOUT)
    assert shared.secret_untouched()


@pytest.mark.slow
def test_a_planted_scratch_folder_full_of_links_is_refused_and_followed_nowhere(shared):
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy")
    plan = shared.plan_folder()
    tiles = shared.outputs / "tiles" / plan.name
    # One process plants them all (a process per link would use up the very pids it predicts).
    shared.attacker_python(PLANT_SCRATCH, str(shared.secret), str(tiles), str(plan / "records"))
    result = shared.victim("work", check=False)
    assert shared.secret_untouched()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "belongs to another user" in result.stderr and ".partial" in result.stderr


@pytest.mark.slow
def test_links_planted_at_reduces_partial_names_are_not_followed(shared):
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy")
    shared.victim("work")
    shared.attacker_python(PLANT_PARTIALS, str(shared.secret), str(shared.outputs))
    shared.victim("reduce")
    assert shared.secret_untouched()


# -- a whole folder of the spool or outputs swapped for a link ---------------------------------------


def _private(shared: Shared) -> dict[str, bytes]:
    """Everything in the victim's private folder, name and bytes (a folder's names, for a folder)."""
    found = {}
    for path in sorted(shared.secret.parent.rglob("*")):
        found[str(path.relative_to(shared.secret.parent))] = path.read_bytes() if path.is_file() else b"<folder>"
    return found


def _bait(shared: Shared, name: str, folder: bool = False) -> None:
    """A file (or a folder with a file) of the victim's, in their private folder, named as a worker
    or a replace would name what it writes or removes: the victim's own processes could change it."""
    path = shared.secret.parent / name
    if folder:
        path.mkdir()
        shutil.chown(path, VICTIM, GROUP)
        path = path / "kept.txt"
    path.write_bytes(SECRET)
    shutil.chown(path, VICTIM, GROUP)


def _folder_to_swap(shared: Shared, which: str) -> Path:
    plan = shared.plan_folder()
    return {
        "plan": plan,
        "records": plan / "records",
        "locks": plan / "locks",
        "plan tiles": shared.outputs / "tiles" / plan.name,
        "tiles": shared.outputs / "tiles",
    }[which]


def _swap_for_link(shared: Shared, folder: Path) -> None:
    """What a group member can do to any folder in a g+w folder: move it aside, and link its name
    to a folder of the victim's (the victim's own worker could write there; the attacker cannot)."""
    shared.attacker("mv", str(folder), f"{folder}.old")
    shared.attacker("ln", "-s", str(shared.secret.parent), str(folder))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["records", "locks", "plan tiles", "tiles"])
def test_a_folder_swapped_for_a_link_before_the_worker_starts_is_refused_and_leads_nowhere(shared, which):
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy")
    shared.victim("work")  # the tiles folder exists: its swap is then a link to the victim's
    plan = shared.plan_folder()
    (shared.outputs / "tiles" / plan.name / "tile-r000-c001.npy").unlink()  # one job to do again
    for name in ("tile-r000-c001.npy", "tile-r000-c001.lock", "tile-r000-c001.json"):  # what the worker would write
        _bait(shared, name)
    before = _private(shared)
    folder = _folder_to_swap(shared, which)
    _swap_for_link(shared, folder)
    result = shared.victim("work", check=False)
    assert _private(shared) == before
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "symbolic link" in result.stderr and folder.name in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "lock"),
    [("records", "flock"), ("locks", "flock"), ("locks", "lease"), ("plan", "flock"), ("plan", "lease")],
)
def test_a_folder_swapped_for_a_link_under_a_running_worker_leads_nowhere(shared, which, lock):
    shared.gated_plan("--step", "0.1", "--tiles", "1x3")
    for name in ("tile-r000-c001.lock", "tile-r000-c001.lease", "tile-r000-c001.claim", "tile-r000-c001.json"):
        _bait(shared, name)  # what the worker would write next
    before = _private(shared)
    worker = shared.start("work", "--lock", lock)
    locks = shared.plan_folder() / "locks"
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while not [p for p in locks.glob("*.lock") if p.stat().st_size] + list(locks.glob("*.claim")):  # claimed
        assert time.monotonic() < deadline and worker.poll() is None, "the victim's worker never claimed a job"
        time.sleep(0.02)
    _swap_for_link(shared, _folder_to_swap(shared, which))  # while its first tile is computed
    shared.open_gate()
    _, stderr = worker.communicate(timeout=PROCESS_TIMEOUT)
    assert _private(shared) == before
    assert "Traceback" not in stderr.decode(), stderr.decode()


@pytest.mark.slow
def test_a_replace_through_a_linked_tiles_folder_deletes_nothing_of_the_victims(shared):
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy")
    shared.victim("work")
    old = shared.plan_folder().name
    _bait(shared, old, folder=True)  # named as the plan whose tiles a replace removes
    before = _private(shared)
    _swap_for_link(shared, shared.outputs / "tiles")
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy", "--replace", check=False)
    assert _private(shared) == before


@pytest.mark.slow
def test_a_task_log_folder_swapped_for_a_link_is_refused_before_anything_is_written(shared):
    shared.victim("plan", "--step", "0.1", "--tiles", "1x2", "--kernel", "numpy")
    shared.victim("slurm", "--array", "1")  # makes slurm/logs; Slurm itself is told to write nowhere
    _bait(shared, "task-7_0.log")
    before = _private(shared)
    logs = shared.spool / "slurm" / "logs"
    _swap_for_link(shared, logs)
    result = shared.victim("work", "--log", str(logs / "task-7_0.log"), check=False)
    assert _private(shared) == before
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "symbolic link" in result.stderr and str(logs) in result.stderr, result.stderr
