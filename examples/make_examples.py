"""Draw the two example images used by the quickstart, procedurally (Pillow + numpy, no downloads).

    python examples/make_examples.py            # rewrites examples/content.jpg and examples/style.jpg

* ``content.jpg`` (512×384): a lakeside village drawing — sky, sun, hills, two houses, trees and
  their reflection in the lake. Style transfer keeps the *content* of an image as its edges and
  shapes, so the scene is made of clear, simple ones.
* ``style.jpg`` (384×384): thousands of short curved brush strokes following a swirling flow field,
  in a night-blue and gold palette (a nod to Van Gogh). The *style* is the texture: stroke size,
  curvature and palette.

Everything is deterministic (fixed seeds, no fonts, no system state), so rerunning the script gives
the same files. Both images are dedicated to the public domain (CC0 1.0), see SOURCES.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SS = 2  # supersampling: draw at twice the size and shrink, for smooth edges without antialiased APIs


# ---------------------------------------------------------------------------------------------- content


def _vertical_gradient(width: int, height: int, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """(height, width, 3) float array interpolating colour ``stops`` given as (0..1 position, RGB)."""
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], dtype=np.float64)
    y = np.linspace(0.0, 1.0, height)
    column = np.stack([np.interp(y, positions, colours[:, k]) for k in range(3)], axis=1)
    return np.repeat(column[:, None, :], width, axis=1)


def _ridge(width: int, base: float, waves: list[tuple[float, float, float]]) -> np.ndarray:
    """Height of a hill line at every x: ``base`` plus a few sines (amplitude, wavelength, phase)."""
    x = np.arange(width, dtype=np.float64)
    return base + sum(a * np.sin(2 * math.pi * x / length + phase) for a, length, phase in waves)


def _fill_below(canvas: np.ndarray, ridge: np.ndarray, bottom: int, top_colour, bottom_colour) -> None:
    """Paint everything between ``ridge`` and row ``bottom`` with a vertical gradient, in place."""
    height = canvas.shape[0]
    rows = np.arange(height)[:, None]
    mask = (rows >= ridge[None, :]) & (rows < bottom)
    t = np.clip((rows - ridge.min()) / max(1.0, bottom - ridge.min()), 0.0, 1.0)
    top, low = np.array(top_colour, float), np.array(bottom_colour, float)
    colour = top[None, None, :] * (1 - t[..., None]) + low[None, None, :] * t[..., None]
    canvas[mask] = np.broadcast_to(colour, canvas.shape)[mask]


def _house(draw: ImageDraw.ImageDraw, x0: int, x1: int, top: int, bottom: int, wall, roof, windows: int) -> None:
    s = SS
    width = x1 - x0
    overhang = width * 0.1
    ridge_height = width * 0.45
    # chimney first, so the roof covers its foot
    cx = x0 + width * 0.68
    draw.rectangle([cx * s, (top - ridge_height * 0.75) * s, (cx + width * 0.12) * s, top * s], fill=(120, 70, 60))
    draw.rectangle([x0 * s, top * s, x1 * s, bottom * s], fill=wall, outline=(60, 45, 40), width=2 * s)
    draw.polygon(
        [((x0 - overhang) * s, top * s), ((x0 + x1) / 2 * s, (top - ridge_height) * s), ((x1 + overhang) * s, top * s)],
        fill=roof,
        outline=(60, 35, 30),
        width=2 * s,
    )
    # a door in the middle, windows either side
    door_w = width * 0.18
    dx = (x0 + x1) / 2 - door_w / 2
    draw.rectangle([dx * s, (bottom - (bottom - top) * 0.5) * s, (dx + door_w) * s, bottom * s], fill=(95, 55, 35),
                   outline=(50, 30, 20), width=s)
    win = width * 0.2
    wy = top + (bottom - top) * 0.22
    slots = [x0 + width * 0.1, x1 - width * 0.1 - win][:windows]
    for wx in slots:
        box = [wx * s, wy * s, (wx + win) * s, (wy + win) * s]
        draw.rectangle(box, fill=(255, 226, 120), outline=(70, 50, 40), width=2 * s)
        draw.line([(wx + win / 2) * s, wy * s, (wx + win / 2) * s, (wy + win) * s], fill=(70, 50, 40), width=s)
        draw.line([wx * s, (wy + win / 2) * s, (wx + win) * s, (wy + win / 2) * s], fill=(70, 50, 40), width=s)


def _tree(draw: ImageDraw.ImageDraw, x: float, ground: float, size: float, rng: np.random.Generator) -> None:
    s = SS
    draw.rectangle([(x - size * 0.1) * s, (ground - size * 1.3) * s, (x + size * 0.1) * s, ground * s],
                   fill=(100, 65, 40))
    centre_y = ground - size * 1.55
    greens = [(46, 110, 52), (60, 135, 60), (80, 155, 70), (38, 95, 45)]
    for k in range(14):
        angle = rng.uniform(0, 2 * math.pi)
        distance = rng.uniform(0, size * 0.45)
        r = rng.uniform(size * 0.35, size * 0.55)
        cx, cy = x + distance * math.cos(angle), centre_y + distance * math.sin(angle) * 0.8
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=greens[k % len(greens)])


def make_content(width: int = 512, height: int = 384, seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    W, H = width * SS, height * SS
    shore = 268  # y of the lake's near edge, in final pixels

    sky = [(0.0, (38, 82, 160)), (0.45, (120, 170, 220)), (0.7, (250, 214, 170)), (1.0, (250, 214, 170))]
    canvas = _vertical_gradient(W, H, sky)
    # sun with a soft glow
    yy, xx = np.mgrid[0:H, 0:W]
    sun_x, sun_y, sun_r = 410 * SS, 78 * SS, 26 * SS
    distance = np.hypot(xx - sun_x, yy - sun_y)
    glow = np.clip(1.0 - (distance - sun_r) / (90 * SS), 0.0, 1.0) ** 2 * 0.55
    canvas += (np.array([255.0, 235.0, 170.0]) - canvas) * glow[..., None]
    canvas[distance <= sun_r] = (255, 244, 200)

    # far hills, near hills, meadow
    far = _ridge(W, 170 * SS, [(14 * SS, 300 * SS, 0.5), (7 * SS, 120 * SS, 1.7)])
    _fill_below(canvas, far, H, (112, 140, 170), (140, 165, 180))
    near = _ridge(W, 205 * SS, [(12 * SS, 420 * SS, 2.4), (5 * SS, 150 * SS, 0.3)])
    _fill_below(canvas, near, H, (88, 150, 72), (120, 175, 80))

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    # clouds: clusters of overlapping ellipses
    for cx, cy, scale in ((120, 60, 1.0), (270, 38, 0.7)):
        for dx, dy, rx, ry in ((-30, 6, 26, 14), (0, 0, 34, 20), (30, 6, 26, 14), (12, -10, 22, 14)):
            box = [(cx + (dx - rx) * scale) * SS, (cy + (dy - ry) * scale) * SS,
                   (cx + (dx + rx) * scale) * SS, (cy + (dy + ry) * scale) * SS]
            draw.ellipse(box, fill=(248, 248, 252))
    # birds
    for bx, by in ((200, 92), (222, 84), (238, 98)):
        draw.arc([(bx - 8) * SS, (by - 4) * SS, bx * SS, (by + 4) * SS], 200, 340, fill=(40, 40, 60), width=2 * SS)
        draw.arc([bx * SS, (by - 4) * SS, (bx + 8) * SS, (by + 4) * SS], 200, 340, fill=(40, 40, 60), width=2 * SS)

    # village on the near shore
    _tree(draw, 40, shore - 4, 34, rng)
    _house(draw, 86, 178, 196, shore - 6, wall=(236, 222, 190), roof=(178, 58, 42), windows=2)
    _house(draw, 206, 262, 214, shore - 6, wall=(210, 225, 235), roof=(70, 90, 130), windows=1)
    _tree(draw, 320, shore - 4, 40, rng)
    _tree(draw, 372, shore - 4, 26, rng)
    # a path from the red house's door to the water, and the shore line
    path = [(124, shore - 6), (140, shore - 6), (150, shore), (114, shore)]
    draw.polygon([(x * SS, y * SS) for x, y in path], fill=(205, 180, 130))
    draw.rectangle([0, (shore - 3) * SS, W, shore * SS], fill=(120, 100, 70))

    # lake: the scene above the shore, mirrored, tinted blue-green, broken by ripples
    pixels = np.asarray(image).astype(np.float64)
    lake_top = shore * SS
    depth = H - lake_top
    mirrored = pixels[lake_top - depth : lake_top][::-1].copy()
    rows = np.arange(depth)
    # gentle sideways ripples, stronger towards the viewer
    shifts = np.round(1.2 * SS * np.sin(rows / (1.6 * SS)) * (0.3 + 1.2 * rows / depth)).astype(int)
    for r, shift in enumerate(shifts):
        mirrored[r] = np.roll(mirrored[r], shift, axis=0)
    tint = np.array([40.0, 90.0, 120.0])
    mix = 0.35 + 0.25 * (rows / depth)[:, None, None]
    pixels[lake_top:] = mirrored * (1 - mix) + tint * mix
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):  # glints on the water
        x = rng.uniform(0, width)
        y = rng.uniform(shore + 6, height - 4)
        length = rng.uniform(8, 30)
        draw.line([x * SS, y * SS, (x + length) * SS, y * SS], fill=(200, 225, 235), width=SS)
    return image.resize((width, height), Image.Resampling.LANCZOS)


# ------------------------------------------------------------------------------------------------ style

# Night blues, with gold and cream for the swirls of light.
BLUES = [(16, 32, 84), (26, 56, 128), (42, 86, 166), (70, 122, 190), (110, 160, 210), (20, 44, 96)]
GOLDS = [(246, 206, 70), (252, 228, 130), (236, 170, 50), (250, 244, 205)]
GREENS = [(30, 60, 50), (44, 84, 66), (20, 40, 40)]


def make_style(size: int = 384, seed: int = 1889) -> Image.Image:
    rng = np.random.default_rng(seed)
    S = size * SS
    image = Image.new("RGB", (S, S), (22, 40, 90))
    draw = ImageDraw.Draw(image)

    # Flow field: a drift to the right plus a few vortices (clockwise and counter-clockwise).
    vortices = [  # (x, y, strength: sign gives the sense of rotation, radius)
        (0.28, 0.30, 1.0, 0.16),
        (0.72, 0.22, -0.9, 0.12),
        (0.55, 0.55, 1.1, 0.2),
        (0.18, 0.75, -0.8, 0.14),
        (0.85, 0.72, 0.9, 0.13),
    ]
    lights = [(0.72, 0.22, 0.10), (0.28, 0.30, 0.07), (0.85, 0.72, 0.06)]  # glowing centres (x, y, radius)

    def flow(x: float, y: float) -> tuple[float, float]:
        vx, vy = 1.0, 0.15 * math.sin(6 * x)
        for cx, cy, strength, radius in vortices:
            dx, dy = x - cx, y - cy
            r2 = dx * dx + dy * dy
            falloff = strength * math.exp(-r2 / (2 * radius * radius)) / max(math.sqrt(r2), 0.02) * 0.35
            vx += -dy * falloff * 8
            vy += dx * falloff * 8
        norm = math.hypot(vx, vy) or 1.0
        return vx / norm, vy / norm

    def colour(x: float, y: float) -> tuple[int, int, int]:
        for cx, cy, radius in lights:
            d = math.hypot(x - cx, y - cy)
            if d < radius * rng.uniform(0.8, 1.5):
                return GOLDS[rng.integers(len(GOLDS))]
        if y > 0.86 and rng.random() < 0.7:  # a dark band of land at the bottom
            return GREENS[rng.integers(len(GREENS))]
        if rng.random() < 0.06:
            return GOLDS[rng.integers(len(GOLDS))]
        return BLUES[rng.integers(len(BLUES))]

    for _ in range(5200):
        x, y = rng.random(), rng.random()
        base = np.array(colour(x, y), dtype=float) * rng.uniform(0.85, 1.12)
        fill = tuple(int(v) for v in np.clip(base, 0, 255))
        edge = tuple(int(v * 0.7) for v in fill)
        steps = int(rng.integers(5, 11))
        step = rng.uniform(0.007, 0.011)
        points = [(x * S, y * S)]
        for _ in range(steps):
            dx, dy = flow(x, y)
            x, y = x + dx * step, y + dy * step
            points.append((x * S, y * S))
        width = int(rng.integers(3, 6)) * SS
        draw.line(points, fill=edge, width=width + 2 * SS, joint="curve")  # a darker rim: paint piling up
        draw.line(points, fill=fill, width=width, joint="curve")

    image = image.filter(ImageFilter.SMOOTH)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    for name, image in (("content.jpg", make_content()), ("style.jpg", make_style())):
        path = HERE / name
        image.save(path, "JPEG", quality=90, optimize=True)
        print(f"wrote {path} ({image.width}×{image.height}, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
