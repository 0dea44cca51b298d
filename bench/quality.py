"""Time to objective: the seed's plain loop against the engine's schedules, in one process, same weights.

    python bench/quality.py                              # the full table: 2 pairs × 256/384 px × 3 runs
    python bench/quality.py --sizes 256 --runs 1 --pairs examples --variants default,single
    python bench/quality.py --sizes 384 --runs 3 --reference-runs 1 --other-runs 1   # time the reference once

For each image pair and size: the plain reference loop (bench/engine.py: fp32, Adam lr 0.007, 500
steps, single scale) and each engine variant (fp32 via precision=fp32, so the figures hold on CPUs
without fast bf16). Per run: wall time to the end; the final fp32 objective at full resolution of the
8-bit output (content, style, total, all weighted); and the wall time at which the variant first
reached the reference's final total (its own full-resolution loss during its last level, which in
fp32 is the same objective on the unquantised image). Runs are interleaved (reference, variants,
reference, ...) so load on a shared machine hits both alike; the median of the runs is printed.
Random weights unless --weights says otherwise: the picture means nothing, the objective does.

Goal (issue 9): at 384 px the default reaches the reference's objective in ≤ 1/10 of the reference's
wall time, its final total ≤ the reference's, and neither term above 1.25× the reference's term.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from nst.model import cpu_has_fast_bf16, export_features, load_vgg19  # noqa: E402
from nst.params import StyleParams  # noqa: E402
from nst.transfer import Objective, prepare_images, stylize  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
engine_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(engine_bench)

REFERENCE_STEPS = 500

# name -> StyleParams changes over the defaults; "default" is the engine as shipped
VARIANTS = {
    "default": {},  # pyramid + early stop + the tuned Adam (lr 0.05, warm-up at finer levels, decaying)
    "single": {"schedule": "single"},  # no pyramid: tuned Adam + early stop at full size
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


def _now() -> tuple[float, float]:
    """(wall, CPU) seconds: on a shared machine the process's CPU time is the steadier measure."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _now()
    return wall - start[0], cpu - start[1]


def run_reference(net, content: Image.Image, style: Image.Image, p: StyleParams):
    """((wall, CPU) seconds, the 8-bit result) of the plain loop, targets included."""
    started = _now()
    content_t, style_t = images.to_tensor(content), images.to_tensor(style)
    out = engine_bench.reference_loop(net, content_t, style_t, p.replace(lr=0.007), REFERENCE_STEPS)
    return _since(started), images.to_image(out)


def run_variant(model, content, style, p: StyleParams, target_total: float):
    """((wall, CPU) s, result, (wall, CPU) s when it first reached target_total at full size, or None)."""
    final_size = images.fit_within(content, p.size).size
    reached: list[tuple[float, float]] = []
    started = _now()

    def on_progress(progress) -> None:
        if not reached and progress.level == progress.levels and progress.total_loss <= target_total:
            reached.append(_since(started))

    result = stylize(content, style, p, model=model, on_progress=on_progress)
    assert result.image.size == final_size
    return _since(started), result, (reached[0] if reached else None)


def _median_pair(pairs_: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs_), statistics.median(p[1] for p in pairs_)


def _pair(value: tuple[float, float]) -> str:
    return f"{value[0]:.1f} / {value[1]:.1f}"


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
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"engine variants to time: {','.join(VARIANTS)} (default: all)")
    parser.add_argument("--weights", default="random", help="random (default), torchvision or a weights file")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
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

    with tempfile.TemporaryDirectory() as tmp:
        weights_file = str(Path(tmp) / "vgg19-features.pth")
        export_features(args.weights, weights_file, progress=False)
        model = load_vgg19(weights_file, device="cpu")
        net = engine_bench.reference_network(weights_file)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"quality benchmark: {args.weights} weights, fp32, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, fast bf16: {cpu_has_fast_bf16()}, torch {torch.__version__}, "
        f"load average at start {load:.1f}, runs per cell (median): default {args.runs}, other variants "
        f"{other_runs}, reference {reference_runs}"
    )
    print()
    print("Times are wall / CPU seconds; '× faster' divides the reference's time to its end by the time at which")
    print("the variant first reached the reference's final total (wall / CPU).")
    print()
    print("| pair | size | loop | steps (per level) | time to end, s | reached ref. total at, s | × faster to ref. | content | style | total | vs ref. total |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for pair_name, (content_full, style_full) in pairs(args.pairs.split(",")).items():
        for size in sizes:
            base = StyleParams(size=size, seed=0, precision="fp32")
            content, style = prepare_images(content_full, style_full, base)
            content_t, style_t = images.to_tensor(content), images.to_tensor(style)
            ref_walls, ref_score = [], None
            cells: dict[str, dict[str, list]] = {v: {"wall": [], "reach": [], "score": [], "steps": []} for v in variants}
            for run in range(max(args.runs, reference_runs, other_runs)):
                if run < reference_runs:
                    wall, ref_image = run_reference(net, content, style, base)
                    ref_walls.append(wall)
                    ref_score = fp32_score(model, content_t, style_t, base, ref_image)  # deterministic given seed
                for name in variants:
                    if run >= (args.runs if name == "default" else other_runs):
                        continue
                    p = base.replace(**VARIANTS[name])
                    wall, result, reach = run_variant(model, content_full, style_full, p, ref_score[2])
                    cell = cells[name]
                    cell["wall"].append(wall)
                    cell["reach"].append(reach)
                    cell["score"].append(fp32_score(model, content_t, style_t, base, result.image))
                    s = result.stats
                    cell["steps"] = f"{s.steps} ({'+'.join(map(str, s.level_steps))}{', early' if s.stopped_early else ''})"
            ref_wall = _median_pair(ref_walls)
            w, h = content.size
            c, st, t = ref_score
            print(f"| {pair_name} | {w}×{h} | reference (Adam 0.007, single scale) | {REFERENCE_STEPS} | {_pair(ref_wall)} | — | 1× | {c:.4g} | {st:.4g} | {t:.4g} | — |")
            for name in variants:
                cell = cells[name]
                wall = _median_pair(cell["wall"])
                reaches = [r for r in cell["reach"] if r is not None]
                reach = _median_pair(reaches) if len(reaches) == len(cell["reach"]) else None
                scores = sorted(cell["score"], key=lambda sc: sc[2])
                sc = scores[len(scores) // 2]
                reach_text = _pair(reach) if reach is not None else "never"
                speed = f"{ref_wall[0] / reach[0]:.1f}× / {ref_wall[1] / reach[1]:.1f}×" if reach else "—"
                print(
                    f"| {pair_name} | {w}×{h} | {name} | {cell['steps']} | {_pair(wall)} | {reach_text} | {speed} "
                    f"| {sc[0]:.4g} | {sc[1]:.4g} | {sc[2]:.4g} | {sc[2] / t - 1:+.1%} |"
                )
                if name == "default":
                    ok = (
                        reach is not None and reach[0] <= ref_wall[0] / 10 and sc[2] <= t
                        and sc[0] <= 1.25 * c and sc[1] <= 1.25 * st
                    )
                    verdicts.append(f"{pair_name} {w}×{h}: {'met' if ok else 'NOT met'}")
            sys.stdout.flush()
    print()
    print("goal (≤ 1/10 of the reference's wall time to its objective, final total ≤ it, each term ≤ 1.25×): "
          + "; ".join(verdicts))


if __name__ == "__main__":
    main()
