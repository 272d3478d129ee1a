"""The folders of a spool reached without following a link (jobrunner.folders), on real directories.

The attacks themselves, by a second real user, are in test_two_users.py; here, what the Tree
promises, one property at a time, in this process."""

import os
import subprocess
from pathlib import Path

import pytest

from jobrunner.files import write_text
from jobrunner.folders import PlantedLink, Tree
from jobrunner.paths import SpoolPaths
from jobrunner.slurm import _in_double_quotes


@pytest.fixture
def outside(tmp_path):
    """A folder outside the tree, with a file in it: nothing done in the tree may touch it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "kept.txt").write_text("kept\n")
    (folder / "tile-r000-c000.json").write_text("kept\n")
    return folder


def _untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["kept.txt", "tile-r000-c000.json"] and all(
        p.read_text() == "kept\n" for p in outside.iterdir()
    )


def test_a_link_in_place_of_a_folder_is_refused_with_its_path_and_nothing_is_written_through_it(tmp_path, outside):
    root = tmp_path / "spool"
    (root / "plans" / "A").mkdir(parents=True)
    (root / "plans" / "A" / "records").symlink_to(outside)
    target = root / "plans" / "A" / "records" / "tile-r000-c000.json"
    with Tree(root) as tree, pytest.raises(PlantedLink, match=r"plans/A/records is a symbolic link"):
        write_text(target, "{}", tree=tree)
    assert _untouched(outside)


def test_a_link_higher_up_is_refused_too(tmp_path, outside):
    root = tmp_path / "spool"
    root.mkdir()
    (root / "plans").symlink_to(outside)
    with Tree(root) as tree, pytest.raises(PlantedLink, match=r"spool/plans is a symbolic link"):
        tree.folder(root / "plans" / "A" / "records", create=True)
    assert _untouched(outside)


def test_the_root_itself_may_be_a_link_the_user_chose(tmp_path):
    real = tmp_path / "scratch"
    (real / "plans").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    with Tree(tmp_path / "link") as tree:
        write_text(tmp_path / "link" / "plans" / "x.json", "{}", tree=tree)
    assert (real / "plans" / "x.json").read_text() == "{}"


def test_a_folder_opened_before_a_swap_is_written_into_wherever_it_went(tmp_path, outside):
    root = tmp_path / "spool"
    records = root / "records"
    records.mkdir(parents=True)
    with Tree(root) as tree:
        tree.folder(records)
        records.rename(root / "records.old")
        records.symlink_to(outside)  # swapped after it was reached: its descriptor still names the real one
        write_text(records / "tile-r000-c000.json", "{}", SpoolPaths.scratch(records, "w") / "x", tree=tree)
    assert (root / "records.old" / "tile-r000-c000.json").read_text() == "{}"
    assert _untouched(outside)


def test_remove_tree_removes_links_inside_never_their_targets_and_refuses_a_linked_parent(tmp_path, outside):
    root = tmp_path / "outputs"
    tiles = root / "tiles" / "A"
    tiles.mkdir(parents=True)
    (tiles / "t.npy").write_bytes(b"x")
    (tiles / "link-to-outside").symlink_to(outside)
    (tiles / "deeper").mkdir()
    (tiles / "deeper" / "link").symlink_to(outside / "kept.txt")
    with Tree(root) as tree:
        tree.remove_tree(tiles)
        assert not tiles.exists() and _untouched(outside)
        (root / "tiles").rename(root / "tiles.old")
        (root / "tiles").symlink_to(tmp_path)  # tmp_path/outside is then reached as tiles/outside
    with Tree(root) as tree:
        tree.remove_tree(root / "tiles" / "outside")  # best effort: refused, silently, never followed
    assert _untouched(outside)


def test_the_slurm_scripts_log_path_keeps_only_the_array_variables_for_the_shell(tmp_path):
    folder = tmp_path / 'a "b" $HOME `x` \\ c'
    word = _in_double_quotes(f"{folder}/task-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}.log")
    env = {"SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "3", "HOME": "/nowhere", "PATH": os.environ["PATH"]}
    echoed = subprocess.run(["bash", "-c", f'printf %s "{word}"'], env=env, capture_output=True, text=True)
    assert echoed.stdout == f"{folder}/task-41_3.log"


def test_an_outputs_folder_inside_its_spool_is_reached_from_the_spool(tmp_path, outside):
    spool = tmp_path / "jobs"
    spool.mkdir()
    (spool / "outputs").symlink_to(outside)  # planted: the spool is the group's, the outputs root inside it too
    with Tree(spool, spool / "outputs") as tree, pytest.raises(PlantedLink, match="jobs/outputs is a symbolic link"):
        tree.folder(spool / "outputs" / "tiles", create=True)
    assert _untouched(outside)
