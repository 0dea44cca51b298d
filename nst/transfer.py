"""The optimisation loop: Adam on the generated image's pixels against the Gatys objective."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch
from PIL import Image

from . import images
from .errors import Cancelled, NSTError
from .losses import content_loss, gram, style_loss, tv_loss
from .model import VGGFeatures, compute_dtype, load_vgg19, preferred_memory_format, resolve_device
from .params import StyleParams

PREVIEW_SIDE = 256


@dataclass(frozen=True)
class Progress:
    """Reported after every step. Losses are those of the image before that step's update."""

    step: int
    total: int
    content_loss: float
    style_loss: float
    tv_loss: float
    total_loss: float
    elapsed: float  # seconds since the job started
    eta: float  # seconds left, from the mean step time so far

    @property
    def fraction(self) -> float:
        return self.step / self.total


@dataclass(frozen=True)
class Stats:
    seconds: float  # wall time of the whole job: preparation, targets, loop, final scoring
    steps: int
    steps_per_second: float  # optimisation loop only
    content_loss: float  # of the returned image
    style_loss: float
    tv_loss: float
    total_loss: float
    device: str
    dtype: str  # the network's compute dtype: "float32" or e.g. "bfloat16"
    size: tuple[int, int]  # (width, height) of the result
    seed: int


@dataclass(frozen=True)
class Result:
    image: Image.Image
    stats: Stats


@dataclass(frozen=True)
class LossTerms:
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    def values(self) -> tuple[float, float, float, float]:
        # One device->host transfer instead of four: a single sync per step on GPUs.
        content, style, tv, total = torch.stack([self.content, self.style, self.tv, self.total]).tolist()
        return content, style, tv, total


class Objective:
    """Targets computed once per job, then the weighted loss of any candidate image.

    The targets are computed in the same dtype as the candidate's forward pass: fp32 targets
    against a bf16 forward leave a floor of rounding differences the optimiser cannot remove
    (measured: a fp32 objective about 100x worse after 200 steps).
    """

    def __init__(
        self,
        model: VGGFeatures,
        content: torch.Tensor,
        style: torch.Tensor,
        params: StyleParams,
        dtype: torch.dtype | None,
    ):
        self.model = model
        self.params = params
        self.dtype = dtype
        with torch.no_grad():
            content_features = model(content, [params.content_layer], params.pool, dtype)
            style_features = model(style, params.style_layers, params.pool, dtype)
        self.content_target = content_features[params.content_layer].float()
        self.style_grams = {layer: gram(style_features[layer]) for layer in params.style_layers}

    def __call__(self, image: torch.Tensor) -> LossTerms:
        p = self.params
        features = self.model(image, p.layers, p.pool, self.dtype)
        zero = image.new_zeros(())
        content = content_loss(features[p.content_layer], self.content_target) if p.content_weight else zero
        style = style_loss(features, self.style_grams, p.style_layers, p.style_layer_weights) if p.style_weight else zero
        tv = tv_loss(image) if p.tv_weight else zero
        total = p.content_weight * content + p.style_weight * style + p.tv_weight * tv
        return LossTerms(content, style, tv, total)


_default_models: dict[str, VGGFeatures] = {}
_default_lock = threading.Lock()


def default_model(device: str | torch.device | None = "auto", weights: str = "torchvision") -> VGGFeatures:
    """A process-wide model per (weights, device), loaded on first use."""
    target = resolve_device(device)
    key = f"{weights}@{target}"
    with _default_lock:
        if key not in _default_models:
            _default_models[key] = load_vgg19(weights, device=target)
        return _default_models[key]


def prepare_images(content: Image.Image, style: Image.Image, params: StyleParams) -> tuple[Image.Image, Image.Image]:
    """The content fitted to params.size and the style brought to a comparable scale."""
    content = images.fit_within(content, params.size)
    return content, images.match_scale(style, content.size, params.style_scale)


