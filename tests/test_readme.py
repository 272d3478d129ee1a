"""The README's Python example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path):
    text = README.read_text()
    section = text[text.index("## Using it from Python") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "16/16" in result.stdout and "(400, 400)" in result.stdout
    stitched = np.load(tmp_path / "api-outputs" / "stitched.npy")
    assert stitched.shape == (400, 400) and np.isfinite(stitched).all()


@pytest.mark.slow
def test_the_earthquake_example_and_the_readmes_xarray_snippet(tmp_path):
    """scripts/earthquake_example.sh end to end, then the README's snippet on what it wrote."""
    script = Path(__file__).parents[1] / "scripts" / "earthquake_example.sh"
    env = {
        **os.environ,
        "JOBRUNNER": f"{sys.executable} -m jobrunner",
        "PYTHON": sys.executable,
        "JOBRUNNER_SPOOL": str(tmp_path / "jobs" / "earthquake"),
        "JOBRUNNER_OUTPUTS": str(tmp_path / "outputs" / "earthquake"),
    }
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "best trial source: x = 12 km, y = -7 km, depth = 9 km, origin time 3.000 s" in result.stderr
    assert "stitched.nc" in result.stdout and (tmp_path / "outputs" / "earthquake" / "stitched.png").exists()

    text = README.read_text()
    section = text[text.index("### The labelled result") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("x = 12.0 km, y = -7.0 km, depth = 9.0 km, origin time 3.000 s, RMS residual")


@pytest.mark.slow
def test_the_labs_path_runs_top_to_bottom_as_written(tmp_path):
    """Every shell block of "The lab's path", in order, in a fresh folder where `scripts/main.sh`
    has run: only the grid is coarser (the lab's steps take minutes), and `scale` is left to its own tests."""
    text = README.read_text()
    section = text[text.index("## The lab's path") : text.index("\n## ", text.index("## The lab's path") + 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.splitlines() if not line.startswith("jobrunner scale")]
    coarse = [line.replace("--step 0.001", "--step 0.05").replace("--step 0.002", "--step 0.1") for line in lines]
    assert any("--replace" in line for line in coarse) and any("run_workers.sh" in line for line in coarse)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run_workers.sh").write_text((README.parent / "scripts" / "run_workers.sh").read_text())
    bin_folder = Path(sys.executable).parent  # `jobrunner` and `python` as the venv has them
    env = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    for name in ("JOBRUNNER_SPOOL", "JOBRUNNER_OUTPUTS", "PYTHONPATH"):
        env.pop(name, None)
    # as scripts/main.sh leaves it: the default plan, drained (coarse here too)
    main = "jobrunner plan --step 0.05\njobrunner supervise\njobrunner reduce\n"
    script = "set -euo pipefail\n" + main + "\n".join(coarse) + "\n"
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "True" in result.stdout  # the stitched array equals the serial loop's
    # every way of running gets a plan of its own to compute, not the one the step before finished
    assert result.stdout.count("planned:") == 1 + sum("plan " in line and "--replace" in line for line in coarse)
    assert (tmp_path / "outputs" / "timeline.png").exists()
