"""`--help` teaches: every option shows what it takes, choices are listed, nothing is swallowed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobrunner.cli import app
from jobrunner.executors import EXECUTORS
from jobrunner.kernels import BUILTIN_KERNELS

COMMANDS = sorted(command.name or command.callback.__name__ for command in app.registered_commands)


def help_of(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_says_what_it_takes(command):
    text = help_of(command)
    # typer's own metavars (<bool>, <float>, <path>) say the Python type, not what to type: a flag
    # shown as `--replace <bool>` invites `--replace true`, which fails.
    assert not re.search(r"<(bool|int|float|str|path|text|integer)>", text), text
    assert "TEXT" not in text and "INTEGER" not in text and "FLOAT" not in text and "BOOLEAN" not in text


def test_choices_are_listed_and_brackets_survive():
    supervise = help_of("supervise")
    assert "|".join(EXECUTORS) in supervise
    assert "jobrunner[mpi]" in supervise and "jobrunner[dask]" in supervise  # not taken for rich markup
    plan = help_of("plan")
    assert "|".join(BUILTIN_KERNELS) in plan and "MODULE:FUNCTION" in plan


def test_the_commands_are_listed_in_the_labs_order():
    listing = subprocess.run(
        [sys.executable, "-m", "jobrunner", "--help"], capture_output=True, text=True, env={"COLUMNS": "200"}
    ).stdout
    lab = ["serial", "plan", "work", "supervise", "reduce", "scale"]
    where = [re.search(rf"^│ {name} ", listing, re.MULTILINE) for name in lab]
    assert all(where), listing
    assert [match.start() for match in where] == sorted(match.start() for match in where)
    assert where[-1].start() < listing.index("│ slurm "), "the lab's commands come first"


def test_the_readmes_option_table_names_every_environment_variable_and_every_command_that_reads_it():
    import typer.main

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]  # `a\|b` is one cell
        if len(cells) == 4 and cells[0].startswith("`--") and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = {verb.strip() for verb in re.sub(r"\(.*?\)", "", cells[3]).split(",")}
    taken: dict[str, set[str]] = {}
    for name, command in typer.main.get_command(app).commands.items():
        for option in command.params:
            if getattr(option, "envvar", None):
                taken.setdefault(option.envvar, set()).add(name)
    assert rows == taken
