import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from nst import color, images
from nst.errors import Cancelled, ParamError
from nst.params import StyleParams
from nst.transfer import Objective, stylize
from tests.conftest import make_content, make_style

# The seed's loop, step for step: these tests pin its behaviour (lr 0.007, every step, one scale).
FAST = dict(size=64, seed=1, schedule="reference")
ROOT = Path(__file__).resolve().parent.parent


def run(model, content, style, **kwargs):
    callbacks = {k: kwargs.pop(k) for k in ("on_progress", "on_preview", "preview_every", "should_stop") if k in kwargs}
    return stylize(content, style, StyleParams(**{**FAST, **kwargs}), model=model, **callbacks)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_loss_falls_over_20_steps(model, content_image, style_image, precision):
    seen = []
    result = run(model, content_image, style_image, epochs=20, precision=precision, on_progress=seen.append)
    assert seen[-1].total_loss < 0.7 * seen[0].total_loss
    assert seen[-1].style_loss < seen[0].style_loss
    assert result.stats.total_loss < seen[0].total_loss


def test_progress_counts_and_eta(model, content_image, style_image):
    seen = []
    run(model, content_image, style_image, epochs=8, on_progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 9))
    assert all(p.total == 8 for p in seen)
    assert seen[-1].eta == 0 and seen[-1].fraction == 1.0
    assert all(p.eta > 0 for p in seen[:-1])
    assert all(b.elapsed > a.elapsed for a, b in zip(seen, seen[1:]))
    # ETA is the mean step time so far times the steps left: within a factor of the true remainder
    third = seen[2]
    assert 0.2 * (seen[-1].elapsed - third.elapsed) < third.eta < 5 * (seen[-1].elapsed - third.elapsed)
    for p in seen:
        assert p.total_loss == pytest.approx(100 * p.content_loss + 1e8 * p.style_loss, rel=1e-4)


def test_cancel_stops_within_one_step(model, content_image, style_image):
    seen = []
    asked = []

    def should_stop():
        asked.append(1)
        return len(seen) >= 3

    with pytest.raises(Cancelled) as caught:
        run(model, content_image, style_image, epochs=50, on_progress=seen.append, should_stop=should_stop)
    assert len(seen) == 3 and caught.value.step == 3 and caught.value.total == 50
    assert len(asked) == 4  # checked before every step


def test_preview_every_n_steps(model, content_image, style_image):
    previews = []
    run(model, content_image, style_image, epochs=10, preview_every=3, on_preview=lambda s, im: previews.append((s, im)))
    assert [s for s, _ in previews] == [3, 6, 9]
    assert all(max(im.size) <= 256 and im.mode == "RGB" for _, im in previews)


def test_result_carries_image_and_stats(model):
    from tests.conftest import make_content, make_style

    result = run(model, make_content(96, 64), make_style(80), epochs=3, size=48, seed=5)
    assert result.image.size == (48, 32) and result.image.mode == "RGB"
    s = result.stats
    assert s.size == (48, 32) and s.steps == 3 and s.device == "cpu" and s.seed == 5
    assert s.dtype in ("float32", "bfloat16") and s.steps_per_second > 0 and s.seconds > 0
    assert s.total_loss == pytest.approx(100 * s.content_loss + 1e8 * s.style_loss, rel=1e-4)


def test_a_seed_makes_a_run_reproducible(model, content_image, style_image):
    a = run(model, content_image, style_image, epochs=4, init="noise", seed=11)
    b = run(model, content_image, style_image, epochs=4, init="noise", seed=11)
    c = run(model, content_image, style_image, epochs=4, init="noise", seed=12)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != c.image.tobytes()


def test_without_a_seed_one_is_drawn_and_reported(model, content_image, style_image):
    first = stylize(content_image, style_image, StyleParams(epochs=1, size=32, init="noise"), model=model)
    again = stylize(content_image, style_image, StyleParams(epochs=1, size=32, init="noise", seed=first.stats.seed), model=model)
    assert first.image.tobytes() == again.image.tobytes()


@pytest.mark.parametrize("init", ["content", "style", "noise"])
def test_initialisations(model, content_image, style_image, init):
    start = []

    def capture(step, image):
        start.append(image)

    result = run(model, content_image, style_image, epochs=2, init=init, preview_every=1, on_preview=capture)
    content_small = images.to_tensor(images.fit_within(content_image, 64))
    first = images.to_tensor(start[0])
    # one Adam step at lr 0.007 moves pixels by at most ~0.007: the start is still recognisable
    distance = (first - content_small).abs().mean().item()
    assert (distance < 0.02) == (init == "content")
    assert result.image.size == content_image.size


def test_average_pooling_gives_a_different_result(model, content_image, style_image):
    a = run(model, content_image, style_image, epochs=3, pool="max")
    b = run(model, content_image, style_image, epochs=3, pool="avg")
    assert a.image.tobytes() != b.image.tobytes()


