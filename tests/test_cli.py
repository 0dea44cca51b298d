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
        (["--schedule", "fast"], "schedule: must be one of pyramid, single, reference"),
        (["--colors", "red"], "colors: must be one of style, content, match"),
        (["--style-blend", "0.7,0.3"], "style_blend: 2 weights given for 1 style image"),
        (["--style-blend", "1,-1"], "style_blend: each weight must be a finite number ≥ 0"),
        (["--size", "16"], "size: must be an integer from 32 to 4096, got 16"),
        (["--lr", "quick"], "lr: must be auto or a number"),
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
    assert "must end in one of" in _bad(tmp_path, capsys, ok, ok, "-o", tmp_path / "o.bmp", *w)
    assert "the content is a still picture" in _bad(tmp_path, capsys, ok, ok, "-o", tmp_path / "o.gif", *w)
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


def test_several_styles_blend_colors_and_the_reference_schedule(weights_file, tmp_path, capsys):
    out = tmp_path / "blend.png"
    code = cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", EXAMPLES / "content.jpg", "-o", out,
               "--weights", weights_file, "--epochs", 3, "--size", 48, "--seed", 1, "--style-blend", "0.7,0.3",
               "--colors", "content", "--schedule", "reference", "-q")
    assert code == 0 and Image.open(out).size == (48, 36)
    assert capsys.readouterr().out.startswith("done: 3 steps · 48×36")


def test_the_bar_shows_level_step_and_eta(weights_file, tmp_path, capsys):
    out = tmp_path / "o.png"
    # 192×144 has two levels (96×72, then 192×144): 3 + 12 steps of 15 (the high effort's 20% / 80% shares)
    code = cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", out, "--weights", weights_file,
               "--epochs", 15, "--size", 192, "--seed", 1, "--stop-tolerance", 0, "--effort", "high")
    captured = capsys.readouterr()
    assert code == 0
    assert "level 1/2" in captured.err and "level 2/2" in captured.err and "ETA " in captured.err
    assert "/15 steps" in captured.err
    assert captured.out.startswith("done: 15 steps (3+12 over 2 levels) · 192×144")


def test_a_picture_too_elongated_for_the_size_exits_2_naming_it(weights_file, tmp_path, capsys):
    banner = tmp_path / "banner.png"
    Image.new("RGB", (1200, 30), (200, 100, 50)).save(banner)
    err = _bad(tmp_path, capsys, banner, EXAMPLES / "style.jpg", "-o", tmp_path / "o.png", "--weights", weights_file,
               "--size", 384)
    assert "content image (1200×30)" in err and "384×10" in err and "size of at least 640" in err


@pytest.mark.parametrize(
    "budget, words",
    [("lots", "--max-memory: must be an amount of memory like 2GiB"), ("0", "--max-memory: must be a positive amount"),
     ("1MiB", "max_memory: a 48×36 picture needs about")],
)
def test_a_bad_or_too_small_memory_budget_exits_2_before_any_work(weights_file, tmp_path, capsys, budget, words):
    args = [EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", tmp_path / "o.png", "--weights", weights_file,
            "--size", 48, "--max-memory", budget]
    if budget != "1MiB":  # argparse's own check: SystemExit(2) with one line
        with pytest.raises(SystemExit) as caught:
            cli(*args)
        assert caught.value.code == 2 and words in capsys.readouterr().err
        return
    assert words in _bad(tmp_path, capsys, *args)
    assert not (tmp_path / "o.png").exists()


def test_init_image_continues_a_previous_result_at_the_new_size(weights_file, tmp_path, capsys):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    common = ["--weights", weights_file, "--seed", 1, "--epochs", 15, "--effort", "high", "--stop-tolerance", 0, "-q"]
    assert cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", small, "--size", 96, *common) == 0
    capsys.readouterr()
    # 192 px alone is a two-level pyramid (3 + 12 steps); continued from the 96 px result, only the final level
    assert cli(EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", big, "--size", 192, "--init-image", small, *common) == 0
    assert capsys.readouterr().out.startswith("done: 12 steps · 192×144")
    assert Image.open(big).size == (192, 144)
    assert "init image" in _bad(tmp_path, capsys, EXAMPLES / "content.jpg", EXAMPLES / "style.jpg", "-o", big,
                                "--weights", weights_file, "--init-image", tmp_path / "missing.png")
