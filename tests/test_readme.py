"""The README's Python example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def test_the_python_api_example_runs(tmp_path):
    text = README.read_text()
    section = text[text.index("## Using it from Python") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "16/16" in result.stdout and "(400, 400)" in result.stdout
    stitched = np.load(tmp_path / "api-outputs" / "stitched.npy")
    assert stitched.shape == (400, 400) and np.isfinite(stitched).all()
