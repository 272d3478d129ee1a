"""Shared fixtures: the real command, in folders whose names have spaces.

Workers, supervisors and anything a test kills or signals run as real subprocesses.  The short
commands that only read or publish (``plan`` of a kernel that never changes, ``status``,
``reduce``, ``report``, ``drain``, ``resume``) run inside the test process, through the same
entry point, arguments, environment and working folder, unless a test asks for a process: a
Python start-up with NumPy, typer and rich costs about 0.3 s, and the suite runs hundreds.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

HELPERS = Path(__file__).parent / "helpers"

#: Every wait on another process is bounded by this many seconds.
PROCESS_TIMEOUT = 120

# What the in-process commands need to find: the test kernels, and a console as wide as a
# subprocess's (rich reads COLUMNS when its consoles are made, at import).
sys.path.insert(0, str(HELPERS))
os.environ["COLUMNS"] = "200"

#: Commands that may run inside the test process (see the module's docstring).
IN_PROCESS_COMMANDS = {"plan", "status", "reduce", "report", "drain", "resume"}
#: Kernels whose code never changes during a run: safe to import once into the test process.
#: (A kernel a test edits must be probed by a fresh process each time.)
STABLE_KERNELS = ("numpy", "loop", "quake", "jobrunner.kernels:", "jr_test_kernels:", "jr_test_probe_kernels:")


class Project:
    """A working folder with a spool and an outputs folder, and ways to run ``jobrunner`` in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool = root / "the spool"
        self.outputs = root / "the outputs"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH", "")])),
            "JOBRUNNER_SPOOL": str(self.spool),
            "JOBRUNNER_OUTPUTS": str(self.outputs),
            "COLUMNS": "200",
        }
        self._pythonpath = self.env["PYTHONPATH"]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "jobrunner", *map(str, args)]

    def run(
        self, *args: str, check: bool = True, timeout: float = PROCESS_TIMEOUT, process: bool = False
    ) -> subprocess.CompletedProcess:
        """Run ``jobrunner *args`` and return its exit code and output; ``process``: always in a subprocess."""
        if not process and self.can_run_here(args):
            result = self.run_here(args)
        else:
            result = subprocess.run(
                self.command(*args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
            )
        if check and result.returncode != 0:
            raise AssertionError(f"jobrunner {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def can_run_here(self, args: tuple) -> bool:
        args = [str(a) for a in args]
        if not args or args[0] not in IN_PROCESS_COMMANDS or "--watch" in args:
            return False
        if self.env.get("PYTHONPATH") != self._pythonpath:
            return False  # a test that changes what imports needs a process that imports afresh
        if args[0] == "plan":
            kernel = args[args.index("--kernel") + 1] if "--kernel" in args else "numpy"
            return kernel in STABLE_KERNELS or kernel.startswith(STABLE_KERNELS)
        return True

    def run_here(self, args: tuple) -> subprocess.CompletedProcess:
        """The command's entry point in this process, with its arguments, environment and folder."""
        from jobrunner.cli import main

        saved = dict(os.environ), sys.argv, os.getcwd()
        stdout, stderr = io.StringIO(), io.StringIO()
        os.environ.clear()
        os.environ.update(self.env)
        sys.argv = ["jobrunner", *map(str, args)]
        os.chdir(self.root)
        code = 0
        try:
            with redirect_stdout(stdout), redirect_stderr(stderr):
                main()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved[0])
            sys.argv = saved[1]
            os.chdir(saved[2])
        return subprocess.CompletedProcess(self.command(*args), code, stdout.getvalue(), stderr.getvalue())

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A suite started in the background (`pytest &` in a script) inherits an ignored SIGINT,
            # and Python then never installs its Ctrl-C handler: give each worker a real one.
            preexec_fn=_default_sigint,
        )

    # -- reading the spool as a test sees it --------------------------------------------------------
    @property
    def plan_id(self) -> str:
        """The id of the spool's current plan, as ``plan.json`` names it."""
        return json.loads((self.spool / "plan.json").read_text())["id"]

    @property
    def plan_folder(self) -> Path:
        """``<spool>/plans/<id>``: the current plan's specs, locks and records."""
        return self.spool / "plans" / self.plan_id

    @property
    def tiles(self) -> Path:
        """``<outputs>/tiles/<id>``: the current plan's tiles."""
        return self.outputs / "tiles" / self.plan_id

    def records(self) -> dict[str, dict]:
        """What the spool says of every job that has been tried (see :func:`records_of`)."""
        return records_of(self.plan_folder, self.tiles)

    def journal_lines(self) -> list[dict]:
        return journal_lines(self.plan_folder)

    def claims(self) -> dict[str, dict]:
        """The attempts in flight: what each non-empty lock file (flock) or claim file (lease) names."""
        folder = self.plan_folder / "locks"
        found = {}
        for path in sorted([*folder.glob("*.lock"), *folder.glob("*.claim")]):
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue  # a claim file removed as we looked
            if text.strip():
                found[path.stem] = json.loads(text)
        return found

    def wait_for_claim(self, timeout: float = PROCESS_TIMEOUT) -> tuple[str, dict]:
        """Block until some job is being computed; return its id and the claim in its lock file."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job_id, claim in self.claims().items():
                return job_id, claim
            time.sleep(0.02)
        raise AssertionError("no job started within the timeout")

    # -- holding tiles in flight (jr_test_kernels:gated) -----------------------------------------
    @property
    def gate(self) -> Path:
        """The file ``jr_test_kernels:gated`` tiles wait for: pass ``--param gate=<this>`` at plan."""
        return self.root / "gate"

    def gated_plan(self, *args: str, first_only: bool = False) -> subprocess.CompletedProcess:
        """``plan`` with the gated kernel: its tiles wait, in flight, until :meth:`open_gate`."""
        params = ["--param", f'gate="{self.gate}"'] + (["--param", "first_only=true"] if first_only else [])
        return self.run("plan", "--kernel", "jr_test_kernels:gated", *params, *args)

    def open_gate(self) -> None:
        self.gate.touch()

    def wait_for_claims(self, condition, what: str, timeout: float = PROCESS_TIMEOUT) -> dict[str, dict]:
        """Block until ``condition(claims)`` holds of the attempts in flight (job id -> claim); return them."""
        deadline = time.monotonic() + timeout
        while not condition(claims := self.claims()):
            assert time.monotonic() < deadline, f"{what}: not within {timeout} s; in flight: {claims}"
            time.sleep(0.02)
        return claims

    def leftovers(self) -> list[Path]:
        """Partial files anywhere under the spool or the outputs."""
        return [p for folder in (self.spool, self.outputs) for p in folder.rglob("*.partial")]

    def load(self, name: str) -> np.ndarray:
        return np.load(self.outputs / name)


def dead_pid() -> int:
    """The pid of a process of this host that has exited and been reaped."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def records_of(plan_folder: Path, tiles: Path) -> dict[str, dict]:
    """What a plan's files say of every job that has been tried, as its record would say it if
    every attempt were recorded there (``{"id", "plan", "state", "failures", "lost", "tile", "attempts"}``),
    read from the files as they lie, not through jobrunner: done while its tile is in place;
    its attempts are its record's (those that did not end done) and the done lines of every
    worker's journal (one a record also has, the record's), in order of start."""
    recorded = {p.stem: json.loads(p.read_text()) for p in sorted((plan_folder / "records").glob("*.json"))}
    found = {job: {**r, "attempts": list(r["attempts"])} for job, r in recorded.items()}
    for line in journal_lines(plan_folder):
        if line.get("outcome") != "done":
            continue  # an attempt started: in flight, or ended in its record
        fresh = {"id": line["job"], "plan": line["plan"], "state": "pending", "failures": 0, "lost": 0, "tile": None}
        job = found.setdefault(line["job"], {**fresh, "attempts": []})
        if any((a["host"], a["pid"], a["started"]) == (line["host"], line["pid"], line["started"])
               for a in recorded.get(line["job"], {}).get("attempts", [])):  # fmt: skip
            continue
        job["tile"] = line["tile"]
        job["attempts"].append({k: v for k, v in line.items() if k not in ("job", "tile")})
    for job_id, job in found.items():
        job["attempts"].sort(key=lambda a: a["started"])
        if (tiles / f"{job_id}.npy").is_file():
            job["state"] = "done"
    for path in sorted(tiles.glob("*.npy")) if tiles.is_dir() else []:  # a tile no line or record names
        unknown = {"id": path.stem, "plan": tiles.name, "state": "done", "failures": 0, "lost": 0, "tile": None}
        found.setdefault(path.stem, {**unknown, "attempts": []})
    return dict(sorted(found.items()))


