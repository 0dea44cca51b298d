"""Tiled objective (nst/tiling.py): the same loss and gradient as the whole picture, tiles on the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_content, make_style
from nst import images
from nst.errors import Cancelled
from nst.params import VGG19_LAYERS, StyleParams
from nst.tiling import (GRAM_COST, GRID, LAYER_COST, Tiling, boundaries, features, gram_cost, halo_for, reach, segment_cost,
                        split_points)
from nst.transfer import Objective, stylize

# Shallow layers: a 16 px halo, so 64 px tiles save memory on a tiny picture (conv5_1's 80 px halo
# would cover a 128×96 picture from any tile).
SHALLOW = dict(style_layers=("conv1_1", "conv2_1", "conv3_1"), style_layer_weights=(1.0, 0.8, 0.4), content_layer="conv3_1")


def _tensors(width, height, memory_format=torch.contiguous_format):
    content = images.to_tensor(make_content(width, height)).contiguous(memory_format=memory_format)
    style = images.to_tensor(make_style(80)).contiguous(memory_format=memory_format)
    generator = torch.Generator().manual_seed(0)
    start = (content + 0.1 * torch.randn(content.shape, generator=generator)).clamp(0, 1)
    return content, style, start.contiguous(memory_format=memory_format).requires_grad_(True)


def _loss_and_grad(objective, pixels):
    pixels.grad = None
    terms = objective.loss_and_grad(pixels)
    return terms, pixels.grad.clone()


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("split, boundary", [("pool3", None), ("pool3", "relu4_1"), ("pool3", "relu4_2"), (None, None)])
def test_tiled_loss_and_gradient_equal_the_untiled_ones(model, memory_format, split, boundary):
    # 256×96 with 64 px tiles: the halo (24 px cut at pool3, conv5_1's 80 px whole depth) leaves every
    # tile short of the whole picture. Cut at pool3, conv4_1, conv4_2 (content) and conv5_1 run once
    # on the whole map (with a boundary, the segment up to it recomputed in the backward: the content
    # layer after relu4_1's boundary, before relu4_2's); whole depth (the fallback), every layer runs
    # in the tiles.
    params = StyleParams(tv_weight=1.0)
    content, style, pixels = _tensors(256, 96, memory_format)
    whole, expected = _loss_and_grad(Objective(model, content, [style], params, None), pixels)
    tiling = Tiling.for_layers(64, params.layers, split, boundary)
    assert len(tiling.tiles(256, 96)) == 8 and all(t.outer[2] - t.outer[0] < 256 for t in tiling.tiles(256, 96))
    objective = Objective(model, content, [style], params, None, tiling=tiling)
    tiled, grad = _loss_and_grad(objective, pixels)
    for mine, theirs in zip(tiled.stacked(), whole.stacked()):
        assert abs(float(mine) - float(theirs)) <= 1e-4 * abs(float(theirs))
    assert _relative(grad, expected) < 1e-4
    with torch.no_grad():
        assert abs(float(objective(pixels).total) - float(whole.total)) <= 1e-4 * float(whole.total)


@pytest.mark.parametrize("split, boundary", [("pool1", None), ("pool2", None), ("pool2", "relu3_2"), ("pool4", None)])
def test_any_cut_and_a_shallow_content_layer_keep_the_gradient_exact(model, split, boundary):
    # The user's layers decide what runs where: content at conv2_2 is in the tiles for every cut here,
    # average pooling as asked.
    params = StyleParams(content_layer="conv2_2", pool="avg", tv_weight=1.0)
    content, style, pixels = _tensors(256, 96)
    whole, expected = _loss_and_grad(Objective(model, content, [style], params, None), pixels)
    tiled, grad = _loss_and_grad(Objective(model, content, [style], params, None, tiling=Tiling.for_layers(64, params.layers, split, boundary)), pixels)
    assert abs(float(tiled.total) - float(whole.total)) <= 1e-4 * float(whole.total)
    assert _relative(grad, expected) < 1e-4


def test_the_split_map_and_the_deep_features_equal_the_untiled_ones(model):
    content, _, _ = _tensors(128, 96)
    tiling = Tiling.for_layers(64, StyleParams().layers, "pool3")
    assert len(tiling.tiles(128, 96)) == 4
    with torch.no_grad():
        untiled = model(content, ["pool3", "conv4_2"], "max", None)
    for layer in ("pool3", "conv4_2"):
        assembled = features(model, content, layer, "max", None, tiling)
        assert assembled.shape == untiled[layer].shape
        assert _relative(assembled, untiled[layer]) < 1e-5


def test_the_cut_comes_from_the_layers_in_use():
    assert split_points(StyleParams().layers) == ["pool1", "pool2", "pool3", "pool4"]
    assert split_points(SHALLOW["style_layers"]) == ["pool1", "pool2"]
    assert split_points(["conv1_1", "conv1_2"]) == []
    cut = Tiling.for_layers(100, StyleParams().layers, "pool3")
    assert (cut.tile, cut.grid, cut.halo) == (96, 8, 24)  # pool3's reach is 22 px
    assert cut.is_shallow("conv3_1") and cut.is_shallow("pool3") and not cut.is_shallow("conv4_1")
    with pytest.raises(ValueError):
        Tiling.for_layers(64, SHALLOW["style_layers"], "pool3")  # nothing deep is in use after pool3


@pytest.mark.parametrize("dtype_bytes", [4, 2])
def test_a_cut_costs_less_than_the_whole_depth_and_larger_tiles_less_than_smaller(dtype_bytes):
    layers = StyleParams().layers
    cut, whole_depth = Tiling.for_layers(512, layers, "pool3"), Tiling.for_layers(512, layers)
    assert cut.work(2048, 1536, dtype_bytes) < whole_depth.work(2048, 1536, dtype_bytes)
    assert Tiling.for_layers(1024, layers, "pool3").work(2048, 1536, dtype_bytes) < cut.work(2048, 1536, dtype_bytes)
    # one tile without a halo: the shallow part costs a forward more, the deep part as untiled
    (shallow_f, shallow_b), (deep_f, deep_b) = segment_cost(0, 19, dtype_bytes), segment_cost(19, 29, dtype_bytes)  # to pool3, to conv5_1
    untiled = shallow_f + shallow_b + deep_f + deep_b
    one = Tiling.for_layers(2048, layers, "pool3").work(2048, 1536, dtype_bytes)
    assert one == pytest.approx((untiled + shallow_f) / untiled)
    assert 1.0 < one < 1.5
    # recomputing the deep part up to relu4_2 costs that segment's forward once more
    recomputed = Tiling.for_layers(2048, layers, "pool3", "relu4_2").work(2048, 1536, dtype_bytes)
    assert recomputed - one == pytest.approx(segment_cost(19, 23, dtype_bytes)[0] / untiled)
    # the style layers' Grams cost both steps the same: they bring the ratio towards 1
    style = StyleParams().style_layers
    grams = gram_cost(style, dtype_bytes)
    with_grams = Tiling.for_layers(2048, layers, "pool3").work(2048, 1536, dtype_bytes, style)
    assert with_grams == pytest.approx((untiled + shallow_f + grams) / (untiled + grams)) and 1.0 < with_grams < one


@pytest.mark.parametrize("costs", [LAYER_COST, GRAM_COST], ids=["layers", "grams"])
def test_the_cost_tables_cover_every_layer_in_both_precisions(costs):
    assert set(costs) == {4, 2}
    for table in costs.values():  # a ReLU deep in the network rounds to 0 ms per megapixel
        assert list(table) == list(VGG19_LAYERS) and all(f >= 0 and b >= 0 and f + b > 0 for f, b in table.values())
    assert segment_cost(0, 0) == (0, 0) and segment_cost(3, 5) == tuple(map(sum, zip(*[LAYER_COST[4][n] for n in VGG19_LAYERS[3:5]])))
    assert gram_cost([]) == 0 and gram_cost(["conv1_1", "conv2_1"], 2) == sum(GRAM_COST[2]["conv1_1"]) + sum(GRAM_COST[2]["conv2_1"])


def test_the_deep_part_is_cut_in_two_at_a_relu_after_the_split():
    layers = StyleParams().layers
    assert boundaries(layers, "pool3") == ["relu4_1", "relu4_2", "relu4_3", "relu4_4"]
    assert boundaries(layers, "pool4") == [] and boundaries(layers, None) == []
    with pytest.raises(ValueError):
        Tiling.for_layers(64, layers, "pool3", "relu3_1")  # before the split
    with pytest.raises(ValueError):
        Tiling.for_layers(64, layers, None, "relu4_2")  # no deep part without a split


def test_the_halo_comes_from_the_deepest_layer():
    assert reach(["conv5_1"]) == 70 and halo_for(StyleParams().layers) == 80
    assert reach(["pool3"]) == 22 and halo_for(["pool3"], 8) == 24
    assert reach(["conv1_1", "conv2_1", "conv3_1"]) == 10 and halo_for(SHALLOW["style_layers"]) == GRID
    assert reach(["conv1_1", "conv4_1"]) == 30 and halo_for(["conv1_1", "conv4_1"]) == 32
    assert halo_for(["conv4_2"]) > halo_for(["conv4_1"])


def test_without_its_halo_a_tile_is_wrong_and_with_it_exact(model):
    params = StyleParams(**SHALLOW)
    content, style, pixels = _tensors(128, 96)
    _, expected = _loss_and_grad(Objective(model, content, [style], params, None), pixels)
    exact = Tiling.for_layers(32, params.layers)
    _, grad = _loss_and_grad(Objective(model, content, [style], params, None, tiling=exact), pixels)
    assert _relative(grad, expected) < 1e-4
    _, wrong = _loss_and_grad(Objective(model, content, [style], params, None, tiling=Tiling(32, 0)), pixels)
    assert _relative(wrong, expected) > 1e-2


@pytest.mark.parametrize("split, grid", [(None, GRID), ("pool3", 8)])
@pytest.mark.parametrize("size, tile", [((128, 96), 64), ((100, 75), 32), ((257, 130), 48), ((64, 64), 64), ((500, 20), 160)])
def test_tiles_sit_on_the_grid_and_cover_the_picture_once(size, tile, split, grid):
    width, height = size
    tiling = Tiling.for_layers(tile, StyleParams().layers, split)
    assert tiling.grid == grid
    covered = np.zeros((height, width), dtype=int)
    for t in tiling.tiles(width, height):
        x0, y0, x1, y1 = t.interior
        assert x0 % grid == 0 and y0 % grid == 0 and t.outer[0] % grid == 0 and t.outer[1] % grid == 0
        assert x1 - x0 <= tiling.tile and y1 - y0 <= tiling.tile
        assert t.outer[0] == max(0, x0 - tiling.halo) and t.outer[2] == min(width, x1 + tiling.halo)
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("layers", [SHALLOW, {}], ids=["to conv3_1", "to conv5_1"])
def test_a_job_in_tiles_gives_the_result_of_the_whole_picture(model, layers):
    from nst import memory

    params = StyleParams(epochs=4, size=128, seed=3, schedule="single", precision="fp32", tv_weight=1.0, **layers)
    content, style = make_content(128, 96), make_style(80)
    whole = stylize(content, style, params, model=model, max_memory="unlimited")
    # What 64 px tiles need, cut at pool2 (conv3_1's layers) or pool3: the budget then picks its tiles.
    cut = Tiling.for_layers(64, params.layers, "pool2" if layers else "pool3")
    budget = memory.step_bytes((128, 96), params.layers, params.content_layer, tiling=cut)
    assert budget < memory.step_bytes((128, 96), params.layers, params.content_layer)
    assert memory.need((128, 96), budget, params.layers, params.content_layer).tiling.split is not None
    tiled = stylize(content, style, params, model=model, max_memory=budget)
    assert whole.stats.tiles == (1,) and tiled.stats.tiles[0] > 1
    # The gradients agree to ~1e-7; Adam's normalised steps (about lr whatever the gradient's size) turn
    # that into a full step the other way wherever a pixel's gradient is near zero (the pictures' flat
    # areas) and its sign differs: a few 8-bit levels on a few pixels, a small mean, and the loss off by
    # about 1e-4 (measured 1.1e-4 cut at pool1 in two tiles, whatever the seed). A wrong tile (no halo:
    # the gradient off by over 1%, see above) would move most pixels.
    assert abs(tiled.stats.total_loss - whole.stats.total_loss) <= 5e-4 * whole.stats.total_loss
    difference = np.abs(np.asarray(tiled.image, dtype=float) - np.asarray(whole.image, dtype=float))
    assert difference.mean() < 1.0 and (difference > 1).mean() < 0.2


def test_lbfgs_steps_in_tiles_like_the_whole_picture(model):
    from nst import memory

    params = StyleParams(epochs=3, size=128, seed=3, schedule="single", optimizer="lbfgs", **SHALLOW)
    content, style = make_content(128, 96), make_style(80)
    whole = stylize(content, style, params, model=model, max_memory="unlimited")
    budget = memory.step_bytes((128, 96), params.layers, params.content_layer, optimizer="lbfgs") - 1
    tiled = stylize(content, style, params, model=model, max_memory=budget)
    assert tiled.stats.tiles[0] > 1
    assert abs(tiled.stats.total_loss - whole.stats.total_loss) <= 1e-3 * whole.stats.total_loss


def test_cancel_is_checked_between_tiles(model):
    from nst import memory

    # fp32 as the estimate below: "auto" is bf16 on a CPU with AVX512-BF16, whose step needs half
    params = StyleParams(epochs=1, size=128, seed=3, schedule="single", precision="fp32", **SHALLOW)
    budget = memory.step_bytes((128, 96), params.layers, params.content_layer) - 1
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 3  # the step loop polls once: the fourth poll is between tiles

    with pytest.raises(Cancelled) as caught:
        stylize(make_content(128, 96), make_style(80), params, model=model, max_memory=budget, should_stop=should_stop)
    assert caught.value.step == 0 and len(polls) == 4
