"""The whole job, start to finish: the seed's plain loop against the engine's schedules, same weights.

    python bench/quality.py                              # the full table: 2 pairs × 256/384 px × 3 runs, fp32
    python bench/quality.py --sizes 256 --runs 1 --pairs examples --variants default,high
    python bench/quality.py --sizes 384 --runs 3 --reference-runs 1 --other-runs 1 --precision auto
    python bench/quality.py --device cuda --sizes 512 --precision bf16 --json out.json   # bench/device_check.sh

For each image pair and size: the plain reference loop (bench/engine.py: fp32, Adam lr 0.007, 500
steps, single scale: the seed's) and each engine variant, in the precision asked (fp32 by default,
so the figures hold on CPUs without fast bf16; the reference is always fp32). Per run: the time of
the whole ``stylize()`` call (targets at every level, the loop, previews, the final scoring, the
conversion to an 8-bit picture: everything but loading the model, done once per process), and the
reference's the same way (targets, loop, 8-bit picture); the end-to-end ratio of the two; the final
fp32 objective of the 8-bit output at full size (content, style, total, all weighted); and the time
at which the variant first reached the reference's final total (its own full-resolution loss during
its last level, which in fp32 is the same objective on the unquantised image). Runs are interleaved
(reference, variants, reference, ...) so load on a shared machine hits both alike; the median of
the runs is printed. Random weights unless --weights says otherwise: the picture means nothing, the
objective does.

Goal (issue 19): the default, start to finish, in ≤ 1/10 of the reference's wall time, its final
total ≤ the reference's, and neither term above 1.25× the reference's term.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst import images  # noqa: E402
from nst.model import compute_dtype, cpu_has_fast_bf16, export_features, load_vgg19, resolve_device  # noqa: E402
from nst.params import StyleParams  # noqa: E402
from nst.transfer import Objective, prepare_images, stylize  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
engine_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(engine_bench)

REFERENCE_STEPS = 500

# name -> StyleParams changes over the defaults; "default" is the engine as shipped
VARIANTS = {
    "default": {},  # pyramid + build/refine Adam + the standard stopping rule
    "high": {"effort": "high"},  # the deeper optimisation: the same, stopping only once the loss is flat
    "single": {"schedule": "single"},  # no pyramid: the tuned Adam + the stopping rule at full size
    "no-stop": {"stop_tolerance": 0.0},  # pyramid + tuned Adam, every budgeted step
    "lbfgs": {"optimizer": "lbfgs"},  # pyramid + early stop with L-BFGS (fp32, projected onto 0..1)
    "seed-adam": {"optimizer": "adam", "lr": 0.007},  # pyramid + early stop with the seed's Adam
}


def generated_pair() -> tuple[Image.Image, Image.Image]:
    """A smooth, low-contrast content (gradients, soft discs) and a high-contrast, fine-grained style."""
    rng = np.random.default_rng(7)
    h, w = 384, 512
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    content = np.stack([0.3 + 0.4 * x, 0.5 + 0.2 * np.sin(6 * y), 0.6 - 0.3 * x * y], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
        disc = np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / r**2))[..., None]
        content = content * (1 - 0.6 * disc) + 0.6 * disc * rng.uniform(0, 1, 3)
    s = 384
    yy, xx = np.mgrid[0:s, 0:s]
    checks = ((xx // 6 + yy // 6) % 2).astype(float)
    style = np.stack([checks, rng.uniform(0, 1, (s, s)), 1 - checks * 0.7], axis=-1)
    style = 0.5 * style + 0.5 * np.round(rng.uniform(0, 1, (s, s, 3)))
    to_image = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))  # noqa: E731
    return to_image(content), to_image(style)


def pairs(wanted: list[str]) -> dict[str, tuple[Image.Image, Image.Image]]:
    out = {}
    if "examples" in wanted:
        out["examples"] = (
            images.decode_image(ROOT / "examples" / "content.jpg"),
            images.decode_image(ROOT / "examples" / "style.jpg"),
        )
    if "generated" in wanted:
        out["generated"] = generated_pair()
    return out


def fp32_score(model, content_t, style_t, p: StyleParams, image: Image.Image) -> tuple[float, float, float]:
    """Weighted (content, style, total) of an 8-bit image under the fp32 objective at full size."""
    objective = Objective(model, content_t, style_t, p.replace(precision="fp32"), None)
    with torch.no_grad():
        terms = objective(images.to_tensor(image))
    content, style, _, total = terms.values()
    return content * p.content_weight, style * p.style_weight, total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _now(device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds: on a shared machine the process's CPU time is the steadier measure."""
    _sync(device)
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float], device: torch.device) -> tuple[float, float]:
    wall, cpu = _now(device)
    return wall - start[0], cpu - start[1]


