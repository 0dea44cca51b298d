"""Memory: what one optimisation step needs at a size, the budget it must fit, and the tiles that fit it.

No torch at module level: the bot's main process calls :func:`check_fits` (through
:func:`nst.check_runnable`) to refuse a job before queueing it. Only :func:`default_budget` imports
torch, to ask the device.

The estimate counts what a step keeps alive at its peak, beyond the loaded model: the activations
autograd saves for the backward pass up to the deepest layer in use (every ReLU's output, the
captured conv outputs, each pooling's output and, for max pooling, its int64 indices), the backward
pass's two largest transient gradients (one in fp32 where the Grams' inputs are bf16), and the full-size tensors of the picture (pixels, gradient,
the optimiser's state, the content target, temporaries). A tiled step keeps the activations of one
tile (interior and halo) and the full-size tensors of the whole picture; cut at a pooling (see
nst/tiling.py), also the deep part's activations on the whole map of that pooling, in a phase of
its own. A fixed part and the factor for tiled steps are calibrated with
bench/memory.py (see FIXED_BYTES and TILED_FACTOR).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

from .errors import ParamError
from .params import VGG19_LAYERS, layer_channels
from .tiling import Tiling, boundaries, layer_scale, split_points

INDEX_BYTES = 8  # max pooling keeps int64 indices for its backward
PIXEL_BYTES = 3 * 4  # one fp32 RGB pixel
# Full-size picture tensors alive at a step's peak, in fp32 RGB copies: pixels, gradient, Adam's two
# moments, the content picture, the clamp/upsample temporaries (and, tiled, the tile gradient sum).
ADAM_PICTURE_COPIES = 7
# L-BFGS keeps LBFGS_HISTORY pairs of (step, gradient change) plus its direction and cache.
LBFGS_PICTURE_COPIES = 2 * 20 + 8
# Calibrated with bench/memory.py and per-tiling runs (CPU, fp32, peak RSS of a fresh process beyond
# the loaded model): measured untiled 599 MiB at 512×384 and 1856 MiB at 1024×768 against counts of
# 501 MiB and 2004 MiB. A fixed part (the runtime's and oneDNN's buffers, the decoded pictures) comes
# on top of any step.
FIXED_BYTES = 192 * 1024**2
# A tiled step cut at a pooling has two phases that do not overlap (the deep part on the whole map;
# one tile's shallow part) and gives the C heap's freed blocks back between them and between tiles
# (nst/allocator.py), so the larger phase counts. Measured against FIXED_BYTES + the larger phase +
# the pictures (2-core x86-64, glibc, fp32, 2 steps, 4:3): 0.25 / 0.35 GiB at 512×384 (4 tiles cut
# at pool2), 0.37 / 0.49 (4 whole-depth tiles); 0.82 / 0.85 and 0.49 / 0.55 at 1024×768 (4 tiles
# at pool2, 12 at pool3), 1.14 / 1.33 (2 tiles at pool1); 1.20 / 1.47, 1.09 / 1.28, 1.70 / 1.74 and
# 2.75 / 2.92 GiB at 2048×1536 (20 tiles at pool3, the same with two deep segments, 9 tiles, 4
# tiles). Every measurement is below its count; the factor keeps 10% more.
TILED_FACTOR = 1.1
# The smallest tile interior considered: at 64 px a tile with conv5_1's 80 px halo already pushes
# about 12x its interior's pixels through the network; smaller tiles would take hours per job.
MIN_TILE = 64
# CPU default budget: this share of the RAM available when the job is planned. Not all of it: the
# allocator's fragmentation and the page cache need room, and a bot host runs other processes (the
# bot, another worker) whose memory grows after the job was planned.
CPU_SHARE = 0.5
# CUDA/MPS default budget: this share of the device memory free beyond the loaded model (the caching
# allocator rounds blocks up, and cuDNN's workspaces come on top).
GPU_SHARE = 0.85

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: int | float | str, field: str = "max_memory") -> int:
    """``2GiB``, ``512MiB``, ``1.5G`` (binary: G = GiB), ``2GB`` (decimal) or plain bytes -> bytes."""
    if isinstance(value, bool):
        raise ParamError(field, f"must be an amount of memory like 2GiB, 512MiB or 1.5G, got {value!r}")
    if isinstance(value, (int, float)):
        amount = float(value)
    else:
        match = _AMOUNT.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ParamError(
                field, f"must be an amount of memory like 2GiB, 512MiB, 1.5G, a number of bytes or {UNLIMITED}, got {value!r}"
            )
        amount = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(amount) or amount <= 0:
        raise ParamError(field, f"must be a positive amount of memory, got {value!r}")
    return int(amount)


UNLIMITED = "unlimited"


def parse_budget(value: int | float | str, field: str = "max_memory") -> int | None:
    """A memory budget: as :func:`parse_bytes`, or ``unlimited`` (or infinity) for none (None)."""
    if (isinstance(value, str) and value.strip().lower() == UNLIMITED) or (isinstance(value, float) and value == math.inf):
        return None
    return parse_bytes(value, field)


def format_bytes(count: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


# --------------------------------------------------------------------------- the estimate


def _activation_bytes(width: int, height: int, layers: Sequence[str], dtype_bytes: int, pool: str, after: str | None = None) -> float:
    """Bytes a forward pass up to the deepest of ``layers`` keeps for its backward, plus the backward's
    two largest transient gradients; from the pixels, or (``after`` a pooling) from that layer's whole
    map, which the next convolution keeps as its input. ``width``×``height``: the pixels it covers."""
    deepest = max(VGG19_LAYERS.index(name) for name in layers)
    first = VGG19_LAYERS.index(after) + 1 if after is not None else 0
    wanted = set(layers)
    kept = _map_bytes(width, height, after, dtype_bytes) if after is not None else 3 * width * height * dtype_bytes
    largest = 0
    for name in VGG19_LAYERS[first : deepest + 1]:
        size = _map_bytes(width, height, name, dtype_bytes)
        if name.startswith("relu"):
            kept += size
        elif name.startswith("conv") and name in wanted:
            kept += size
        elif name.startswith("pool"):
            kept += size + (size // dtype_bytes * INDEX_BYTES if pool == "max" else 0)
        largest = max(largest, size)
    # One transient in the activations' dtype, one in fp32, where the Grams and losses run
    # (nst/losses.py): under bf16 it is twice as wide (measured bf16 untiled: 1.31 GiB at 1024×768
    # and 4.60 at 2048×1536 beside counts of 1.30 and 4.62 with both in bf16, 1.39 and 4.99 so).
    return kept + largest + largest * max(4, dtype_bytes) // dtype_bytes


def _map_bytes(width: int, height: int, layer: str, dtype_bytes: int) -> int:
    scale = layer_scale(layer)
    return layer_channels(layer) * (height // scale) * (width // scale) * dtype_bytes


def _picture_bytes(width: int, height: int, optimizer: str, content_layer: str) -> float:
    copies = LBFGS_PICTURE_COPIES if optimizer == "lbfgs" else ADAM_PICTURE_COPIES
    return copies * width * height * PIXEL_BYTES + _map_bytes(width, height, content_layer, 4)


def _tiled_bytes(width: int, height: int, layers: Sequence[str], dtype_bytes: int, pool: str, tiling: Tiling) -> float:
    """The activations a tiled step keeps at its peak. Without a split, one tile's whole depth. With
    one: the larger of one tile's shallow part (beside the split's full map, pass 1, or its
    gradient, pass 2) and the deep part on the whole map (the map, its gradient, the deep activations).
    A tile's pass 2 also holds the gradients it is given at its captured layers and the split, each
    over the tile's whole map, and one copy of the largest of them (see TiledLoss._tile_gradient)."""
    tiled_layers = [tiling.split] if tiling.split is not None else list(layers)
    captured = [name for name in layers if tiling.is_shallow(name)]
    tiled_layers += captured
    captured += [tiling.split] if tiling.split is not None else []
    # Tiles come in a few shapes (inner ones and those at the picture's edges): one estimate each.
    shapes = {(t.outer[2] - t.outer[0], t.outer[3] - t.outer[1]) for t in tiling.tiles(width, height)}

    def tile_bytes(w: int, h: int) -> float:
        given = [_map_bytes(w, h, name, dtype_bytes) for name in captured]
        return _activation_bytes(w, h, tiled_layers, dtype_bytes, pool) + sum(given) + max(given, default=0)

    tile = max(tile_bytes(w, h) for w, h in shapes)
    if tiling.split is None:
        return tile
    split_map = _map_bytes(width, height, tiling.split, dtype_bytes)
    deep = _deep_phase_bytes(width, height, layers, dtype_bytes, pool, tiling.split, tiling.boundary)
    return max(tile + split_map, deep)


