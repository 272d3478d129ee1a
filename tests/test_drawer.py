"""reduce's drawer: the figure drawn by a second process started ahead, the same figure as drawn
in-process, drawn in-process whenever the drawer does not deliver, and no drawer ever left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PROCESS_TIMEOUT, Project, wait

from jobrunner import JobRunnerError, Plan, Spool, reduce
from jobrunner import drawer as drawer_module
from jobrunner.drawer import Drawer, Request, pays_off
from jobrunner.figures import field_figure_png, figure_view


def children(pid: int | None = None) -> set[int]:
    pid = os.getpid() if pid is None else pid
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (in a container, maybe never)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until(condition, timeout: float = PROCESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.005)


@pytest.fixture
def figure():
    """A small plan's figure: its request, and the PNG this process draws of it."""
    plan = Plan.create(step=0.1, tiles=(2, 2), kernel="numpy")
    view = figure_view(plan)
    values = np.arange(np.prod(view.shape), dtype=float).reshape(view.shape)
    request = Request(values, plan, "a title with $ and _ as typed", view)
    return request, field_figure_png(values, plan, request.title, view)


@pytest.fixture
def always(monkeypatch):
    """A drawer for every plan, however small (given a second CPU)."""
    monkeypatch.setattr(drawer_module, "PAYS_FROM_TILES", 1)
    if not pays_off(1, 0, drawer_module.usable_cpus().count):
        pytest.skip("one CPU here: reduce never starts a drawer")


def test_a_drawer_pays_off_for_a_large_reduce_with_a_cpu_to_spare():
    assert pays_off(10_000, 10**6, cpus=2)
    assert pays_off(16, 128 * 2**20, cpus=2)  # the lab's main job: 16 tiles of 8 MB
    assert not pays_off(16, 2**20, cpus=64)  # too little work to hide its start behind
    assert not pays_off(10_000, 128 * 2**20, cpus=1)  # it would only take turns with reduce


def test_the_drawer_draws_the_figure_reduce_would_draw_itself(always, figure, monkeypatch):
    request, drawn_here = figure
    before = children()
    with Drawer.start(request.plan) as drawer:
        assert len(children() - before) == 1
        monkeypatch.setattr(Request, "png", lambda self: pytest.fail("drawn in this process"))
        assert drawer.png(request.values, request.plan, request.title, request.view) == drawn_here
    assert children() == before


def test_a_drawer_killed_leaves_the_figure_to_be_drawn_here(always, figure):
    request, drawn_here = figure
    before = children()
    with Drawer.start(request.plan) as drawer:
        (pid,) = children() - before
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: gone(pid))
        assert drawer.png(request.values, request.plan, request.title, request.view) == drawn_here
    assert children() == before


def test_a_drawer_stopped_is_not_waited_on_past_its_time(always, figure, monkeypatch):
    request, drawn_here = figure
    monkeypatch.setattr(drawer_module, "DRAW_SECONDS", 1.0)
    before = children()
    with Drawer.start(request.plan) as drawer:
        (pid,) = children() - before
        os.kill(pid, signal.SIGSTOP)  # frozen: SIGKILL still ends it
        started = time.monotonic()
        assert drawer.png(request.values, request.plan, request.title, request.view) == drawn_here
        assert time.monotonic() - started < 30
    assert children() == before


def test_a_refused_reduce_stops_its_drawer(always, tmp_path):
    spool, _ = Spool.create(Plan.create(step=0.1, tiles=(2, 2), kernel="numpy"), tmp_path / "jobs", tmp_path / "out")
    before = children()
    with pytest.raises(JobRunnerError, match="tiles are missing"):
        reduce(spool)  # nothing computed yet
    assert children() == before


def test_a_reduce_killed_takes_its_drawer_with_it(tmp_path):
    """SIGKILL leaves reduce no time to stop its drawer: the drawer finds its stdin closed and exits."""
    project = Project(tmp_path)
    project.run("plan", "--step", "0.02", "--tiles", "50x40", "--kernel", "numpy")  # 2,000 tiles: a drawer
    project.run("supervise", "--workers", "2")
    if not pays_off(2_000, 0, drawer_module.usable_cpus().count):
        pytest.skip("one CPU here: reduce never starts a drawer")
    reducing = subprocess.Popen(
        project.command("reduce"), cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: children(reducing.pid) or reducing.poll() is not None)
        (drawer,) = children(reducing.pid)  # it takes the drawer half a second to be ready to draw
        reducing.kill()
        wait(reducing)
        wait_until(lambda: gone(drawer), timeout=30)
    finally:
        reducing.kill()
