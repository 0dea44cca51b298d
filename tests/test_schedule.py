"""The schedule: levels and sizes, the runnability check, early stop, the ETA and the read-back seam."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nst.errors import ImageError, ParamError
from nst.params import StyleParams
from nst.schedule import PYRAMID_MIN_SIDE, check_runnable, plan
from nst.transfer import EarlyStop, Readback, stylize
from tests.conftest import make_content, make_style

ROOT = Path(__file__).resolve().parent.parent


def sizes(content, params, styles=((400, 400),)):
    return [level.size for level in plan(content, styles, params).levels]


# --------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    "content, size, expected",
    [
        ((640, 480), 384, [(96, 72), (192, 144), (384, 288)]),
        ((640, 480), 256, [(128, 96), (256, 192)]),  # 64×48 would be below the minimum
        ((1000, 1000), 1024, [(125, 125), (250, 250), (500, 500), (1000, 1000)]),  # never upscales
        ((4096, 4096), 4096, [(512, 512), (1024, 1024), (2048, 2048), (4096, 4096)]),  # at most 4 levels
        ((2048, 128), 2048, [(1024, 64), (2048, 128)]),  # a 16:1 panorama: its short side decides
        ((2048, 128), 1024, [(1024, 64)]),
        ((100, 80), 512, [(100, 80)]),
        ((480, 640), 384, [(72, 96), (144, 192), (288, 384)]),  # portrait
    ],
)
def test_pyramid_levels_and_sizes(content, size, expected):
    levels = plan(content, [(400, 400)], StyleParams(size=size, effort="high")).levels
    assert [level.size for level in levels] == expected
    assert [level.index for level in levels] == list(range(1, len(expected) + 1))
    assert all(min(level.size) >= PYRAMID_MIN_SIDE for level in levels[:-1])
    assert sum(level.steps for level in levels) == 500  # epochs is the budget of the whole schedule
    assert all(level.steps >= 3 for level in levels)
    standard = plan(content, [(400, 400)], StyleParams(size=size)).levels
    assert [level.size for level in standard] == expected  # the effort changes the budgets, not the sizes


@pytest.mark.parametrize(
    "size, levels, steps",
    [
        (384, 3, [40, 15, 38]),  # 8% and 3% of 500 for the coarse levels, the final level at most 38 steps
        (256, 2, [25, 38]),  # two levels: the coarse one at half size, dearer per step, takes 5%
        (1024, 4, [40, 15, 15, 38]),
        (100, 1, [500]),  # no pyramid: the tolerance alone ends it
    ],
)
def test_the_standard_effort_budgets_each_level(size, levels, steps):
    the_plan = plan((1024, 768), [(400, 400)], StyleParams(size=size))
    assert len(the_plan.levels) == levels and [level.steps for level in the_plan.levels] == steps
    assert the_plan.stop_tolerance == 0.12


def test_the_high_effort_is_the_deeper_schedule_and_a_given_tolerance_wins():
    high = plan((640, 480), [(400, 400)], StyleParams(size=384, effort="high"))
    assert [level.steps for level in high.levels] == [100, 25, 375] and high.stop_tolerance == 0.01
    given = plan((640, 480), [(400, 400)], StyleParams(size=384, stop_tolerance=0.05))
    assert given.stop_tolerance == 0.05 and [level.steps for level in given.levels] == [40, 15, 38]
    reference = plan((640, 480), [(400, 400)], StyleParams(size=384, schedule="reference", effort="high", stop_tolerance=0.05))
    assert reference.stop_tolerance == 0 and [level.steps for level in reference.levels] == [500]


def test_style_sizes_follow_each_level():
    levels = plan((640, 480), [(300, 600)], StyleParams(size=384, style_scale=0.5)).levels
    # the style's longer side is style_scale × the level's longer side
    assert [level.style_sizes for level in levels] == [((24, 48),), ((48, 96),), ((96, 192),)]


def test_single_and_reference_schedules_have_one_level():
    for schedule in ("single", "reference"):
        assert sizes((640, 480), StyleParams(size=384, schedule=schedule)) == [(384, 288)]
    assert plan((640, 480), [(1, 1)], StyleParams(schedule="reference")).early_stop is False
    assert plan((640, 480), [(1, 1)], StyleParams(stop_tolerance=0)).early_stop is False


@pytest.mark.parametrize("effort", ["standard", "high"])
def test_few_epochs_fold_into_the_finer_levels(effort):
    levels = plan((640, 480), [(400, 400)], StyleParams(size=384, epochs=5, effort=effort)).levels
    assert sum(level.steps for level in levels) == 5 and all(level.steps >= 3 for level in levels[:-1])


def test_a_style_too_small_for_a_coarse_level_drops_that_level():
    levels = plan((640, 480), [(400, 400)], StyleParams(size=384, style_scale=0.2)).levels
    assert len(levels) == 3  # the 96×72 level gives the style 19 px: enough
    assert all(min(s) >= 16 for level in levels for s in level.style_sizes)
    small = plan((640, 480), [(400, 400)], StyleParams(size=384, style_scale=0.1)).levels  # 10 px at 96×72
    assert [level.size for level in small] == [(192, 144), (384, 288)]


# --------------------------------------------------------------------------- what cannot run


def test_an_elongated_content_is_refused_with_its_size_and_the_minimum():
    with pytest.raises(ImageError) as caught:
        check_runnable((3000, 100), [(400, 400)], StyleParams(size=384))
    text = str(caught.value)
    assert "content image (3000×100)" in text and "384×13" in text and "16 px" in text
    assert "size of at least 480" in text
    check_runnable((3000, 100), [(400, 400)], StyleParams(size=480))  # what it suggests works


def test_a_tiny_content_is_refused():
    with pytest.raises(ImageError, match=r"content image \(12×40\) is too small"):
        check_runnable((12, 40), [(400, 400)], StyleParams())


def test_a_style_scaled_below_the_minimum_is_refused_naming_it():
    with pytest.raises(ParamError) as caught:
        check_runnable((640, 480), [(400, 400), (500, 100)], StyleParams(size=64, style_scale=0.2))
    assert caught.value.field == "style_scale"
    assert "style image 1 (400×400)" in str(caught.value) and "13×13" in str(caught.value)
    assert "at least 0.25" in str(caught.value)


def test_blend_weights_must_match_the_styles():
    with pytest.raises(ParamError) as caught:
        check_runnable((640, 480), [(400, 400)] * 3, StyleParams(style_blend=(0.7, 0.3)))
    assert caught.value.field == "style_blend"
    check_runnable((640, 480), [(400, 400)] * 2, StyleParams(style_blend=(0.7, 0.3)))


def test_stylize_refuses_before_any_tensor_work(model):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the model was used")

    with pytest.raises(ImageError, match="content image"):
        stylize(make_content(400, 10), make_style(), StyleParams(size=64), model=Untouchable())


def test_the_check_and_the_options_do_not_import_torch():
    code = (
        "import sys, nst, nst.params, nst.images, nst.errors, nst.schedule\n"
        "nst.check_runnable((640, 480), [(300, 300)], nst.StyleParams.from_mapping({'schedule': 'reference'}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "nst.stylize\n"  # the heavy names still resolve, lazily
        "assert 'torch' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- early stop


def test_early_stop_triggers_on_a_flat_objective():
    stop = EarlyStop(0.01, window=10)
    decisions = [stop.update(5.0) for _ in range(12)]
    assert decisions == [False] * 10 + [True, True]


def test_early_stop_does_not_trigger_while_the_loss_falls():
    stop = EarlyStop(0.01, window=10)
    assert not any(stop.update(100 * 0.99**t) for t in range(300))  # 1% a step: ~10% per window
    noisy = EarlyStop(0.01, window=10)  # Adam's wobble: the best so far is what counts
    assert not any(noisy.update(100 * 0.98**t * (1.3 if t % 2 else 1.0)) for t in range(200))


def test_the_standard_tolerance_stops_once_a_step_gains_little_and_not_while_it_gains_much():
    tolerance = plan((640, 480), [(400, 400)], StyleParams(size=384)).stop_tolerance
    falling = EarlyStop(tolerance, window=10)  # 2.5% a step: 22% per window, as early in a final level
    assert not any(falling.update(100 * 0.975**t) for t in range(100))
    slowing = EarlyStop(tolerance, window=10)  # 1% a step: ~10% per window, where it stops paying
    assert [slowing.update(100 * 0.99**t) for t in range(12)] == [False] * 10 + [True, True]


def test_the_high_effort_runs_the_deeper_schedule_on_the_same_job(model):
    """The same job at both efforts: high stops only once the loss is flat, so it takes more steps and
    ends lower (tiny image, a budget the standard final level fits)."""
    params = StyleParams(size=128, seed=4, epochs=80, precision="fp32")
    content, style = make_content(128, 128), make_style(64)
    standard = stylize(content, style, params, model=model)
    high = stylize(content, style, params.replace(effort="high"), model=model)
    assert standard.stats.levels == high.stats.levels == 2
    assert standard.stats.level_steps[-1] <= 38 < high.stats.steps
    assert high.stats.total_loss < standard.stats.total_loss


def test_early_stop_off():
    stop = EarlyStop(0.0, window=10)
    assert not any(stop.update(1.0) for _ in range(50))


def test_a_flat_job_ends_early_and_the_reference_never_does(model):
    # No style term and the content as the start: the loss is 0 from the first step.
    flat = dict(size=48, seed=1, style_weight=0.0, epochs=100)
    seen = []
    result = stylize(make_content(), make_style(), StyleParams(**flat, schedule="single"), model=model, on_progress=seen.append)
    assert result.stats.stopped_early and result.stats.steps == 11 < 100
    assert seen[-1].step == seen[-1].total == 11 and seen[-1].eta == 0
    reference = stylize(make_content(), make_style(), StyleParams(**{**flat, "epochs": 15}, schedule="reference"), model=model)
    assert reference.stats.steps == 15 and not reference.stats.stopped_early


# --------------------------------------------------------------------------- the ETA and targets per level


class TimedModel:
    """The real model, with a fake clock that advances by a cost per optimisation forward pass, and a
    record of the image sizes each target computation saw."""

    def __init__(self, model, cost, warmup=1.0):
        self.model, self.cost, self.warmup = model, cost, warmup
        self.now = 0.0
        self.target_shapes: list[tuple[int, int]] = []
        self.step_shapes: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def clock(self) -> float:
        return self.now

    def __call__(self, image, layers, pool="max", dtype=None):
        shape = tuple(image.shape[-2:])
        if torch.is_grad_enabled():
            first_at_size = not self.step_shapes or self.step_shapes[-1] != shape
            self.step_shapes.append(shape)
            self.now += self.cost(shape[0] * shape[1]) * (self.warmup if first_at_size else 1.0)
        else:
            self.target_shapes.append(shape)
        return self.model(image, layers, pool, dtype)


def pyramid_run(model, timed, **changes):
    # Adam: one forward pass per step, so the fake clock's cost per step is exact (L-BFGS's line search varies)
    params = StyleParams(size=128, seed=3, epochs=20, stop_tolerance=0.0, precision="fp32", optimizer="adam", effort="high", **changes)
    seen = []
    result = stylize(make_content(128, 128), make_style(64), params, model=timed, on_progress=seen.append, clock=timed.clock)
    return result, seen


def test_targets_are_recomputed_at_every_level(model):
    timed = TimedModel(model, cost=lambda pixels: 1.0)
    result, _ = pyramid_run(model, timed)
    assert result.stats.levels == 2 and result.stats.level_steps == (4, 16)  # the 20% / 80% shares
    # content target then style Grams at 64×64, again at 128×128, then the final scoring's forward
    assert timed.target_shapes == [(64, 64), (64, 64), (128, 128), (128, 128), (128, 128)]
    assert timed.step_shapes == [(64, 64)] * 4 + [(128, 128)] * 16


def test_eta_is_exact_when_cost_follows_the_cost_model(model):
    from nst.transfer import ETA_OVERHEAD_PIXELS as extra

    timed = TimedModel(model, cost=lambda pixels: (pixels + extra) * 1e-4)
    _, seen = pyramid_run(model, timed)
    total_cost = 4 * (64 * 64 + extra) * 1e-4 + 16 * (128 * 128 + extra) * 1e-4
    for p in seen:
        assert p.eta == pytest.approx(total_cost - p.elapsed, abs=1e-6)
    assert [p.level for p in seen] == [1] * 4 + [2] * 16 and all(p.levels == 2 for p in seen)
    assert [p.step for p in seen] == list(range(1, 21)) and all(p.total == 20 for p in seen)


@pytest.mark.parametrize("cost, warmup", [(lambda px: (px * 1e-3) ** 1.5, 3.0), (lambda px: 1.0, 1.0), (lambda px: px * 1e-4, 5.0)])
def test_eta_never_jumps_backwards_at_a_level_change(model, cost, warmup):
    timed = TimedModel(model, cost=cost, warmup=warmup)
    _, seen = pyramid_run(model, timed)
    first_of_level = {p.level: i for i, p in reversed(list(enumerate(seen)))}
    checked = 0
    for i, (a, b) in enumerate(zip(seen, seen[1:]), start=1):
        if b.level > 1 and i - first_of_level[b.level] < 2:  # the first two reports of a new level
            step_time = b.elapsed - a.elapsed  # one report per step on the CPU
            assert b.eta <= max(0.0, a.eta - step_time) + step_time + 1e-9, (a, b)
            checked += 1
    assert checked == 2 and seen[-1].eta == 0


# --------------------------------------------------------------------------- the read-back seam


def test_losses_are_read_back_only_every_n_steps(model):
    timed = TimedModel(model, cost=lambda pixels: 1.0)
    params = StyleParams(size=48, seed=2, epochs=10, schedule="single", precision="fp32", optimizer="adam")
    seen = []
    every = stylize(make_content(), make_style(), params, model=model)
    sparse = stylize(make_content(), make_style(), params, model=timed, on_progress=seen.append,
                     readback=Readback(every_steps=4), clock=timed.clock)
    assert [p.step for p in seen] == [4, 8, 10]  # and always at the level's end
    assert sparse.image.tobytes() == every.image.tobytes()  # skipping reads changes nothing else


def test_losses_are_read_back_at_most_every_n_seconds(model):
    timed = TimedModel(model, cost=lambda pixels: 0.1)  # 0.1 fake seconds a step
    seen = []
    stylize(make_content(), make_style(), StyleParams(size=48, seed=2, epochs=12, schedule="single", optimizer="adam"), model=timed,
            on_progress=seen.append, readback=Readback(every_seconds=0.35), clock=timed.clock)
    assert [p.step for p in seen] == [4, 8, 12]


def test_the_optimizer_is_adam_unless_lbfgs_is_asked_and_reference_is_always_adam():
    from nst.transfer import choose_optimizer

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_optimizer(StyleParams(), cpu) == "adam" and choose_optimizer(StyleParams(), gpu) == "adam"
    assert choose_optimizer(StyleParams(optimizer="lbfgs"), gpu) == "lbfgs"
    assert choose_optimizer(StyleParams(optimizer="lbfgs", schedule="reference"), cpu) == "adam"


def test_accelerators_read_back_a_few_times_a_second():
    assert Readback.for_device(torch.device("cpu")) == Readback(1, 0.0)
    gpu = Readback.for_device(torch.device("cuda"))
    assert gpu.every_seconds >= 0.1 and not gpu.due(100, 0.05) and gpu.due(1, 0.3)


def test_an_upscale_is_checked_at_the_size_it_will_run():
    """An upscale enlarges its content to ``size`` (a new job never does): the budget is checked at
    that size and at the picture's own, as stylize(init_image=) runs them."""
    params = StyleParams(size=4096)
    small = (64, 48)
    check_runnable(small, [(64, 48)], params, max_memory="300MiB")  # a new job runs at 64×48: fits
    with pytest.raises(ParamError) as refused:  # at 4096×3072 the picture's own copies alone exceed it
        check_runnable(small, [(64, 48)], params, max_memory="300MiB", init_size=(2048, 1536))
    assert refused.value.field == "max_memory" and "4096×3072" in refused.value.reason
    check_runnable(small, [(64, 48)], params, max_memory="16GiB", init_size=(2048, 1536))
    with pytest.raises(ImageError, match="init image"):
        check_runnable(small, [(64, 48)], params, init_size=(512, 8))