def journal_lines(plan_folder: Path) -> list[dict]:
    """Every line of every worker's journal (a torn last line left out)."""
    lines = []
    for path in sorted((plan_folder / "journals").glob("*.jsonl")):
        for text in path.read_text().splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                pass
    return lines


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of the process is stopped (SIGSTOP has taken effect)."""
    states = [(task / "stat").read_text().rpartition(")")[2].split()[0] for task in Path(f"/proc/{pid}/task").iterdir()]
    return all(state in "tT" for state in states)


def open_the_tally(fifo: Path):
    """Start reading the FIFO a ``jr_test_kernels:counted`` plan tallies into; return the call that ends it.

    Until then every tile waits in flight, claimed, in the kernel's open() of its tally: a FIFO
    opens for writing only once it has a reader.  The call, made once every writer is gone,
    returns the lines read.
    """
    fd = os.open(fifo, os.O_RDWR)  # reader and writer: open() never blocks, and reads never see an end
    chunks = []

    def read_until_the_end() -> None:
        while not (chunks and chunks[-1].endswith(b"end\n")):
            chunks.append(os.read(fd, 1 << 16))

    reader = threading.Thread(target=read_until_the_end, daemon=True)
    reader.start()

    def lines() -> list[str]:
        os.write(fd, b"end\n")
        reader.join(PROCESS_TIMEOUT)
        os.close(fd)
        return b"".join(chunks).decode().splitlines()[:-1]

    return lines


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


LOCK_MODES = ("flock", "lease")


def pytest_generate_tests(metafunc):
    """Tests marked ``both_lock_modes`` run twice: their project's workers use flock, then leases."""
    if "project" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_lock_modes"):
        metafunc.parametrize("project", LOCK_MODES, indirect=True)