def test_tv_term_is_reported_only_when_weighted(model, content_image, style_image):
    off, on = [], []
    run(model, content_image, style_image, epochs=2, on_progress=off.append)
    run(model, content_image, style_image, epochs=2, tv_weight=10.0, on_progress=on.append)
    assert off[0].tv_loss == 0 and on[0].tv_loss > 0
    assert on[0].total_loss == pytest.approx(100 * on[0].content_loss + 1e8 * on[0].style_loss + 10 * on[0].tv_loss, rel=1e-4)


def test_targets_use_the_same_precision_as_the_forward_pass(model, content_image, style_image):
    # The content image scored against its own bf16 targets must have zero content loss; fp32 targets
    # against a bf16 forward would leave a floor the optimiser cannot remove.
    content, style = images.to_tensor(content_image), images.to_tensor(style_image)
    p = StyleParams(size=64)
    objective = Objective(model, content, style, p, torch.bfloat16)
    with torch.no_grad():
        assert objective(content).content.item() == 0.0
        fp32_targets = Objective(model, content, style, p, None).content_target
        bf16_features = model(content, [p.content_layer], dtype=torch.bfloat16)[p.content_layer].float()
        assert torch.nn.functional.mse_loss(bf16_features, fp32_targets).item() > 0


def test_layers_beyond_the_weights_are_refused(model, content_image, style_image):
    with pytest.raises(ParamError, match="deeper than the loaded weights"):
        run(model, content_image, style_image, epochs=1, content_layer="conv5_2")


def test_custom_layers(model, content_image, style_image):
    result = run(
        model, content_image, style_image, epochs=2,
        style_layers=("relu1_1", "relu2_1"), style_layer_weights=(1.0, 1.0), content_layer="relu3_1",
    )
    assert result.stats.style_loss > 0


def _bench_engine():
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_schedule_reproduces_the_plain_loop(model, weights_file):
    bench = _bench_engine()
    params = StyleParams(size=64, seed=0, epochs=12, schedule="reference", precision="fp32")
    content, style = bench.prepare_images(make_content(96, 72), make_style(64), params)
    plain = bench.reference_loop(
        bench.reference_network(str(weights_file)), images.to_tensor(content), images.to_tensor(style),
        params.replace(lr=0.007), 12,
    )
    ours = stylize(content, style, params, model=model)
    assert ours.stats.steps == 12 and ours.stats.levels == 1 and not ours.stats.stopped_early
    assert ours.stats.schedule == "reference" and ours.stats.optimizer == "adam"
    # bench/engine.py's tolerance: the engine's fp32 objective within 2% of the plain loop's
    objective = Objective(model, images.to_tensor(content), images.to_tensor(style), params, None)
    with torch.no_grad():
        plain_total = objective(images.to_tensor(images.to_image(plain))).total.item()
        ours_total = objective(images.to_tensor(ours.image)).total.item()
    assert abs(ours_total / plain_total - 1) < 0.02
    # the same picture: Adam's normalised steps amplify rounding where a gradient is near 0, so a few
    # pixels differ by several steps' worth, but on average by less than one 8-bit level
    assert (images.to_tensor(ours.image) - plain).abs().mean().item() < 1 / 255


def test_the_pyramid_beats_the_reference_on_the_same_budget_of_full_size_steps(model):
    # 192×128 has two levels: 96×64 and 192×128
    content, style = make_content(192, 128), make_style(96)
    pyramid = stylize(content, style, StyleParams(size=192, seed=4, epochs=30, precision="fp32", effort="high"), model=model)
    reference = stylize(content, style, StyleParams(size=192, seed=4, epochs=30, precision="fp32", schedule="reference"), model=model)
    assert pyramid.stats.levels == 2 and pyramid.stats.schedule == "pyramid"
    assert sum(pyramid.stats.level_steps) == pyramid.stats.steps <= 30
    assert pyramid.stats.total_loss < reference.stats.total_loss


def test_lbfgs_runs_in_fp32_and_lowers_the_loss(model, content_image, style_image):
    seen = []
    result = stylize(content_image, style_image, StyleParams(size=64, seed=1, epochs=8, optimizer="lbfgs", schedule="single"),
                     model=model, on_progress=seen.append)
    assert result.stats.optimizer == "lbfgs" and result.stats.dtype == "float32"  # never bf16 curvature
    assert result.stats.total_loss < 0.5 * seen[0].total_loss
    assert [p.step for p in seen] == list(range(1, 9))


