"""Each worker process's journal: one line per attempt it starts, and one when an attempt ends done.

A job's hot path makes one file, its tile.  What a worker says about its attempts goes into one
append-only file of its own, ``journals/<host>-<pid>-<token>.jsonl`` in the plan's folder, made
at its first attempt: not a record file per job.  Lines, each one JSON object::

    {"job": "tile-r000-c001", "attempt": 1, "host": ..., "pid": ..., "started": ..., "via": ..., "plan": ...}
    {"job": "tile-r000-c001", "attempt": 1, ..., "ended": ..., "outcome": "done", "tile": "sha256:...",
     "code": ..., "versions": ...}

The first kind says an attempt started (protocol step 5); the second that it ended done, with the
checksum of the tile it is about to put in place (step 8, before the tile's rename: a tile in
place always has its line, so ``reduce`` can check it).  An attempt that ends any other way
(failed, lost, timed out, interrupted, abandoned) goes into its job's record instead
(:mod:`jobrunner.records`), which only such jobs have.

Why it is safe:

* Only its own process writes a journal (its name has a random token: two containers' processes
  with one pid on one host still get two), each line with one ``os.write`` on an ``O_APPEND``
  descriptor, under a thread lock (a Dask worker runs tasks in threads).  A process killed
  mid-line leaves a torn last line, which readers skip, as any line that is not one of ours
  (:func:`parse_line`).
* Nothing depends on a journal for whether a job is done: that is whether its tile is in place.
  A journal lost with its node loses no tile; ``reduce`` computes again the tiles whose checksum
  no line gives, and keeps those whose bytes agree (:mod:`jobrunner.stitch`).
* A process runs one attempt at a time per thread, so the attempts in flight are among the last
  lines of each journal: ``status`` reads journals' tails (:data:`TAIL_BYTES`), not whole
  journals, and looks at the claims of those jobs only (and, in lease mode, of every claim file
  there is).  A Dask worker with many threads and one very long tile among hundreds of short
  ones can push that tile's start line out of the tail: ``status`` then shows it pending.
  ``status --watch``, which looks every second, follows the journals instead
  (:class:`FollowedJournals`): each look reads only the bytes appended since the last, and it
  has every line, so it sees that tile running too.
* Journals are never fsynced, as tiles are not.  On NFS a line can reach the server after the
  rename of its tile; a ``reduce`` on another host at that moment computes that tile again to
  check it, and keeps it.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from jobrunner.errors import JobRunnerError
from jobrunner.files import explain_write_error
from jobrunner.folders import PlantedLink, Tree
from jobrunner.paths import SpoolPaths
from jobrunner.records import Attempt
from jobrunner.vocabulary import AttemptOutcome
from jobrunner.wording import size_of
from jobrunner.writer import Writer

#: No worker's journal grows this large (some 400 bytes a tile): a larger file at a journal's name
#: was put there (a sparse file of a terabyte costs its maker nothing), and is refused, not read.
MAX_JOURNAL_BYTES = 2 * 2**30

#: How much of the end of each journal ``status`` reads for the attempts in flight and recent
#: tile times: a few hundred lines, far more than the attempts one process can have in flight.
TAIL_BYTES = 64 * 1024

_OPEN_NEW = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ATTEMPT_FIELDS = {name for name in Attempt.__dataclass_fields__}


@dataclass(frozen=True)
class Line:
    """One line of a journal: an attempt of ``job`` that started (``tile`` None, not ended) or ended done."""

    job: str
    attempt: Attempt
    tile: str | None = None

    @property
    def in_flight(self) -> bool:
        return self.attempt.outcome is None

    @property
    def key(self) -> tuple[str, int, float]:
        """Which attempt this is: its start line and its end line share it."""
        return (self.attempt.host, self.attempt.pid, self.attempt.started)


class Journal:
    """This process's journal for one plan, made at its first line."""

    def __init__(self, paths: SpoolPaths, tree: Tree) -> None:
        self.paths, self.tree = paths, tree
        self._fd: int | None = None
        self._pid = 0
        self._guard = threading.Lock()

    def started(self, job_id: str, attempt: Attempt) -> None:
        """Step 5: ``attempt`` of ``job_id`` is in flight in this process."""
        self._append(line_text(job_id, attempt))

    def done(self, job_id: str, attempt: Attempt, ended: float, checksum: str) -> None:
        """Step 8: ``attempt`` ended done at ``ended``, and its tile, with these bytes, is about to be put in place."""
        self._append(line_text(job_id, attempt, ended, checksum))

    def _append(self, text: str) -> None:
        data = text.encode()
        with self._guard:
            try:
                fd = self._open()
                written = os.write(fd, data)  # one write: appended whole, or torn only by a kill or a full disk
                if written != len(data):
                    raise OSError(28, "No space left on device (the journal line was cut short)")
            except OSError as error:
                self._drop()  # a line cut short must not have the next one glued to it: a new journal
                raise JobRunnerError(
                    f"cannot write the journal in {self.paths.journals}: {explain_write_error(error)}"
                ) from None

    def _open(self) -> int:
        # One fstat, no lookup: a journal deleted under its live worker (by hand, or with its
        # folder) would take every later line with it, unseen.  Such a worker starts a new one.
        if self._fd is not None and self._pid == os.getpid() and os.fstat(self._fd).st_nlink:
            return self._fd
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        # A new process (a pool process forked with this object) gets a journal of its own.
        path = self.paths.journals / f"{Writer.this_process().tag}-{secrets.token_hex(4)}{JOURNAL_SUFFIX}"
        try:
            self._fd = self.tree.open(path, _OPEN_NEW)
        except FileNotFoundError:  # a plan made before journals, or its folder deleted: made again (never a
            self.tree.forget(path.parent)  # retired plan's: its plan folder is not)
            with suppress(FileExistsError):
                os.mkdir(path.parent.name, 0o775, dir_fd=self.tree.folder(path.parent.parent))
            self._fd = self.tree.open(path, _OPEN_NEW)
        self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        with self._guard:
            self._drop()

    def _drop(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with suppress(OSError):
                os.close(self._fd)
        self._fd = None


JOURNAL_SUFFIX = ".jsonl"
#: In every done line (a tile's checksum), in no start line.
DONE_MARK = '"tile": "sha256:'


def line_text(job_id: str, attempt: Attempt, ended: float | None = None, checksum: str | None = None) -> str:
    """The line that says ``attempt`` of ``job_id`` started, or (given when it ended and its
    tile's checksum) that it ended done."""
    if checksum is None:
        return json.dumps({"job": job_id, **attempt.claim_fields()}) + "\n"
    done = {**vars(attempt), "ended": ended, "outcome": AttemptOutcome.DONE, "tile": checksum}
    return json.dumps({"job": job_id, **done}) + "\n"


def parse_line(text: str, plan_id: str) -> Line | None:
    """The line as :class:`Journal` writes it, or None for anything else: a torn last line,
    another plan's, a hand-edited or planted one."""
    try:
        document = json.loads(text)
        job, tile = document.pop("job"), document.pop("tile", None)
        if not isinstance(job, str) or not set(document) <= _ATTEMPT_FIELDS or document.get("plan") != plan_id:
            return None
        attempt = Attempt(**document)
        if attempt.outcome is not None:
            attempt.outcome = AttemptOutcome(attempt.outcome)
            if attempt.outcome != AttemptOutcome.DONE or not isinstance(tile, str) or attempt.ended is None:
                return None
        if not all(isinstance(v, t) for v, t in ((attempt.host, str), (attempt.pid, int), (attempt.started, float))):
            return None
        return Line(job, attempt, tile)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def journal_names(paths: SpoolPaths, tree: Tree) -> list[str]:
    """The journals of the plan (none if its folder is not there yet)."""
    try:
        return sorted(name for name in tree.names(paths.journals) if name.endswith(JOURNAL_SUFFIX))
    except FileNotFoundError:
        return []


def read_lines(
    paths: SpoolPaths, tree: Tree, plan_id: str, tail: int | None = None, done_only: bool = False
) -> Iterator[Line]:
    """Every line of every journal of the plan, or of the last ``tail`` bytes of each
    (``done_only``: only the lines that say an attempt ended done)."""
    for name in journal_names(paths, tree):
        opened = _open_journal(paths, tree, name)
        if opened is None:
            continue
        fd, info = opened
        with os.fdopen(fd, "rb") as file:
            data, cut = _read(file, info, paths.journals / name, tail)
        lines = data.decode(errors="replace").split("\n")
        if cut:
            lines = lines[1:]  # the first is the end of a line the tail cut
        yield from _parsed(lines, plan_id, done_only)


def _parsed(texts: list[str], plan_id: str, done_only: bool = False) -> Iterator[Line]:
    for text in texts:
        if text and (not done_only or DONE_MARK in text):  # a start line has no checksum: not parsed
            line = parse_line(text, plan_id)
            if line is not None:
                yield line


def _open_journal(paths: SpoolPaths, tree: Tree, name: str) -> tuple[int, os.stat_result] | None:
    """A descriptor of the journal ``name``, to read, and what it is; None if nothing in it counts."""
    try:
        fd = tree.open(paths.journals / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None  # a FIFO or a folder at a journal's name: nothing in it counts
        return fd, info
    except (FileNotFoundError, PlantedLink):
        return None  # gone since the listing, or a link in place of a journal: nothing in it counts
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None  # a link at a journal's name: nothing in it counts
        raise JobRunnerError(
            f"cannot read the journal {paths.journals / name} ({error.strerror or error}): fix the disk or "
            "its permissions and run the command again"
        ) from None


def _read(file, info: os.stat_result, path: Path, tail: int | None, start: int = 0) -> tuple[bytes, bool]:
    """The journal's bytes from ``start`` (or its last ``tail``), and whether they start after its
    beginning (``info``: its ``fstat``, as it was opened)."""
    if tail is None and info.st_size > MAX_JOURNAL_BYTES:  # read whole, it would fill the memory
        raise JobRunnerError(
            f"the journal {path} holds {size_of(info.st_size)}, more than any worker writes "
            f"({size_of(MAX_JOURNAL_BYTES)} is a million tiles' worth many times over): someone put it "
            "there; move it away and run the command again"
        )
    start = start if tail is None else max(0, info.st_size - tail)
    file.seek(start)
    return (file.read() if tail is None else file.read(tail)), start > 0


class FollowedJournals:
    """The lines of one plan's journals as read so far, for a reader that looks again and again
    (``status --watch``, every second): a journal only ever grows at its end, so each look reads
    only the bytes appended since the last, and parses only whole lines (a line being written now
    is read at the next look).  A journal that is no longer the file first read (another file at
    its name, or one that shrank) is read again from its start; one gone is forgotten.

    Every line stays in memory (some 900 bytes a tile), where a single look parses and drops them.
    """

    def __init__(self) -> None:
        self._journals: dict[str, _Followed] = {}
        self.bytes_read = 0  # in all: what the looks cost

    def lines(self, paths: SpoolPaths, tree: Tree, plan_id: str, done_only: bool = False) -> list[Line]:
        """Every line of every journal of the plan (``done_only``: those of attempts that ended done)."""
        names = journal_names(paths, tree)
        for gone in set(self._journals) - set(names):
            del self._journals[gone]
        found: list[Line] = []
        for name in names:
            opened = _open_journal(paths, tree, name)
            if opened is None:
                self._journals.pop(name, None)
                continue
            fd, info = opened
            followed = self._journals.get(name)
            if followed is None or followed.identity != (info.st_dev, info.st_ino) or info.st_size < followed.read:
                followed = self._journals[name] = _Followed((info.st_dev, info.st_ino))
            with os.fdopen(fd, "rb") as file:
                data, _ = _read(file, info, paths.journals / name, None, followed.read)
            whole = data[: data.rfind(b"\n") + 1]  # up to the last newline: whole lines only
            followed.read += len(whole)
            self.bytes_read += len(whole)
            followed.lines.extend(_parsed(whole.decode(errors="replace").split("\n"), plan_id))
            found.extend(line for line in followed.lines if not done_only or not line.in_flight)
        return found


@dataclass
class _Followed:
    identity: tuple[int, int]  # st_dev and st_ino of the file read
    read: int = 0  # its bytes parsed: up to the end of its last whole line
    lines: list[Line] = field(default_factory=list)


def in_flight(lines: list[Line]) -> dict[str, Attempt]:
    """The attempts started and not ended done in these lines, by job (the last one of each job)."""
    open_attempts: dict[tuple, Line] = {}
    for line in lines:
        if line.in_flight:
            open_attempts[line.key] = line
        else:
            open_attempts.pop(line.key, None)
    return {line.job: line.attempt for line in open_attempts.values()}
