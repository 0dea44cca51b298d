"""Animations: stylize every frame of a GIF or a short clip, holding still what does not move.

The first frame is stylized like a still (:func:`nst.transfer.stylize`, the full schedule). Each
later frame starts from the previous *stylized* frame carried to the new frame's content (the
previous result plus the change of the content, as the pyramid carries a picture a level up) and
runs until its objective reaches the first frame's level (see FRAME_TARGET), at most
``frame_steps`` steps. A temporal term (Ruder et al., *Artistic style transfer for videos*, 2016,
without optical flow) holds the picture where the content did not change: its mask is the
content's own frame-to-frame change, so moving parts are free to follow. The style targets are
computed once for all later frames; only the content target changes.

Caps (frames, playing time, frames × pixels) are checked by :func:`check_animation` before any
tensor work; it imports no torch, so the bot's main process can refuse a clip before queueing it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from . import images
from .errors import Cancelled
from .images import Animation
from .model import VGGFeatures, compute_dtype, preferred_memory_format
from .params import StyleParams
from .images import check_animation
from .schedule import plan
from .transfer import (
    PREVIEW_SIDE,
    LossTerms,
    Objective,
    Progress,
    Result,
    Step,
    check_finite,
    choose_optimizer,
    default_model,
    finished_picture,
    pictures_for,
    stylize,
)

# A pixel whose content changed by more than this (0..1, largest channel) since the previous frame is
# free to change; below it the temporal term holds it, fully where the content did not change at all.
CHANGE_THRESHOLD = 0.08
# The temporal term's scale: a held pixel moved by this much (0..1) costs temporal_weight × the
# frame's starting loss, whatever the magnitude of the network's losses (weights differ by 1e6).
# Measured with bench/animation.py's clip at 64 px, 10 steps a frame, random weights, fp32: holding
# the static parts hard (0.05 at the default weight 30) left later frames' objective 1.44x a still's
# on the mean (1.18x at 0.05·√3), because the picture around a moving part cannot adapt to it and each
# frame's unfinished work is held into the next; at 0.05·√30 (weight 1) 0.95x, but the static region
# flickered 0.17x as much as frames stylized one by one (goal: at most 0.25x). 0.05·√10 with the
# stopping rule below, at most 20 steps: 1.00x on the mean, 1.07x at worst, flicker 0.08x.
HOLD_SCALE = 0.05 * 10**0.5
# A later frame stops once its objective (without the temporal term) is this fraction of the first
# frame's final objective, the one still the clip has: a fixed small budget left the frames that
# start far from it (a moving part drawn from the raw content) unfinished, and the excess grew
# frame after frame (1.13x a still's at frame 2, 1.69x at frame 21). Not when the loss flattens:
# that stopped frames after 11 steps at 1.07x (mean) of a still's. The stills of one clip's frames
# vary by about ±7% around the first's, hence a target under 1: bench/animation.py at 128 px, 20 steps
# at most: 0.95 left the worst frame at 1.12x its still's (mean 1.00x) for 0.21x the stills' CPU time;
# 0.90 at 1.03x (mean 0.96x) for 0.30x (goal: at most 0.33x). frame_steps caps the frames that do
# not get there.
FRAME_TARGET = 0.90


@dataclass(frozen=True)
class AnimationProgress:
    """Progress over the whole clip. ``step``/``total`` count steps over all frames (``total`` is an
    estimate until the last frame: later frames may stop early); ``eta`` covers the whole clip."""

    frame: int  # 1-based frame being stylized
    frames: int
    step: int
    total: int
    total_loss: float
    elapsed: float
    eta: float

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


@dataclass(frozen=True)
class AnimationResult:
    animation: Animation  # the stylized frames, with the content's durations and loop
    frame_losses: tuple[float, ...]  # each frame's style-transfer objective (without the temporal term)
    frame_steps: tuple[int, ...]  # steps each frame took
    seconds: float
    first: Result  # the first frame's still result (its Stats: device, dtype, seed, ...)


def stylize_animation(
    animation: Animation,
    style: Image.Image | Sequence[Image.Image],
    params: StyleParams | None = None,
    *,
    model: VGGFeatures | None = None,
    device: str | torch.device | None = "auto",
    on_progress: Callable[[AnimationProgress], None] | None = None,
    on_preview: Callable[[int, Image.Image], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> AnimationResult:
    """Stylize every frame of ``animation`` at ``params.animation_size``; see the module docstring.

    ``on_preview(frame, image)`` receives each finished frame (small); ``should_stop`` is polled before
    every step (raises :class:`~nst.errors.Cancelled` counting the clip's steps). Raises
    ImageError/ParamError (see :func:`check_animation`) before any tensor work.
    """
    started = clock()
    params = params or StyleParams()
    styles = [style] if isinstance(style, Image.Image) else list(style)
    check_animation(animation.size, len(animation.frames), animation.duration_ms, [s.size for s in styles], params)
    frame_params = params.replace(size=params.animation_size)
    count = len(animation.frames)
    clip = _ClipProgress(count, params.frame_steps, on_progress, started, clock)
    clip.first_total = plan(animation.size, [s.size for s in styles], frame_params).total_steps

    first = stylize(
        animation.frames[0], styles, frame_params, model=model, device=device,
        on_progress=clip.first_frame, should_stop=_cancel_within(should_stop, clip), clock=clock,
    )
    outputs = [first.image]
    losses = [first.stats.total_loss]
    steps = [first.stats.steps]
    if on_preview is not None:
        on_preview(1, images.fit_within(first.image, PREVIEW_SIDE))
    if count > 1:
        frames = _LaterFrames(animation, styles, frame_params, model or default_model(device), first)
        for index in range(1, count):
            image, loss, taken = frames.stylize(index, clip, should_stop)
            outputs.append(image)
            losses.append(loss)
            steps.append(taken)
            if on_preview is not None:
                on_preview(index + 1, images.fit_within(image, PREVIEW_SIDE))
    result = Animation(tuple(outputs), animation.durations, animation.loop)
    return AnimationResult(result, tuple(losses), tuple(steps), clock() - started, first)


def _cancel_within(should_stop: Callable[[], bool] | None, clip: "_ClipProgress") -> Callable[[], bool] | None:
    """The first frame's should_stop: raises Cancelled counting the clip's steps, not the still's."""
    if should_stop is None:
        return None

    def check() -> bool:
        if should_stop():
            raise Cancelled(clip.done, clip.total)
        return False

    return check


class _ClipProgress:
    """Counts steps over the clip and prices the rest: the first frame by its own ETA, later frames at
    the measured seconds per step of later frames (before one is measured: the first frame's final
    level, assumed to cost as much per step)."""

    def __init__(self, frames: int, frame_steps: int, report, started: float, clock):
        self.frames = frames
        self.frame_steps = frame_steps
        self.report = report
        self.started = started
        self.clock = clock
        self.frame = 1
        self.done = 0  # steps over the clip
        self.first_total = 0
        self.first_seconds_per_step = 0.0
        self.later_steps = 0
        self.later_seconds = 0.0
        self.last_time = started
        self.finished_later_steps = 0

    @property
    def total(self) -> int:
        """Frames finished count the steps they took; the current and later ones their budget."""
        if self.frame == 1:
            return self.first_total + (self.frames - 1) * self.frame_steps
        return self.first_total + self.finished_later_steps + (self.frames - self.frame + 1) * self.frame_steps

    def first_frame(self, progress: Progress) -> None:
        self.done = progress.step
        self.first_total = progress.total
        now = self.clock()
        if progress.step:
            self.first_seconds_per_step = (now - self.started) / progress.step
        later = (self.frames - 1) * self.frame_steps * self.first_seconds_per_step
        self._emit(progress.total_loss, progress.eta + later, now)

    def start_frame(self, frame: int, finished_later_steps: int) -> None:
        self.frame = frame
        self.finished_later_steps = finished_later_steps

    def later_step(self, loss: float, in_frame: int) -> None:
        now = self.clock()
        self.done += 1
        self.later_steps += 1
        self.later_seconds += now - self.last_time
        per_step = self.later_seconds / self.later_steps
        remaining = max(0, self.frame_steps - in_frame) + (self.frames - self.frame) * self.frame_steps
        self._emit(loss, remaining * per_step, now)

    def mark(self) -> None:
        self.last_time = self.clock()

    def _emit(self, loss: float, eta: float, now: float) -> None:
        self.last_time = now
        if self.report is not None:
            self.report(AnimationProgress(self.frame, self.frames, self.done, max(self.total, self.done), loss, now - self.started, eta))


class _TemporalObjective:
    """The style-transfer objective plus the temporal term: the held pixels' squared change from the
    carried picture, weighted by the mask (1 = the content did not change there)."""

    def __init__(self, objective: Objective, carried: torch.Tensor, mask: torch.Tensor, weight: float):
        self.objective = objective
        self.carried = carried
        self.mask = mask
        self.weight = weight  # already scaled to the frame's starting loss

    def __call__(self, image: torch.Tensor) -> LossTerms:
        terms = self.objective(image)
        self.last_objective = terms.total.detach()
        if not self.weight:
            return terms
        held = (self.mask * (image.float() - self.carried) ** 2).mean()
        return LossTerms(terms.content, terms.style, terms.tv, terms.total + self.weight * held)


class _LaterFrames:
    """Frames 2..N at the first frame's final size, with the style targets computed once."""

    def __init__(self, animation: Animation, styles: list[Image.Image], params: StyleParams, model: VGGFeatures, first: Result):
        self.animation = animation
        self.params = params
        self.model = model
        self.device = model.device
        self.optimizer = choose_optimizer(params, self.device)
        self.memory_format = torch.contiguous_format if self.optimizer == "lbfgs" else preferred_memory_format(self.device)
        self.dtype = None if self.optimizer == "lbfgs" else compute_dtype(self.device, params.precision)
        self.plan = plan(animation.size, [s.size for s in styles], params)
        self.size = self.plan.levels[-1].size
        self.styles = styles
        first_pictures = pictures_for(animation.frames[0], styles, self.plan, params)
        # colors=match recolours the style to the content: the first frame's colours serve the whole clip
        style_ts = [self._tensor(s) for s in first_pictures.styles_at(self.plan.levels[-1].style_sizes)]
        self.previous_content = self._tensor(first_pictures.content_at(self.size))
        self.objective = Objective(model, self.previous_content, style_ts, params, self.dtype, self.plan.blend)
        self.previous = self._optimised(first.image, first_pictures)
        self.previous_loss = first.stats.total_loss
        # FRAME_TARGET's reference; no early stop when the job asked for every step (stop_tolerance 0)
        self.target = FRAME_TARGET * first.stats.total_loss if self.plan.early_stop else None
        self.finished_steps = 0

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        return images.to_tensor(image).to(self.device).contiguous(memory_format=self.memory_format)

    def _optimised(self, image: Image.Image, pictures) -> torch.Tensor:
        """The picture as the optimiser sees it: for colors=content, the luminance it optimised."""
        tensor = self._tensor(image)
        if pictures.colors == "content":
            from .color import luminance

            tensor = luminance(tensor)
        return tensor

    def stylize(self, index: int, clip: _ClipProgress, should_stop) -> tuple[Image.Image, float, int]:
        clip.start_frame(index + 1, self.finished_steps)
        pictures = pictures_for(self.animation.frames[index], self.styles, self.plan, self.params)
        content = self._tensor(pictures.content_at(self.size))
        objective = _with_content(self.objective, self.model, content, self.params, self.dtype)
        # The raw change of the content makes a worse start than the previous picture as it is (1.19-1.58x
        # a still's objective against 1.00-1.03x at 64 px), but without it a moving part is left where it
        # was: random weights barely see that (the objective stayed within 1.08x), the disc's pixels did
        # (|output - content| 83-93 against the stills' 29, 44 with the change; bench/animation.py's disc error).
        carried = (self.previous + (content - self.previous_content)).clamp_(0.0, 1.0)
        pixels = carried.clone().contiguous(memory_format=self.memory_format).requires_grad_(True)
        mask = _unchanged_mask(self.previous_content, content)
        with torch.no_grad():
            start_loss = float(objective(pixels).total)
        check_finite(start_loss, clip.done)
        weight = self.params.temporal_weight * start_loss / HOLD_SCALE**2
        temporal = _TemporalObjective(objective, carried, mask, weight)
        step = Step(pixels, temporal, self.params, self.optimizer, self.previous_loss)
        clip.mark()
        taken = 0
        for taken in range(1, self.params.frame_steps + 1):
            if should_stop is not None and should_stop():
                raise Cancelled(clip.done, clip.total)
            total = step().total.detach()
            # one host read a step (later frames are short; the ETA and the stopping rule need it)
            loss, reached = torch.stack([total, temporal.last_objective]).tolist()
            check_finite(loss, clip.done + 1)
            clip.later_step(loss, taken)
            if self.target is not None and reached <= self.target:
                break
        with torch.no_grad():
            pixels.clamp_(0.0, 1.0)
            final = float(objective(pixels).total)
        check_finite(final, clip.done)
        self.finished_steps += taken
        self.previous, self.previous_content = pixels.detach(), content
        self.previous_loss = final
        return finished_picture(pixels, pictures, self.size), final, taken


def _with_content(objective: Objective, model: VGGFeatures, content: torch.Tensor, params: StyleParams, dtype) -> Objective:
    """The same objective (the style Grams are shared, not recomputed) with a new frame's content target."""
    frame = copy.copy(objective)
    with torch.no_grad():
        features = model(content, [params.content_layer], params.pool, dtype)
    frame.content_target = features[params.content_layer].float()
    return frame


def _unchanged_mask(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """1 where the content is the same in both frames, falling to 0 at CHANGE_THRESHOLD; widened by a
    few pixels, because the style's strokes around a moving edge change with it."""
    change = (after - before).abs().amax(dim=1, keepdim=True).float()
    change = F.max_pool2d(change, kernel_size=5, stride=1, padding=2)
    return (1.0 - change / CHANGE_THRESHOLD).clamp_(0.0, 1.0)