def test_a_blend_of_one_and_zero_equals_the_single_style(model, content_image):
    first, second = make_style(48), make_style(64).rotate(90)
    p = StyleParams(size=64, seed=2, epochs=6, precision="fp32")
    single = stylize(content_image, first, p, model=model)
    blended = stylize(content_image, [first, second], p.replace(style_blend=(1.0, 0.0)), model=model)
    assert blended.image.tobytes() == single.image.tobytes()
    other = stylize(content_image, [first, second], p.replace(style_blend=(0.5, 0.5)), model=model)
    assert other.image.tobytes() != single.image.tobytes()


def test_blend_targets_are_the_weighted_mean_of_the_grams(model):
    content, a, b = (images.to_tensor(make_content()), images.to_tensor(make_style(48)),
                     images.to_tensor(make_style(48).rotate(90)))
    p = StyleParams()
    mixed = Objective(model, content, [a, b], p, None, weights=(0.7, 0.3))
    only_a, only_b = Objective(model, content, a, p, None), Objective(model, content, b, p, None)
    for layer in p.style_layers:
        expected = 0.7 * only_a.style_grams[layer] + 0.3 * only_b.style_grams[layer]
        assert torch.allclose(mixed.style_grams[layer], expected, rtol=1e-5, atol=1e-9)


def test_bad_blend_weights_are_refused_naming_the_field(model, content_image):
    styles = [make_style(48), make_style(64)]
    with pytest.raises(ParamError) as caught:
        stylize(content_image, styles, StyleParams(size=64, style_blend=(0.2, 0.3, 0.5)), model=model)
    assert caught.value.field == "style_blend" and "3 weights given for 2 style images" in str(caught.value)
    with pytest.raises(ParamError) as caught:
        StyleParams(style_blend=(1.0, -1.0))
    assert caught.value.field == "style_blend"


def test_colors_content_keeps_the_content_chroma(model, content_image):
    result = stylize(content_image, make_style(64), StyleParams(size=64, seed=1, epochs=8, colors="content"), model=model)
    content = images.to_tensor(images.fit_within(content_image, 64))
    out = images.to_tensor(result.image)
    chroma_out, chroma_in = color.rgb_to_ycbcr(out)[:, 1:], color.rgb_to_ycbcr(content)[:, 1:]
    assert (chroma_out - chroma_in).abs().mean().item() < 0.01  # 8-bit rounding and gamut clipping
    # while the default takes the style's colours
    styled = images.to_tensor(stylize(content_image, make_style(64), StyleParams(size=64, seed=1, epochs=8), model=model).image)
    assert (color.rgb_to_ycbcr(styled)[:, 1:] - chroma_in).abs().mean().item() > 0.01
    # and the luma did change: the style was transferred
    assert (color.rgb_to_ycbcr(out)[:, :1] - color.rgb_to_ycbcr(content)[:, :1]).abs().mean().item() > 0.005


def test_colors_match_uses_the_recoloured_style(model, content_image):
    style = make_style(64)
    p = StyleParams(size=64, seed=1, epochs=4, precision="fp32")
    matched = stylize(content_image, style, p.replace(colors="match"), model=model)
    recoloured = images.to_image(color.match_colors(images.to_tensor(style), images.to_tensor(images.fit_within(content_image, 64))))
    by_hand = stylize(content_image, recoloured, p, model=model)
    assert matched.image.tobytes() == by_hand.image.tobytes()


def test_previews_and_progress_span_the_levels(model):
    previews, seen = [], []
    stylize(make_content(128, 128), make_style(64), StyleParams(size=128, seed=1, epochs=15, stop_tolerance=0, effort="high"),
            model=model, on_progress=seen.append, on_preview=lambda step, image: previews.append((step, image.size)), preview_every=2)
    assert [step for step, _ in previews] == [2, 4, 6, 8, 10, 12, 14]
    sizes = [size for _, size in previews]
    assert sizes == [(64, 64)] + [(128, 128)] * 6  # level 1 has 3 of 15 steps (its 20% share)
    assert {p.level for p in seen} == {1, 2} and seen[-1].step == seen[-1].total == 15


def test_the_first_timed_preview_comes_when_the_coarsest_level_ends(model):
    """The bot's previews are timed (preview_seconds); the first one should not wait for the timer when
    the cheap coarse level already has a picture: one preview at its end, then the timer's cadence."""
    previews = []
    params = StyleParams(size=128, seed=1, epochs=15, stop_tolerance=0, effort="high")
    result = stylize(make_content(128, 128), make_style(64), params, model=model, preview_seconds=1e6,
                     on_preview=lambda step, image: previews.append((step, image.size)))
    assert result.stats.level_steps == (3, 12)
    assert previews == [(3, (64, 64))]
    single = []
    stylize(make_content(128, 128), make_style(64), params.replace(schedule="single"), model=model, preview_seconds=1e6,
            on_preview=lambda step, image: single.append(step))
    assert single == []  # one level: nothing earlier to show


