"""What a job will do, decided before any tensor work: can it run, at which sizes, for how many steps.

No torch here: the bot's main process calls :func:`check_runnable` to refuse a job before queueing it.

The coarse-to-fine schedule (Gatys et al. 2017, "Controlling Perceptual Factors"; jcjohnson's multires
scripts) optimises the picture first at a fraction of its size, then upsamples it and refines it at
the next size, up to the requested one. A step at half the size costs about a quarter, and the coarse
levels settle the large structures that take a full-size loop hundreds of small steps to move; the
finer levels only add the detail. No level goes below PYRAMID_MIN_SIDE on its shorter side (VGG-19's
four poolings need room for the style statistics to mean anything) or gives a style below MIN_SIDE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from . import images
from .errors import ImageError, ParamError
from .params import MIN_SIDE, StyleParams, blend_weights

PYRAMID_MIN_SIDE = 64  # no pyramid level below this on its shorter side
MAX_LEVELS = 4
LEVEL_FACTOR = 2  # each level is this many times smaller than the next, per side
MIN_LEVEL_STEPS = 3  # a level shorter than this is not worth its targets


@dataclass(frozen=True)
class Effort:
    """How far a job optimises (``StyleParams.effort``); chosen by measurement with bench/quality.py.

    ``shares``: the share of ``epochs`` each level may take at most, coarsest first, per number of
    levels (early stop usually ends a level sooner). ``stop_tolerance``: a level ends once its best
    loss improved by less than this over STOP_WINDOW steps. ``final_steps``: the most steps the final
    level of a pyramid takes (None: its share).
    """

    shares: dict[int, tuple[float, ...]]
    stop_tolerance: float
    final_steps: int | None = None


EFFORTS = {
    # The seed loop's objective, and then stop (README, "How it works"). Measured at 256 and 384 px on
    # both image pairs of bench/quality.py, fp32: a pyramid's final level reaches the seed loop's
    # 500-step objective (each term within 1.25× of the loop's) after 20-30 steps, wherever the
    # coarser levels left it, and from there each step improves the loss by ~1-2% for a full-size
    # step's time: 38 steps leave a margin of 8-18 steps. The coarse levels only need to settle the
    # composition: 40 steps at ¼ size (25 at ½ size, where a step costs a third of a full one) and 15
    # at ½ size cost 3-8 full-size steps, where 100 + 25 cost 14-33 and moved the final level's
    # arrival by at most 5 steps. A level whose loss improves by less than 12% over 10 steps (about
    # 1.2% a step) ends sooner.
    "standard": Effort({1: (1.0,), 2: (0.05, 0.95), 3: (0.08, 0.03, 0.89), 4: (0.08, 0.03, 0.03, 0.86)}, 0.12, 38),
    # Refine until the loss is flat: measured at 256 px, about 3x the standard effort's time for an
    # objective 18-29% lower (24-44% below the seed loop's). The coarsest level may take 20% of the budget, each middle level 5% (it starts from a
    # good picture and only adds its detail), the final level the rest; a level ends once its loss
    # improves by less than 1% over 10 steps. Measured with bench/quality.py at 384 px: shares (0.2,
    # 0.08, 0.72) reached the seed loop's objective with ~35% less work than (0.45, 0.33, 0.22);
    # (0.2, 0.05, 0.75) another 5-8% sooner on both image pairs.
    "high": Effort({1: (1.0,), 2: (0.2, 0.8), 3: (0.2, 0.05, 0.75), 4: (0.2, 0.05, 0.05, 0.7)}, 0.01),
}


@dataclass(frozen=True)
class Level:
    index: int  # 1 = coarsest
    size: tuple[int, int]  # (width, height) of the picture at this level
    style_sizes: tuple[tuple[int, int], ...]  # each style image's size at this level
    steps: int  # the most steps this level may take

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


@dataclass(frozen=True)
class Plan:
    levels: tuple[Level, ...]
    blend: tuple[float, ...]  # normalised weight of each style image
    stop_tolerance: float  # a level ends once its best loss improved by less than this over STOP_WINDOW steps; 0 = never

    @property
    def early_stop(self) -> bool:
        return self.stop_tolerance > 0

    @property
    def total_steps(self) -> int:
        return sum(level.steps for level in self.levels)

    @property
    def size(self) -> tuple[int, int]:
        return self.levels[-1].size


def _style_name(index: int, count: int) -> str:
    return "style image" if count == 1 else f"style image {index + 1}"


def check_runnable(
    content_size: tuple[int, int], style_sizes: Sequence[tuple[int, int]], params: StyleParams,
    *, max_memory: int | float | str | None = None, init_size: tuple[int, int] | None = None,
) -> None:
    """Refuse, before any tensor work, a content/style pair that VGG-19 cannot process at ``params``.

    ``content_size`` and ``style_sizes`` are the decoded (upright) images' (width, height). Raises
    :class:`~nst.errors.ImageError` when the content is too small or too elongated for ``size``,
    :class:`~nst.errors.ParamError` (``style_scale`` / ``style_blend``) for a style that would shrink
    below the minimum or a blend weight count that does not match the style images, and
    (``max_memory``) when a level cannot fit that memory budget (bytes or text like ``"2GiB"``) even in
    the smallest tiles: estimated for fp32 unless ``precision`` is bf16 (``auto`` may only need less).
    ``init_size``: the job continues from a picture of that size (an upscale, ``stylize(init_image=)``):
    checked as stylize runs it, the content enlarged to ``size`` and only the final level planned,
    with the picture's own size scored once.
    """
    if init_size is not None:
        if min(init_size) < MIN_SIDE:
            raise ImageError(f"the init image ({init_size[0]}×{init_size[1]}) is too small: VGG-19 needs at least "
                             f"{MIN_SIDE} px on its shorter side")
        content_size = images.enlarged_size(tuple(content_size), params.size)
    the_plan = plan(content_size, style_sizes, params)
    sizes = [level.size for level in the_plan.levels]
    if init_size is not None:
        sizes = [sizes[-1], tuple(init_size)]
    _needs(sizes, max_memory, params)


def _needs(sizes: Sequence[tuple[int, int]], max_memory: int | float | str | None, params: StyleParams) -> list | None:
    """nst.memory.check_fits for ``sizes`` under the budget ``max_memory``; None when there is none
    (not given, or ``unlimited``)."""
    if max_memory is None:
        return None
    from . import memory  # no torch: nst.memory imports it only to ask a device for its default

    budget = memory.parse_budget(max_memory)
    if budget is None:
        return None
    return memory.check_fits(
        sizes, budget, params.layers, params.content_layer, dtype_bytes=memory.dtype_bytes_for(params.precision),
        optimizer="adam" if params.schedule == "reference" else params.optimizer, pool=params.pool,
        style_layers=params.gram_layers,
    )


def level_work(the_plan: Plan, params: StyleParams, max_memory: int | float | str | None = None) -> list[float]:
    """Each level's step cost relative to an untiled step under the memory budget ``max_memory``
    (:meth:`nst.tiling.Tiling.work`; 1.0 for a level that fits whole, and for every level when no
    budget is given: the device's own default is only known where the job runs), as the engine's ETA
    prices the levels: a queue's planned work. Raises as :func:`check_runnable` when a level cannot
    fit. No torch."""
    needs = _needs([level.size for level in the_plan.levels], max_memory, params)
    return [need.work for need in needs] if needs is not None else [1.0] * len(the_plan.levels)


def plan(content_size: tuple[int, int], style_sizes: Sequence[tuple[int, int]], params: StyleParams) -> Plan:
    """The levels, sizes and step budgets of a job; raises as :func:`check_runnable` does."""
    style_sizes = tuple(tuple(s) for s in style_sizes)
    blend = blend_weights(params, len(style_sizes))
    final = images.fitted_size(tuple(content_size), params.size)
    _check_content(tuple(content_size), final, params.size)
    finals = styles_at(final, style_sizes, params)
    for i, (original, scaled) in enumerate(zip(style_sizes, finals)):
        if min(scaled) < MIN_SIDE:
            needed = MIN_SIDE / max(final)
            raise ParamError(
                "style_scale",
                f"the {_style_name(i, len(style_sizes))} ({original[0]}×{original[1]}) would be scaled to "
                f"{scaled[0]}×{scaled[1]} px at style_scale {params.style_scale:g} next to a {final[0]}×{final[1]} "
                f"output; VGG-19 needs at least {MIN_SIDE} px on each side: use a style_scale of at least "
                f"{needed:.2g} or a larger size",
            )
    sizes = [final] if params.schedule != "pyramid" else _pyramid_sizes(final, style_sizes, params)
    effort = EFFORTS[params.effort]
    steps = _split_steps(params.epochs, effort.shares[len(sizes)])
    if len(sizes) > 1 and effort.final_steps is not None:
        steps[-1] = min(steps[-1], effort.final_steps)
    levels = tuple(
        Level(i + 1, size, styles_at(size, style_sizes, params), n) for i, (size, n) in enumerate(zip(sizes, steps)) if n
    )
    levels = tuple(Level(i + 1, lv.size, lv.style_sizes, lv.steps) for i, lv in enumerate(levels))
    return Plan(levels, blend, stop_tolerance(params))


def stop_tolerance(params: StyleParams) -> float:
    """The early-stop tolerance a job runs with: none for the seed's loop, else the one given, else its effort's."""
    if params.schedule == "reference":
        return 0.0
    return params.stop_tolerance if params.stop_tolerance is not None else EFFORTS[params.effort].stop_tolerance


def _check_content(original: tuple[int, int], final: tuple[int, int], size: int) -> None:
    if min(final) >= MIN_SIDE:
        return
    width, height = original
    what = f"the content image ({width}×{height})"
    if min(original) < MIN_SIDE:
        raise ImageError(f"{what} is too small: VGG-19 needs at least {MIN_SIDE} px on its shorter side")
    needed = -(-MIN_SIDE * max(original) // min(original))  # ceil: the size that keeps 16 px on the short side
    raise ImageError(
        f"{what} would be scaled to {final[0]}×{final[1]} px at size {size}; VGG-19 needs at least "
        f"{MIN_SIDE} px on the shorter side: use a size of at least {needed}, or crop the image to be less elongated"
    )


def styles_at(size: tuple[int, int], style_sizes, params: StyleParams) -> tuple[tuple[int, int], ...]:
    """Each style image's size next to a picture of ``size`` (``style_scale`` applied)."""
    return tuple(images.matched_size(s, size, params.style_scale) for s in style_sizes)


def _pyramid_sizes(final: tuple[int, int], style_sizes, params: StyleParams) -> list[tuple[int, int]]:
    """Sizes coarsest first, each LEVEL_FACTOR times the previous, none too small for VGG-19."""
    sizes = [final]
    for depth in range(1, MAX_LEVELS):
        # Each level is the final size scaled down, not a chain of roundings.
        smaller = _scaled(final, LEVEL_FACTOR**depth)
        if min(smaller) < PYRAMID_MIN_SIDE or any(min(s) < MIN_SIDE for s in styles_at(smaller, style_sizes, params)):
            break
        sizes.insert(0, smaller)
    return sizes


def _scaled(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    return (max(1, round(size[0] / divisor)), max(1, round(size[1] / divisor)))


def _split_steps(epochs: int, shares: tuple[float, ...]) -> list[int]:
    """Split ``epochs`` by ``shares``; too few steps for a level fold into the finer ones."""
    if len(shares) == 1:
        return [epochs]
    steps = [int(epochs * share) for share in shares]
    steps[-1] += epochs - sum(steps)  # rounding remainder to the final level
    for i in range(len(steps) - 1):
        if steps[i] < MIN_LEVEL_STEPS:
            steps[i + 1] += steps[i]
            steps[i] = 0
    return steps