@pytest.fixture
def project(tmp_path: Path, request) -> Iterator[Project]:
    root = tmp_path / "a folder with spaces"
    root.mkdir()
    project = Project(root)
    mode = getattr(request, "param", None)
    if mode is not None:
        project.env["JOBRUNNER_LOCK"] = mode  # every command run in this project, as a user would export it
    yield project
    project.open_gate()  # a gated test that failed before opening it must not leave a worker waiting forever


def wait(process: subprocess.Popen, timeout: float = PROCESS_TIMEOUT) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"process did not finish in {timeout} s:\n{stderr}") from None
    return process.returncode, stdout, stderr


@pytest.fixture(scope="session")
def serial_reference(tmp_path_factory) -> callable:
    """``serial_reference(step, extent)``: the lab loop's array, computed once per grid by ``jobrunner serial``."""
    cache: dict[tuple, np.ndarray] = {}

    def reference(step: float, extent=(-2, 2, -2, 2)) -> np.ndarray:
        key = (step, tuple(extent))
        if key not in cache:
            project = Project(tmp_path_factory.mktemp("serial reference"))
            project.run("serial", "--step", step, "--extent", *extent)
            cache[key] = project.load("serial.npy")
        return cache[key]

    return reference


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder nobody can write to: chmod for a normal user; a read-only tmpfs mount for root."""
    folder = tmp_path / "read only outputs"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def engine_missing(reason: str) -> None:
    """Skip a test whose engine (Slurm, MPI, Dask) is absent, saying what to run.

    Under CI, which installs and starts every engine (`.ci/run` calls scripts/engines.sh and
    installs the mpi and dask extras), a missing engine fails instead: nothing skips there unseen.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must provide it", pytrace=False)
    pytest.skip(reason)


def venv_tool(name: str) -> Path:
    """A command installed beside this Python (mpiexec, dask): the venv's, not whatever PATH finds first."""
    return Path(sys.executable).parent / name


def with_venv_on_path(env: dict) -> dict:
    """mpiexec finds its helpers (hydra_pmi_proxy) on PATH, so the venv's bin goes first."""
    return {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}


def assert_each_job_done_once(project: Project, total: int) -> set[str]:
    """Every one of ``total`` jobs done by exactly one attempt; return how their workers were started."""
    records = project.records()
    assert len(records) == total
    for job_id, record in records.items():
        assert [a["outcome"] for a in record["attempts"]] == ["done"], f"{job_id} ran more than once"
    return {record["attempts"][0]["via"] for record in records.values()}
