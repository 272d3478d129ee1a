"""One file made per job (its tile), and the workers' journals that say the rest (jobrunner.journal).

In one process, on real files and real locks: what a job leaves on the disks, a journal lost or
torn, and a worker killed between its done line and its tile's rename.
"""

import os
import stat
import time

import numpy as np
import pytest
from conftest import dead_pid

from jobrunner import Plan, Spool, attempt_job
from jobrunner.drain import work
from jobrunner.errors import JobRunnerError
from jobrunner.journal import parse_line
from jobrunner.records import Attempt
from jobrunner.serial import compute_serial
from jobrunner.stitch import reduce
from jobrunner.vocabulary import AttemptResult
from jobrunner.writer import Writer

MODES = ("flock", "lease")


def make_spool(tmp_path, lock: str = "flock", tiles=(2, 3)) -> Spool:
    plan = Plan.create(step=0.25, tiles=tiles, kernel="numpy")
    spool, _ = Spool.create(plan, tmp_path / "jobs", tmp_path / "outputs", lock=lock)
    return spool


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", MODES)
def test_a_job_makes_one_file_its_tile(tmp_path, mode):
    spool = make_spool(tmp_path, mode)
    spool_before, outputs_before = files_under(spool.paths.spool), files_under(spool.paths.outputs)
    assert len([f for f in spool_before if f.endswith(".lock")]) == 6  # plan made every lock file
    summary = work(spool)
    assert summary.done == 6
    made_in_spool = files_under(spool.paths.spool) - spool_before
    journals = [f for f in made_in_spool if "/journals/" in f]
    assert len(journals) == 1 and made_in_spool - set(journals) <= {"locking.json"}, made_in_spool
    made_in_outputs = files_under(spool.paths.outputs) - outputs_before
    assert sorted(made_in_outputs) == sorted(f"tiles/{spool.plan.id}/{job}.npy" for job in spool.job_ids)
    assert not list(spool.paths.records.iterdir())  # no record: no attempt ended otherwise than done


def test_status_and_reduce_take_done_from_the_tiles_and_checksums_from_the_journals(tmp_path):
    spool = make_spool(tmp_path)
    work(spool)
    assert {s.state for s in spool.statuses()} == {"done"}
    checksums = spool.checksums()
    assert set(checksums) == set(spool.job_ids) and all(len(sums) == 1 for sums in checksums.values())
    result = reduce(spool)
    assert np.array_equal(np.load(result.array), compute_serial(spool.plan.grid))


def test_a_lost_journal_loses_no_tile_its_tiles_are_computed_again_by_reduce_and_kept(tmp_path):
    spool = make_spool(tmp_path)
    work(spool)
    tiles = {job: spool.paths.tile(job).stat().st_ino for job in spool.job_ids}
    for journal in spool.paths.journals.iterdir():
        journal.unlink()  # lost with its node
    assert {s.state for s in spool.statuses()} == {"done"}  # the tiles are there
    assert np.array_equal(np.load(reduce(spool).array), compute_serial(spool.plan.grid))
    assert tiles == {job: spool.paths.tile(job).stat().st_ino for job in spool.job_ids}  # the very same files


def test_a_tile_no_journal_vouches_for_and_computed_again_otherwise_is_put_back(tmp_path):
    spool = make_spool(tmp_path)
    work(spool)
    job = spool.job_ids[2]
    for journal in spool.paths.journals.iterdir():
        journal.write_text("".join(line for line in journal.read_text().splitlines(True) if job not in line))
    planted = np.load(spool.paths.tile(job))
    planted[0, 0] += 1.0  # a file of the right shape and dtype, put there by hand
    np.save(spool.paths.tile(job), planted)
    with pytest.raises(JobRunnerError, match="computing it again here gave other bytes") as refused:
        reduce(spool)
    assert "pending again" in str(refused.value) and not spool.paths.tile(job).exists()
    assert work(spool).done_here == 1
    assert np.array_equal(np.load(reduce(spool).array), compute_serial(spool.plan.grid))


