"""``python -m nst --quality`` is validated with the other options, before any work (issue 11, defect 8):
a bad value used to raise after the whole run, with a traceback, and the result was lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_content, make_style

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value, words", [("0", "got 0"), ("101", "got 101"), ("high", "got 'high'")])
def test_a_bad_quality_is_a_usage_error_before_the_run(tmp_path, weights_file, value, words):
    make_content().save(tmp_path / "content.png")
    make_style().save(tmp_path / "style.png")
    out = tmp_path / "out.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "nst", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(out),
         "--weights", str(weights_file), "--device", "cpu", "--epochs", "2", "--size", "32", "--quality", value, "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"argument --quality: must be an integer from 1 to 100, {words}" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_good_quality_is_used(tmp_path, weights_file):
    make_content().save(tmp_path / "content.png")
    make_style().save(tmp_path / "style.png")
    out = tmp_path / "out.jpg"
    done = subprocess.run(
        [sys.executable, "-m", "nst", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(out),
         "--weights", str(weights_file), "--device", "cpu", "--epochs", "2", "--size", "32", "--quality", "40", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:2] == b"\xff\xd8"
