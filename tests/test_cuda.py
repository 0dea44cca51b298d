"""The engine's CUDA paths: run where a CUDA GPU is visible (bench/device_check.sh runs this file), skipped elsewhere.

Tiny images and few steps, like the CPU tests; what only a GPU can show is checked here: the schedule
runs on the device in fp32 and bf16 and agrees with the CPU's objective, and the step loop does not
wait on the device every step (losses are read back in batches, see nst.transfer.Readback).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import make_content, make_style
from nst import images
from nst.model import load_vgg19
from nst.params import StyleParams
from nst.transfer import Objective, Readback, stylize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def gpu_model(weights_file):
    return load_vgg19(weights_file, device="cuda")


def _fp32_total(model, content, style, params, picture) -> float:
    objective = Objective(model, images.to_tensor(content), images.to_tensor(style), params.replace(precision="fp32"), None)
    with torch.no_grad():
        return objective(images.to_tensor(picture)).values()[3]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_job_on_the_gpu_lowers_the_objective_as_on_the_cpu(model, gpu_model, precision):
    content, style = make_content(96, 72), make_style(64)
    params = StyleParams(size=96, epochs=40, seed=0, precision=precision)
    on_gpu = stylize(content, style, params, model=gpu_model)
    on_cpu = stylize(content, style, params.replace(precision="fp32"), model=model)
    assert on_gpu.stats.device.startswith("cuda")
    assert on_gpu.stats.dtype == ("float32" if precision == "fp32" else "bfloat16")
    start = _fp32_total(model, content, style, params, content)
    gpu_total = _fp32_total(model, content, style, params, on_gpu.image)
    cpu_total = _fp32_total(model, content, style, params, on_cpu.image)
    assert gpu_total < 0.5 * start
    assert gpu_total <= 1.3 * cpu_total  # the same schedule; cuDNN and bf16 round differently


def test_the_step_loop_does_not_wait_on_the_device_every_step(gpu_model):
    """With losses read back only at a level's end, a 60-step one-scale job synchronises with the host a
    handful of times (targets, the build decision, the read-back, the result), not once per step."""
    content, style = make_content(64, 48), make_style(48)
    params = StyleParams(size=64, epochs=60, seed=0, schedule="single", stop_tolerance=0.0, precision="fp32")
    stylize(content, style, params.replace(epochs=3), model=gpu_model)  # warm-up: cuDNN autotuning syncs
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            stylize(content, style, params, model=gpu_model, readback=Readback(every_steps=10**6, every_seconds=1e9))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) < 20, [str(w.message) for w in syncs[:5]]
