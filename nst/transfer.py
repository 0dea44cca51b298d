"""The optimisation: the Gatys objective minimised over a coarse-to-fine schedule (see schedule.py).

One level at a time: targets (content features, the blended style Grams) are computed at the level's
size, the picture is optimised there until its loss stops improving (or the level's step budget is
spent), then upsampled (bicubic) to start the next level. ``schedule="reference"`` is the seed's loop:
one scale, Adam at lr 0.007 (unless lr is given), every step of ``epochs``, no early stop.

Losses are kept on the device (one small tensor per step) and read back to the host only at the
read-back points (:class:`Readback`): on a GPU a per-step ``.item()`` would stall the stream.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from . import color, images, memory
from .errors import Cancelled, ImageError, NSTError
from .losses import content_loss, gram, style_loss, tv_loss
from .model import VGGFeatures, compute_dtype, load_vgg19, preferred_memory_format, resolve_device
from .params import MIN_SIDE, STOP_WINDOW, StyleParams
from .schedule import Level, Plan, plan, styles_at
from .tiling import TiledLoss, Tiling, features as tiled_features, grams as tiled_grams

PREVIEW_SIDE = 256
REFERENCE_LR = 0.007  # the seed's Adam learning rate


# --------------------------------------------------------------------------- public results


@dataclass(frozen=True)
class Progress:
    """Reported at read-back points (every step on a CPU). Losses are those of the image before the
    step's update, at the current level's resolution. ``step`` and ``total`` count over the whole
    schedule; ``total`` shrinks when a level stops early. ``eta`` covers the whole schedule."""

    step: int
    total: int
    content_loss: float
    style_loss: float
    tv_loss: float
    total_loss: float
    elapsed: float  # seconds since the job started
    eta: float  # seconds left
    level: int = 1  # 1 = coarsest
    levels: int = 1

    @property
    def fraction(self) -> float:
        return self.step / self.total


@dataclass(frozen=True)
class Stats:
    seconds: float  # wall time of the whole job: preparation, targets, loop, final scoring
    steps: int  # steps taken over all levels
    steps_per_second: float  # optimisation loop only
    content_loss: float  # of the returned image (its luminance for colors=content), at full size
    style_loss: float
    tv_loss: float
    total_loss: float
    device: str
    dtype: str  # the network's compute dtype: "float32" or e.g. "bfloat16"
    size: tuple[int, int]  # (width, height) of the result
    seed: int
    levels: int = 1
    level_steps: tuple[int, ...] = ()  # steps taken at each level, coarsest first
    stopped_early: bool = False  # the last level ended because the loss stopped improving
    schedule: str = "reference"
    optimizer: str = "adam"
    tiles: tuple[int, ...] = ()  # tiles per level, coarsest first (1: the whole picture at once)
    memory_budget: int | None = None  # the budget the levels were planned for, bytes (None: none)


@dataclass(frozen=True)
class Result:
    image: Image.Image
    stats: Stats


@dataclass(frozen=True)
class Readback:
    """When the loop reads the losses back to the host: after at least ``every_steps`` steps and at
    least ``every_seconds`` seconds since the last read, and always at a level's last step."""

    every_steps: int = 1
    every_seconds: float = 0.0

    @staticmethod
    def for_device(device: torch.device) -> "Readback":
        # A CPU computes synchronously: reading back is free. Accelerators: a few reads a second.
        return Readback() if device.type == "cpu" else Readback(every_steps=1, every_seconds=0.25)

    def due(self, steps_since: int, seconds_since: float) -> bool:
        return steps_since >= self.every_steps and seconds_since >= self.every_seconds


# --------------------------------------------------------------------------- the objective


@dataclass(frozen=True)
class LossTerms:
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    total: torch.Tensor

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.content, self.style, self.tv, self.total]).detach()

    def values(self) -> tuple[float, float, float, float]:
        content, style, tv, total = self.stacked().tolist()  # one device->host transfer
        return content, style, tv, total