def _initial_image(kind: str, content: torch.Tensor, style_image: Image.Image, seed: int, memory_format) -> torch.Tensor:
    if kind == "content":
        start = content.clone()
    elif kind == "style":
        width, height = content.shape[-1], content.shape[-2]
        resized = style_image.resize((width, height), Image.Resampling.BICUBIC)
        start = images.to_tensor(resized).to(content.device)
    else:  # noise: drawn on the CPU so a seed gives the same start on every device
        generator = torch.Generator().manual_seed(seed)
        start = torch.rand(content.shape, generator=generator).to(content.device)
    return start.contiguous(memory_format=memory_format).requires_grad_(True)


def stylize(
    content: Image.Image,
    style: Image.Image,
    params: StyleParams | None = None,
    *,
    model: VGGFeatures | None = None,
    device: str | torch.device | None = "auto",
    on_progress: Callable[[Progress], None] | None = None,
    on_preview: Callable[[int, Image.Image], None] | None = None,
    preview_every: int = 0,
    preview_seconds: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> Result:
    """Optimise an image that keeps ``content``'s content and takes ``style``'s style.

    ``model`` is a loaded ``VGGFeatures`` (reuse it across jobs); without one the torchvision weights are
    loaded once per process on ``device``. ``should_stop`` is polled before every step: returning True
    raises ``Cancelled``. ``on_preview`` receives a small image every ``preview_every`` steps and/or at
    most every ``preview_seconds`` of wall time (whichever is set; time-based suits GPUs and CPUs alike).
    """
    started = time.perf_counter()
    params = params or StyleParams()
    model = model or default_model(device)
    model.check_layers(params.layers)
    target = model.device
    memory_format = preferred_memory_format(target)
    dtype = compute_dtype(target, params.precision)
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes for hundreds of steps: let cuDNN pick

    content_image, style_image = prepare_images(content, style, params)
    content_t = images.to_tensor(content_image).to(target).contiguous(memory_format=memory_format)
    style_t = images.to_tensor(style_image).to(target).contiguous(memory_format=memory_format)
    objective = Objective(model, content_t, style_t, params, dtype)
    pixels = _initial_image(params.init, content_t, style_image, seed, memory_format)
    optimizer = torch.optim.Adam([pixels], lr=params.lr)

    loop_started = last_preview = time.perf_counter()
    for step in range(1, params.epochs + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(step - 1, params.epochs)
        optimizer.zero_grad(set_to_none=True)
        terms = objective(pixels)
        terms.total.backward()
        optimizer.step()
        with torch.no_grad():
            pixels.clamp_(0.0, 1.0)
        if on_progress is not None:
            values = terms.values()
            _check_finite(values[3], step)
            now = time.perf_counter()
            per_step = (now - loop_started) / step
            on_progress(Progress(step, params.epochs, *values, now - started, per_step * (params.epochs - step)))
        if on_preview is not None and step < params.epochs and (
            (preview_every and step % preview_every == 0)
            or (preview_seconds and time.perf_counter() - last_preview >= preview_seconds)
        ):
            on_preview(step, images.fit_within(images.to_image(pixels.detach()), PREVIEW_SIDE))
            last_preview = time.perf_counter()
    loop_seconds = time.perf_counter() - loop_started

    with torch.no_grad():
        final = objective(pixels).values()
    _check_finite(final[3], params.epochs)
    result = images.to_image(pixels.detach())
    stats = Stats(
        seconds=time.perf_counter() - started,
        steps=params.epochs,
        steps_per_second=params.epochs / loop_seconds if loop_seconds > 0 else float("inf"),
        content_loss=final[0],
        style_loss=final[1],
        tv_loss=final[2],
        total_loss=final[3],
        device=str(target),
        dtype=str(dtype or torch.float32).replace("torch.", ""),
        size=result.size,
        seed=seed,
    )
    return Result(result, stats)


def _check_finite(total: float, step: int) -> None:
    if total != total or total in (float("inf"), float("-inf")):
        raise NSTError(
            f"the optimisation diverged (loss is {total}) at step {step}; "
            "lower the learning rate or the style/content weights"
        )
