import pytest
import torch

from nst import images
from nst.errors import Cancelled, ParamError
from nst.params import StyleParams
from nst.transfer import Objective, stylize

FAST = dict(size=64, seed=1)


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
