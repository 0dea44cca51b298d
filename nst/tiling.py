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
# A frozen network's backward computes input gradients only (no weight gradients): about 1.2 forwards.
# Measured on the 2-core x86-64 CPU, one torch thread, 512×384 fp32, CPU time, random weights: up to
# conv5_1 a forward took 1.95 s, a forward and backward 4.33 s; up to pool3 1.07 s and 2.51 s.
BACKWARD_COST = 1.2


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


def conv_macs(first: int, last: int) -> float:
    """Multiply-adds per input pixel of the convolutions at VGG19_LAYERS[first:last] (the network's
    work is almost all there)."""
    total = 0.0
    in_channels = 3
    for name in VGG19_LAYERS[:last]:
        if not name.startswith("conv"):
            continue
        out_channels = layer_channels(name)
        if VGG19_LAYERS.index(name) >= first:
            total += in_channels * out_channels * 9 / layer_scale(name) ** 2
        in_channels = out_channels
    return total


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

    def work(self, width: int, height: int) -> float:
        """A tiled step's work relative to an untiled step's (convolution multiply-adds): the tiled part
        runs twice (pass 1's forward, pass 2's forward and backward) on its tiles' pixels with their
        halos; the deep part once, forward and backward, as untiled (with a :attr:`boundary`, its first
        segment's forward once more). An untiled step is one forward and one backward of everything."""
        last = VGG19_LAYERS.index(self.deepest) + 1
        cut = VGG19_LAYERS.index(self.split) + 1 if self.split is not None else last
        inflation = sum(t.outer_pixels for t in self.tiles(width, height)) / (width * height)
        shallow, deep = conv_macs(0, cut), conv_macs(cut, last)
        tiled = shallow * inflation * (2 + BACKWARD_COST) + deep * (1 + BACKWARD_COST)
        if self.boundary is not None:  # the first deep segment's forward runs again in the backward
            tiled += conv_macs(cut, VGG19_LAYERS.index(self.boundary) + 1)
        return tiled / ((shallow + deep) * (1 + BACKWARD_COST))


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

    def _style_layers(self) -> list[str]:
        return list(self.params.style_layers) if self.params.style_weight else []

    def _pass1(self, image, content_target, style_grams, with_grad: bool) -> _Pass1:
        import torch
        import torch.nn.functional as F

        from .losses import tv_loss

        p, tiling = self.params, self.tiling
        height, width = image.shape[-2:]
        style_layers = self._style_layers()
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
        layers = [layer for layer in self._style_layers() if self.tiling.is_shallow(layer)]
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
        tile's pixels, through its shallow part (the deep part's share arrives as ``split_grad``)."""
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
        outputs, grads = [], []
        for layer, multiplier in multipliers.items():
            interior = tile.crop(found[layer], layer_scale(layer))
            n, c, h, w = interior.shape
            flat = interior.detach().permute(0, 2, 3, 1).reshape(n, h * w, c)
            d_flat = torch.bmm(flat, multiplier.to(flat.dtype))  # as losses._Gram.backward, in F's dtype
            outputs.append(interior)
            grads.append(d_flat.reshape(n, h, w, c).permute(0, 3, 1, 2))
        if shallow_content:
            interior = tile.crop(found[p.content_layer], layer_scale(p.content_layer))
            target = tile.place(content_target, layer_scale(p.content_layer), interior.shape)
            d_content = p.content_weight * 2.0 * (interior.detach().float() - target) / content_target.numel()
            outputs.append(interior)
            grads.append(d_content.to(interior.dtype))
        if split:
            interior = tile.crop(found[split], layer_scale(split))
            outputs.append(interior)
            grads.append(tile.place(split_grad, layer_scale(split), interior.shape))
        torch.autograd.backward(outputs, grads)
        return pixels.grad

    def _tv_gradient(self, image):
        from .losses import tv_loss

        leaf = image.detach().requires_grad_(True)
        (self.params.tv_weight * tv_loss(leaf)).backward()
        return leaf.grad
