"""A writer's scratch: where a worker writes tiles, records and lease claims before publishing them,
and who removes what a writer left half-written.

Files that many workers make in one folder (tiles, records, lease claims) start in a folder of
their writer's own inside it, ``.<host>-<pid>.partial/`` (:meth:`SpoolPaths.scratch`), and are
renamed into place from there: making a file holds its folder's lock while the disk allocates
it (0.3-0.9 ms on this ext4), so workers making files in one shared folder queue behind each
other, while a rename holds it only briefly.  A scratch folder is made mode 0700 and refused if
it is not the writer's own; partials are created new with ``O_EXCL | O_NOFOLLOW`` (see
:func:`jobrunner.files.write_atomically`).

Who removes what
----------------
* a dead writer's partials for one job: the next holder of that job's lock, when it closes the
  dead writer's claim (:meth:`Scratch.remove_leftovers`, protocol step 4);
* a partial *record* whose writer was killed while publishing it, after which nothing names
  it: the run that finds every job done sweeps every writer's scratch (:meth:`Scratch.sweep`):
  with nothing left to compute, nothing can be writing there;
* a run that ends otherwise (stopped, or jobs left for others) removes its own scratch folders,
  and those of dead writers of this host, when they are empty (:meth:`Scratch.remove_empty`);
  never a live writer's, which would have to make its folder again between two files;
* a retired plan's folders go whole, scratch and all (see :mod:`jobrunner.publish`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from jobrunner.files import write_atomically
from jobrunner.folders import FOLDER, PlantedLink, Tree
from jobrunner.paths import SpoolPaths
from jobrunner.writer import Writer


class Scratch:
    """The scratch folders of one plan's writers, as this process sees and uses them."""

    def __init__(self, paths: SpoolPaths, tree: Tree) -> None:
        self.paths, self.tree = paths, tree

    def partial(self, target: Path, writer: Writer | None = None) -> Path:
        """Where ``writer`` (this process by default) writes ``target`` before publishing it."""
        writer = Writer.this_process() if writer is None else writer
        return SpoolPaths.scratch(target.parent, writer.tag) / target.name

    def publish(
        self, target: Path, write: Callable[[BinaryIO], None], before_rename: Callable[[], None] | None = None
    ) -> None:
        """Write ``target`` through ``write(file)`` in this process's scratch, then rename it into place
        (after ``before_rename()``, if given)."""
        write_atomically(target, write, self.partial(target), self.tree, before_rename)

    def publish_text(self, target: Path, text: str) -> None:
        self.publish(target, lambda file: file.write(text.encode()))

    def remove_leftovers(self, job_id: str, dead: Writer) -> None:
        """Delete what the dead writer ``dead`` left half-written for this job (its tile, record, claim)."""
        for target in (self.paths.tile(job_id), self.paths.record(job_id), self.paths.claim(job_id)):
            partial = self.partial(target, dead)
            # Through its scratch folder's own descriptor, not kept: it is the dead writer's.  A
            # read-only disk: nothing can have been half-written since.  A link planted in place of
            # that folder: nothing is removed through it.
            with suppress(OSError, PlantedLink):
                scratch = os.open(partial.parent.name, FOLDER, dir_fd=self.tree.folder(partial.parent.parent))
                try:
                    os.unlink(partial.name, dir_fd=scratch)
                except FileNotFoundError:
                    pass
                finally:
                    os.close(scratch)

    def remove_empty(self) -> None:
        """Remove this process's scratch folders, and dead local writers', if they are empty.

        At the end of a run, or when a signal stops it.  Other hosts' empty folders stay until
        the sweep once every job is done: whether their writer lives cannot be told from here.
        """
        for folder, name in self._scratch_folders():
            writer = Writer.from_tag(SpoolPaths.scratch_writer(folder / name))
            if writer is not None and (writer.is_this_process() or writer.dead_here()):
                with suppress(OSError):  # not empty, or not a folder
                    self.tree.rmdir(folder / name)

    def sweep(self) -> int:
        """Delete every writer's partials once all jobs are done (one listing per folder); how many."""
        swept = 0
        for folder, name in self._scratch_folders():
            with suppress(OSError, PlantedLink):  # another worker that found every job done swept it first
                scratch = folder / name
                if stat.S_ISDIR(self.tree.stat(scratch).st_mode):
                    swept += len(self.tree.names(scratch))
                    self.tree.remove_tree(scratch)
                elif folder != self.paths.locks:  # there, a lease being broken is set aside (locking)
                    self.tree.unlink(scratch)  # a partial file, or a link planted at one's name
                    swept += 1
        return swept

    def _scratch_folders(self) -> list[tuple[Path, str]]:
        """(folder, name) of every ``.*.partial`` in the folders that hold writers' scratch folders."""
        found = []
        for folder in (self.paths.tiles, self.paths.records, self.paths.locks):
            # Not made yet, gone (ESTALE on NFS after a replace), or a link, refused where it is used:
            # clean-up is best effort, and must never hide the error a run ends with.
            with suppress(OSError, PlantedLink):
                found += [(folder, n) for n in self.tree.names(folder) if n.startswith(".") and n.endswith(".partial")]
        return found
