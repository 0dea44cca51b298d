"""The exact objective and its gradient computed tile by tile, in memory bounded by the tile's size.

The style loss compares Gram matrices of the *whole* picture and the content loss is a sum over
positions, so neither needs the whole picture's activations at once. The network is cut at a
pooling layer (:attr:`Tiling.split`; None: no cut, every tile runs the whole depth):

- pass 1 (no autograd): each tile runs the *shallow* part (up to the split) and gives its share of
  every shallow style layer's Gram matrix (ΣFᵀF over the tile's interior positions) and, when the
  content layer is shallow, of the content term's squared error; summed over the tiles they are the
  untiled values. Each tile's interior positions of the split layer are written into one full map;
- the *deep* part (after the split) runs once on that whole map with autograd, as untiled: its
  Grams, the content term when it is deep, their loss and its gradient dL/d(map). The map is 1/64
  of the pixels at pool3 and the deep layers cost a third of the network's work, once. With a
  :attr:`Tiling.boundary` the deep part runs in two segments and the first (up to the boundary,
  its loss terms inside) under activation checkpointing: its activations are recomputed in the
  backward after the second segment's are freed, so the deep phase holds one segment's at a time
  and leaves room for larger tiles, for one more forward of that segment;
- pass 2: with the global Grams known, dL/dF at every shallow position is known too
  (dL/dF = F·(g+gᵀ)/norm, g = dL/dG); each tile's shallow part is recomputed with autograd and that
  gradient, with dL/d(map) at the tile's interior, is backpropagated into the tile's pixels (halo
  included: they feed the interior) and added into one full-size pixel gradient.

Without a split (when even the deep part's whole map does not fit the budget) the same two passes
run the whole depth per tile, and pass 1's accumulation covers every layer.

A tile's interior sits on the pooling grid of the part it runs (:attr:`Tiling.grid` px: 8 for a cut
at pool3, 16 for conv5_1's whole depth; so every pooled layer's positions line up with the untiled
network's) and is read with a halo as wide as that part's reach (:func:`halo_for`), so its interior
features equal the untiled ones: zero padding at a tile's edge never reaches them. At the picture's
own edges the tile stops where the picture does, with the untiled network's own padding. The
total-variation term is computed on the whole picture: it needs no network and costs a few copies of
the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from .allocator import release_freed
from .params import VGG19_LAYERS, layer_channels

GRID = 16  # VGG-19 pools four times before conv5_1: 2**4 px of input per position there

# What each layer of VGG-19 costs, forward and backward (input gradients only: the weights are frozen),
# in ms of CPU time per megapixel of the picture; by activation bytes: 4 (fp32) and 2 (bf16, and
# fp16 where a GPU runs it: not measured, the nearest table). Only ratios are used: which cut of the
# network costs least, and a tiled step's cost beside an untiled one's. Measured by
# `python bench/layer_costs.py --threads 1 --repeats 3 --python` (1024×768) on a 2-core AMD EPYC with
# AVX512-BF16. Not the layers' multiply-adds: the first block (3 and 64 channels at every pixel) is
# bound by memory traffic and costs several times its share of the arithmetic, more so in bf16, which
# speeds the wide deep convolutions up far more than the shallow ones.
LAYER_COST: dict[int, dict[str, tuple[float, float]]] = {
    4: {  # fp32
        "conv1_1": (184, 202), "relu1_1": (134, 166), "conv1_2": (773, 805), "relu1_2": (119, 142),
        "pool1": (104, 131), "conv2_1": (383, 358), "relu2_1": (59, 71), "conv2_2": (707, 710), "relu2_2": (61, 71),
        "pool2": (45, 80), "conv3_1": (351, 331), "relu3_1": (29, 36), "conv3_2": (702, 706), "relu3_2": (31, 37),
        "conv3_3": (675, 673), "relu3_3": (29, 35), "conv3_4": (670, 683), "relu3_4": (30, 36), "pool3": (6, 43),
        "conv4_1": (346, 361), "relu4_1": (3, 5), "conv4_2": (715, 724), "relu4_2": (3, 17), "conv4_3": (710, 713),
        "relu4_3": (3, 4), "conv4_4": (689, 714), "relu4_4": (3, 4), "pool4": (3, 6), "conv5_1": (171, 168),
        "relu5_1": (1, 1), "conv5_2": (164, 165), "relu5_2": (1, 1), "conv5_3": (166, 165), "relu5_3": (1, 1),
        "conv5_4": (169, 168), "relu5_4": (1, 1), "pool5": (1, 1),
    },
    2: {  # bf16
        "conv1_1": (80, 114), "relu1_1": (92, 78), "conv1_2": (389, 389), "relu1_2": (71, 79), "pool1": (77, 88),
        "conv2_1": (162, 163), "relu2_1": (35, 39), "conv2_2": (326, 352), "relu2_2": (35, 39), "pool2": (13, 43),
        "conv3_1": (164, 166), "relu3_1": (18, 5), "conv3_2": (321, 321), "relu3_2": (3, 18), "conv3_3": (322, 336),
        "relu3_3": (3, 5), "conv3_4": (325, 346), "relu3_4": (3, 5), "pool3": (4, 11), "conv4_1": (164, 165),
        "relu4_1": (2, 3), "conv4_2": (327, 333), "relu4_2": (2, 3), "conv4_3": (328, 333), "relu4_3": (2, 3),
        "conv4_4": (324, 327), "relu4_4": (2, 2), "pool4": (2, 5), "conv5_1": (80, 82), "relu5_1": (0, 1),
        "conv5_2": (80, 81), "relu5_2": (1, 1), "conv5_3": (80, 81), "relu5_3": (1, 1), "conv5_4": (80, 81),
        "relu5_4": (1, 1), "pool5": (1, 1),
    },
}

# What each layer's Gram matrix costs as a style layer, forward and backward (nst.losses.gram: fp32
# accumulation, the backward's matmul in the features' dtype), in the same units, from the same run.
# A tiled step pays it as an untiled one does (pass 1 sums the Grams, pass 2 runs the backward's
# matmul per tile), so it only dilutes the ratio of the network's costs.
GRAM_COST: dict[int, dict[str, tuple[float, float]]] = {
    4: {  # fp32
        "conv1_1": (115, 309), "relu1_1": (130, 224), "conv1_2": (117, 228), "relu1_2": (120, 227),
        "pool1": (29, 55), "conv2_1": (96, 163), "relu2_1": (95, 149), "conv2_2": (93, 149), "relu2_2": (94, 154),
        "pool2": (24, 37), "conv3_1": (87, 138), "relu3_1": (86, 121), "conv3_2": (98, 176), "relu3_2": (88, 122),
        "conv3_3": (86, 117), "relu3_3": (86, 120), "conv3_4": (87, 121), "relu3_4": (87, 120), "pool3": (23, 29),
        "conv4_1": (98, 124), "relu4_1": (87, 101), "conv4_2": (86, 97), "relu4_2": (97, 128), "conv4_3": (85, 93),
        "relu4_3": (84, 93), "conv4_4": (98, 97), "relu4_4": (85, 99), "pool4": (22, 24), "conv5_1": (22, 25),
        "relu5_1": (21, 23), "conv5_2": (22, 24), "relu5_2": (21, 24), "conv5_3": (22, 24), "relu5_3": (22, 24),
        "conv5_4": (22, 24), "relu5_4": (21, 23), "pool5": (6, 6),
    },
    2: {  # bf16
        "conv1_1": (309, 114), "relu1_1": (235, 98), "conv1_2": (248, 99), "relu1_2": (235, 99), "pool1": (60, 23),
        "conv2_1": (156, 67), "relu2_1": (158, 68), "conv2_2": (157, 68), "relu2_2": (166, 76), "pool2": (27, 13),
        "conv3_1": (94, 42), "relu3_1": (92, 41), "conv3_2": (90, 41), "relu3_2": (120, 41), "conv3_3": (121, 41),
        "relu3_3": (117, 42), "conv3_4": (97, 42), "relu3_4": (91, 41), "pool3": (23, 11), "conv4_1": (89, 40),
        "relu4_1": (87, 40), "conv4_2": (87, 40), "relu4_2": (91, 40), "conv4_3": (87, 39), "relu4_3": (87, 40),
        "conv4_4": (87, 39), "relu4_4": (88, 40), "pool4": (22, 11), "conv5_1": (22, 11), "relu5_1": (22, 11),
        "conv5_2": (22, 11), "relu5_2": (22, 11), "conv5_3": (22, 11), "relu5_3": (22, 11), "conv5_4": (22, 11),
        "relu5_4": (22, 11), "pool5": (6, 4),
    },
}


def _measured(costs: dict[int, dict[str, tuple[float, float]]], dtype_bytes: int) -> dict[str, tuple[float, float]]:
    return costs[4 if dtype_bytes >= 4 else 2]


def segment_cost(first: int, last: int, dtype_bytes: int = 4) -> tuple[float, float]:
    """(forward, backward) cost of VGG19_LAYERS[first:last] per megapixel of the picture (LAYER_COST)."""
    costs = [_measured(LAYER_COST, dtype_bytes)[name] for name in VGG19_LAYERS[first:last]]
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def gram_cost(layers: Sequence[str], dtype_bytes: int = 4) -> float:
    """The Gram matrices of style ``layers``, forward and backward, per megapixel (GRAM_COST)."""
    return sum(sum(_measured(GRAM_COST, dtype_bytes)[layer]) for layer in layers)


def layer_scale(layer: str) -> int:
    """Input pixels per position of ``layer`` (one side): 2 to the number of poolings before it, included."""
    index = VGG19_LAYERS.index(layer)
    return 2 ** sum(1 for name in VGG19_LAYERS[: index + 1] if name.startswith("pool"))


def _deepest(layers: Sequence[str]) -> str:
    return max(layers, key=VGG19_LAYERS.index)


def reach(layers: Sequence[str]) -> int:
    """How far (px) beyond a block of ``layer_scale`` pixels the input of one position of the deepest
    layer extends on either side: each 3×3 convolution (padding 1) adds one position of its own
    scale, poolings (2×2, stride 2) add nothing beyond their block. conv5_1: 70 px; conv4_1: 30 px;
    pool3: 22 px."""
    deepest = VGG19_LAYERS.index(_deepest(layers))
    extent, scale = 0, 1
    for name in VGG19_LAYERS[: deepest + 1]:
        if name.startswith("conv"):
            extent += scale
        elif name.startswith("pool"):
            scale *= 2
    return extent


def grid_for(layers: Sequence[str]) -> int:
    """The tile grid: GRID, or coarser when a layer pools more than four times (pool5)."""
    return max(GRID, max(layer_scale(name) for name in layers))


def halo_for(layers: Sequence[str], grid: int | None = None) -> int:
    """The halo a tile needs so its interior features are exact: the deepest layer's reach rounded up
    to the grid (so a tile's first pixel stays on the grid). conv5_1: 70 px -> 80."""
    grid = grid or grid_for(layers)
    return -(-reach(layers) // grid) * grid


def split_points(layers: Sequence[str]) -> list[str]:
    """The poolings the network can be cut at for ``layers``: those before the deepest layer in use,
    shallowest first."""
    deepest = VGG19_LAYERS.index(_deepest(layers))
    return [name for name in VGG19_LAYERS[:deepest] if name.startswith("pool")]


def boundaries(layers: Sequence[str], split: str | None) -> list[str]:
    """Where the deep part after ``split`` can be cut in two segments (see :meth:`Tiling.for_layers`):
    its ReLUs before the deepest layer in use (a ReLU's output is kept by the next layer anyway)."""
    if split is None:
        return []
    deepest = VGG19_LAYERS.index(_deepest(layers))
    return [name for name in VGG19_LAYERS[VGG19_LAYERS.index(split) + 1 : deepest] if name.startswith("relu")]


@dataclass(frozen=True)
class Tile:
    """One tile: its interior (the positions it answers for) and its outer box (interior + halo,
    cut at the picture's edges), both (x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

    interior: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    def pixels(self, image):
        x0, y0, x1, y1 = self.outer
        return image[..., y0:y1, x0:x1]

    def crop(self, features, scale: int):
        """The interior positions of a tile's features at a layer of ``scale`` px per position. At the
        picture's right/bottom edge the floor matches the untiled network's pooling."""
        x0, y0, x1, y1 = self.interior
        ox0, oy0 = self.outer[:2]
        return features[..., (y0 - oy0) // scale : (y1 - oy0) // scale, (x0 - ox0) // scale : (x1 - ox0) // scale]

    def place(self, full, scale: int, shape):
        """The region of a full-picture map (``scale`` px per position) holding this tile's interior
        positions, ``shape`` as :meth:`crop` gave them."""
        x0, y0 = self.interior[:2]
        return full[..., y0 // scale : y0 // scale + shape[-2], x0 // scale : x0 // scale + shape[-1]]

    @property
    def outer_pixels(self) -> int:
        x0, y0, x1, y1 = self.outer
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Tiling:
    """Tiles of at most ``tile``×``tile`` interior pixels (a multiple of ``grid``) with ``halo`` px
    around, running the network up to ``split`` (a pooling; the rest runs once on the whole map) or,
    with no split, up to ``deepest``, the deepest layer in use."""

    tile: int
    halo: int
    grid: int = GRID
    split: str | None = None
    deepest: str = "conv5_1"
    boundary: str | None = None

    @classmethod
    def for_layers(cls, tile: int, layers: Sequence[str], split: str | None = None, boundary: str | None = None) -> "Tiling":
        """The tiling for ``layers``: cut at ``split`` (one of :func:`split_points`), or whole depth;
        ``boundary`` (one of :func:`boundaries`): the deep part is cut there in two segments, the
        first recomputed in the backward.

        With a boundary the first segment keeps only its input (the split's map) for the backward and
        its activations are recomputed there, after the second segment's backward has freed its own:
        the deep phase holds one segment's activations at a time, for one more forward of the first."""
        if split is not None and split not in split_points(layers):
            raise ValueError(f"{split} is not a pooling before the deepest of {', '.join(layers)}")
        if boundary is not None and boundary not in boundaries(layers, split):
            raise ValueError(f"{boundary} is not a ReLU of the deep part after {split}")
        tiled = [split] if split is not None else list(layers)
        grid = layer_scale(split) if split is not None else grid_for(layers)
        return cls(max(grid, tile // grid * grid), halo_for(tiled, grid), grid, split, _deepest(layers), boundary)

    def is_shallow(self, layer: str) -> bool:
        """Whether ``layer`` is computed in the tiles (else once, on the split's whole map)."""
        return self.split is None or VGG19_LAYERS.index(layer) <= VGG19_LAYERS.index(self.split)

    def _spans(self, length: int) -> list[tuple[int, int]]:
        # Equal tiles rather than full ones and a sliver: the same count, less halo work per tile.
        count = math.ceil(length / self.tile)
        step = -(-math.ceil(length / count) // self.grid) * self.grid
        return [(start, min(start + step, length)) for start in range(0, length, step)]

    def tiles(self, width: int, height: int) -> list[Tile]:
        out = []
        for y0, y1 in self._spans(height):
            for x0, x1 in self._spans(width):
                outer = (max(0, x0 - self.halo), max(0, y0 - self.halo), min(width, x1 + self.halo), min(height, y1 + self.halo))
                out.append(Tile((x0, y0, x1, y1), outer))
        return out

    def work(self, width: int, height: int, dtype_bytes: int = 4, style_layers: Sequence[str] = ()) -> float:
        """A tiled step's cost relative to an untiled step's (:func:`segment_cost`): the tiled part runs
        twice (pass 1's forward, pass 2's forward and backward) on its tiles' pixels with their halos;
        the deep part once, forward and backward, as untiled (with a :attr:`boundary`, its first
        segment's forward once more). An untiled step is one forward and one backward of everything.
        Both pay the Gram matrices of ``style_layers`` alike (:func:`gram_cost`)."""
        last = VGG19_LAYERS.index(self.deepest) + 1
        cut = VGG19_LAYERS.index(self.split) + 1 if self.split is not None else last
        inflation = sum(t.outer_pixels for t in self.tiles(width, height)) / (width * height)
        (shallow_f, shallow_b), (deep_f, deep_b) = segment_cost(0, cut, dtype_bytes), segment_cost(cut, last, dtype_bytes)
        tiled = (2 * shallow_f + shallow_b) * inflation + deep_f + deep_b
        if self.boundary is not None:  # the first deep segment's forward runs again in the backward
            tiled += segment_cost(cut, VGG19_LAYERS.index(self.boundary) + 1, dtype_bytes)[0]
        grams = gram_cost(style_layers, dtype_bytes)
        return (tiled + grams) / (shallow_f + shallow_b + deep_f + deep_b + grams)


CheckCancel = Callable[[], None]


def _wide_flat(features):
    """(N, C, h, w) -> (N, h·w, C) in fp32 (or wider), as losses.gram reads it."""
    import torch

    n, c, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return flat.to(torch.promote_types(flat.dtype, torch.float32))


def _interiors(model, image, layers, pool, dtype, tiling: Tiling, check_cancel: CheckCancel | None) -> Iterator[tuple[Tile, dict]]:
    """Each tile's interior features of ``layers`` (no autograd)."""
    import torch

    height, width = image.shape[-2:]
    for tile in tiling.tiles(width, height):
        if check_cancel is not None:
            check_cancel()
        with torch.no_grad():
            features = model(tile.pixels(image), layers, pool, dtype)
        yield tile, {layer: tile.crop(features[layer], layer_scale(layer)) for layer in layers}


def _full_map(part, width: int, height: int, scale: int):
    """An empty full-picture map for a layer of ``scale`` px per position, like the tile part ``part``
    (dtype, device, memory format)."""
    import torch

    channels_last = part.is_contiguous(memory_format=torch.channels_last) and not part.is_contiguous()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    shape = (*part.shape[:2], height // scale, width // scale)
    return torch.empty(shape, dtype=part.dtype, device=part.device, memory_format=memory_format)


@dataclass
class _Sweep:
    """Pass 1's sums over the tiles: unnormalised Grams ΣFᵀF of the shallow style layers, the shallow
    content term's squared error, and the full map of one layer (the split's, or a layer asked for)."""

    sums: dict
    squared_error: object = None
    full: object = None


def _sweep(model, image, pool, dtype, tiling: Tiling, check_cancel, gram_layers=(), content_layer=None,
           content_target=None, keep: str | None = None) -> _Sweep:
    height, width = image.shape[-2:]
    out = _Sweep({})
    wanted = list(dict.fromkeys([*gram_layers, *([content_layer] if content_target is not None else []),
                                 *([keep] if keep else [])]))
    if not wanted:
        return out
    for tile, found in _interiors(model, image, wanted, pool, dtype, tiling, check_cancel):
        for layer in gram_layers:
            flat = _wide_flat(found[layer])
            part = flat.transpose(1, 2) @ flat
            out.sums[layer] = part if layer not in out.sums else out.sums[layer] + part
        if content_target is not None:
            error = _content_error(tile, found[content_layer], content_target, layer_scale(content_layer))
            out.squared_error = error if out.squared_error is None else out.squared_error + error
        if keep:
            part = found[keep]
            if out.full is None:
                out.full = _full_map(part, width, height, layer_scale(keep))
            tile.place(out.full, layer_scale(keep), part.shape).copy_(part)
    return out


def features(model, image, layer: str, pool: str, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None):
    """The untiled network's ``layer`` features of ``image`` (fp32), from tiles (and the deep part)."""
    import torch

    if tiling.is_shallow(layer):
        return _sweep(model, image, pool, dtype, tiling, check_cancel, keep=layer).full.float()
    split_map = _sweep(model, image, pool, dtype, tiling, check_cancel, keep=tiling.split).full
    with torch.no_grad():
        return model(split_map, [layer], pool, dtype, start_after=tiling.split)[layer].float()


def _gram_norms(layers: Sequence[str], width: int, height: int, channels: Mapping[str, int]) -> dict[str, float]:
    return {layer: float(channels[layer] * (height // layer_scale(layer)) * (width // layer_scale(layer))) for layer in layers}


def _normalised(sums: dict, width: int, height: int) -> dict:
    norms = _gram_norms(list(sums), width, height, {layer: s.shape[-1] for layer, s in sums.items()})
    return {layer: s / norms[layer] for layer, s in sums.items()}


def grams(model, image, layers: Sequence[str], pool: str, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None) -> dict:
    """Each layer's Gram matrix of ``image`` as losses.gram computes it untiled (fp32, normalised)."""
    import torch

    from .losses import gram

    height, width = image.shape[-2:]
    shallow = [layer for layer in layers if tiling.is_shallow(layer)]
    deep = [layer for layer in layers if not tiling.is_shallow(layer)]
    swept = _sweep(model, image, pool, dtype, tiling, check_cancel, shallow, keep=tiling.split if deep else None)
    out = _normalised(swept.sums, width, height)
    if deep:
        with torch.no_grad():
            found = model(swept.full, deep, pool, dtype, start_after=tiling.split)
        out.update({layer: gram(found[layer]) for layer in deep})
    return {layer: out[layer] for layer in layers}


def _content_error(tile: Tile, found, target, scale: int):
    return (found.float() - tile.place(target, scale, found.shape)).pow(2).sum()


@dataclass
class _Pass1:
    """What pass 1 and the deep part leave: the loss terms, every style layer's global Gram, and
    dL/d(split map) for pass 2 (None without a split or when no gradient was asked for)."""

    terms: tuple
    grams: dict
    split_grad: object = None


class TiledLoss:
    """The objective of :class:`nst.transfer.Objective`, tile by tile. Returns the loss terms as
    (content, style, tv, total) tensors; :meth:`value_and_grad` also sets ``image.grad``."""

    def __init__(self, model, params, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None):
        self.model = model
        self.params = params
        self.dtype = dtype
        self.tiling = tiling
        self.check_cancel = check_cancel

    def _pass1(self, image, content_target, style_grams, with_grad: bool) -> _Pass1:
        import torch
        import torch.nn.functional as F

        from .losses import tv_loss

        p, tiling = self.params, self.tiling
        height, width = image.shape[-2:]
        style_layers = list(self.params.gram_layers)
        shallow = [layer for layer in style_layers if tiling.is_shallow(layer)]
        deep = [layer for layer in style_layers if not tiling.is_shallow(layer)]
        content_is_deep = bool(p.content_weight) and not tiling.is_shallow(p.content_layer)
        shallow_target = content_target if p.content_weight and not content_is_deep else None
        needs_deep = bool(deep) or content_is_deep
        swept = _sweep(self.model, image, p.pool, self.dtype, tiling, self.check_cancel, shallow, p.content_layer,
                       shallow_target, keep=tiling.split if needs_deep else None)
        release_freed(image.device)  # pass 1's tile blocks, before the deep phase peaks (nst/allocator.py)
        grams_now = _normalised(swept.sums, width, height)
        zero = image.new_zeros(())
        content = swept.squared_error / content_target.numel() if shallow_target is not None else zero
        deep_loss, split_map = None, None
        if needs_deep:
            if self.check_cancel is not None:
                self.check_cancel()
            split_map = swept.full.requires_grad_(with_grad)
            deep_content_layer = p.content_layer if content_is_deep else None
            with torch.set_grad_enabled(with_grad):
                deep_loss, deep_grams, deep_content = self._deep_part(split_map, deep, deep_content_layer, content_target,
                                                                       style_grams, segmented=with_grad)
            if deep_content is not None:
                content = deep_content
            grams_now.update(deep_grams)
        style = zero
        if p.style_weight:
            style = sum(w * F.mse_loss(grams_now[l], style_grams[l]) for l, w in zip(p.style_layers, p.style_layer_weights))
        tv = tv_loss(image.detach()) if p.tv_weight else zero
        total = p.content_weight * content + p.style_weight * style + p.tv_weight * tv
        split_grad = None
        if with_grad and deep_loss is not None:
            deep_loss.backward()  # frees the deep part's activations; leaves dL/d(map)
            split_grad = split_map.grad
            release_freed(image.device)  # the deep phase's blocks, before pass 2's tiles
        return _Pass1((content, style, tv, total), grams_now, split_grad)

    def _deep_terms(self, found, style_layers, content_layer, content_target, style_grams):
        """The deep part's share of the loss from its features ``found``, its Grams (detached) and its
        content term (detached; None when the content layer is not among them)."""
        import torch.nn.functional as F

        from .losses import gram

        p = self.params
        weights = dict(zip(p.style_layers, p.style_layer_weights))
        grams_of = {layer: gram(found[layer]) for layer in style_layers}
        loss = sum((p.style_weight * weights[l] * F.mse_loss(grams_of[l], style_grams[l]) for l in style_layers),
                   start=content_target.new_zeros(()))
        content = None
        if content_layer is not None:
            content = F.mse_loss(found[content_layer].float(), content_target)
            loss = loss + p.content_weight * content
            content = content.detach()
        return loss, {layer: g.detach() for layer, g in grams_of.items()}, content

    def _deep_part(self, split_map, style_layers, content_layer, content_target, style_grams, segmented: bool):
        """(loss, Grams, content term) of the deep part on the whole map of the split. ``segmented``
        (autograd on) with :attr:`Tiling.boundary`: the segment up to the boundary runs under
        activation checkpointing, its loss terms inside it, so only its input is kept for the backward
        and its activations are recomputed there, after the second segment's backward has freed its own."""
        from torch.utils.checkpoint import checkpoint

        p, split, boundary = self.params, self.tiling.split, self.tiling.boundary
        wanted = [*style_layers, *([content_layer] if content_layer else [])]
        order = VGG19_LAYERS.index
        if not segmented or boundary is None or max(map(order, wanted)) <= order(boundary):
            found = self.model(split_map, wanted, p.pool, self.dtype, start_after=split)
            return self._deep_terms(found, style_layers, content_layer, content_target, style_grams)

        def first_of(layers):
            return [layer for layer in layers if order(layer) <= order(boundary)]

        first_style = first_of(style_layers)
        first_content = content_layer if content_layer in first_of(wanted) else None

        def first_segment(x):
            found = self.model(x, [*first_of(wanted), boundary], p.pool, self.dtype, start_after=split)
            return (found[boundary], *self._deep_terms(found, first_style, first_content, content_target, style_grams))

        x, loss, grams_now, content = checkpoint(first_segment, split_map, use_reentrant=False)
        # The checkpoint's outputs are all attached to its graph: only x and loss need to be.
        grams_now = {layer: g.detach() for layer, g in grams_now.items()}
        content = content.detach() if content is not None else None
        later = [layer for layer in wanted if order(layer) > order(boundary)]
        found = self.model(x, later, p.pool, self.dtype, start_after=boundary)
        later_content = content_layer if content_layer in later else None
        later_loss, later_grams, later_value = self._deep_terms(
            found, [l for l in style_layers if l in later], later_content, content_target, style_grams)
        return loss + later_loss, {**grams_now, **later_grams}, content if later_value is None else later_value

    def value(self, image, content_target, style_grams):
        return self._pass1(image, content_target, style_grams, with_grad=False).terms

    def value_and_grad(self, image, content_target, style_grams):
        import torch

        first = self._pass1(image, content_target, style_grams, with_grad=True)
        grad = torch.zeros_like(image)
        multipliers = self._feature_multipliers(first.grams, style_grams, image.shape[-1], image.shape[-2])
        for tile in self.tiling.tiles(image.shape[-1], image.shape[-2]):
            if self.check_cancel is not None:
                self.check_cancel()
            tile_grad = self._tile_gradient(tile, image, content_target, multipliers, first.split_grad)
            if tile_grad is not None:
                tile.pixels(grad).add_(tile_grad)
            del tile_grad
            release_freed(image.device)  # this tile's blocks, before the next tile's
        if self.params.tv_weight:
            grad.add_(self._tv_gradient(image))
        image.grad = grad
        return first.terms

    def _feature_multipliers(self, grams_now, style_grams, width, height) -> dict:
        """Per shallow style layer, M with dL/dF = F·M for F of shape (h·w, C): M = (g + gᵀ)/norm, g = dL/dG."""
        p = self.params
        layers = [layer for layer in self.params.gram_layers if self.tiling.is_shallow(layer)]
        channels_of = {layer: grams_now[layer].shape[-1] for layer in layers}
        norms = _gram_norms(layers, width, height, channels_of)
        weights = dict(zip(p.style_layers, p.style_layer_weights))
        out = {}
        for layer in layers:
            difference = grams_now[layer] - style_grams[layer]
            g = p.style_weight * weights[layer] * 2.0 * difference / difference.numel()  # d(w·mse)/dG
            out[layer] = (g + g.transpose(1, 2)) / norms[layer]
        return out

    def _tile_gradient(self, tile: Tile, image, content_target, multipliers, split_grad):
        """Pass 2 for one tile: the gradient of the full objective (without tv) with respect to the
        tile's pixels, through its shallow part (the deep part's share arrives as ``split_grad``).

        Each captured layer gets its gradient over the tile's whole map (zero in the halo), laid out
        as the layer's own output, and the backward starts from those maps: backpropagating through a
        crop instead costs a zero-filled copy per layer in the default layout, and adding that to the
        channels-last gradient flowing down from the deeper layers ran at a fraction of the speed
        (measured at 2048×1536 bf16 in 6 tiles: 3.6 s of 47 s a step in such adds)."""
        import torch

        p, tiling = self.params, self.tiling
        shallow_content = bool(p.content_weight) and tiling.is_shallow(p.content_layer)
        split = tiling.split if split_grad is not None else None
        layers = list(dict.fromkeys([*multipliers, *([p.content_layer] if shallow_content else []), *([split] if split else [])]))
        if not layers:
            return None
        channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format  # as the picture's
        pixels = tile.pixels(image).detach().contiguous(memory_format=memory_format).requires_grad_(True)
        found = self.model(pixels, layers, p.pool, self.dtype)
        grads = {layer: torch.zeros_like(found[layer]) for layer in layers}  # zeros_like keeps the layout

        def interior_grad(layer):
            return tile.crop(grads[layer], layer_scale(layer))

        for layer, multiplier in multipliers.items():
            interior = tile.crop(found[layer], layer_scale(layer)).detach()
            n, c, h, w = interior.shape
            flat = interior.permute(0, 2, 3, 1).reshape(n, h * w, c)
            d_flat = torch.bmm(flat, multiplier.to(flat.dtype))  # as losses._Gram.backward, in F's dtype
            interior_grad(layer).add_(d_flat.reshape(n, h, w, c).permute(0, 3, 1, 2))
        if shallow_content:
            layer = p.content_layer
            interior = tile.crop(found[layer], layer_scale(layer)).detach()
            target = tile.place(content_target, layer_scale(layer), interior.shape)
            interior_grad(layer).add_(p.content_weight * 2.0 * (interior.float() - target) / content_target.numel())
        if split:
            part = interior_grad(split)
            part.add_(tile.place(split_grad, layer_scale(split), part.shape))
        torch.autograd.backward([found[layer] for layer in layers], [grads[layer] for layer in layers])
        return pixels.grad

    def _tv_gradient(self, image):
        from .losses import tv_loss

        leaf = image.detach().requires_grad_(True)
        (self.params.tv_weight * tv_loss(leaf)).backward()
        return leaf.grad