def run_reference(net, content: Image.Image, style: Image.Image, p: StyleParams, device: torch.device):
    """((wall, CPU) seconds, the 8-bit result) of the plain loop: targets, loop and the 8-bit picture."""
    started = _now(device)
    content_t, style_t = images.to_tensor(content).to(device), images.to_tensor(style).to(device)
    out = engine_bench.reference_loop(net, content_t, style_t, p.replace(lr=0.007, precision="fp32"), REFERENCE_STEPS)
    picture = images.to_image(out.cpu())
    return _since(started, device), picture


def run_variant(model, content, style, p: StyleParams, target_total: float, device: torch.device):
    """((wall, CPU) s of the whole stylize() call, result, (wall, CPU) s when it first reached
    target_total at full size, or None)."""
    final_size = images.fit_within(content, p.size).size
    reached: list[tuple[float, float]] = []
    started = _now(device)

    def on_progress(progress) -> None:
        if not reached and progress.level == progress.levels and progress.total_loss <= target_total:
            reached.append(_since(started, device))

    result = stylize(content, style, p, model=model, on_progress=on_progress)
    elapsed = _since(started, device)
    assert result.image.size == final_size
    return elapsed, result, (reached[0] if reached else None)


def _median_pair(pairs_: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs_), statistics.median(p[1] for p in pairs_)


def _pair(value: tuple[float, float]) -> str:
    return f"{value[0]:.1f} / {value[1]:.1f}"


