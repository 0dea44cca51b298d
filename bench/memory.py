"""Peak memory and time of an optimisation step, untiled and under a memory budget (tiled), one table.

    python bench/memory.py --threads 1                   # 512, 1024, 2048 px; CPU; random weights
    python bench/memory.py --sizes 512 1024 --steps 2
    python bench/memory.py --device cuda --sizes 1024 2048 4096

Each row runs in a FRESH process (``--row``): a job of ``--steps`` steps at one scale (``schedule
single``, 4:3 pictures) through :func:`nst.stylize`, with or without a budget. Memory is the peak
beyond the loaded model: on a CPU the process's peak RSS (``resource.getrusage``) minus its RSS right
after loading the model; on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation after
loading. Time is the last step's wall and CPU seconds (CPU time: user + system of the process, all
threads). ``estimate`` is :func:`nst.memory.step_bytes` for what the row ran (tiles or not); ``cut``
the pooling the tiled network was cut at (the deep part after it runs once on the whole map; ``-``:
every tile runs the whole depth), and after a slash the ReLU where the deep part is cut in two
segments, the first recomputed in the backward; ``work`` the predicted cost of a tiled step relative to an untiled
one (:meth:`nst.tiling.Tiling.work`), beside the measured ratio ``×untiled`` (CPU seconds of the
tiled row over the untiled row's at that size). The gradient rows compare the tiled gradient with
the untiled one at 512×384 in fp32 (relative L2 error), cut at pool3 (with and without the deep
part's first segment recomputed) and whole depth.
Precision ``auto`` is bf16 only where the device runs it fast; on a CPU without AVX512-BF16/AMX it is
fp32, and its rows are then the fp32 rows (not run twice).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGETS = {512: "512MiB", 1024: "1.5GiB", 2048: "2GiB", 4096: "8GiB"}  # below the untiled need: tiles
GOALS = {2048: 2 * 1024**3, 4096: 8 * 1024**3}


def _rss_now() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _pictures(side: int):
    from PIL import Image, ImageDraw

    width, height = side, side * 3 // 4
    content = Image.new("RGB", (width, height), (120, 170, 230))
    draw = ImageDraw.Draw(content)
    draw.rectangle([0, height * 2 // 3, width, height], fill=(60, 140, 60))
    draw.ellipse([width // 4, height // 4, width // 2, height // 2], fill=(200, 80, 60))
    style = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(style)
    for i in range(-height, width + height, 12):
        draw.line([(i, 0), (i + height, height)], fill=((i * 7) % 255, 90, 200 - (i * 3) % 200), width=6)
    return content, style


def run_row(side: int, budget: str | None, precision: str, steps: int, device: str, weights: str) -> dict:
    import torch

    from nst import memory
    from nst.model import compute_dtype, load_vgg19
    from nst.params import StyleParams
    from nst.transfer import stylize

    model = load_vgg19(weights, device=device)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = _rss_now()
    content, style = _pictures(side)
    params = StyleParams(size=side, epochs=steps, schedule="single", precision=precision, seed=1)
    marks: list[tuple[float, float]] = []

    def on_progress(_progress) -> None:
        if cuda:
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), time.process_time()))

    start = (time.perf_counter(), time.process_time())
    result = stylize(content, style, params, model=model, on_progress=on_progress,
                     max_memory=budget or "unlimited")
    peak = (torch.cuda.max_memory_allocated() if cuda else _peak_rss()) - baseline
    previous = marks[-2] if len(marks) > 1 else start
    dtype = compute_dtype(model.device, precision)
    needs = memory.need(result.stats.size, memory.parse_bytes(budget) if budget else None, params.layers,
                        params.content_layer, dtype_bytes=4 if dtype is None else 2)
    tiling = needs.tiling
    return {
        "size": f"{result.stats.size[0]}×{result.stats.size[1]}", "side": side, "budget": budget or "none",
        "precision": f"{precision} ({result.stats.dtype})", "tiles": result.stats.tiles[-1],
        "cut": _cut(tiling) if tiling else "", "work": needs.work,
        "peak": peak, "estimate": needs.bytes,
        "wall": marks[-1][0] - previous[0], "cpu": marks[-1][1] - previous[1],
    }


def _cut(tiling) -> str:
    """pool3, or pool3/relu4_2 when the deep part's segment up to relu4_2 is recomputed; - for none."""
    if tiling.split is None:
        return "-"
    return f"{tiling.split}/{tiling.boundary}" if tiling.boundary else tiling.split