class Objective:
    """Targets computed once per level, then the weighted loss of any candidate image.

    ``style`` is one tensor or several, blended by ``weights`` (normalised; zero weights skipped):
    the target Gram of each layer is the weighted mean of the styles' Grams. The targets are computed
    in the same dtype as the candidate's forward pass: fp32 targets against a bf16 forward leave a
    floor of rounding differences the optimiser cannot remove (measured: a fp32 objective about 100x
    worse after 200 steps).
    """

    def __init__(
        self,
        model: VGGFeatures,
        content: torch.Tensor,
        style: torch.Tensor | Sequence[torch.Tensor],
        params: StyleParams,
        dtype: torch.dtype | None,
        weights: Sequence[float] | None = None,
        tiling: Tiling | None = None,
        check_cancel: Callable[[], None] | None = None,
    ):
        self.model = model
        self.params = params
        self.dtype = dtype
        # Tiled (see tiling.py): targets, values and gradients computed tile by tile, in bounded memory.
        self.tiled = TiledLoss(model, params, dtype, tiling, check_cancel) if tiling is not None else None
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        weights = list(weights) if weights is not None else [1.0 / len(styles)] * len(styles)
        with torch.no_grad():
            self.content_target = self._content_features(content)
            self.style_grams: dict[str, torch.Tensor] = {}
            for image, weight in zip(styles, weights):
                if weight == 0:
                    continue
                for layer, layer_gram in self._grams(image).items():
                    term = layer_gram * weight
                    previous = self.style_grams.get(layer)
                    self.style_grams[layer] = term if previous is None else previous + term

    def _content_features(self, content: torch.Tensor) -> torch.Tensor:
        p = self.params
        if self.tiled is not None:
            return tiled_features(self.model, content, p.content_layer, p.pool, self.dtype, self.tiled.tiling, self.tiled.check_cancel)
        return self.model(content, [p.content_layer], p.pool, self.dtype)[p.content_layer].float()

    def _grams(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.params
        if self.tiled is not None:
            return tiled_grams(self.model, image, p.style_layers, p.pool, self.dtype, self.tiled.tiling, self.tiled.check_cancel)
        features = self.model(image, p.style_layers, p.pool, self.dtype)
        return {layer: gram(features[layer]) for layer in p.style_layers}

    def loss_and_grad(self, image: torch.Tensor) -> LossTerms:
        """The loss terms of ``image``, with their gradient left in ``image.grad``."""
        if self.tiled is not None:
            return LossTerms(*self.tiled.value_and_grad(image, self.content_target, self.style_grams))
        terms = self(image)
        terms.total.backward()
        return terms

    def __call__(self, image: torch.Tensor) -> LossTerms:
        if self.tiled is not None:
            with torch.no_grad():
                return LossTerms(*self.tiled.value(image, self.content_target, self.style_grams))
        p = self.params
        features = self.model(image, p.layers, p.pool, self.dtype)
        zero = image.new_zeros(())
        content = content_loss(features[p.content_layer], self.content_target) if p.content_weight else zero
        style = style_loss(features, self.style_grams, p.style_layers, p.style_layer_weights) if p.style_weight else zero
        tv = tv_loss(image) if p.tv_weight else zero
        total = p.content_weight * content + p.style_weight * style + p.tv_weight * tv
        return LossTerms(content, style, tv, total)


# --------------------------------------------------------------------------- the schedule's parts


class EarlyStop:
    """Ends a level when the best loss so far improved by less than ``tolerance`` (a fraction) over the
    last ``window`` steps. Adam's iterates wobble, so the best loss, not the last, is compared."""

    def __init__(self, tolerance: float, window: int = STOP_WINDOW):
        self.tolerance = tolerance
        self.window = window
        self.best: list[float] = []

    def update(self, loss: float) -> bool:
        """Add the loss of one step; True when the level should stop."""
        self.best.append(min(loss, self.best[-1]) if self.best else loss)
        if self.tolerance <= 0 or len(self.best) <= self.window:
            return False
        before, now = self.best[-1 - self.window], self.best[-1]
        if before <= 0:
            return True  # nothing left to improve
        return (before - now) / before < self.tolerance


@dataclass(frozen=True)
class AdamSettings:
    lr: float
    betas: tuple[float, float]
    decay: float  # the learning rate is multiplied by this after every step
    warmup: int = 0  # steps over which the learning rate ramps up linearly to lr


def adam_settings(params: StyleParams, building: bool) -> AdamSettings:
    """The seed's Adam for the reference schedule; otherwise the measured one (bench/quality.py).

    A level either *builds* or *refines* its picture (see :func:`_builds`). Building (the first
    level, or one that starts far above the coarser level's result) needs large, responsive steps:
    pixels are 0..1 and the seed's 0.007 needs hundreds of steps to move them. Refining starts from
    a picture that is already good, which a fresh Adam's first steps would throw away (they move
    every pixel by about lr whatever its gradient: at lr 0.05 the upsampled picture's loss rose
    2-4x and the level lost ~30 steps recovering, or ended through early stop): gentler steps after
    a linear warm-up. Measured at 384 px (examples and the generated pair), a full-size step being 1:
    building with these settings reached the seed loop's objective after 47 step-equivalents on the
    generated pair where the refining settings took 82; refining kept the examples at 33.
    """
    if params.schedule == "reference":
        return AdamSettings(params.lr or REFERENCE_LR, (0.9, 0.999), 1.0)
    if building:
        return AdamSettings(_lr_or(params, BUILD_LR), BUILD_BETAS, BUILD_DECAY)
    return AdamSettings(_lr_or(params, REFINE_LR), REFINE_BETAS, REFINE_DECAY, WARMUP_STEPS)


def _lr_or(params: StyleParams, tuned: float) -> float:
    return params.lr if params.lr is not None else tuned


BUILD_LR = 0.1
BUILD_BETAS = (0.8, 0.9)
BUILD_DECAY = 0.98
REFINE_LR = 0.05
REFINE_BETAS = (0.9, 0.99)
REFINE_DECAY = 0.99
WARMUP_STEPS = 10
BUILD_RATIO = 10.0  # a level builds when its first loss is above this many times the coarser level's final one


def _builds(start_loss: float, previous_loss: float) -> bool:
    """Whether a level builds its picture rather than refining it. The first level builds; a finer
    level builds when its first picture scores far above the coarser level's final loss: it lacks
    what only this size can hold (a style's fine texture the coarser level could not draw; measured:
    29-78x on the generated pair, at most 4.8x on the examples)."""
    return start_loss > BUILD_RATIO * previous_loss


def choose_optimizer(params: StyleParams, device: torch.device) -> str:
    """reference: the seed's Adam; otherwise as asked. bench/quality.py at 384 px on a 2-core CPU: the
    pyramid with the tuned Adam reached the seed loop's objective 13-15× sooner (wall, median of 3),
    with L-BFGS (projected onto 0..1, which costs it extra line-search evaluations) only 1.0× sooner
    (measured with an earlier pyramid)."""
    del device  # kept for a device-dependent choice once a GPU is measured
    return "adam" if params.schedule == "reference" else params.optimizer


class Step:
    """One optimisation step of either optimiser; returns the loss terms of the iterate before it."""

    def __init__(
        self, pixels: torch.Tensor, objective: Objective, params: StyleParams, optimizer: str,
        previous_loss: float | None = None,
    ):
        self.pixels = pixels
        self.objective = objective
        self.lbfgs = optimizer == "lbfgs"
        if self.lbfgs:
            self.optimizer = torch.optim.LBFGS(
                # max_eval bounds the line search too (max_ls = max_eval - 1 here); torch's default for
                # max_iter=1 would be 1, i.e. a line search that never evaluates and never moves.
                [pixels], lr=1.0, max_iter=1, max_eval=1 + LBFGS_MAX_LINE_SEARCH, history_size=LBFGS_HISTORY,
                line_search_fn="strong_wolfe",
                tolerance_grad=0.0, tolerance_change=0.0,
            )
            self._cache: tuple[torch.Tensor, torch.Tensor, LossTerms] | None = None
        else:
            self.params = params
            self.optimizer: torch.optim.Optimizer | None = None  # made at the first step, which picks the settings
            self.taken = 0
            self.previous_loss = previous_loss  # the coarser level's best loss

    @staticmethod
    def _lr(settings: AdamSettings, step: int) -> float:
        ramp = min(1.0, (step + 1) / settings.warmup) if settings.warmup else 1.0
        return settings.lr * ramp * settings.decay**step

    def __call__(self) -> LossTerms:
        if self.lbfgs:
            return self._lbfgs_step()
        self.pixels.grad = None
        terms = _loss_and_grad(self.objective, self.pixels)
        if self.optimizer is None:
            # The first level builds; a finer one is judged by its first loss (one host read per level).
            building = self.previous_loss is None or _builds(float(terms.total.detach()), self.previous_loss)
            self.settings = adam_settings(self.params, building)
            self.optimizer = torch.optim.Adam([self.pixels], lr=self._lr(self.settings, 0), betas=self.settings.betas)
        self.optimizer.step()
        with torch.no_grad():
            self.pixels.clamp_(0.0, 1.0)
        self.taken += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.settings, self.taken)
        return terms

    def _lbfgs_step(self) -> LossTerms:
        first: list[LossTerms] = []

        def closure() -> torch.Tensor:
            # torch's L-BFGS evaluates the point its last line search ended on once more at the start
            # of the next step; the cache (keyed on the exact pixels) saves that forward/backward.
            if self._cache is not None and torch.equal(self._cache[0], self.pixels):
                self.pixels.grad = self._cache[1].clone()
                terms = self._cache[2]
            else:
                self.optimizer.zero_grad(set_to_none=True)
                terms = _loss_and_grad(self.objective, self.pixels)
                self._cache = (self.pixels.detach().clone(), self.pixels.grad.detach().clone(), terms)
            if not first:
                first.append(terms)
            return terms.total.detach()

        self.optimizer.step(closure)
        # Projected onto 0..1 like Adam's iterates: unclamped, the optimum drifts outside the range and
        # the delivered (clamped, 8-bit) picture scores far worse than the loss said (measured: 14× at 384 px).
        with torch.no_grad():
            self.pixels.clamp_(0.0, 1.0)
        return first[0]


