import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image

from nst.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def cli(*args) -> int:
    return main([str(a) for a in args])


def test_end_to_end_on_the_examples(weights_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", out, "--weights", weights_file,
               "--epochs", 3, "--size", 48, "--seed", 7, "-q")
    assert code == 0
    assert Image.open(out).size == (48, 36)
    line = capsys.readouterr().out.strip()
    assert line.startswith("done: 3 steps · 48×36 ·") and "on cpu" in line and "seed 7" in line and str(out) in line


def test_real_module_invocation_with_jpeg_output(weights_file, tmp_path):
    out = tmp_path / "out.jpg"
    proc = subprocess.run(
        [sys.executable, "-m", "nst", str(EXAMPLES / "content.jpg"), str(EXAMPLES / "style.jpg"), "-o", str(out),
         "--weights", str(weights_file), "--epochs", "2", "--size", "40"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).format == "JPEG" and Image.open(out).size == (40, 30)
    assert "done: 2 steps" in proc.stdout


def test_help_explains_every_option():
    proc = subprocess.run([sys.executable, "-m", "nst", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0
    for option in ("--epochs", "--lr", "--content-weight", "--style-weight", "--size", "--tv-weight", "--pool",
                   "--init", "--seed", "--device", "--weights", "--weights random", "export-weights"):
        assert option in proc.stdout, option


def _bad(tmp_path, capsys, *args):
    code = cli(*args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--epochs", "0"], "epochs: must be an integer from 1 to 100000, got 0"),
        (["--style-weight", "lots"], "style_weight: must be a number"),
        (["--pool", "min"], "pool: must be one of max, avg"),
        (["--device", "tpu"], "device:"),
        (["--content-layer", "conv9_9"], "not a VGG-19 layer"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_options_exit_2_with_one_line(weights_file, tmp_path, capsys, extra, words):
    args = [EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", tmp_path / "o.png", "--weights", weights_file, *extra]
    if extra == ["--frobnicate"]:
        with pytest.raises(SystemExit) as caught:
            cli(*args)
        assert caught.value.code == 2
        assert words in capsys.readouterr().err
        return
    assert words in _bad(tmp_path, capsys, *args)


def test_bad_inputs_exit_2(weights_file, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a picture\n" * 20)
    ok = EXAMPLES / "content.jpg"
    w = ["--weights", weights_file]
    assert "content image" in _bad(tmp_path, capsys, tmp_path / "missing.jpg", ok, "-o", tmp_path / "o.png", *w)
    assert "style image" in _bad(tmp_path, capsys, ok, text, "-o", tmp_path / "o.png", *w)
    assert "must end in one of" in _bad(tmp_path, capsys, ok, ok, "-o", tmp_path / "o.gif", *w)
    assert "does not exist" in _bad(tmp_path, capsys, ok, ok, "-o", tmp_path / "nowhere" / "o.png", *w)
    assert "weights file not found" in _bad(tmp_path, capsys, ok, ok, "-o", tmp_path / "o.png", "--weights", tmp_path / "x.pth")


def test_offline_default_weights_exit_2_with_the_options(tmp_path, capsys, monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    err = _bad(tmp_path, capsys, EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", tmp_path / "o.png")
    assert "--weights random" in err and "export-weights" in err


def test_export_weights_command(tmp_path):
    out = tmp_path / "features.pth"
    proc = subprocess.run(
        [sys.executable, "-m", "nst", "export-weights", str(out), "--weights", "random"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sha256 " in proc.stdout and out.stat().st_size > 45e6
    assert "RANDOM" in proc.stderr  # the warning is visible
    state = torch.load(out, weights_only=True)
    assert set(k.split(".")[1] for k in state) == {str(i) for i in (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)}


def test_random_weights_warn_on_the_cli(tmp_path, caplog):
    code = cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", tmp_path / "o.png", "--weights", "random",
               "--epochs", 1, "--size", 32, "-q")
    assert code == 0
    assert "will not look stylized" in caplog.text
