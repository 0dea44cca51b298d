"""Animations: a generated 24-frame clip stylized as a clip against each frame stylized as a still.

    python bench/animation.py --sizes 128 256            # random weights (the picture means nothing)
    python bench/animation.py --weights torchvision --sizes 128 --independent 6

The clip: a disc moving across a textured, static background. For each size, one table row:

* time: the whole clip (nst.stylize_animation) against 24 × one still's time (the mean of the frames
  stylized independently with nst.stylize, same settings). Goal: at most 1/3.
* flicker: the mean absolute difference (0..255) between consecutive output frames inside the static
  region (pixels whose content never changes, minus a margin around the disc's path), the clip's
  against the independent stills'. Goal: at most 1/4.
* objective: each frame's style-transfer objective (without the temporal term) against the still of
  the same frame (worst frame shown); frames not stylized as stills are compared with the stills'
  mean. Goal: every frame within 10%.

* disc: the mean absolute difference (0..255) between the output and the content on the moving disc,
  the clip's against the stills': a clip that left the disc where it was (a ghost) scores far above
  the stills here, however good its objective (random weights barely see where the disc is).

``--independent K`` stylizes only the first K frames as stills (default: all): on a shared 2-core
CPU a 128 px still takes about 20 s. ``--threads N`` sets torch's threads; the table gives CPU time
(this process's) beside wall time, since the machine's cores may be shared. Settings: fp32, the
default schedule and effort, seed 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nst  # noqa: E402
from nst.images import Animation  # noqa: E402
from nst.model import export_features, load_vgg19  # noqa: E402

FRAMES = 24


def background(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Stripes, blobs and fine noise: texture the style can take hold of everywhere."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([
        0.5 + 0.25 * np.sin(x / 5.0 + y / 9.0),
        0.5 + 0.25 * np.sin(y / 7.0 - x / 13.0),
        0.5 + 0.25 * np.cos((x + y) / 11.0),
    ], axis=-1)
    base += rng.normal(0.0, 0.06, base.shape)
    return Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))


def style_image(side: int, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (side, side), (240, 230, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y = rng.integers(0, side, 2)
        r = int(rng.integers(3, max(4, side // 10)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    return image


DISC_COLOUR = (250, 210, 40)


def make_clip(size: tuple[int, int]) -> tuple[Animation, np.ndarray]:
    """The clip and its static region (True where no frame's content differs, minus a margin)."""
    width, height = size
    still = background(size)
    radius = max(4, height // 8)
    frames = []
    for i in range(FRAMES):
        frame = still.copy()
        cx = radius + (width - 2 * radius) * i / (FRAMES - 1)
        cy = height / 2 + height / 6 * np.sin(i / 4)
        ImageDraw.Draw(frame).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=DISC_COLOUR)
        frames.append(frame)
    stack = np.stack([np.asarray(f, dtype=np.int16) for f in frames])
    moved = (np.abs(stack - stack[0]).max(axis=(0, 3)) > 0)
    margin = max(4, height // 12)  # strokes near a moving edge may change with it
    grown = moved.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            grown |= np.roll(np.roll(moved, dy, axis=0), dx, axis=1)
    return Animation(tuple(frames), (80,) * FRAMES, 0), ~grown


def flicker(frames, static: np.ndarray) -> float:
    arrays = [np.asarray(f, dtype=np.float32) for f in frames]
    return float(np.mean([np.abs(b - a)[static].mean() for a, b in zip(arrays, arrays[1:])]))


def disc_error(outputs, contents) -> float:
    """Mean |output - content| (0..255) on the disc, over the frames given."""
    errors = []
    for out, content in zip(outputs, contents):
        content = np.asarray(content, dtype=np.float32)
        disc = np.all(np.abs(content - np.array(DISC_COLOUR, np.float32)) < 1, axis=-1)
        errors.append(np.abs(np.asarray(out, dtype=np.float32) - content)[disc].mean())
    return float(np.mean(errors))


def run(size: int, model, independent: int, params: nst.StyleParams) -> dict:
    clip, static = make_clip((size, size * 3 // 4))
    style = style_image(size)
    started, cpu = time.perf_counter(), time.process_time()
    result = nst.stylize_animation(clip, style, params, model=model)
    clip_seconds, clip_cpu = time.perf_counter() - started, time.process_time() - cpu
    stills, still_seconds, still_cpu, still_losses, still_steps = [], [], [], [], []
    for frame in clip.frames[:independent]:
        started, cpu = time.perf_counter(), time.process_time()
        still = nst.stylize(frame, style, params.replace(size=params.animation_size), model=model)
        still_seconds.append(time.perf_counter() - started)
        still_cpu.append(time.process_time() - cpu)
        stills.append(still.image)
        still_losses.append(still.stats.total_loss)
        still_steps.append(still.stats.steps)
    mean_still = float(np.mean(still_losses))
    ratios = [
        loss / (still_losses[i] if i < len(still_losses) else mean_still) for i, loss in enumerate(result.frame_losses)
    ]
    return {
        "size": f"{clip.size[0]}×{clip.size[1]}",
        "clip_s": clip_seconds,
        "stills_s": FRAMES * float(np.mean(still_seconds)),
        "clip_cpu": clip_cpu,
        "stills_cpu": FRAMES * float(np.mean(still_cpu)),
        "steps": f"{result.frame_steps[0]}+{sum(result.frame_steps[1:])}",
        "still_steps": float(np.mean(still_steps)),
        # later frames only (the first is a still in both), those stylized both ways
        "disc_clip": disc_error(result.animation.frames[1:independent], clip.frames[1:independent]),
        "disc_stills": disc_error(stills[1:], clip.frames[1:independent]),
        "flicker_clip": flicker(result.animation.frames, static),
        "flicker_stills": flicker(stills, static),
        "objective_worst": max(ratios),
        "objective_mean": float(np.mean(ratios)),
        "static_share": float(static.mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--weights", default="random", help="random (default), torchvision or a weights file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--independent", type=int, default=FRAMES, help="frames stylized as stills (default: all 24)")
    parser.add_argument("--frame-steps", type=int, default=None)
    parser.add_argument("--temporal-weight", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights in ("random", "torchvision"):
            weights = os.path.join(tmp, "vgg19-features.pth")
            export_features(args.weights, weights, progress=False)
        model = load_vgg19(weights, device=args.device)
    overrides = {k: v for k, v in (("frame_steps", args.frame_steps), ("temporal_weight", args.temporal_weight)) if v is not None}
    rows = []
    for size in args.sizes:
        params = nst.StyleParams(precision="fp32", seed=0, size=size, animation_size=size, **overrides)
        rows.append(run(size, model, max(2, min(FRAMES, args.independent)), params))
        print(f"  {size} px done: {rows[-1]}", file=sys.stderr)
    p = params
    print(
        f"\nanimation benchmark: {args.weights} weights, {args.device}, fp32, {FRAMES} frames, frame_steps {p.frame_steps}, "
        f"temporal_weight {p.temporal_weight:g}, threads {torch.get_num_threads()}, "
        f"stills measured: {max(2, min(FRAMES, args.independent))} of {FRAMES}"
    )
    header = (
        "| size | clip s (CPU s) | 24 stills s (CPU s) | clip/stills wall, CPU (goal ≤ 0.33) | clip steps (first+later) | "
        "still steps | static flicker clip | stills | clip/stills (goal ≤ 0.25) | objective vs still: worst (goal ≤ 1.10) | "
        "mean | disc error clip | stills |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['clip_s']:.1f} ({r['clip_cpu']:.1f}) | {r['stills_s']:.1f} ({r['stills_cpu']:.1f}) | "
            f"{r['clip_s'] / r['stills_s']:.2f}, {r['clip_cpu'] / r['stills_cpu']:.2f} | {r['steps']} | {r['still_steps']:.0f} | "
            f"{r['flicker_clip']:.2f} | {r['flicker_stills']:.2f} | {r['flicker_clip'] / max(r['flicker_stills'], 1e-9):.2f} | "
            f"{r['objective_worst']:.3f} | {r['objective_mean']:.3f} | {r['disc_clip']:.1f} | {r['disc_stills']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
