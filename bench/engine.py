"""Engine vs. a plain reference loop, side by side in one process on the same weights and images.

    python bench/engine.py                 # 300 px, 200 steps, CPU, random weights (about 6 minutes here)
    python bench/engine.py --size 160 --steps 50 --weights path/to/vgg19.pth

The reference is the textbook loop written from scratch: fp32, contiguous tensors, Adam, the same
losses, layers, weights and learning rate, the same truncated and frozen VGG-19. Both final images are
quantised to 8 bits (as delivered) and scored with the fp32 objective. Peak memory is measured in a
fresh child process per loop (a few steps each), since the allocator keeps what the first loop freed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst import images  # noqa: E402
from nst.model import export_features, load_vgg19  # noqa: E402
from nst.params import VGG19_LAYERS, StyleParams  # noqa: E402
from nst.transfer import Objective, prepare_images, stylize  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------- the reference loop


def reference_network(weights_file: str) -> nn.Sequential:
    """torchvision's VGG-19 features up to the deepest layer used, fp32, frozen, no in-place ReLU."""
    from torchvision.models import vgg19

    net = vgg19(weights=None).features[: VGG19_LAYERS.index("conv5_1") + 1]
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    net.load_state_dict({k.removeprefix("features."): v for k, v in state.items()}, strict=True)
    for module in net:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net.eval().requires_grad_(False)


def reference_features(net: nn.Sequential, image: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
    x = (image - MEAN) / STD
    out = {}
    for name, module in zip(VGG19_LAYERS, net):
        x = module(x)
        if name in wanted:
            out[name] = x
    return out


def reference_gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    flat = f.view(c, h * w)
    return flat @ flat.t() / (c * h * w)


def reference_loss(net, image, content_target, style_grams, p: StyleParams) -> torch.Tensor:
    feats = reference_features(net, image, set(p.layers))
    content = F.mse_loss(feats[p.content_layer], content_target)
    style = sum(w * F.mse_loss(reference_gram(feats[l]), style_grams[l]) for l, w in zip(p.style_layers, p.style_layer_weights))
    return p.content_weight * content + p.style_weight * style


def reference_loop(net, content_t, style_t, p: StyleParams, steps: int, step_times: list[float] | None = None):
    with torch.no_grad():
        content_target = reference_features(net, content_t, {p.content_layer})[p.content_layer]
        style_feats = reference_features(net, style_t, set(p.style_layers))
        style_grams = {layer: reference_gram(style_feats[layer]) for layer in p.style_layers}
    image = content_t.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=p.lr)
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = reference_loss(net, image, content_target, style_grams, p)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        if step_times is not None:
            step_times.append(time.perf_counter() - started)
    return image.detach()


# ----------------------------------------------------------------------------- measurement helpers


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_child(which: str, weights_file: str, content_path: str, style_path: str, size: int, steps: int, queue) -> None:
    p = StyleParams(epochs=steps, size=size, seed=0)
    content, style = prepare_images(images.decode_image(content_path), images.decode_image(style_path), p)
    if which == "reference":
        net = reference_network(weights_file)
        c, s = images.to_tensor(content), images.to_tensor(style)
        run = lambda: reference_loop(net, c, s, p, steps)  # noqa: E731
    else:
        model = load_vgg19(weights_file, device="cpu")
        run = lambda: stylize(content, style, p, model=model)  # noqa: E731
    # Reset the peak (VmHWM) after loading, so it measures the loop, not torch.load's transient copies.
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status_mb("VmRSS")
    run()
    queue.put((before, _status_mb("VmHWM")))


def peak_memory(which: str, *args) -> tuple[float, float]:
    """(RSS after loading, peak RSS) in MiB of a fresh process running a few steps of one loop."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(which, *args, queue))
    child.start()
    result = queue.get(timeout=600)
    child.join(60)
    return result


def fp32_objective(model, content_t, style_t, p: StyleParams, image_t: torch.Tensor) -> tuple[float, float, float]:
    objective = Objective(model, content_t, style_t, p.replace(precision="fp32"), None)
    with torch.no_grad():
        terms = objective(image_t)
    content, style, _, total = terms.values()
    return content * p.content_weight, style * p.style_weight, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300, help="longer side in pixels (default 300)")
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps per loop (default 200)")
    parser.add_argument("--weights", default="random", help="random (default), torchvision or a weights file")
    parser.add_argument("--content", default=str(ROOT / "examples" / "content.jpg"))
    parser.add_argument("--style", default=str(ROOT / "examples" / "style.jpg"))
    parser.add_argument("--memory-steps", type=int, default=5, help="steps per child process for peak memory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights_file = str(Path(tmp) / "vgg19-features.pth")
        export_features(args.weights, weights_file, progress=False)
        model = load_vgg19(weights_file, device="cpu")
        net = reference_network(weights_file)

        p = StyleParams(epochs=args.steps, size=args.size, seed=0)
        content, style = prepare_images(images.decode_image(args.content), images.decode_image(args.style), p)
        content_t, style_t = images.to_tensor(content), images.to_tensor(style)

        ref_times: list[float] = []
        ref_image = reference_loop(net, content_t, style_t, p, args.steps, ref_times)
        ref_image = images.to_tensor(images.to_image(ref_image))  # quantise as delivered

        stamps: list[float] = []
        result = stylize(content, style, p, model=model, on_progress=lambda _: stamps.append(time.perf_counter()))
        engine_times = [b - a for a, b in zip(stamps, stamps[1:])]
        engine_image = images.to_tensor(result.image)

        ref_score = fp32_objective(model, content_t, style_t, p, ref_image)
        eng_score = fp32_objective(model, content_t, style_t, p, engine_image)
        ref_mem = peak_memory("reference", weights_file, args.content, args.style, args.size, args.memory_steps)
        eng_mem = peak_memory("engine", weights_file, args.content, args.style, args.size, args.memory_steps)

    warm = 3  # first steps include allocator and oneDNN primitive warm-up
    ref_ms = statistics.median(ref_times[warm:]) * 1000
    eng_ms = statistics.median(engine_times[warm:]) * 1000
    width, height = content.size
    print(
        f"engine benchmark: {width}×{height} px, {args.steps} steps, {args.weights} weights, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print()
    print("| loop | precision | ms/step (median) | speed-up | peak RSS (MiB, +over loaded) | fp32 objective: content | style | total | vs reference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = (
        ("reference (plain fp32)", "float32", ref_ms, ref_mem, ref_score),
        ("engine (nst.stylize)", result.stats.dtype, eng_ms, eng_mem, eng_score),
    )
    for name, dtype, ms, (before, peak), (c, s, total) in rows:
        print(
            f"| {name} | {dtype} | {ms:.0f} | {ref_ms / ms:.2f}× | {peak:.0f} (+{peak - before:.0f}) "
            f"| {c:.4g} | {s:.4g} | {total:.4g} | {total / ref_score[2] - 1:+.2%} |"
        )
    print()
    speed_ok = ref_ms / eng_ms >= 2.0
    quality_ok = eng_score[2] <= ref_score[2] * 1.02
    print(f"goal: ≥ 2× faster per step: {ref_ms / eng_ms:.2f}× {'met' if speed_ok else 'NOT met'}")
    print(f"goal: fp32 objective ≤ 2% above the reference: {eng_score[2] / ref_score[2] - 1:+.2%} {'met' if quality_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