def _loss_and_grad(objective: Callable[[torch.Tensor], LossTerms], pixels: torch.Tensor) -> LossTerms:
    """The loss terms with their gradient in ``pixels.grad``: an Objective computes both itself (tiled
    or not); any other loss callable (e.g. the animation's temporal objective) through autograd."""
    if isinstance(objective, Objective):
        return objective.loss_and_grad(pixels)
    terms = objective(pixels)
    terms.total.backward()
    return terms


LBFGS_HISTORY = 20
LBFGS_MAX_LINE_SEARCH = 20  # evaluations one step's line search may take (usually 1 or 2)


ETA_OVERHEAD_PIXELS = 16384


class _Eta:
    """Seconds left over the whole schedule.

    The current level's remaining steps are priced at its own measured step time (its first read,
    which includes warm-up, is dropped once later ones exist); later levels at that time scaled by
    their pixel count (plus a fixed overhead). Before a level has a measurement of its own, the previous level's per-pixel
    cost is used. Around a level change (its first two reads) the estimate may not rise by more than
    one step's time over the previous estimate counted down, so it never leaps backwards there.
    """

    def __init__(self, plan: Plan, work: Sequence[float] | None = None):
        # A step's cost grows with its pixels plus a fixed part (layer launches, small-image inefficiency):
        # measured on a 2-core CPU, a 96×72 step cost about a quarter of a 384×288 one, not a sixteenth.
        # ``work``: a level's pixel work relative to an untiled step (Tiling.work: halo and the extra
        # forward pass), so a tiled level is priced as its own before it has a measurement.
        work = work or [1.0] * len(plan.levels)
        self.pixels = [level.pixels * factor + ETA_OVERHEAD_PIXELS for level, factor in zip(plan.levels, work)]
        self.planned = [level.steps for level in plan.levels]
        self.batches: list[list[tuple[int, float]]] = [[] for _ in plan.levels]  # (steps, seconds) per read
        self.loop_seconds = 0.0
        self.last: tuple[float, float] | None = None  # (time, eta) of the previous report

    def add(self, level_index: int, steps: int, seconds: float) -> None:
        self.batches[level_index].append((steps, seconds))
        self.loop_seconds += seconds

    def end_level(self, level_index: int, steps_taken: int) -> None:
        self.planned[level_index] = steps_taken

    def _seconds_per_pixel_step(self, level_index: int) -> float:
        for index in range(level_index, -1, -1):
            batches = self.batches[index]
            if not batches or (len(batches) == 1 and index == level_index and index > 0):
                continue  # no measurement yet, or only the warm-up read: price by the previous level
            usable = batches[1:] if len(batches) > 1 else batches
            steps = sum(n for n, _ in usable)
            return sum(t for _, t in usable) / steps / self.pixels[index]
        return 0.0

    def estimate(self, level_index: int, steps_in_level: int, now: float, step_seconds: float) -> float:
        remaining = (self.planned[level_index] - steps_in_level) * self.pixels[level_index]
        remaining += sum(n * p for n, p in zip(self.planned[level_index + 1 :], self.pixels[level_index + 1 :]))
        eta = self._seconds_per_pixel_step(level_index) * remaining
        if self.last is not None and level_index > 0 and len(self.batches[level_index]) <= 2:
            then, previous = self.last
            eta = min(eta, max(0.0, previous - (now - then)) + step_seconds)
        if remaining == 0:
            eta = 0.0
        self.last = (now, eta)
        return eta