def gradient_row(device: str, weights: str, cut: str) -> dict:
    """The tiled gradient against the untiled one at 512×384, fp32, 128 px tiles cut at ``cut``
    (``pool3``, ``pool3/relu4_2``: the deep part in two segments, or ``none``)."""
    import torch

    from nst import images
    from nst.model import load_vgg19
    from nst.params import StyleParams
    from nst.tiling import Tiling
    from nst.transfer import Objective

    model = load_vgg19(weights, device=device)
    content, style = (images.to_tensor(p).to(model.device) for p in _pictures(512))
    params = StyleParams(tv_weight=1.0)
    pixels = (content + 0.1 * torch.randn_like(content)).clamp(0, 1).requires_grad_(True)
    untiled = Objective(model, content, [style], params, None).loss_and_grad(pixels)
    expected = pixels.grad.clone()
    split, _, boundary = cut.partition("/")
    tiling = Tiling.for_layers(128, params.layers, None if split == "none" else split, boundary or None)
    tiled = Objective(model, content, [style], params, None, tiling=tiling).loss_and_grad(pixels)
    error = float((pixels.grad - expected).norm() / expected.norm())
    loss_error = float(abs(tiled.total - untiled.total) / untiled.total)
    return {"gradient_error": error, "loss_error": loss_error, "tiles": len(tiling.tiles(512, 384))}


def _child(argv: list[str], threads: int) -> dict:
    command = [sys.executable, __file__, *argv, "--threads", str(threads)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gib(count: float) -> str:
    return f"{count / 1024**3:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--steps", type=int, default=1, help="steps per row; the last one is timed (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per row (0: torch's default)")
    parser.add_argument("--skip-untiled-above", type=int, default=2048, help="no untiled row above this side")
    parser.add_argument("--row", nargs=3, metavar=("SIDE", "BUDGET", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--gradient", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.row:
        side, budget, precision = args.row
        print(json.dumps(run_row(int(side), None if budget == "none" else budget, precision, args.steps, args.device, args.weights)))
        return
    if args.gradient:
        print(json.dumps(gradient_row(args.device, args.weights, args.gradient)))
        return

    from nst.model import compute_dtype, resolve_device

    auto_is_fp32 = compute_dtype(resolve_device(args.device), "auto") is None
    common = ["--steps", str(args.steps), "--device", args.device, "--weights", args.weights]
    print(f"device {args.device}, {args.threads or 'default'} thread(s), {args.steps} step(s) per row, weights {args.weights}"
          + ("; auto precision is fp32 on this device: its rows are the fp32 rows" if auto_is_fp32 else ""))
    print(f"{'size':>10} {'budget':>7} {'precision':>16} {'tiles':>5} {'cut':>13} {'peak GiB':>8} {'est GiB':>7} "
          f"{'wall s':>7} {'cpu s':>7} {'work':>5} {'×untiled':>8}")
    rows = {}
    for side in args.sizes:
        for precision in args.precisions:
            if precision == "auto" and auto_is_fp32:
                continue
            for budget in (["none"] if side <= args.skip_untiled_above else []) + [BUDGETS.get(side, "2GiB")]:
                row = _child(["--row", str(side), budget, precision, *common], args.threads)
                rows[(side, budget, precision)] = row
                if "error" in row:
                    print(f"{side:>10} {budget:>7} {precision:>16} error: {row['error']}")
                    continue
                untiled = rows.get((side, "none", precision))
                ratio = f"{row['cpu'] / untiled['cpu']:.2f}" if budget != "none" and untiled and "error" not in untiled else ""
                work = f"{row['work']:.2f}" if budget != "none" else ""
                print(f"{row['size']:>10} {budget:>7} {row['precision']:>16} {row['tiles']:>5} {row['cut']:>13} {_gib(row['peak']):>8} "
                      f"{_gib(row['estimate']):>7} {row['wall']:>7.2f} {row['cpu']:>7.2f} {work:>5} {ratio:>8}", flush=True)
    for split in ("pool3", "pool3/relu4_2", "none"):
        gradient = _child(["--gradient", split, "--device", args.device, "--weights", args.weights], args.threads)
        print(f"tiled gradient vs untiled at 512×384 fp32 ({gradient.get('tiles')} tiles, cut at {split}): relative error "
              f"{gradient.get('gradient_error', float('nan')):.2e}, loss {gradient.get('loss_error', float('nan')):.2e} (goal < 1e-4)")
    for side in args.sizes:
        untiled, tiled = rows.get((side, "none", "fp32")), rows.get((side, BUDGETS.get(side, "2GiB"), "fp32"))
        if untiled and tiled and "error" not in untiled and "error" not in tiled:
            print(f"{side} px: tiled step {tiled['wall'] / untiled['wall']:.2f}x the untiled one by wall time, "
                  f"{tiled['cpu'] / untiled['cpu']:.2f}x by CPU time (goal ≤ 1.3x)")
        if side in GOALS and tiled and "error" not in tiled:
            verdict = "within" if tiled["peak"] <= GOALS[side] else "ABOVE"
            print(f"{side} px fp32 under {BUDGETS[side]}: peak {_gib(tiled['peak'])} GiB, {verdict} the goal")


if __name__ == "__main__":
    main()