@dataclass(frozen=True)
class Need:
    """What one step at a level needs: ``bytes`` at its peak beyond the loaded model; ``tiling`` None
    (the whole picture at once) or the tiles that fit; ``work`` the step's cost relative to an
    untiled one's (:meth:`Tiling.work`)."""

    bytes: int
    tiling: Tiling | None = None
    work: float = 1.0


def step_bytes(
    size: tuple[int, int], layers: Sequence[str], content_layer: str, *, dtype_bytes: int = 4,
    optimizer: str = "adam", pool: str = "max", tiling: Tiling | None = None,
) -> int:
    """Estimated peak bytes of one optimisation step at ``size`` (width, height), beyond the loaded model."""
    width, height = size
    pictures = _picture_bytes(width, height, optimizer, content_layer)
    if tiling is None:
        return int(FIXED_BYTES + _activation_bytes(width, height, layers, dtype_bytes, pool) + pictures)
    return int(FIXED_BYTES + TILED_FACTOR * (_tiled_bytes(width, height, layers, dtype_bytes, pool, tiling) + pictures))


def _deep_phase_bytes(width: int, height: int, layers: Sequence[str], dtype_bytes: int, pool: str, split: str,
                      boundary: str | None) -> float:
    """The deep part's phase on the whole map of ``split``: its activations, the map and the map's
    gradient; with a ``boundary``, the larger of its two segments' (see :meth:`Tiling.for_layers`)."""
    split_map = _map_bytes(width, height, split, dtype_bytes)
    deep_layers = [name for name in layers if VGG19_LAYERS.index(name) > VGG19_LAYERS.index(split)]
    if boundary is None:
        return _activation_bytes(width, height, deep_layers, dtype_bytes, pool, after=split) + split_map
    # Two segments, one at a time: the second's activations beside the first's input (the map), then
    # the first's recomputed activations beside the gradient arriving at the boundary.
    order = VGG19_LAYERS.index
    first = [name for name in deep_layers if order(name) <= order(boundary)] + [boundary]
    later = [name for name in deep_layers if order(name) > order(boundary)]
    first_bytes = _activation_bytes(width, height, first, dtype_bytes, pool, after=split)
    first_bytes += _map_bytes(width, height, boundary, dtype_bytes)
    later_bytes = split_map
    if later:
        later_bytes += _activation_bytes(width, height, later, dtype_bytes, pool, after=boundary)
    return max(first_bytes, later_bytes) + split_map