# --------------------------------------------------------------------------- images per level


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


@dataclass
class Pictures:
    """The full-size content and styles after colour handling, resized per level on demand."""

    content: Image.Image
    styles: list[Image.Image]
    content_rgb: Image.Image  # the original-colour content at full size (for colors=content)
    colors: str

    def content_at(self, size: tuple[int, int]) -> Image.Image:
        return _resized(self.content, size)

    def styles_at(self, sizes: Sequence[tuple[int, int]]) -> list[Image.Image]:
        return [_resized(style, size) for style, size in zip(self.styles, sizes)]


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == tuple(size):
        return image
    resample = Image.Resampling.BICUBIC if max(size) > max(image.size) else Image.Resampling.LANCZOS
    return image.resize(tuple(size), resample)


def pictures_for(content: Image.Image, styles: Sequence[Image.Image], the_plan: Plan, params: StyleParams) -> Pictures:
    final = the_plan.levels[-1]
    content_full = images.fit_within(content, params.size)
    if content_full.mode != "RGB":
        content_full = images.to_image(images.to_tensor(content_full))
    styles_full = [_resized(images.to_image(images.to_tensor(s)) if s.mode != "RGB" else s, size)
                   for s, size in zip(styles, final.style_sizes)]
    if params.colors == "style":
        return Pictures(content_full, styles_full, content_full, params.colors)
    content_t = images.to_tensor(content_full)
    if params.colors == "match":
        matched = [images.to_image(color.match_colors(images.to_tensor(s), content_t)) for s in styles_full]
        return Pictures(content_full, matched, content_full, params.colors)
    grey_content = color.luminance(content_t)
    greys = [images.to_image(color.match_luminance(color.luminance(images.to_tensor(s)), grey_content)) for s in styles_full]
    return Pictures(images.to_image(grey_content), greys, content_full, params.colors)


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


