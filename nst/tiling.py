"""The exact objective and its gradient computed tile by tile, in memory bounded by the tile's size.

The style loss compares Gram matrices of the *whole* picture and the content loss is a sum over
positions, so neither needs the whole picture's activations at once:

- pass 1 (no autograd): each tile's features give its share of every style layer's Gram matrix
  (ΣFᵀF over the tile's interior positions) and of the content term's squared error; summed over
  the tiles they are the untiled values;
- pass 2: with the global Grams known, dL/dF at every position is known too (dL/dF = F·(g+gᵀ)/norm,
  g = dL/dG); each tile's features are recomputed with autograd and that gradient, restricted to
  the tile's interior positions, is backpropagated into the tile's pixels (halo included: they feed
  the interior) and added into one full-size pixel gradient.

A tile's interior sits on VGG-19's pooling grid (:data:`GRID` px, so every pooled layer's positions
line up with the untiled network's) and is read with a halo as wide as the deepest layer's reach
(:func:`halo_for`), so its interior features equal the untiled ones: zero padding at a tile's edge
never reaches them. At the picture's own edges the tile stops where the picture does, with the
untiled network's own padding. The total-variation term is computed on the whole picture: it needs
no network and costs a few copies of the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from .params import VGG19_LAYERS

GRID = 16  # VGG-19 pools four times before conv5_1: 2**4 px of input per position there


def layer_scale(layer: str) -> int:
    """Input pixels per position of ``layer`` (one side): 2 to the number of poolings before it, included."""
    index = VGG19_LAYERS.index(layer)
    return 2 ** sum(1 for name in VGG19_LAYERS[: index + 1] if name.startswith("pool"))


def reach(layers: Sequence[str]) -> int:
    """How far (px) beyond a block of ``layer_scale`` pixels the input of one position of the deepest
    layer extends on either side: each 3×3 convolution (padding 1) adds one position of its own
    scale, poolings (2×2, stride 2) add nothing beyond their block. conv5_1: 70 px; conv4_1: 38 px."""
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
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


def halo_for(layers: Sequence[str]) -> int:
    """The halo a tile needs so its interior features are exact: the deepest layer's reach rounded up
    to the grid (so a tile's first pixel stays on the grid). conv5_1: 70 px -> 80."""
    grid = grid_for(layers)
    return -(-reach(layers) // grid) * grid


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

    @property
    def outer_pixels(self) -> int:
        x0, y0, x1, y1 = self.outer
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Tiling:
    """Tiles of at most ``tile``×``tile`` interior pixels (a multiple of ``grid``) with ``halo`` px around."""

    tile: int
    halo: int
    grid: int = GRID

    @classmethod
    def for_layers(cls, tile: int, layers: Sequence[str]) -> "Tiling":
        grid = grid_for(layers)
        return cls(max(grid, tile // grid * grid), halo_for(layers), grid)

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

    def work(self, width: int, height: int) -> float:
        """Pixels a tiled step pushes through the network relative to an untiled step's: the halo's
        overlap, and two forward passes (pass 1, then pass 2's forward and backward, ~3 forwards)
        where an untiled step makes one forward and one backward."""
        outer = sum(t.outer_pixels for t in self.tiles(width, height))
        return outer / (width * height) * (1 + 3) / 3


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


def features(model, image, layer: str, pool: str, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None):
    """The untiled network's ``layer`` features of ``image`` (fp32), assembled from tiles."""
    import torch

    scale = layer_scale(layer)
    height, width = image.shape[-2:]
    out = None
    for tile, found in _interiors(model, image, [layer], pool, dtype, tiling, check_cancel):
        part = found[layer].float()
        if out is None:
            out = torch.empty((*part.shape[:2], height // scale, width // scale), device=part.device)
        x0, y0 = tile.interior[:2]
        out[..., y0 // scale : y0 // scale + part.shape[-2], x0 // scale : x0 // scale + part.shape[-1]] = part
    return out


def _gram_norms(layers: Sequence[str], width: int, height: int, channels: Mapping[str, int]) -> dict[str, float]:
    return {layer: float(channels[layer] * (height // layer_scale(layer)) * (width // layer_scale(layer))) for layer in layers}


def grams(model, image, layers: Sequence[str], pool: str, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None) -> dict:
    """Each layer's Gram matrix of ``image`` as losses.gram computes it untiled (fp32, normalised)."""
    totals, _ = _accumulate(model, image, layers, pool, dtype, tiling, check_cancel)
    return totals


def _accumulate(model, image, layers, pool, dtype, tiling, check_cancel, content_layer=None, content_target=None):
    """Pass 1: the normalised Grams of ``layers`` and, given a content target, the content term's
    summed squared error, over all tiles."""
    height, width = image.shape[-2:]
    sums: dict = {}
    squared_error = None
    wanted = list(dict.fromkeys([*layers, *([content_layer] if content_target is not None else [])]))
    for tile, found in _interiors(model, image, wanted, pool, dtype, tiling, check_cancel):
        for layer in layers:
            flat = _wide_flat(found[layer])
            part = flat.transpose(1, 2) @ flat
            sums[layer] = part if layer not in sums else sums[layer] + part
        if content_target is not None:
            error = _content_error(tile, found[content_layer], content_target, layer_scale(content_layer))
            squared_error = error if squared_error is None else squared_error + error
    channels = {layer: sums[layer].shape[-1] for layer in layers}
    norms = _gram_norms(layers, width, height, channels)
    return {layer: sums[layer] / norms[layer] for layer in layers}, squared_error


def _target_crop(tile: Tile, target, scale: int, shape):
    x0, y0 = tile.interior[:2]
    return target[..., y0 // scale : y0 // scale + shape[-2], x0 // scale : x0 // scale + shape[-1]]


def _content_error(tile: Tile, found, target, scale: int):
    return (found.float() - _target_crop(tile, target, scale, found.shape)).pow(2).sum()


class TiledLoss:
    """The objective of :class:`nst.transfer.Objective`, tile by tile. Returns the loss terms as
    (content, style, tv, total) tensors; :meth:`value_and_grad` also sets ``image.grad``."""

    def __init__(self, model, params, dtype, tiling: Tiling, check_cancel: CheckCancel | None = None):
        self.model = model
        self.params = params
        self.dtype = dtype
        self.tiling = tiling
        self.check_cancel = check_cancel

    def _pass1(self, image, content_target, style_grams):
        from .losses import tv_loss
        import torch.nn.functional as F

        p = self.params
        layers = p.style_layers if p.style_weight else ()
        target = content_target if p.content_weight else None
        grams_now, squared_error = _accumulate(
            self.model, image, layers, p.pool, self.dtype, self.tiling, self.check_cancel, p.content_layer, target
        )
        zero = image.new_zeros(())
        content = squared_error / content_target.numel() if target is not None else zero
        style = zero
        if p.style_weight:
            style = sum(w * F.mse_loss(grams_now[l], style_grams[l]) for l, w in zip(p.style_layers, p.style_layer_weights))
        tv = tv_loss(image.detach()) if p.tv_weight else zero
        total = p.content_weight * content + p.style_weight * style + p.tv_weight * tv
        return (content, style, tv, total), grams_now

    def value(self, image, content_target, style_grams):
        return self._pass1(image, content_target, style_grams)[0]

    def value_and_grad(self, image, content_target, style_grams):
        import torch

        terms, grams_now = self._pass1(image, content_target, style_grams)
        grad = torch.zeros_like(image)
        multipliers = self._feature_multipliers(grams_now, style_grams, image.shape[-1], image.shape[-2])
        for tile in self.tiling.tiles(image.shape[-1], image.shape[-2]):
            if self.check_cancel is not None:
                self.check_cancel()
            tile_grad = self._tile_gradient(tile, image, content_target, multipliers)
            tile.pixels(grad).add_(tile_grad)
        if self.params.tv_weight:
            grad.add_(self._tv_gradient(image))
        image.grad = grad
        return terms

    def _feature_multipliers(self, grams_now, style_grams, width, height) -> dict:
        """Per style layer, M with dL/dF = F·M for F of shape (h·w, C): M = (g + gᵀ)/norm, g = dL/dG."""
        p = self.params
        if not p.style_weight:
            return {}
        channels = {layer: grams_now[layer].shape[-1] for layer in p.style_layers}
        norms = _gram_norms(p.style_layers, width, height, channels)
        out = {}
        for layer, weight in zip(p.style_layers, p.style_layer_weights):
            difference = grams_now[layer] - style_grams[layer]
            g = p.style_weight * weight * 2.0 * difference / difference.numel()  # d(w·mse)/dG
            out[layer] = (g + g.transpose(1, 2)) / norms[layer]
        return out

    def _tile_gradient(self, tile: Tile, image, content_target, multipliers):
        """Pass 2 for one tile: the gradient of the full objective (without tv) with respect to the tile's pixels."""
        import torch

        p = self.params
        channels_last = image.is_contiguous(memory_format=torch.channels_last) and not image.is_contiguous()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format  # as the picture's
        pixels = tile.pixels(image).detach().contiguous(memory_format=memory_format).requires_grad_(True)
        layers = list(dict.fromkeys([*multipliers, *([p.content_layer] if p.content_weight else [])]))
        found = self.model(pixels, layers, p.pool, self.dtype)
        outputs, grads = [], []
        for layer, multiplier in multipliers.items():
            interior = tile.crop(found[layer], layer_scale(layer))
            n, c, h, w = interior.shape
            flat = interior.detach().permute(0, 2, 3, 1).reshape(n, h * w, c)
            d_flat = torch.bmm(flat, multiplier.to(flat.dtype))  # as losses._Gram.backward, in F's dtype
            outputs.append(interior)
            grads.append(d_flat.reshape(n, h, w, c).permute(0, 3, 1, 2))
        if p.content_weight:
            interior = tile.crop(found[p.content_layer], layer_scale(p.content_layer))
            target = _target_crop(tile, content_target, layer_scale(p.content_layer), interior.shape)
            d_content = p.content_weight * 2.0 * (interior.detach().float() - target) / content_target.numel()
            outputs.append(interior)
            grads.append(d_content.to(interior.dtype))
        torch.autograd.backward(outputs, grads)
        return pixels.grad

    def _tv_gradient(self, image):
        from .losses import tv_loss

        leaf = image.detach().requires_grad_(True)
        (self.params.tv_weight * tv_loss(leaf)).backward()
        return leaf.grad
