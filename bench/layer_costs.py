"""What each VGG-19 layer costs, forward and backward, per input pixel: the table a tiled step's cost is
predicted from (``nst.tiling.LAYER_COST``).

    python bench/layer_costs.py --threads 1                       # 1024×768, fp32 and bf16 where fast
    python bench/layer_costs.py --threads 1 --size 512 --repeats 5
    python bench/layer_costs.py --threads 1 --python              # also print the table as Python

A tiled step runs the layers before the cut twice on its tiles (pass 1's forward, pass 2's forward
and backward) and the rest once, so which cut is cheapest depends on what each layer really costs,
and that is not its multiply-adds: the first block's convolutions (3 and 64 channels at every pixel)
are bound by memory traffic, not arithmetic, and bf16 speeds the deep, wide convolutions up far
more than the shallow ones. Each layer is timed alone (CPU time of the process, the median of
``--repeats``) on the activation the network gives it, in the precision's dtype and the device's
memory format, with autograd as in a step: the forward with its input requiring a gradient, then
the backward of a random output gradient (input gradients only: the weights are frozen). A layer's
cost is given in milliseconds per megapixel of the *picture* (its own positions are fewer after each
pooling), so a segment's cost is a sum and scales with the picture's pixels. Beside it, the cost of
the layer's Gram matrix as a style layer (forward and backward, ``nst.losses.gram``), which a tiled
step pays as an untiled one does (``nst.tiling.GRAM_COST``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _timed(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def _gram_times(features) -> tuple[float, float]:
    """CPU seconds of one style layer's Gram matrix of ``features``, forward and backward, as a step
    computes them (nst.losses.gram: fp32 Gram, backward in the features' dtype)."""
    import torch

    from nst.losses import gram

    leaf = features.detach().requires_grad_(True)
    out = []
    forward = _timed(lambda: out.append(gram(leaf)))
    grad = torch.randn_like(out[0])
    return forward, _timed(lambda: out[0].backward(grad))


def measure(model, side: int, dtype, repeats: int) -> list[tuple[str, float, float, float, float]]:
    """(layer, forward, backward, Gram forward, Gram backward), in ms per megapixel, for each layer of
    ``model`` at a side×(side·3/4) picture."""
    import torch

    from nst.model import preferred_memory_format

    width, height = side, side * 3 // 4
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=generator).to(model.device)
    image = image.contiguous(memory_format=preferred_memory_format(model.device))
    megapixels = width * height / 1e6
    with torch.no_grad():  # warm up: the bf16 copy of the weights, oneDNN's kernels for these shapes
        model(image, [model.available[-1]], dtype=dtype)
    rows, x, previous = [], image, None
    for name in model.available:
        x = x.detach().requires_grad_(True)
        forwards, backwards, gram_forwards, gram_backwards = [], [], [], []
        for _ in range(repeats):
            out = []
            forwards.append(_timed(lambda: out.append(model(x, [name], dtype=dtype, start_after=previous)[name])))
            grad = torch.randn_like(out[0])
            backwards.append(_timed(lambda: out[0].backward(grad)))
            x.grad = None
            gram_forward, gram_backward = _gram_times(out[0])
            gram_forwards.append(gram_forward)
            gram_backwards.append(gram_backward)
        rows.append((name, *(1000 * statistics.median(times) / megapixels
                             for times in (forwards, backwards, gram_forwards, gram_backwards))))
        x, previous = out[0], name
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="the picture's longer side (4:3), px")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--weights", default="random", help="VGG-19 weights (timing does not depend on them)")
    parser.add_argument("--python", action="store_true", help="also print the table as nst.tiling.LAYER_COST")
    args = parser.parse_args(argv)

    import torch

    from nst.model import cpu_has_fast_bf16, load_vgg19

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_vgg19(args.weights, device="cpu", last_layer="pool5")
    precisions = {"fp32": None}
    if cpu_has_fast_bf16():
        precisions["bf16"] = torch.bfloat16
    tables = {name: measure(model, args.size, dtype, args.repeats) for name, dtype in precisions.items()}

    print(f"# ms per megapixel of a {args.size}×{args.size * 3 // 4} picture, CPU time, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats}")
    header = " | ".join(f"{p} fwd | {p} bwd | {p} Gram fwd | {p} Gram bwd" for p in tables)
    print(f"| layer | {header} |")
    print("|---|" + "---:|" * (4 * len(tables)))
    layers = [row[0] for row in next(iter(tables.values()))]
    for index, layer in enumerate(layers):
        cells = " | ".join(" | ".join(f"{value:.1f}" for value in tables[p][index][1:]) for p in tables)
        print(f"| {layer} | {cells} |")
    totals = " | ".join(f"{sum(r[1] for r in t):.0f} | {sum(r[2] for r in t):.0f} | | " for t in tables.values())
    print(f"| total (network) | {totals} |")
    if args.python:
        for name, columns in (("LAYER_COST", (1, 2)), ("GRAM_COST", (3, 4))):
            print(f"{name} = {{")
            for precision, rows in tables.items():
                print(f'    "{precision}": {{')
                for row in rows:
                    print(f'        "{row[0]}": ({row[columns[0]]:.0f}, {row[columns[1]]:.0f}),')
                print("    },")
            print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