def _upsampled(pixels: torch.Tensor, coarse_content: torch.Tensor | None, content: torch.Tensor, memory_format) -> torch.Tensor:
    """The next level's first picture. From the content (``coarse_content`` given): the content at
    the new size plus the upsampled change the coarser levels made to it; upsampling the picture
    itself would blur away the content's fine detail, which the next level then has to rebuild
    (measured at 384 px: the final level starts ~15% lower and reaches the seed loop's objective
    ~10% sooner). From noise or the style: the picture upsampled, adding nothing of the content."""
    height, width = content.shape[-2:]
    if coarse_content is None:
        bigger = F.interpolate(pixels.detach(), size=(height, width), mode="bicubic", align_corners=False)
    else:
        change = F.interpolate(pixels.detach() - coarse_content, size=(height, width), mode="bicubic", align_corners=False)
        bigger = content + change
    return bigger.clamp_(0.0, 1.0).contiguous(memory_format=memory_format).requires_grad_(True)


# --------------------------------------------------------------------------- stylize


def stylize(
    content: Image.Image,
    style: Image.Image | Sequence[Image.Image],
    params: StyleParams | None = None,
    *,
    model: VGGFeatures | None = None,
    device: str | torch.device | None = "auto",
    on_progress: Callable[[Progress], None] | None = None,
    on_preview: Callable[[int, Image.Image], None] | None = None,
    preview_every: int = 0,
    preview_seconds: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    readback: Readback | None = None,
    clock: Callable[[], float] = time.perf_counter,
    max_memory: int | float | str | None = None,
    init_image: Image.Image | None = None,
) -> Result:
    """Optimise an image that keeps ``content``'s content and takes the style of ``style``.

    ``style`` is one image or several (blended by ``params.style_blend``). ``model`` is a loaded
    ``VGGFeatures`` (reuse it across jobs); without one the torchvision weights are loaded once per
    process on ``device``. ``should_stop`` is polled before every step: returning True raises
    ``Cancelled``. ``on_preview`` receives a small image every ``preview_every`` steps and/or at most
    every ``preview_seconds`` of wall time (with ``preview_seconds``, also as soon as the coarsest of
    several levels ends). ``readback`` says how often losses are read back to the
    host (default: every step on a CPU, a few times a second elsewhere); ``on_progress`` is called at
    each read. ``clock`` is the time source for elapsed, ETA and time-based previews (a test seam).

    ``max_memory`` bounds one step's peak memory beyond the loaded model (bytes, or text such as
    ``"2GiB"``, or ``"unlimited"``; default: a share of the device's free memory, see
    :func:`nst.memory.default_budget`):
    a level whose estimate exceeds it runs in tiles (the same result, see tiling.py), and a job that
    cannot fit even in the smallest tiles is refused. ``init_image`` continues from a previous result
    (e.g. to upscale it): it becomes the coarse level of a new pyramid, and only the final level, at
    ``params.size``, runs from it upsampled; the content is enlarged to ``params.size`` when smaller
    (only here: a job without ``init_image`` never enlarges its content).
    Raises ImageError/ParamError (see :func:`nst.check_runnable`) before any tensor work.
    """
    started = clock()
    params = params or StyleParams()
    styles = [style] if isinstance(style, Image.Image) else list(style)
    if init_image is not None:
        # An upscale may go past the content's own size (a new job never does): the content is
        # enlarged to the requested size, and the picture adds the detail the optimisation finds.
        content = _enlarged(content, params.size)
    the_plan = plan(content.size, [s.size for s in styles], params)
    if init_image is not None:
        the_plan = _final_level_only(the_plan)
    model = model or default_model(device)
    model.check_layers(params.layers)
    target = model.device
    optimizer = choose_optimizer(params, target)
    lbfgs = optimizer == "lbfgs"
    # torch's L-BFGS flattens the gradient with view(): it needs the pixels in plain (NCHW) memory.
    memory_format = torch.contiguous_format if lbfgs else preferred_memory_format(target)
    dtype = None if lbfgs else compute_dtype(target, params.precision)  # L-BFGS needs fp32 curvature
    budget = memory.parse_budget(max_memory) if max_memory is not None else memory.default_budget(target)
    # May refuse: before any tensor work. An init image stands for a coarser level: it is scored at its size.
    init_size = _init_size(init_image) if init_image is not None else None
    needs = _memory_needs([lv.size for lv in the_plan.levels] + ([init_size] if init_size else []), params, budget, dtype, optimizer)
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    readback = readback or Readback.for_device(target)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes for hundreds of steps: let cuDNN pick

    pictures = pictures_for(content, styles, the_plan, params)
    blend = the_plan.blend
    init_style = max(zip(blend, range(len(styles))))[1]  # the most weighted style starts init=style
    levels = the_plan.levels
    eta = _Eta(the_plan, [need.work for need in needs])
    total = the_plan.total_steps
    done = 0  # steps over the whole schedule
    level_steps: list[int] = []
    stopped_early = False
    last_preview = clock()
    previewed = False
    pixels: torch.Tensor | None = None
    previous_loss: float | None = None  # the best loss the previous level reached

    def preview(level_size: tuple[int, int]) -> None:
        nonlocal last_preview, previewed
        on_preview(done, images.fit_within(finished_picture(pixels, pictures, level_size), PREVIEW_SIDE))
        last_preview, previewed = clock(), True

    def to_device(image: Image.Image) -> torch.Tensor:
        return images.to_tensor(image).to(target).contiguous(memory_format=memory_format)

    def check_cancel() -> None:
        # Also between the tiles of a tiled step, which can take minutes at 4096 px.
        if should_stop is not None and should_stop():
            raise Cancelled(done, total)

    if init_image is not None:
        pixels, content_t, previous_loss = _from_init_image(
            init_image, [s.size for s in styles], pictures, params, the_plan.blend, model, dtype, needs[-1].tiling,
            memory_format, check_cancel,
        )

    for li, level in enumerate(levels):
        coarse_content = content_t if pixels is not None and params.init == "content" else None
        content_t = to_device(pictures.content_at(level.size))
        style_ts = [to_device(s) for s in pictures.styles_at(level.style_sizes)]
        objective = Objective(model, content_t, style_ts, params, dtype, blend, needs[li].tiling, check_cancel)
        if pixels is None:
            style_for_init = pictures.styles_at(level.style_sizes)[init_style]
            pixels = _initial_image(params.init, content_t, style_for_init, seed, memory_format)
        else:
            pixels = _upsampled(pixels, coarse_content, content_t, memory_format)
        step_fn = Step(pixels, objective, params, optimizer, previous_loss)
        stopper = EarlyStop(the_plan.stop_tolerance)
        history = torch.empty((level.steps, 4), device=target)
        read_upto = 0  # history rows already on the host
        last_read = clock()
        taken = 0
        stop_level = False
        for i in range(level.steps):
            check_cancel()
            history[i] = step_fn().stacked()
            taken = i + 1
            done += 1
            now = clock()
            last_of_level = taken == level.steps
            if last_of_level or readback.due(taken - read_upto, now - last_read):
                rows = history[read_upto:taken].tolist()  # the one host sync for these steps
                for row in rows:
                    check_finite(row[3], done)
                    if stopper.update(row[3]):
                        stop_level = True
                eta.add(li, taken - read_upto, now - last_read)
                if stop_level:
                    eta.end_level(li, taken)
                    total = done + sum(lv.steps for lv in levels[li + 1 :])
                if on_progress is not None:
                    seconds_per_step = (now - last_read) / (taken - read_upto)
                    remaining = eta.estimate(li, taken, now, seconds_per_step)
                    on_progress(Progress(done, total, *rows[-1], now - started, remaining, level.index, len(levels)))
                read_upto, last_read = taken, now
            if on_preview is not None and done < total and not stop_level and (
                (preview_every and done % preview_every == 0)
                or (preview_seconds and clock() - last_preview >= preview_seconds)
            ):
                preview(level.size)
            if stop_level:
                break
        level_steps.append(taken)
        stopped_early = stop_level
        previous_loss = stopper.best[-1] if stopper.best else None
        with torch.no_grad():
            pixels.clamp_(0.0, 1.0)
        if on_preview is not None and preview_seconds and li == 0 and len(levels) > 1 and not previewed:
            # The first picture early: the coarsest level is cheap (about 3 s of a 384 px job on a
            # 2-core CPU), and its result already shows the composition, where the time-based cadence
            # alone would wait preview_seconds.
            preview(level.size)
    loop_seconds = eta.loop_seconds

    with torch.no_grad():
        final = objective(pixels).values()
    check_finite(final[3], done)
    result = finished_picture(pixels, pictures, levels[-1].size)
    stats = Stats(
        seconds=clock() - started,
        steps=done,
        steps_per_second=done / loop_seconds if loop_seconds > 0 else float("inf"),
        content_loss=final[0],
        style_loss=final[1],
        tv_loss=final[2],
        total_loss=final[3],
        device=str(target),
        dtype=str(dtype or torch.float32).replace("torch.", ""),
        size=result.size,
        seed=seed,
        levels=len(levels),
        level_steps=tuple(level_steps),
        stopped_early=stopped_early,
        schedule=params.schedule,
        optimizer=optimizer,
        tiles=tuple(len(n.tiling.tiles(*lv.size)) if n.tiling else 1 for n, lv in zip(needs, levels)),
        memory_budget=budget,
    )
    return Result(result, stats)