def lowest_boundary(size: tuple[int, int], layers: Sequence[str], split: str, dtype_bytes: int = 4, pool: str = "max") -> str | None:
    """Of the deep part's boundaries after ``split``, the one whose larger segment needs least (None: none)."""
    candidates = boundaries(layers, split)
    if not candidates:
        return None
    return min(candidates, key=lambda b: _deep_phase_bytes(*size, layers, dtype_bytes, pool, split, b))


def _tilings(size: tuple[int, int], layers: Sequence[str], split: str | None, min_tile: int, boundary: str | None = None):
    """The tilings cut at ``split`` (and the deep part at ``boundary``), largest tiles first, one
    per distinct tile count (tiles of the same count are the same tiles), down to ``min_tile``."""
    grid = Tiling.for_layers(min_tile, layers, split).grid
    smallest = max(min_tile, grid)
    seen = set()
    tile = max(smallest, -(-max(size) // grid) * grid)
    while tile >= smallest:
        counts = (math.ceil(size[0] / tile), math.ceil(size[1] / tile))
        if counts not in seen:
            seen.add(counts)
            yield Tiling.for_layers(tile, layers, split, boundary)
        tile -= grid


def need(
    size: tuple[int, int], budget: int | None, layers: Sequence[str], content_layer: str, *,
    dtype_bytes: int = 4, optimizer: str = "adam", pool: str = "max", min_tile: int = MIN_TILE,
    style_layers: Sequence[str] = (),
) -> Need:
    """The whole picture if it fits ``budget`` (None: no budget), else, of the tilings that fit, the
    one with the least work (:meth:`Tiling.work`, which also counts the Grams of ``style_layers``):
    for each cut of the network (each pooling before the deepest layer in use, and none), the
    largest tiles that fit. Raises ParamError naming the size, the budget and the smallest need when
    none fits."""
    return _need(tuple(size), budget, tuple(layers), content_layer, dtype_bytes, optimizer, pool, min_tile,
                 tuple(style_layers))


# Pure in its arguments, and a search over every cut and tile size (0.4-0.7 s at 4096×3072): the bot
# asks for the same levels twice per job (the admission check, then the queue's planned work).
@functools.lru_cache(maxsize=64)
def _need(size: tuple[int, int], budget: int | None, layers: tuple[str, ...], content_layer: str, dtype_bytes: int,
          optimizer: str, pool: str, min_tile: int, style_layers: tuple[str, ...]) -> Need:
    estimate = dict(layers=layers, content_layer=content_layer, dtype_bytes=dtype_bytes, optimizer=optimizer, pool=pool)
    whole = step_bytes(size, **estimate)
    if budget is None or whole <= budget:
        return Need(whole, None)
    best: tuple[float, Need] | None = None
    least: tuple[int, Tiling] | None = None
    # Per cut: the deep part whole, and cut in two at the boundary that lowers its phase the most.
    cuts = [(split, boundary) for split in split_points(layers)
            for boundary in (None, lowest_boundary(size, layers, split, dtype_bytes, pool))]
    for split, boundary in [*cuts, (None, None)]:
        for tiling in _tilings(size, layers, split, min_tile, boundary):
            needed = step_bytes(size, tiling=tiling, **estimate)
            if needed <= budget:
                work = tiling.work(*size, dtype_bytes, style_layers)
                if best is None or work < best[0]:
                    best = (work, Need(needed, tiling, work))
                break
        else:
            if least is None or needed < least[0]:
                least = (needed, tiling)
    if best is not None:
        return best[1]
    raise ParamError(
        "max_memory",
        f"a {size[0]}×{size[1]} picture needs about {format_bytes(least[0])} even in the smallest tiles "
        f"({least[1].tile} px), more than the memory budget of {format_bytes(budget)}; "
        "use a smaller size or a larger budget",
    )


def check_fits(
    sizes: Sequence[tuple[int, int]], budget: int | None, layers: Sequence[str], content_layer: str, *,
    dtype_bytes: int = 4, optimizer: str = "adam", pool: str = "max", style_layers: Sequence[str] = (),
) -> list[Need]:
    """:func:`need` for each level's size (``budget`` None: no limit). The largest is judged first, so
    a refusal names the job's own size."""
    needs = {size: None for size in sizes}
    for size in sorted(needs, key=lambda s: s[0] * s[1], reverse=True):
        needs[size] = need(size, budget, layers, content_layer, dtype_bytes=dtype_bytes, optimizer=optimizer, pool=pool,
                           style_layers=style_layers)
    return [needs[size] for size in sizes]


# --------------------------------------------------------------------------- the default budget


def available_ram() -> int | None:
    """Bytes of RAM available to a new allocation without swapping: Linux's MemAvailable (else the free
    pages), but no more than what a container's memory limit (cgroup v2 or v1) leaves this process's
    group: /proc/meminfo shows the host's RAM even inside a container, and the kernel kills a worker
    that goes past its group's limit."""
    host = _meminfo_available()
    group = _cgroup_room()
    if host is None:
        return group
    return host if group is None else min(host, group)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# (limit, usage) files of this process's memory cgroup: v2 (unified), then v1
CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
_NO_LIMIT = 1 << 60  # v1 reports "no limit" as a huge number (about 2**63 rounded to pages)


def _cgroup_room(files=CGROUP_FILES) -> int | None:
    """Bytes left under the container's memory limit, or None without one."""
    for limit_file, usage_file in files:
        try:
            with open(limit_file) as handle:
                limit = handle.read().strip()
            with open(usage_file) as handle:
                usage = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= _NO_LIMIT:
            return None
        return max(0, int(limit) - usage)
    return None


def default_budget(device) -> int | None:
    """The budget when none is given: a share of the device's free memory (CUDA: ``mem_get_info``;
    MPS: the recommended working set minus what is allocated), a share of the available RAM on a
    CPU. None when the device cannot say (no limit)."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_SHARE)
    if kind == "mps":
        mps = getattr(torch, "mps", None)
        recommended = getattr(mps, "recommended_max_memory", None)
        if recommended is None:
            return None
        allocated = getattr(mps, "driver_allocated_memory", getattr(mps, "current_allocated_memory", lambda: 0))()
        return int(max(0, recommended() - allocated) * GPU_SHARE)
    ram = available_ram()
    return int(ram * CPU_SHARE) if ram else None


def dtype_bytes_for(precision: str) -> int:
    """Bytes per activation for a precision before the device is known: bf16 2, else fp32's 4 ('auto'
    may become bf16 on the device, which only needs less)."""
    return 2 if precision == "bf16" else 4