def test_a_journal_deleted_under_its_live_worker_is_started_again(tmp_path):
    spool = make_spool(tmp_path)
    spool.choose_locking()
    spool.prepare_outputs()
    assert attempt_job(spool, spool.job_ids[0]).result is AttemptResult.DONE_HERE
    (journal,) = spool.paths.journals.iterdir()
    journal.unlink()
    assert attempt_job(spool, spool.job_ids[1]).result is AttemptResult.DONE_HERE  # the same Spool, the same process
    assert set(spool.checksums()) == {spool.job_ids[1]}  # its line is in a journal there is


def test_a_torn_or_planted_journal_line_is_skipped(tmp_path):
    spool = make_spool(tmp_path)
    work(spool)
    (journal,) = spool.paths.journals.iterdir()
    with journal.open("a") as file:
        file.write('{"job": "tile-r000-c000", "attempt": 1, "host": "x", "pid"')  # killed mid-line
    (spool.paths.journals / "planted.jsonl").write_text('[1, 2]\n{"job": 3}\nnot json\n')
    assert [parse_line(text, spool.plan.id) for text in ("[1, 2]", '{"job": 3}', "not json")] == [None] * 3
    assert np.array_equal(np.load(reduce(spool).array), compute_serial(spool.plan.grid))


def test_a_journal_line_of_another_plan_gives_no_checksum(tmp_path):
    spool = make_spool(tmp_path)
    work(spool)
    (journal,) = spool.paths.journals.iterdir()
    journal.write_text(journal.read_text().replace(spool.plan.id, "20260101-000000-00000000"))
    assert spool.checksums() == {}


@pytest.mark.parametrize("mode", MODES)
def test_a_worker_killed_between_its_done_line_and_its_rename_leaves_the_job_to_do_again(tmp_path, mode):
    """Step 8 done, step 9 not: a done line, a claim, no tile.  The job is pending; the next holder
    records the attempt lost (which is what counts: the line's checksum names no tile in place)."""
    spool = make_spool(tmp_path, mode)
    spool.choose_locking()
    spool.prepare_outputs()
    job = spool.job_ids[0]
    dead = Attempt(1, Writer.this_process().host, dead_pid(), time.time(), plan=spool.plan.id)
    with spool.claim(job) as claim:
        claim.announce(dead)
        spool.journal.started(job, dead)
        spool.journal.done(job, dead, time.time(), "sha256:" + "0" * 64)
    assert {s.id: s.state for s in spool.statuses()}[job] == "pending"
    assert attempt_job(spool, job).result is AttemptResult.DONE_HERE
    assert [a.outcome for a in spool.history()[job]] == ["lost", "done"]  # not done, lost, done
    expected = compute_serial(spool.plan.grid)[spool.plan.tile_by_id()[job].slices]
    assert np.array_equal(np.load(spool.paths.tile(job)), expected)


def test_a_spool_planned_before_journals_keeps_its_done_records(tmp_path):
    """Records that say done with a checksum (as every done job had) still check their tiles."""
    spool = make_spool(tmp_path, tiles=(1, 2))
    work(spool)
    for line in spool.journal_lines():
        if not line.in_flight:
            record = spool.new_record(line.job)
            record.finish(line.attempt, line.attempt.ended, line.tile)
            spool.write_record(record)
    for journal in spool.paths.journals.iterdir():
        journal.unlink()
    os.rmdir(spool.paths.journals)
    assert {s.state for s in spool.statuses()} == {"done"}
    assert np.array_equal(np.load(reduce(spool).array), compute_serial(spool.plan.grid))
    spool.requeue(spool.job_ids[0], bad_tile=True)
    assert work(spool).done_here == 1  # its journal folder is made again for the new attempt
    assert spool.paths.journals.is_dir()


def test_plans_lock_files_are_as_writable_as_the_umask_lets_a_projects_group_write(tmp_path):
    """Every worker opens its job's lock file for writing: under a shared project's umask 002 a
    group member's worker must be able to, as when filelock made the file on first use."""
    before = os.umask(0o002)
    try:
        spool = make_spool(tmp_path)
    finally:
        os.umask(before)
    modes = {stat.S_IMODE(spool.paths.lock(job).stat().st_mode) for job in spool.job_ids}
    assert modes == {0o664}


