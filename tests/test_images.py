"""nst.images: safe decoding of untrusted uploads, resizing, budgeted encoding, tensor bridge.

Every fixture is built in memory with Pillow; no binary files are committed.
"""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from nst import images
from nst.errors import ImageError, NSTError
from nst.images import (
    DEFAULT_MAX_PIXELS,
    EncodedImage,
    decode_image,
    encode_image,
    fit_within,
    match_scale,
    to_image,
    to_tensor,
    write_image,
)

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# ------------------------------------------------------------------------------------------ helpers


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def quadrants(width: int = 32, height: int = 24) -> Image.Image:
    """Red, green / blue, white quadrants: orientation and colour are both checkable."""
    image = Image.new("RGB", (width, height), WHITE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    image.paste(GREEN, (width // 2, 0, width, height // 2))
    image.paste(BLUE, (0, height // 2, width // 2, height))
    return image


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def textured(seed: int = 1) -> Image.Image:
    """512×512, photo-like busy: PNG ~530 KB, WebP ~35 KB at q50 and ~120 KB at q95."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    values = np.asarray(base.resize((512, 512), Image.Resampling.BICUBIC)).astype(np.int16)
    values += rng.integers(-8, 9, values.shape).astype(np.int16)
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def close_to(pixel, expected, tolerance: int = 0) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, expected))


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width×height RGB, with a few bytes of pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def refusal(source, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(source, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [("PNG", 0), ("JPEG", 24), ("WEBP", 24), ("GIF", 0), ("BMP", 0), ("TIFF", 0)],
)
def test_decodes_common_formats(fmt, tolerance):
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    result = decode_image(encoded(quadrants(), fmt, **options))
    assert result.mode == "RGB"
    assert result.size == (32, 24)
    assert close_to(result.getpixel((4, 4)), RED, tolerance)
    assert close_to(result.getpixel((28, 4)), GREEN, tolerance)
    assert close_to(result.getpixel((4, 20)), BLUE, tolerance)
    assert close_to(result.getpixel((28, 20)), WHITE, tolerance)


def test_decodes_from_path_and_keeps_no_file_open(tmp_path):
    path = tmp_path / "photo.png"
    quadrants().save(path)
    fd_dir = "/proc/self/fd"
    before = len(os.listdir(fd_dir)) if os.path.isdir(fd_dir) else None
    for source in (path, str(path)):
        result = decode_image(source)
        assert result.size == (32, 24) and result.getpixel((4, 4)) == RED
        assert getattr(result, "fp", None) is None
    if before is not None:
        assert len(os.listdir(fd_dir)) == before
    result.load()  # still usable: the pixels live in memory, not in the (closed) file


def test_accepts_bytearray_and_memoryview():
    data = encoded(quadrants(), "PNG")
    assert decode_image(bytearray(data)).size == (32, 24)
    assert decode_image(memoryview(data)).size == (32, 24)


def test_metadata_is_dropped():
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    result = decode_image(encoded(quadrants(), "JPEG", exif=exif.tobytes()))
    assert result.info == {}


def test_errors_are_image_errors_and_value_errors():
    with pytest.raises(ImageError) as info:
        decode_image(b"not an image")
    assert isinstance(info.value, NSTError) and isinstance(info.value, ValueError)


# -- decompression bombs


def test_crafted_bomb_is_refused_before_decoding(monkeypatch):
    def must_not_decode(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_decode)
    bomb = png_header(50_000, 50_000)  # 2.5 gigapixels in ~100 bytes: beyond even Pillow's own ceiling
    assert len(bomb) < 200
    started = time.perf_counter()
    message = refusal(bomb, name="content image")
    assert time.perf_counter() - started < 0.5
    assert message == "the content image is 2500.0 megapixels; the limit is 40.0 megapixels"


@pytest.mark.parametrize("side", [8_000, 10_000])  # under, then over, Pillow's warning threshold
def test_header_size_over_limit_is_refused_without_pillow_warning(monkeypatch, side):
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixel data was decoded"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refusal(png_header(side, side))
    assert message == (
        f"the image is {side}×{side} = {side * side / 1e6:.1f} megapixels; the limit is 40.0 megapixels"
    )
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_max_pixels_is_configurable_per_call():
    data = encoded(Image.new("RGB", (20, 20), RED), "PNG")
    assert refusal(data, max_pixels=399) == "the image is 20×20 = 400 pixels; the limit is 399 pixels"
    assert decode_image(data, max_pixels=400).size == (20, 20)
    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert Image.MAX_IMAGE_PIXELS is not None  # the global safety net was left alone


# -- orientation, transparency, colour modes


def test_exif_orientation_6_is_applied():
    stored = Image.new("RGB", (64, 32), BLUE)
    stored.paste(RED, (0, 0, 16, 16))  # marks the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    result = decode_image(encoded(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert result.size == (32, 64)
    # Rotating clockwise carries the top-left corner to the top-right.
    assert close_to(result.getpixel((32 - 8, 8)), RED, 30)
    assert close_to(result.getpixel((8, 8)), BLUE, 30)


def test_rgba_transparency_is_flattened_onto_white():
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent *black*: must not come out black
    image.putpixel((1, 1), (255, 0, 0, 255))
    image.putpixel((2, 2), (255, 0, 0, 128))
    result = decode_image(encoded(image, "PNG"))
    assert result.mode == "RGB"
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((1, 1)) == RED
    assert close_to(result.getpixel((2, 2)), (255, 127, 127), 1)


def test_palette_transparency_is_flattened_onto_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    image.putpixel((3, 3), 1)
    for fmt in ("PNG", "GIF"):
        result = decode_image(encoded(image, fmt, transparency=0))
        assert result.getpixel((0, 0)) == WHITE, fmt
        assert result.getpixel((3, 3)) == RED, fmt


def test_colour_key_transparency_is_flattened_onto_white():
    image = Image.new("RGB", (4, 4), BLACK)  # PNG tRNS chunk: "black means transparent"
    image.putpixel((1, 1), RED)
    result = decode_image(encoded(image, "PNG", transparency=BLACK))
    assert result.getpixel((0, 0)) == WHITE and result.getpixel((1, 1)) == RED


def test_la_is_flattened_onto_white():
    image = Image.new("LA", (4, 4), (0, 0))
    image.putpixel((1, 1), (0, 255))
    result = decode_image(encoded(image, "PNG"))
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((1, 1)) == BLACK


def test_pa_via_to_tensor_is_flattened_onto_white():
    image = Image.new("PA", (2, 1), (0, 0))
    image.putpalette([255, 0, 0] * 256)
    image.putpixel((1, 0), (0, 255))
    assert to_image(to_tensor(image)).getpixel((0, 0)) == WHITE
    assert to_image(to_tensor(image)).getpixel((1, 0)) == RED


def test_cmyk_greyscale_and_bilevel_become_rgb():
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    assert decode_image(encoded(cmyk, "TIFF")).getpixel((0, 0)) == RED
    assert close_to(decode_image(encoded(cmyk, "JPEG", quality=95)).getpixel((0, 0)), RED, 8)
    grey = decode_image(encoded(Image.new("L", (4, 4), 100), "PNG"))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (100, 100, 100)
    bilevel = Image.new("1", (4, 4), 0)
    bilevel.putpixel((1, 1), 1)
    result = decode_image(encoded(bilevel, "PNG"))
    assert result.getpixel((0, 0)) == BLACK and result.getpixel((1, 1)) == WHITE


def test_16_bit_greyscale_is_scaled_not_clipped():
    image = Image.new("I;16", (3, 1))
    for x, value in enumerate((65535, 32768, 0)):
        image.putpixel((x, 0), value)
    data = encoded(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file
    result = decode_image(data)
    assert [result.getpixel((x, 0)) for x in range(3)] == [WHITE, (128, 128, 128), BLACK]


def test_32_bit_integer_greyscale():
    wide = Image.new("I", (2, 1))
    wide.putpixel((0, 0), 65535)
    wide.putpixel((1, 0), 32768)
    result = decode_image(encoded(wide, "TIFF"))
    assert result.getpixel((0, 0)) == WHITE and result.getpixel((1, 0)) == (128, 128, 128)
    narrow = Image.new("I", (1, 1), 200)  # values within 0..255 are taken as 8-bit
    assert decode_image(encoded(narrow, "TIFF")).getpixel((0, 0)) == (200, 200, 200)


def test_float_greyscale():
    normalised = Image.new("F", (2, 1), 0.0)
    normalised.putpixel((0, 0), 1.0)
    normalised.putpixel((1, 0), 0.5)
    result = decode_image(encoded(normalised, "TIFF"))
    assert result.getpixel((0, 0)) == WHITE and result.getpixel((1, 0)) == (128, 128, 128)
    eight_bit = Image.new("F", (2, 1), 100.0)
    eight_bit.putpixel((1, 0), 300.0)
    result = decode_image(encoded(eight_bit, "TIFF"))
    assert result.getpixel((0, 0)) == (100, 100, 100) and result.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])  # animated GIF, APNG, animated WebP
def test_first_frame_of_animation(fmt):
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    result = decode_image(data)
    assert result.mode == "RGB" and result.getpixel((8, 8)) == RED


# -- refusals with specific messages


def test_empty_input():
    assert refusal(b"", name="style image") == "the style image is empty (0 bytes)"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in refusal(path)


def test_missing_path_and_directory(tmp_path):
    missing = tmp_path / "nope.jpg"
    assert refusal(missing, name="content image") == f"the content image file was not found: {missing}"
    assert "directory" in refusal(tmp_path)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Hello! This is a note, not a picture.\n", "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40), "ZIP"),
        (b"<!DOCTYPE html><html><head><title>cat</title>", "web page"),
    ],
)
def test_non_images_say_what_they_look_like(data, words):
    message = refusal(data, name="style image")
    assert message.startswith("the style image is not an image: it looks like")
    assert words in message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"8BPS\x00\x01" + bytes(40), "Photoshop"),
    ],
)
def test_unsupported_image_formats_are_named(data, words):
    message = refusal(data, name="style image")
    assert message.startswith("the style image is ")
    assert words in message and "not supported" in message and "PNG" in message


def test_unknown_binary_lists_supported_formats():
    message = refusal(bytes(range(1, 256)) * 4)
    assert "not in a supported image format" in message and "PNG" in message and "JPEG" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(fmt):
    data = encoded(noise(64, 64), fmt)
    message = refusal(data[: len(data) // 2], name="content image")
    assert message.startswith("the content image is truncated")
    assert fmt in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_header_only_fragment_is_called_corrupt_or_truncated(fmt):
    message = refusal(encoded(noise(64, 64), fmt)[:30], name="style image")
    assert message.startswith("the style image is a corrupt or truncated")


def test_corrupt_png_data():
    data = bytearray(encoded(noise(64, 64), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    message = refusal(bytes(data))
    assert "corrupt" in message or "truncated" in message


def test_messages_contain_no_pillow_internals():
    for data in (b"", b"text", png_header(50_000, 50_000), encoded(noise(32, 32), "PNG")[:100]):
        message = refusal(data)
        assert "Traceback" not in message and "PIL" not in message and "cannot identify" not in message


# ------------------------------------------------------------------------------------------ resize


def test_fit_within_downscales_keeping_aspect():
    assert fit_within(Image.new("RGB", (1000, 500)), 100).size == (100, 50)
    assert fit_within(Image.new("RGB", (300, 1000)), 512).size == (154, 512)  # 153.6 rounds to 154
    assert fit_within(Image.new("RGB", (1, 1000)), 10).size == (1, 10)  # never below 1 px


def test_fit_within_never_upscales():
    small = Image.new("RGB", (50, 20))
    assert fit_within(small, 100) is small
    assert fit_within(small, 50) is small


def spy_on_resize(monkeypatch) -> list:
    """Record the resampling filter of every Image.resize call."""
    seen = []
    original = Image.Image.resize

    def resize(self, size, resample=None, *args, **kwargs):
        seen.append(resample)
        return original(self, size, resample, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    return seen


def test_fit_within_uses_lanczos(monkeypatch):
    seen = spy_on_resize(monkeypatch)
    fit_within(Image.new("RGB", (200, 100)), 50)
    assert seen == [Image.Resampling.LANCZOS]


def test_match_scale_up_and_down(monkeypatch):
    seen = spy_on_resize(monkeypatch)
    assert match_scale(Image.new("RGB", (100, 50)), (400, 300)).size == (400, 200)
    assert match_scale(Image.new("RGB", (2000, 1000)), (400, 300)).size == (400, 200)
    assert match_scale(Image.new("RGB", (50, 100)), (400, 300), scale=0.5).size == (100, 200)
    assert seen == [Image.Resampling.BICUBIC, Image.Resampling.LANCZOS, Image.Resampling.BICUBIC]
    same = Image.new("RGB", (400, 200))
    assert match_scale(same, (300, 400)) is same


def test_match_scale_keeps_short_side_usable():
    assert match_scale(Image.new("RGB", (1000, 10)), (256, 256)).size == (256, 16)
    with pytest.raises(ValueError):
        match_scale(Image.new("RGB", (10, 10)), (256, 256), scale=0)


# ------------------------------------------------------------------------------------------ encode


def test_encode_png_when_it_fits():
    image = quadrants()
    result = encode_image(image)
    assert isinstance(result, EncodedImage)
    assert (result.format, result.quality, result.size) == ("png", None, (32, 24))
    assert (result.extension, result.content_type) == (".png", "image/png")
    assert result.data.startswith(b"\x89PNG")
    assert encode_image(image, max_bytes=len(result.data)).format == "png"
    assert decode_image(result.data).getpixel((4, 4)) == RED


def test_encode_falls_back_to_the_highest_lossy_quality_that_fits():
    image, budget = textured(), 60_000
    result = encode_image(image, max_bytes=budget)
    assert (result.format, result.extension, result.content_type) == ("webp", ".webp", "image/webp")
    assert result.size == (512, 512)
    assert len(result.data) <= budget
    assert 50 <= result.quality < 95
    assert decode_image(result.data).size == (512, 512)
    # Nothing from quality + 1 up fits at full size: asked for it, the encoder has to shrink the image.
    higher = encode_image(image, max_bytes=budget, lossy_formats=("webp",), min_quality=result.quality + 1)
    assert higher.size[0] < 512


def test_encode_jpeg_case_insensitive_and_highest_quality():
    image, budget = textured(), 60_000
    result = encode_image(image, max_bytes=budget, lossy_formats=("JPEG",))
    assert (result.format, result.extension, result.content_type) == ("jpeg", ".jpg", "image/jpeg")
    assert len(result.data) <= budget and result.size == (512, 512)
    assert 50 <= result.quality < 95
    higher = encode_image(image, max_bytes=budget, lossy_formats=("jpg",), min_quality=result.quality + 1)
    assert higher.size[0] < 512
    assert Image.open(io.BytesIO(result.data)).format == "JPEG"


def test_encode_downscales_when_no_quality_fits():
    budget = 8_000
    result = encode_image(textured(), max_bytes=budget)
    assert len(result.data) <= budget
    assert 16 <= result.size[0] < 512 and result.size[0] == result.size[1]
    assert decode_image(result.data).size == result.size


def test_encode_png_only_downscales_too():
    result = encode_image(noise(256, 256), max_bytes=20_000, lossy_formats=())
    assert result.format == "png" and len(result.data) <= 20_000 and result.size[0] < 256


def test_encode_impossible_budget():
    with pytest.raises(ImageError) as info:
        encode_image(noise(64, 64), max_bytes=300)
    assert str(info.value) == "cannot encode the result under 300 bytes"


def test_encode_rejects_unknown_formats():
    with pytest.raises(ValueError):
        encode_image(quadrants(), lossy_formats=("gif",))
    with pytest.raises(ValueError):
        encode_image(quadrants(), lossy_formats=("png",))


# ------------------------------------------------------------------------------------------ write


@pytest.mark.parametrize(("name", "fmt"), [("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG"), ("d.webp", "WEBP")])
def test_write_image_by_extension(tmp_path, name, fmt):
    path = tmp_path / name
    write_image(quadrants(), path)
    with Image.open(path) as written:
        assert written.format == fmt and written.size == (32, 24)
        assert close_to(written.convert("RGB").getpixel((4, 4)), RED, 24)


def test_write_image_refuses_other_extensions(tmp_path):
    with pytest.raises(ImageError) as info:
        write_image(quadrants(), tmp_path / "out.gif")
    assert ".png" in str(info.value) and ".jpg" in str(info.value) and ".webp" in str(info.value)
    assert not (tmp_path / "out.gif").exists()


def test_write_image_reports_unwritable_path(tmp_path):
    with pytest.raises(ImageError) as info:
        write_image(quadrants(), tmp_path / "missing-dir" / "out.png")
    assert "cannot write" in str(info.value)


# ------------------------------------------------------------------------------------------ tensors


def test_tensor_round_trip_is_exact():
    image = noise(37, 23, seed=3)
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 23, 37) and tensor.dtype == torch.float32
    assert tensor.is_contiguous()
    assert 0.0 <= tensor.min().item() and tensor.max().item() <= 1.0
    assert tensor[0, 0, 0, 0].item() == pytest.approx(image.getpixel((0, 0))[0] / 255)
    channels_last = tensor.contiguous(memory_format=torch.channels_last)
    for back in (to_image(tensor), to_image(tensor[0]), to_image(tensor.double()), to_image(channels_last)):
        assert back.mode == "RGB" and back.size == (37, 23)
        assert back.tobytes() == image.tobytes()


def test_to_image_clamps_and_rejects_bad_shapes():
    tensor = torch.tensor([[[-1.0, 2.0, float("nan")]]]).expand(3, 1, 3).clone().half()
    assert [to_image(tensor).getpixel((x, 0)) for x in range(3)] == [BLACK, WHITE, BLACK]
    for bad in (torch.zeros(2, 3, 4, 4), torch.zeros(4, 4, 4), torch.zeros(4, 4)):
        with pytest.raises(ValueError):
            to_image(bad)
    with pytest.raises(TypeError):
        to_image(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_module_has_no_prints_or_bot_imports():
    source = open(images.__file__, encoding="utf-8").read()
    assert "print(" not in source and "discord" not in source and "import bot" not in source