def test_lbfgs_iterates_stay_in_range_so_the_delivered_picture_scores_as_reported(model, content_image, style_image):
    # Unclamped L-BFGS drifts outside 0..1; the clamped 8-bit picture then scored far worse than its loss.
    p = StyleParams(size=64, seed=1, epochs=15, optimizer="lbfgs", schedule="single", stop_tolerance=0)
    result = stylize(content_image, style_image, p, model=model)
    content = images.to_tensor(images.fit_within(content_image, 64))
    objective = Objective(model, content, images.to_tensor(images.match_scale(style_image, (64, 48))), p, None)
    with torch.no_grad():
        delivered = objective(images.to_tensor(result.image)).total.item()
    assert delivered < 1.5 * result.stats.total_loss


def _first_move(previous_loss, **params):
    """How far the first step moves a pixel, on a toy objective with one start loss."""
    from nst.transfer import LossTerms, Step

    pixels = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)

    def objective(x):
        zero = x.new_zeros(())
        return LossTerms(zero, zero, zero, ((x - 0.9) ** 2).mean())

    start = objective(pixels).total.item()
    step = Step(pixels, objective, StyleParams(**params), "adam", None if previous_loss is None else previous_loss(start))
    step()
    return (pixels.detach() - 0.5).abs().max().item(), step.settings


def test_a_level_that_starts_near_the_coarser_result_refines_with_a_warm_up():
    from nst import transfer

    moved, settings = _first_move(lambda start: start / 2)  # within BUILD_RATIO of the coarser loss
    assert settings.warmup == transfer.WARMUP_STEPS and settings.betas == transfer.REFINE_BETAS
    assert moved == pytest.approx(transfer.REFINE_LR / transfer.WARMUP_STEPS, rel=1e-3)  # a fresh Adam's first step is ≈ lr


def test_the_first_level_and_one_that_starts_far_worse_build_with_full_steps_at_once():
    from nst import transfer

    for previous in (None, lambda start: start / (2 * transfer.BUILD_RATIO)):
        moved, settings = _first_move(previous)
        assert settings.warmup == 0 and settings.betas == transfer.BUILD_BETAS
        assert moved == pytest.approx(transfer.BUILD_LR, rel=1e-3)
    # a given lr applies to both; the reference schedule keeps the seed's Adam whatever the start
    assert _first_move(None, lr=0.02)[0] == pytest.approx(0.02, rel=1e-3)
    moved, settings = _first_move(lambda start: start / 100, schedule="reference")
    assert settings.warmup == 0 and settings.betas == (0.9, 0.999) and moved == pytest.approx(0.007, rel=1e-3)


def test_an_init_image_runs_only_the_final_level_from_that_picture(model):
    # 256×192 is a two-level pyramid (128×96, then 256×192): 3 + 12 steps of 15 at the high effort.
    params = StyleParams(epochs=15, size=256, seed=2, effort="high", stop_tolerance=0)
    content, style = make_content(256, 192), make_style(96)
    first = stylize(content, style, params.replace(size=128, epochs=3), model=model)
    assert first.image.size == (128, 96)
    seen = []
    upscaled = stylize(content, style, params, model=model, init_image=first.image, on_progress=seen.append)
    s = upscaled.stats
    assert s.levels == 1 and s.level_steps == (12,) and s.size == (256, 192) and seen[0].total == 12
    # it starts from the given picture: a blank one starts far worse (its first step is enough to see)
    blank = []
    with pytest.raises(Cancelled):
        stylize(content, style, params, model=model, init_image=Image.new("RGB", (128, 96), (128, 128, 128)),
                on_progress=blank.append, should_stop=lambda: bool(blank))
    assert seen[0].total_loss < 0.5 * blank[0].total_loss


def test_an_upscale_goes_past_the_contents_own_size(model):
    """Upscale ×2 of a result that already has the content's full size makes it twice as large (a job
    without an init image never enlarges the content)."""
    params = StyleParams(epochs=4, size=128, seed=2)
    content, style = make_content(64, 48), make_style(64)
    first = stylize(content, style, params, model=model)
    assert first.image.size == (64, 48)
    upscaled = stylize(content, style, params, model=model, init_image=first.image)
    assert upscaled.image.size == (128, 96) and upscaled.stats.levels == 1


def test_a_tiled_level_is_priced_by_its_work_before_it_is_measured():
    from nst.schedule import plan
    from nst.transfer import _Eta

    the_plan = plan((256, 192), [(96, 96)], StyleParams(epochs=60, size=256, effort="high"))
    assert len(the_plan.levels) == 2
    plain, tiled = _Eta(the_plan), _Eta(the_plan, [1.0, 2.0])
    for eta in (plain, tiled):
        eta.add(0, 1, 1.0)
        eta.add(0, 1, 1.0)
    assert tiled.estimate(0, 2, 0.0, 1.0) > 1.5 * plain.estimate(0, 2, 0.0, 1.0)
