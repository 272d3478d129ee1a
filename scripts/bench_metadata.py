"""Count the metadata operations each job costs the spool's and the outputs' disks, with strace.

On a cluster's shared disk every file created, renamed, unlinked, opened or looked up by name is
a round trip to its metadata server, which every user shares: these counts, not the bytes, are
what a big run costs it.  For each command this runs it under ``strace -f`` twice, on N and on
2N one-cell jobs, and prints the difference over N: what one more job costs, start-up excluded.
Only calls on paths under the spool or the outputs count (found by strace's ``-y``, which names
the folder a descriptor-relative call works in); an ``fstat`` of an open file is no lookup and is
left out.

    python scripts/bench_metadata.py [--jobs 200]

Columns: creates (files and folders made: open with O_CREAT, mkdir, link), renames, unlinks
(and rmdir), opens (without O_CREAT, found or not), lookups (stat, lstat, access, readlink, a
mkdir that found the folder there) and flocks.  Needs strace (apt-get install strace).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

JOBRUNNER = [sys.executable, "-m", "jobrunner"]
COLUMNS = ("creates", "renames", "unlinks", "opens", "lookups", "flocks")
CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+|\?)")


def kind(name: str, args: str, result: str) -> str | None:
    """Which column a traced call counts in (None: not a metadata operation)."""
    ok = not result.startswith("-")
    if name in ("open", "openat", "openat2", "creat"):
        return "creates" if "O_CREAT" in args and ok else "opens"
    if name in ("mkdir", "mkdirat"):
        return "creates" if ok else "lookups"  # EEXIST: the folder was looked up
    if name in ("link", "linkat", "symlink", "symlinkat"):
        return "creates" if ok else "lookups"
    if name in ("rename", "renameat", "renameat2"):
        return "renames"
    if name in ("unlink", "unlinkat", "rmdir"):
        return "unlinks"
    if name in ("stat", "lstat", "newfstatat", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat"):
        return None if "AT_EMPTY_PATH" in args else "lookups"  # an fstat of an open file looks nothing up
    if name == "flock":
        return "flocks"
    return None


def traced(command: list[str], folders: list[Path], cwd: Path) -> Counter:
    """Run ``command`` under strace; count its metadata operations on paths under ``folders``."""
    with tempfile.TemporaryDirectory(prefix="strace-") as logs:
        prefix = Path(logs) / "trace"
        strace = ["strace", "-f", "-ff", "-y", "-qq", "-o", str(prefix), "-e", "trace=%file,%desc,flock"]
        subprocess.run(strace + command, cwd=cwd, check=True, capture_output=True)
        counts: Counter = Counter()
        marks = [str(folder) for folder in folders]
        for log in Path(logs).iterdir():
            for line in log.read_text(errors="replace").splitlines():
                match = CALL.match(line)
                if match and any(mark in match["args"] for mark in marks):
                    column = kind(match["name"], match["args"], match["result"])
                    if column:
                        counts[column] += 1
        return counts


def one_case(root: Path, jobs: int, setup: list[list[str]], measured: list[str]) -> Counter:
    """Plan ``jobs`` one-cell jobs in a fresh folder, run ``setup``, then count ``measured``."""
    folder = Path(tempfile.mkdtemp(dir=root))
    spool, outputs = folder / "jobs", folder / "outputs"
    where = ["--spool", str(spool)]
    plan = ["plan", "--axis", f"x=0:{jobs}:1", "--axis", "y=0:1:1", "--tiles", f"{jobs}x1", "--kernel", "numpy"]
    commands = [plan + where + ["--outputs", str(outputs)], *[step + where for step in setup]]
    if measured[0] == "plan":
        commands, measured = [], plan + where + ["--outputs", str(outputs)]
    else:
        measured = measured + where
    for command in commands:
        subprocess.run(JOBRUNNER + command, cwd=folder, check=True, capture_output=True)
    counts = traced(JOBRUNNER + measured, [spool, outputs], folder)
    shutil.rmtree(folder)
    return counts


CASES = {
    "plan": ([], ["plan"]),
    "work, flock": ([], ["work", "--lock", "flock"]),
    "work, lease": ([], ["work", "--lock", "lease"]),
    "supervise --workers 2": ([], ["supervise", "--workers", "2"]),
    "status (all done)": ([["work"]], ["status"]),
    "reduce": ([["work"]], ["reduce"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="N: the runs have N and 2N jobs")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        sys.exit("needs strace: apt-get install strace")
    print(f"metadata operations per job on the spool and outputs disks (2 x {args.jobs} minus {args.jobs} jobs)")
    print(f"{'command':<24}" + "".join(f"{column:>9}" for column in COLUMNS))
    with tempfile.TemporaryDirectory(prefix="bench-metadata-") as scratch:
        for name, (setup, measured) in CASES.items():
            small = one_case(Path(scratch), args.jobs, setup, measured)
            large = one_case(Path(scratch), 2 * args.jobs, setup, measured)
            per_job = {column: (large[column] - small[column]) / args.jobs for column in COLUMNS}
            print(f"{name:<24}" + "".join(f"{per_job[column]:>9.2f}" for column in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
