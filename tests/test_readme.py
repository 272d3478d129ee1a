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