# --------------------------------------------------------------------------- memory and continuing


def _memory_needs(
    sizes: Sequence[tuple[int, int]], params: StyleParams, budget: int | None, dtype, optimizer: str
) -> list[memory.Need]:
    """Per size: the whole picture, or the tiles that fit ``budget``; raises ParamError when none fit."""
    dtype_bytes = 4 if dtype is None else torch.finfo(dtype).bits // 8
    return memory.check_fits(sizes, budget, params.layers, params.content_layer, dtype_bytes=dtype_bytes,
                             optimizer=optimizer, pool=params.pool, style_layers=params.gram_layers)


def _enlarged(content: Image.Image, size: int) -> Image.Image:
    """``content`` with its longer side raised to ``size`` (aspect kept); as it is when already as large."""
    if max(content.size) >= size:
        return content
    scale = size / max(content.size)
    width, height = (size, max(1, round(content.height * scale))) if content.width >= content.height else (
        max(1, round(content.width * scale)), size)
    return content.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def _final_level_only(the_plan: Plan) -> Plan:
    """A plan continuing from a given picture: its final level only (with the effort's own step cap)."""
    final = the_plan.levels[-1]
    return Plan((Level(1, final.size, final.style_sizes, final.steps),), the_plan.blend, the_plan.stop_tolerance)