def test_a_huge_file_planted_as_a_journal_is_refused_not_read(tmp_path, monkeypatch):
    """A group member's sparse file of a terabyte at a journal's name costs them nothing to make."""
    spool = make_spool(tmp_path, tiles=(1, 2))
    work(spool)
    with (spool.paths.journals / "planted.jsonl").open("wb") as planted:
        planted.truncate(2**40)
    with pytest.raises(JobRunnerError, match="planted.jsonl holds 1.0 TiB, more than any worker writes"):
        reduce(spool)
    assert {s.state for s in spool.statuses()} == {"done"}  # status reads only the journals' ends


def test_followed_journals_read_only_what_was_appended_and_say_what_a_full_read_says(tmp_path):
    """status --watch looks every second: each look reads the lines written since the last."""
    spool = make_spool(tmp_path)
    spool.choose_locking()
    spool.prepare_outputs()
    for job in spool.job_ids[:3]:
        attempt_job(spool, job)
    followed = spool.follow_journals()
    journal = next(spool.paths.journals.iterdir())

    def as_read_whole():
        return list(Spool.open(spool.paths.spool).journal_lines())

    assert list(spool.journal_lines()) == as_read_whole() and len(as_read_whole()) == 6
    assert followed.bytes_read == journal.stat().st_size
    size = journal.stat().st_size
    for job in spool.job_ids[3:]:
        attempt_job(spool, job)
    assert list(spool.journal_lines()) == as_read_whole() and len(as_read_whole()) == 12
    assert followed.bytes_read == journal.stat().st_size  # the first 3 jobs' lines were not read again
    assert journal.stat().st_size > size
    assert spool.history() == Spool.open(spool.paths.spool).history()


def test_a_followed_journal_line_is_read_once_whole_and_a_replaced_journal_from_its_start(tmp_path):
    spool = make_spool(tmp_path)
    spool.choose_locking()
    spool.prepare_outputs()
    attempt_job(spool, spool.job_ids[0])
    spool.follow_journals()
    other = spool.paths.journals / "elsewhere-4242-feedbeef.jsonl"  # another node's worker, writing now
    started = Attempt(1, "elsewhere", 4242, time.time(), via="work", plan=spool.plan.id)
    line = f'{{"job": "{spool.job_ids[1]}", ' + started.claim_json().decode()[1:] + "\n"
    other.write_text(line[:40])  # half written
    assert spool.job_ids[1] not in {found.job for found in spool.journal_lines()}
    with other.open("a") as file:
        file.write(line[40:])  # the rest of it
    assert [found.job for found in spool.journal_lines()].count(spool.job_ids[1]) == 1
    replaced = other.with_suffix(".new")
    replaced.write_text(line.replace(spool.job_ids[1], spool.job_ids[2]))
    os.replace(replaced, other)  # another file at its name: its lines only
    jobs = [found.job for found in spool.journal_lines()]
    assert spool.job_ids[1] not in jobs and jobs.count(spool.job_ids[2]) == 1
    other.unlink()
    assert {found.job for found in spool.journal_lines()} == {spool.job_ids[0]}


@pytest.mark.parametrize("followed", [False, True], ids=["read", "followed"])
def test_a_folder_fifo_or_link_at_a_journals_name_counts_for_nothing(tmp_path, followed):
    spool = make_spool(tmp_path)
    work(spool)
    (spool.paths.journals / "folder.jsonl").mkdir()
    os.mkfifo(spool.paths.journals / "fifo.jsonl")  # opened without blocking, never read
    (spool.paths.journals / "link.jsonl").symlink_to(next(spool.paths.journals.glob("*-*.jsonl")))
    if followed:
        spool.follow_journals()
    assert len(list(spool.journal_lines())) == 12  # the worker's own journal, once
    assert {s.state for s in spool.statuses()} == {"done"}
