"""Engine vs. a plain reference loop, side by side in one process on the same weights and images.

    python bench/engine.py                 # 300 px, 200 steps, CPU, random weights (about 6 minutes here)
    python bench/engine.py --size 160 --steps 50 --weights path/to/vgg19.pth
    python bench/engine.py --device cuda --size 512 --steps 100      # bench/device_check.sh

The reference is the textbook loop written from scratch: fp32, contiguous tensors, Adam, the same
losses, layers, weights and learning rate, the same truncated and frozen VGG-19. The engine runs the
same schedule (``schedule="reference"``: one scale, Adam 0.007, every step) in the precision asked, so
the two differ only in the per-step machinery. Both final images are quantised to 8 bits (as
delivered) and scored with the fp32 objective. Peak memory: on a CPU, the peak RSS of a fresh child
process per loop (a few steps each), since the allocator keeps what the first loop freed; on a GPU,
``torch.cuda.max_memory_allocated`` around a few steps of each.
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
from nst.model import export_features, load_vgg19, resolve_device  # noqa: E402
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
    x = (image - MEAN.to(image.device)) / STD.to(image.device)
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
    on_gpu = image.device.type == "cuda"
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = reference_loss(net, image, content_target, style_grams, p)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        if step_times is not None:
            if on_gpu:
                torch.cuda.synchronize(image.device)  # only when timing each step
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
    p = StyleParams(epochs=steps, size=size, seed=0, schedule="reference", lr=0.007)
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
    """(RSS after loading, peak RSS) in MiB of a fresh process running a few steps of one loop (CPU)."""
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


def gpu_peak(run) -> tuple[float, float]:
    """(allocated before, peak allocated) in MiB on the current CUDA device while ``run()`` runs."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20
    run()
    torch.cuda.synchronize()
    return before, torch.cuda.max_memory_allocated() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=300, help="longer side in pixels (default 300)")
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps per loop (default 200)")
    parser.add_argument("--weights", default="random", help="random (default), torchvision or a weights file")
    parser.add_argument("--content", default=str(ROOT / "examples" / "content.jpg"))
    parser.add_argument("--style", default=str(ROOT / "examples" / "style.jpg"))
    parser.add_argument("--memory-steps", type=int, default=5, help="steps per child process for peak memory")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="the engine's (default auto)")
    args = parser.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        weights_file = str(Path(tmp) / "vgg19-features.pth")
        export_features(args.weights, weights_file, progress=False)
        model = load_vgg19(weights_file, device=device)
        scorer = model if device.type == "cpu" else load_vgg19(weights_file, device="cpu")
        net = reference_network(weights_file).to(device)

        # The seed's schedule (one scale, Adam 0.007, every step): the same work as the plain loop, so
        # ms/step and the objective compare the per-step machinery alone.
        p = StyleParams(epochs=args.steps, size=args.size, seed=0, schedule="reference", lr=0.007,
                        precision=args.precision)
        content, style = prepare_images(images.decode_image(args.content), images.decode_image(args.style), p)
        content_t, style_t = images.to_tensor(content), images.to_tensor(style)

        ref_times: list[float] = []
        ref_image = reference_loop(net, content_t.to(device), style_t.to(device), p, args.steps, ref_times)
        ref_image = images.to_tensor(images.to_image(ref_image.cpu()))  # quantise as delivered

        result = stylize(content, style, p, model=model)
        engine_image = images.to_tensor(result.image)

        ref_score = fp32_objective(scorer, content_t, style_t, p, ref_image)
        eng_score = fp32_objective(scorer, content_t, style_t, p, engine_image)
        if device.type == "cuda":
            short = p.replace(epochs=args.memory_steps)
            c, s = content_t.to(device), style_t.to(device)
            ref_mem = gpu_peak(lambda: reference_loop(net, c, s, short, args.memory_steps))
            eng_mem = gpu_peak(lambda: stylize(content, style, short, model=model))
        else:
            ref_mem = peak_memory("reference", weights_file, args.content, args.style, args.size, args.memory_steps)
            eng_mem = peak_memory("engine", weights_file, args.content, args.style, args.size, args.memory_steps)

    warm = 3  # first steps include allocator and oneDNN primitive warm-up
    ref_ms = statistics.median(ref_times[warm:]) * 1000
    eng_ms = 1000 / result.stats.steps_per_second  # the loop's own time: losses are read back in batches on a GPU
    width, height = content.size
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    memory = "peak allocated on the GPU" if device.type == "cuda" else "peak RSS"
    print(
        f"engine benchmark: {width}×{height} px, {args.steps} steps, {args.weights} weights, device {device} ({where}), "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print()
    print(f"| loop | precision | ms/step | speed-up | {memory} (MiB, +over loaded) | fp32 objective: content | style | total | vs reference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = (
        ("reference (plain fp32)", "float32", ref_ms, ref_mem, ref_score),
        ("engine (nst.stylize, schedule reference)", result.stats.dtype, eng_ms, eng_mem, eng_score),
    )
    for name, dtype, ms, (before, peak), (c, s, total) in rows:
        print(
            f"| {name} | {dtype} | {ms:.1f} | {ref_ms / ms:.2f}× | {peak:.0f} (+{peak - before:.0f}) "
            f"| {c:.4g} | {s:.4g} | {total:.4g} | {total / ref_score[2] - 1:+.2%} |"
        )
    print()
    speed_ok = ref_ms / eng_ms >= 2.0
    quality_ok = eng_score[2] <= ref_score[2] * 1.02
    print(f"goal: ≥ 2× faster per step: {ref_ms / eng_ms:.2f}× {'met' if speed_ok else 'NOT met'}")
    print(f"goal: fp32 objective ≤ 2% above the reference: {eng_score[2] / ref_score[2] - 1:+.2%} {'met' if quality_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