def _init_size(init_image: Image.Image) -> tuple[int, int]:
    if min(init_image.size) < MIN_SIDE:
        raise ImageError(f"the init image ({init_image.width}×{init_image.height}) is too small: VGG-19 needs at least {MIN_SIDE} px on its shorter side")
    return init_image.size


def _from_init_image(init_image, style_sizes, pictures, params, blend, model, dtype, tiling, memory_format, check_cancel):
    """The given picture as a finished coarse level: (its pixels, the content at its size, its loss
    there). Its loss, scored against targets at its own size, lets the final level judge, as after any
    coarser level, whether it refines the picture or has to build it (see :func:`_builds`)."""
    start = images.to_tensor(init_image)
    if params.colors == "content":
        start = color.luminance(start)  # the optimiser works on the luminance there
    size = init_image.size
    device = model.device
    content_t = images.to_tensor(pictures.content_at(size)).to(device).contiguous(memory_format=memory_format)
    style_ts = [images.to_tensor(s).to(device).contiguous(memory_format=memory_format)
                for s in pictures.styles_at(styles_at(size, style_sizes, params))]
    objective = Objective(model, content_t, style_ts, params, dtype, blend, tiling, check_cancel)
    pixels = start.to(device).contiguous(memory_format=memory_format)
    loss = objective(pixels).values()[3]
    check_finite(loss, 0)
    return pixels, content_t, loss


def finished_picture(pixels: torch.Tensor, pictures: Pictures, size: tuple[int, int]) -> Image.Image:
    """The picture as delivered: for colors=content, the optimised luma with the content's chroma."""
    image = pixels.detach().clamp(0.0, 1.0)
    if pictures.colors == "content":
        content_rgb = images.to_tensor(_resized(pictures.content_rgb, size)).to(image.device)
        image = color.with_chroma(image.float(), content_rgb)
    return images.to_image(image)


def check_finite(total: float, step: int) -> None:
    """Refuse a diverged optimisation (a NaN or infinite loss at ``step``) with what to change."""
    if not math.isfinite(total):
        raise NSTError(
            f"the optimisation diverged (loss is {total}) at step {step}; "
            "lower the learning rate or the style/content weights"
        )
