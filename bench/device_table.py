"""One table from bench/quality.py's --json files (bench/device_check.sh): per device, dtype and pair, the
default job's ms per step, the share of the GPU's dense bf16 peak that implies, and its end-to-end ratio.

    python bench/device_table.py quality-fp32.json quality-bf16.json [--peak-tflops 989]

A step's work is counted from VGG-19's shapes (bench_flops below): forward to conv5_1, backward to the
input (about twice the forward), and the Gram matrices with their backward; about 298 GFLOP at 512×384.
The peak is looked up by the device's name (the vendors' dense bf16 figures) or given with --peak-tflops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst.params import VGG19_LAYERS, layer_channels  # noqa: E402

# Dense bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets (no sparsity).
BF16_PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}


def step_flops(width: int, height: int, last: str = "conv5_1",
               style_layers=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")) -> float:
    """FLOPs of one optimisation step. The network is frozen, so the backward computes only the
    gradient with respect to each convolution's input, which costs about what its forward does: 2× the
    convolutions' forward. Each style layer's Gram (C²·HW multiply-adds) counts once forward and once
    for its one-matmul backward. One multiply-add is 2 FLOPs."""
    convs, grams, in_ch, w, h = 0.0, 0.0, 3, width, height
    for name in VGG19_LAYERS[: VGG19_LAYERS.index(last) + 1]:
        if name.startswith("pool"):
            w, h = w // 2, h // 2
        elif name.startswith("conv"):
            out_ch = layer_channels(name)
            convs += 2 * 9 * in_ch * out_ch * w * h
            if name in style_layers:
                grams += 2 * 2 * out_ch * out_ch * w * h
            in_ch = out_ch
    return 2 * convs + grams


def peak_for(name: str, given: float) -> float:
    if given:
        return given
    for key, peak in BF16_PEAKS.items():
        if key in name:
            return peak
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak (default: by name)")
    args = parser.parse_args()
    print("| device | dtype | pair | size | ms per step | TFLOP/s | share of bf16 peak | start to finish, s | seed loop, s | × sooner, end to end |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for file in args.files:
        data = json.loads(Path(file).read_text())
        peak = peak_for(data["name"], args.peak_tflops)
        for cell in data["cells"]:
            if cell["variant"] != "default":
                continue
            w, h = cell["size"]
            tflops = step_flops(w, h) / (cell["ms_per_step"] / 1000) / 1e12
            share = f"{tflops / peak:.1%}" if peak else "—"
            print(
                f"| {data['name']} | {cell['dtype']} | {cell['pair']} | {w}×{h} | {cell['ms_per_step']:.1f} | {tflops:.1f} "
                f"| {share} | {cell['seconds']:.2f} | {cell['reference_seconds']:.2f} | {cell['end_to_end']:.1f}× |"
            )


if __name__ == "__main__":
    main()
