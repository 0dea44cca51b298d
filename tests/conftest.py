"""Shared fixtures: random VGG-19 weights saved to a file and loaded back through the real loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from nst.model import export_features, load_vgg19

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N test processes share the cores, so each gets its share of torch threads (more
    # threads than cores spin-wait against each other and every in-process job slows down).
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """The compact features-only file made from random weights, as an offline user would make it."""
    path = tmp_path_factory.mktemp("weights") / "vgg19-features.pth"
    export_features("random", path, progress=False)
    return path


@pytest.fixture(scope="session")
def model(weights_file):
    return load_vgg19(weights_file, device="cpu")


def make_content(width: int = 64, height: int = 48) -> Image.Image:
    """A small scene with edges: sky, ground, a house."""
    image = Image.new("RGB", (width, height), (120, 170, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height * 2 // 3, width, height], fill=(60, 140, 60))
    draw.rectangle([width // 4, height // 3, width // 2, height * 2 // 3], fill=(200, 80, 60))
    draw.polygon([(width // 4 - 3, height // 3), (width * 3 // 8, height // 6), (width // 2 + 3, height // 3)], fill=(90, 40, 30))
    return image


def make_style(size: int = 48) -> Image.Image:
    """Diagonal coloured stripes: a texture with strong, distinct statistics."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    colours = [(230, 200, 40), (30, 40, 120), (200, 60, 30), (20, 120, 140)]
    for i in range(-size, 2 * size, 6):
        draw.line([(i, 0), (i + size, size)], fill=colours[(i // 6) % len(colours)], width=4)
    return image


@pytest.fixture
async def fake():
    """A fake Discord on 127.0.0.1 (tests/fake_discord); at the end: no unknown route was called, the fake
    did not fail, and no traceback ever reached a channel."""
    from bot_harness import FakeDiscord

    async with FakeDiscord() as server:
        yield server
        server.assert_clean()
        for message in server.bot_messages():
            for version in [*message.edits, message]:
                assert "Traceback" not in version.content


@pytest.fixture
def world(fake):
    from bot_harness import make_world

    return make_world(fake)


@pytest.fixture
def content_image() -> Image.Image:
    return make_content()


@pytest.fixture
def style_image() -> Image.Image:
    return make_style()