def _ratio(reference: tuple[float, float], value: tuple[float, float] | None, cpu: bool) -> str:
    if value is None:
        return "—"
    wall = f"{reference[0] / value[0]:.1f}×"
    return f"{wall} / {reference[1] / value[1]:.1f}×" if cpu else wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,384", help="comma-separated output sizes (default 256,384)")
    parser.add_argument("--pairs", default="examples,generated", help="examples and/or generated")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell; the median is printed (default 3)")
    parser.add_argument("--reference-runs", type=int, default=0,
                        help="runs of the reference per cell (default: --runs); its objective is deterministic, "
                             "only its time varies")
    parser.add_argument("--other-runs", type=int, default=0,
                        help="runs of the variants other than default per cell (default: --runs)")
    parser.add_argument("--variants", default="default,high",
                        help=f"engine variants to time: {','.join(VARIANTS)} (default: default,high)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "auto", "bf16"),
                        help="the engine's precision (default fp32; the reference is always fp32)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--weights", default="random", help="random (default), torchvision or a weights file")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--json", default="", help="also write every cell's figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    reference_runs = args.reference_runs or args.runs
    other_runs = args.other_runs or args.runs
    device = resolve_device(args.device)
    on_cpu = device.type == "cpu"

    with tempfile.TemporaryDirectory() as tmp:
        weights_file = str(Path(tmp) / "vgg19-features.pth")
        export_features(args.weights, weights_file, progress=False)
        scorer = load_vgg19(weights_file, device="cpu")  # fp32 scoring of every 8-bit output, on the CPU
        model = scorer if on_cpu else load_vgg19(weights_file, device=device)
        net = engine_bench.reference_network(weights_file).to(device)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dtype = str(compute_dtype(device, args.precision) or torch.float32).replace("torch.", "")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(
        f"quality benchmark: {args.weights} weights, engine precision {args.precision} ({dtype} here), "
        f"device {device} ({where}), {torch.get_num_threads()} CPU threads, fast CPU bf16: {cpu_has_fast_bf16()}, "
        f"torch {torch.__version__}, load average at start {load:.1f}, runs per cell (median): default "
        f"{args.runs}, other variants {other_runs}, reference {reference_runs}"
    )
    print()
    print("Times are wall / CPU seconds" + ("" if on_cpu else " (wall only on a GPU)") + " of the whole call. "
          "'× sooner, end to end' divides the reference's time by the variant's; '× sooner to reach' divides "
          "it by the time at which the variant first reached the reference's final total.")
    print()
    print("| pair | size | loop | steps (per level) | start to finish, s | × sooner, end to end | reached ref. total at, s "
          "| × sooner to reach | content | style | total | vs ref. total |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    verdicts, cells_out = [], []
    for pair_name, (content_full, style_full) in pairs(args.pairs.split(",")).items():
        for size in sizes:
            base = StyleParams(size=size, seed=0, precision=args.precision)
            content, style = prepare_images(content_full, style_full, base)
            content_t, style_t = images.to_tensor(content), images.to_tensor(style)
            ref_walls, ref_score = [], None
            cells: dict[str, dict[str, list]] = {v: {"wall": [], "reach": [], "score": [], "steps": []} for v in variants}
            for run in range(max(args.runs, reference_runs, other_runs)):
                if run < reference_runs:
                    wall, ref_image = run_reference(net, content, style, base, device)
                    ref_walls.append(wall)
                    ref_score = fp32_score(scorer, content_t, style_t, base, ref_image)  # deterministic given seed
                for name in variants:
                    if run >= (args.runs if name == "default" else other_runs):
                        continue
                    p = base.replace(**VARIANTS[name])
                    wall, result, reach = run_variant(model, content_full, style_full, p, ref_score[2], device)
                    cell = cells[name]
                    cell["wall"].append(wall)
                    cell["reach"].append(reach)
                    cell["score"].append(fp32_score(scorer, content_t, style_t, base, result.image))
                    s = result.stats
                    cell["dtype"] = s.dtype
                    cell["ms_per_step"] = 1000 / s.steps_per_second
                    cell["steps"] = f"{s.steps} ({'+'.join(map(str, s.level_steps))}{', early' if s.stopped_early else ''})"
            ref_wall = _median_pair(ref_walls)
            w, h = content.size
            c, st, t = ref_score
            print(f"| {pair_name} | {w}×{h} | reference (Adam 0.007, single scale, fp32) | {REFERENCE_STEPS} | "
                  f"{_pair(ref_wall)} | 1× | — | — | {c:.4g} | {st:.4g} | {t:.4g} | — |")
            for name in variants:
                cell = cells[name]
                wall = _median_pair(cell["wall"])
                reaches = [r for r in cell["reach"] if r is not None]
                reach = _median_pair(reaches) if len(reaches) == len(cell["reach"]) else None
                scores = sorted(cell["score"], key=lambda sc: sc[2])
                sc = scores[len(scores) // 2]
                print(
                    f"| {pair_name} | {w}×{h} | {name} ({cell['dtype']}) | {cell['steps']} | {_pair(wall)} "
                    f"| {_ratio(ref_wall, wall, on_cpu)} | {_pair(reach) if reach else 'never'} "
                    f"| {_ratio(ref_wall, reach, on_cpu)} | {sc[0]:.4g} | {sc[1]:.4g} | {sc[2]:.4g} | {sc[2] / t - 1:+.1%} |"
                )
                cells_out.append({
                    "pair": pair_name, "size": [w, h], "variant": name, "dtype": cell["dtype"],
                    "ms_per_step": cell["ms_per_step"], "seconds": wall[0], "reference_seconds": ref_wall[0],
                    "end_to_end": ref_wall[0] / wall[0], "reached_seconds": reach[0] if reach else None,
                    "total": sc[2], "reference_total": t,
                })
                if name == "default":
                    quality = sc[2] <= t and sc[0] <= 1.25 * c and sc[1] <= 1.25 * st
                    by_wall = quality and wall[0] <= ref_wall[0] / 10
                    verdict = f"{pair_name} {w}×{h}: {'met' if by_wall else 'NOT met'}"
                    if on_cpu:  # CPU time stands for the wall time of an idle machine when others load this one
                        verdict += f" (by CPU time: {'met' if quality and wall[1] <= ref_wall[1] / 10 else 'NOT met'})"
                    verdicts.append(verdict)
            sys.stdout.flush()
    print()
    print("goal (the default start to finish in ≤ 1/10 of the reference's wall time, final total ≤ it, "
          "each term ≤ 1.25×): " + "; ".join(verdicts))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "name": where, "precision": args.precision,
                                               "cells": cells_out}, indent=1))


if __name__ == "__main__":
    main()
