"""What jobrunner relies on filelock for, checked against the installed filelock with real locks.

In flock mode a worker writes its claim into the lock file it holds, through the descriptor the
lock is held on (``FlockLocks.write_claim``), and the next claimant reads a dead holder's claim
from that file to record its attempt as lost.  That is right only while filelock neither
truncates the lock file when it opens it nor unlinks it on release (or when its holder dies):
if a filelock release changed either, claims would vanish and lost attempts go unrecorded.
"""

import signal
import subprocess
import sys
import textwrap

from filelock import FileLock

CLAIM = b'{"attempt": 1, "host": "node", "pid": 42, "started": 1.0, "via": "work", "plan": "p"}'


def test_opening_and_releasing_the_lock_keep_the_file_and_its_claim(tmp_path):
    path = tmp_path / "tile-r000-c000.lock"
    path.write_bytes(CLAIM)
    lock = FileLock(path, blocking=False, fallback_to_soft=False, thread_local=False)
    with lock:
        assert path.read_bytes() == CLAIM  # acquiring opened it without truncating
    assert path.read_bytes() == CLAIM  # releasing neither truncated nor unlinked it
    with FileLock(path, blocking=False, fallback_to_soft=False, thread_local=False):
        assert path.read_bytes() == CLAIM


def test_a_holder_killed_with_its_claim_written_leaves_the_claim_for_the_next(tmp_path):
    path = tmp_path / "tile-r000-c000.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, sys, time
            from filelock import FileLock
            fds = []
            lock = FileLock({str(path)!r}, blocking=False, fallback_to_soft=False, thread_local=False,
                            on_acquired=fds.append)
            lock.acquire()
            os.pwrite(fds[0], {CLAIM!r}, 0)
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    with FileLock(path, blocking=False, fallback_to_soft=False, thread_local=False):  # free: its holder died
        assert path.read_bytes() == CLAIM
