"""Image I/O for the engine: decode untrusted uploads safely, resize, encode under a byte budget.

Everything a user can send (a Discord attachment, a CLI path) goes through :func:`decode_image`,
which turns every way an upload can be unusable into an :class:`~nst.errors.ImageError` whose
message is shown to the user as is. The engine itself only ever sees 8-bit RGB images, and
:func:`to_tensor` / :func:`to_image` bridge those to the ``(1, 3, H, W)`` float tensors it optimises.

Decoding policy, and why:

* Only common raster formats are opened (:data:`READABLE_FORMATS`). Pillow can read many more, but
  some of them are rarely tested against hostile input, and EPS would run Ghostscript on it.
* The pixel count declared in the header is checked before any pixel data is decoded, so a
  50000×50000 "decompression bomb" of a few hundred bytes is refused without allocating memory.
* Truncated files are refused rather than silently padded with grey.
* :func:`decode_image` uses only the first frame of an animation (:func:`decode_animation` reads
  them all, under the same rules plus caps on frames and frames × pixels); EXIF orientation is applied so phone photos come
  out upright; transparency is flattened onto white (what a viewer shows); high bit depths are
  scaled, not clipped, to 8 bits. Metadata (EXIF incl. GPS position, ICC profile) is dropped.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, BinaryIO, Mapping

import numpy as np
from PIL import ExifTags, Image, ImageOps, features

from .errors import ImageError

if TYPE_CHECKING:  # torch is imported lazily: decoding/encoding must not pay for importing it
    import torch

__all__ = [
    "DEFAULT_MAX_ANIMATION_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "Animation",
    "EncodedAnimation",
    "READABLE_FORMATS",
    "EncodedImage",
    "check_animation",
    "decode_animation",
    "decode_image",
    "describe_pixels",
    "encode_animation",
    "encode_image",
    "fit_within",
    "fitted_size",
    "match_scale",
    "matched_size",
    "to_image",
    "shared_palette",
    "to_tensor",
    "write_animation",
    "write_image",
]

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest header-declared width×height :func:`decode_image` accepts (about 120 MB as 8-bit RGB)."""

READABLE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "ICO", "PPM", "TGA") + (
    ("AVIF",) if features.check("avif") else ()
)
"""Pillow format identifiers :func:`decode_image` will open (JPEG includes phones' multi-picture MPO)."""

_SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF, BMP or TIFF"

_ORIENTATION = ExifTags.Base.Orientation

# encode_image: formats by canonical name -> (Pillow format, file extension, MIME type)
_FORMATS = {
    "png": ("PNG", ".png", "image/png"),
    "jpeg": ("JPEG", ".jpg", "image/jpeg"),
    "webp": ("WEBP", ".webp", "image/webp"),
}
_LOSSY_ALIASES = {"jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}
_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_MAX_QUALITY = 95  # above 95 JPEG/WebP files grow a lot for no visible gain
_MIN_BUDGET = 1024  # below ~1 KiB even a thumbnail is mostly headers: do not grind the image down
_MIN_SIDE = 16  # stop downscaling before the result is a meaningless smear

# warnings.catch_warnings() swaps process-wide state; two threads interleaving it could leave our
# "ignore" filters installed for good. Decoding is short next to style transfer, so serialise it.
_WARNINGS_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------- decode


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
) -> Image.Image:
    """Decode ``source`` (raw bytes or a file path) into a fully loaded, upright, 8-bit RGB image.

    ``name`` says which image a message is about ("the style image is truncated ..."). Raises
    :class:`ImageError` for anything a user sent that cannot be used; the returned image holds no
    file handle and no metadata.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, not {max_pixels}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"the {name} is empty (0 bytes)")
        return _decode_stream(io.BytesIO(bytes(source)), max_pixels, name)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"decode_image() takes bytes or a path, not {type(source).__name__}")

    with _open_file(os.fspath(source), name) as file:  # ours, so closed whatever happens to the decode
        return _decode_stream(file, max_pixels, name)


def _open_file(path: str, name: str) -> BinaryIO:
    """``path`` opened for reading, a failure worded for the user (what is missing or refused, and where)."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as err:
        raise ImageError(_file_error(name, path, err)) from None


def _file_error(name: str, path: str, err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return f"the {name} file was not found: {path}"
    if isinstance(err, IsADirectoryError):
        return f"the {name} path is a directory, not a file: {path}"
    if isinstance(err, PermissionError):
        return f"the {name} file cannot be read (permission denied): {path}"
    return f"the {name} file cannot be read ({err.strerror or err}): {path}"


def _decode_stream(fp: BinaryIO, max_pixels: int, name: str) -> Image.Image:
    try:
        head = fp.read(1024)
        fp.seek(0)
    except OSError as err:
        raise ImageError(f"the {name} file cannot be read ({err.strerror or err})") from None
    if not head:
        raise ImageError(f"the {name} is empty (0 bytes)")

    # Our own size check below is the real limit; Pillow's global one only warns or raises at sizes
    # we handle ourselves, so its warning is silenced and its error translated.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow's remarks on damaged metadata ("Corrupt EXIF data") are noise: we either return a
        # good image or raise a precise error.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        try:
            image = Image.open(fp, formats=READABLE_FORMATS)
        except Image.DecompressionBombError as err:
            raise ImageError(_bomb_message(name, err, max_pixels)) from None
        except Exception:  # UnidentifiedImageError, or a plugin choking on a malformed header
            raise ImageError(_unreadable_message(name, head)) from None

        try:
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError(f"the {name} has no pixels ({width}×{height})")
            if width * height > max_pixels:
                raise ImageError(
                    f"the {name} is {width}×{height} = {describe_pixels(width * height)}; "
                    f"the limit is {describe_pixels(max_pixels)}"
                )
            # Name the format as users know it: a phone's multi-picture MPO is "a JPEG" to them.
            fmt = {"MPO": "JPEG", "WEBP": "WebP"}.get(image.format or "", image.format or "image")
            try:
                image.load()  # decodes the first frame only; forces truncation errors to surface here
            except Image.DecompressionBombError as err:
                raise ImageError(_bomb_message(name, err, max_pixels)) from None
            except MemoryError:
                raise ImageError(f"the {name} is too large to decode in the memory available") from None
            except Exception as err:  # OSError, SyntaxError, EOFError, zlib errors, ...
                raise ImageError(_broken_message(name, fmt, err)) from None

            result = _to_rgb(_upright(image), name)
            if result is image:  # detach from the file-backed object we are about to close
                result = image.copy()
        finally:
            image.close()
    result.info = {}  # EXIF (GPS!) and ICC no longer describe these pixels; never pass them on
    return result


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is ignored rather than refused."""
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
        if orientation not in (2, 3, 4, 5, 6, 7, 8):
            return image  # skip exif_transpose, which would copy the whole image for nothing
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB with transparency flattened onto white. Returns ``image`` itself when already RGB."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_to_rgb(image)
    try:
        if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
            if mode == "La":  # premultiplied LA has no direct route to RGBA
                image = image.convert("LA")
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        if mode == "RGB":
            return image
        return image.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV, RGBX ...
    except ValueError:
        raise ImageError(f"the {name} uses a colour mode ({mode}) that cannot be converted to RGB") from None


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float greyscale to 8 bits (Pillow's convert() would clip at 255).

    * ``I;16*``: 0..65535, divided by 257 (so 65535 -> 255 exactly).
    * ``I``: 32-bit, but in practice 16-bit data (older Pillow reads 16-bit PNGs as ``I``): values
      above 255 mean 16-bit and are divided by 257; otherwise they already are 0..255. Clipped.
    * ``F``: values within 0..1 are taken as normalised and multiplied by 255; anything else as
      0..255 and clipped. NaN and infinities become 0.
    """
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values *= 255.0
    elif image.mode.startswith("I;16") or (values.size and values.max() > 255):
        values /= 257.0
    grey = np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def describe_pixels(count: int) -> str:
    """"12.0 megapixels" or "6000 pixels": how a pixel count is told to users."""
    return f"{count / 1e6:.1f} megapixels" if count >= 100_000 else f"{count} pixels"


def _bomb_message(name: str, err: Exception, max_pixels: int) -> str:
    # Pillow's message is "Image size (N pixels) exceeds limit of M pixels, ..."; keep only N.
    found = re.search(r"\((\d+) pixels\)", str(err))
    if found is None:
        return f"the {name} is too large (more than {describe_pixels(max_pixels)})"
    declared = int(found.group(1))
    if declared > max_pixels:
        return f"the {name} is {describe_pixels(declared)}; the limit is {describe_pixels(max_pixels)}"
    # Only reachable when the caller allows more than Pillow's own hard ceiling.
    return f"the {name} is {describe_pixels(declared)}, too large to decode safely"


def _broken_message(name: str, fmt: str, err: Exception) -> str:
    text = str(err).lower()
    if isinstance(err, EOFError) or "truncated" in text or "not enough data" in text:
        return f"the {name} is truncated: the {fmt} file ends before its pixel data does (incomplete upload?)"
    return f"the {name} is corrupt: its {fmt} pixel data cannot be decoded"


# Magic numbers of what people send instead of a usable image, to tell them what they sent.
_DAMAGED, _UNSUPPORTED, _NOT_IMAGE = "damaged", "unsupported", "not an image"
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", _DAMAGED, "PNG"),
    (b"\xff\xd8\xff", _DAMAGED, "JPEG"),
    (b"GIF87a", _DAMAGED, "GIF"),
    (b"GIF89a", _DAMAGED, "GIF"),
    (b"II*\x00", _DAMAGED, "TIFF"),
    (b"MM\x00*", _DAMAGED, "TIFF"),
    (b"8BPS", _UNSUPPORTED, "a Photoshop document"),
    (b"gimp xcf", _UNSUPPORTED, "a GIMP document"),
    (b"%!PS", _UNSUPPORTED, "a PostScript file"),
    (b"\x00\x00\x00\x0cjP  ", _UNSUPPORTED, "a JPEG 2000 image"),
    (b"\xffO\xffQ", _UNSUPPORTED, "a JPEG 2000 image"),
    (b"qoif", _UNSUPPORTED, "a QOI image"),
    (b"DDS ", _UNSUPPORTED, "a DDS texture"),
    (b"icns", _UNSUPPORTED, "a macOS icon"),
    (b"%PDF", _NOT_IMAGE, "a PDF document"),
    (b"PK\x03\x04", _NOT_IMAGE, "a ZIP archive (or an Office document)"),
    (b"PK\x05\x06", _NOT_IMAGE, "a ZIP archive"),
    (b"\x1f\x8b", _NOT_IMAGE, "a gzip archive"),
    (b"Rar!\x1a\x07", _NOT_IMAGE, "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", _NOT_IMAGE, "a 7-Zip archive"),
    (b"\x1aE\xdf\xa3", _NOT_IMAGE, "a WebM/Matroska video"),
    (b"OggS", _NOT_IMAGE, "an Ogg audio/video file"),
    (b"fLaC", _NOT_IMAGE, "a FLAC audio file"),
    (b"ID3", _NOT_IMAGE, "an MP3 audio file"),
    (b"\x7fELF", _NOT_IMAGE, "a program (ELF executable)"),
    (b"MZ", _NOT_IMAGE, "a program (Windows executable)"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heif", b"mif1", b"msf1")


def _sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, what) from the first bytes of a file Pillow would not open, or None if unrecognised."""
    for magic, kind, what in _MAGIC:
        if head.startswith(magic):
            return kind, what
    if head[:4] == b"RIFF":
        riff = {
            b"WEBP": (_DAMAGED, "WebP"),
            b"AVI ": (_NOT_IMAGE, "an AVI video"),
            b"WAVE": (_NOT_IMAGE, "a WAV audio file"),
        }
        return riff.get(head[8:12], (_NOT_IMAGE, "a RIFF media file"))
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos, MP4/MOV videos
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return _UNSUPPORTED, "a HEIC/HEIF photo (the iPhone camera format)"
        if brand in (b"avif", b"avis"):
            return (_DAMAGED, "AVIF") if "AVIF" in READABLE_FORMATS else (_UNSUPPORTED, "an AVIF image")
        return _NOT_IMAGE, "a QuickTime video" if brand == b"qt  " else "an MP4 video"
    if _looks_like_text(head):
        lowered = head.lower()
        if b"<svg" in lowered:
            return _UNSUPPORTED, "an SVG drawing (a vector image)"
        if b"<html" in lowered or b"<!doctype html" in lowered:
            return _NOT_IMAGE, "a web page (HTML), maybe from a link to a page rather than to the image itself"
        return _NOT_IMAGE, "text"
    if head.startswith(b"BM"):  # checked after text: "BM..." is also how some sentences start
        return _DAMAGED, "BMP"
    return None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    if controls > len(head) // 20:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # only a multi-byte character cut off by the 1 KiB window
    return True


def _unreadable_message(name: str, head: bytes) -> str:
    sniffed = _sniff(head)
    if sniffed is None:
        return f"the {name} is not in a supported image format ({_SUPPORTED_TEXT})"
    kind, what = sniffed
    if kind == _DAMAGED:
        return f"the {name} is a corrupt or truncated {what} file: its header cannot be read"
    if kind == _UNSUPPORTED:
        return f"the {name} is {what}, which is not supported; convert it to PNG or JPEG"
    return f"the {name} is not an image: it looks like {what}; send a {_SUPPORTED_TEXT} file"


# ---------------------------------------------------------------------------------------------- resize


def fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The (width, height) :func:`fit_within` gives an image of ``size``: longer side at most ``max_side``."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    width, height = size
    if max(width, height) <= max_side:
        return (width, height)
    # The longer side is set exactly; only the shorter one is rounded.
    if width >= height:
        return (max_side, max(1, round(height * max_side / width)))
    return (max(1, round(width * max_side / height)), max_side)


def enlarged_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` with its longer side raised to ``side`` (aspect kept), as it is when already as large:
    how an upscale (``stylize(init_image=...)``) enlarges its content, and how the checks before
    queueing size it."""
    width, height = size
    if max(width, height) >= side:
        return (width, height)
    scale = side / max(width, height)
    return (side, max(1, round(height * scale))) if width >= height else (max(1, round(width * scale)), side)


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``, keeping the aspect ratio.

    Returns ``image`` itself when it already fits.
    """
    size = fitted_size(image.size, max_side)
    if size == image.size:
        return image
    return _resample_ready(image).resize(size, Image.Resampling.LANCZOS)


def matched_size(style_size: tuple[int, int], reference_size: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
    """The (width, height) :func:`match_scale` gives a style of ``style_size`` next to ``reference_size``."""
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive number, not {scale}")
    if min(reference_size) < 1:
        raise ValueError(f"reference_size must be positive, not {reference_size}")
    width, height = style_size
    target = max(1, round(scale * max(reference_size)))
    shortest = min(target, _MIN_SIDE)
    if width >= height:
        return (target, max(shortest, round(height * target / width)))
    return (max(shortest, round(width * target / height)), target)


def match_scale(style: Image.Image, reference_size: tuple[int, int], scale: float = 1.0) -> Image.Image:
    """Resize ``style`` so its longer side is ``scale × max(reference_size)``, keeping its aspect ratio.

    Style statistics (Gram matrices) depend on the size of the brush strokes in pixels, so the style
    is brought to the content's scale. The shorter side is kept at 16 px or more when the target
    allows it (VGG pools the image four times before the last style layer), which slightly stretches
    extreme panoramas. LANCZOS when shrinking, BICUBIC when enlarging. Returns ``style`` itself when
    the size does not change.
    """
    size = matched_size(style.size, reference_size, scale)
    if size == style.size:
        return style
    resample = Image.Resampling.BICUBIC if max(size) > max(style.size) else Image.Resampling.LANCZOS
    return _resample_ready(style).resize(size, resample)


def _resample_ready(image: Image.Image) -> Image.Image:
    # Pillow resizes palette and bilevel images with NEAREST whatever is asked: convert them first.
    return _to_rgb(image) if image.mode in ("P", "PA", "1") else image


# ---------------------------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image ready to upload or write."""

    data: bytes
    format: str  # "png", "jpeg" or "webp"
    quality: int | None  # None for PNG
    size: tuple[int, int]  # pixel size actually encoded; smaller than the input if it had to shrink

    @property
    def extension(self) -> str:
        return _FORMATS[self.format][1]

    @property
    def content_type(self) -> str:
        return _FORMATS[self.format][2]


def encode_image(
    image: Image.Image,
    *,
    max_bytes: int | None = None,
    lossy_formats: Sequence[str] = ("webp", "jpeg"),
    min_quality: int = 50,
) -> EncodedImage:
    """Encode losslessly (PNG) if that fits in ``max_bytes``, else in the best lossy form that fits.

    For each of ``lossy_formats`` in order, the highest quality in [``min_quality``, 95] that fits is
    found by binary search; the first format that fits at all wins. If none fits, the image is
    downscaled and tried again, so an upload never fails just for being large. Raises
    :class:`ImageError` only when even a tiny version does not fit (or ``max_bytes`` < 1 KiB).
    """
    formats = _lossy_formats(lossy_formats)
    if not 1 <= min_quality <= _MAX_QUALITY:
        raise ValueError(f"min_quality must be between 1 and {_MAX_QUALITY}, not {min_quality}")

    png = _encode(image, "png")
    if max_bytes is None or len(png) <= max_bytes:
        return EncodedImage(png, "png", None, image.size)

    current, smallest = image, len(png)
    while True:
        if formats:
            smallest = math.inf
            for fmt in formats:
                data, quality, size_at_min = _highest_quality(
                    current, fmt, max_bytes, min_quality, top_first=current is image
                )
                if data is not None:
                    return EncodedImage(data, fmt, quality, current.size)
                smallest = min(smallest, size_at_min)
        elif current is not image:  # PNG only, at a reduced size (full size was tried above)
            data = _encode(current, "png")
            if len(data) <= max_bytes:
                return EncodedImage(data, "png", None, current.size)
            smallest = len(data)
        if max_bytes < _MIN_BUDGET:
            break
        # Bytes grow roughly with the pixel count, so shrink each side by about sqrt(budget / size);
        # at most 0.8 so every round makes progress, at least 0.3 so a wild estimate cannot overshoot.
        factor = min(0.8, max(0.3, 0.95 * math.sqrt(max_bytes / smallest)))
        width, height = current.size
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        if max(size) < _MIN_SIDE:
            break
        current = _resample_ready(current).resize(size, Image.Resampling.LANCZOS)
    raise ImageError(f"cannot encode the result under {max_bytes} bytes")


def _lossy_formats(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):  # a lone "webp" is a format, not the sequence "w", "e", "b", "p"
        names = (names,)
    formats = []
    for name in names:
        fmt = _LOSSY_ALIASES.get(str(name).lower())
        if fmt is None:
            raise ValueError(f"unknown lossy format {name!r}; use 'webp' or 'jpeg'")
        if fmt not in formats:
            formats.append(fmt)
    return tuple(formats)


def _highest_quality(
    image: Image.Image, fmt: str, max_bytes: int, min_quality: int, *, top_first: bool
) -> tuple[bytes | None, int | None, int]:
    """(data, quality) at the highest quality that fits, or (None, None); plus the size at min_quality.

    At most 2 + log2(95 - min_quality) encodes (8 for the default 50). ``top_first`` tries 95 before
    anything else, which settles a generous budget in one encode; after a downscale it rarely fits.
    """
    if top_first:
        top = _encode(image, fmt, _MAX_QUALITY)
        if len(top) <= max_bytes:
            return top, _MAX_QUALITY, len(top)
    best = _encode(image, fmt, min_quality)
    if len(best) > max_bytes:
        return None, None, len(best)
    # Invariant: quality ``low`` fits (its bytes are ``best``); ``high`` does not fit (or was not
    # tried yet: then it is 96, one past the range, so 95 itself still gets tested).
    low, high, size_at_min = min_quality, _MAX_QUALITY if top_first else _MAX_QUALITY + 1, len(best)
    while high - low > 1:
        middle = (low + high) // 2
        data = _encode(image, fmt, middle)
        if len(data) <= max_bytes:
            low, best = middle, data
        else:
            high = middle
    return best, low, size_at_min


def _encode(image: Image.Image, fmt: str, quality: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", optimize=False, compress_level=6)
    else:
        rgb = image if image.mode == "RGB" else _to_rgb(image)
        assert quality is not None
        if fmt == "jpeg":
            # 4:4:4 chroma at high quality: 4:2:0 smears the fine coloured strokes style transfer makes
            options = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
            try:
                rgb.save(buffer, "JPEG", optimize=True, progressive=True, **options)
            except OSError:
                # Optimised/progressive output must fit a buffer Pillow sizes at ~1 byte per pixel,
                # which near-noise at quality 90-94 with 4:4:4 chroma can exceed; baseline streams.
                buffer = io.BytesIO()
                rgb.save(buffer, "JPEG", **options)
        else:
            rgb.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def write_image(image: Image.Image, path: str | os.PathLike[str], *, quality: int = 95) -> None:
    """Write ``image`` to ``path`` in the format its extension names (.png, .jpg/.jpeg, .webp).

    ``quality`` applies to JPEG and WebP. The file is encoded in memory first, so a refusal never
    leaves a half-written file behind.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, not {quality}")
    target = os.fspath(path)
    fmt = _EXTENSIONS.get(os.path.splitext(target)[1].lower())
    if fmt is None:
        raise ImageError(
            f"cannot write {os.path.basename(target) or target!r}: the file name must end in .png, .jpg, .jpeg or .webp"
        )
    data = _encode(image, fmt, None if fmt == "png" else quality)
    try:
        with open(target, "wb") as file:
            file.write(data)
    except OSError as err:
        raise ImageError(f"cannot write {target}: {err.strerror or err}") from None


# ---------------------------------------------------------------------------------------------- tensors


def to_tensor(image: Image.Image) -> torch.Tensor:
    """float32 tensor of shape (1, 3, H, W) with values in 0..1, contiguous, on the CPU.

    A non-RGB image is converted the way :func:`decode_image` would (transparency onto white).
    """
    import torch

    rgb = image if image.mode == "RGB" else _to_rgb(image)
    pixels = np.array(rgb, dtype=np.uint8)  # a writable copy, which torch.from_numpy wants
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    return tensor.to(torch.float32).div_(255.0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """RGB image from a (1, 3, H, W) or (3, H, W) float tensor in 0..1 (clamped; NaN becomes 0)."""
    import torch

    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected shape (1, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {tensor.dtype}")
    # Quantise on the tensor's own device, then move 1 byte per value instead of 4.
    values = torch.nan_to_num(tensor.detach().to(torch.float32), nan=0.0).clamp_(0.0, 1.0)
    pixels = values.mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(pixels)


# ------------------------------------------------------------------------------------------ animations

DEFAULT_MAX_ANIMATION_PIXELS = 150_000_000
"""Largest frames × declared width×height :func:`decode_animation` decodes (about 450 MB as 8-bit RGB)."""

DEFAULT_FRAME_MS = 100  # what browsers (and Discord) show for a GIF frame without a usable delay
VIDEO_EXTRA = 'pip install ".[video]"'
_ANIMATION_FORMATS = ("GIF", "WEBP")  # animations Pillow decodes; other readable formats give one frame
_GIF_COLOURS = (256, 128, 64, 32)  # palette sizes tried, largest first, before anything else is given up
_GIF_MIN_SCALE = 0.5  # a GIF is shrunk to at most half its side before frames are dropped


@dataclass(frozen=True)
class Animation:
    """Decoded frames (8-bit RGB, all one size) with how long each shows and how often the clip plays.

    ``loop`` is the number of repeats after the first play as GIF counts them: 0 = forever,
    None = play once (a GIF without a loop block)."""

    frames: tuple[Image.Image, ...]
    durations: tuple[int, ...]  # milliseconds per frame
    loop: int | None = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    @property
    def duration_ms(self) -> int:
        return sum(self.durations)

    @property
    def animated(self) -> bool:
        return len(self.frames) > 1


def decode_animation(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = 1000,
    max_total_pixels: int = DEFAULT_MAX_ANIMATION_PIXELS,
    name: str = "image",
) -> Animation:
    """Decode an animated GIF or WebP (Pillow), an MP4/WebM/QuickTime clip (PyAV, the ``video`` extra)
    or any still :func:`decode_image` reads (one frame) into an :class:`Animation`.

    The stills' rules apply to every frame (format allow-list, header size check, truncation refused,
    transparency onto white). The frame count and frames × pixels are checked from the header before
    any frame is decoded, so a clip of a million frames is refused as cheaply as a decompression bomb.
    """
    data = _read_source(source, name)
    if _is_video(data[:64]):
        return _decode_video(data, max_pixels, max_frames, max_total_pixels, name)
    with _animated(data, name) as (image, count):
        if count > 1:
            _check_frames(name, image.size, count, max_pixels, max_frames, max_total_pixels)
            return _pillow_frames(image, count, name)
    # outside the lock, which decode_image takes itself
    return Animation((decode_image(data, max_pixels=max_pixels, name=name),), (0,), None)


@contextlib.contextmanager
def _animated(data: bytes, name: str):
    """(the opened GIF/WebP, its frame count) from its header, or (None, 1) for anything else (a
    stills' decode explains a bad header better). A GIF/WebP whose frames cannot even be counted ends
    early: refused, not read as a still of its first frame."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        try:
            image = Image.open(io.BytesIO(data), formats=_ANIMATION_FORMATS)
        except Exception:  # not a GIF/WebP
            yield None, 1
            return
        with image:
            try:
                count = int(getattr(image, "n_frames", 1))
            except Exception:  # noqa: BLE001 - Pillow's reader fails on a file cut short
                raise ImageError(f"the {name} is a broken animation: the file ends before its last frame "
                                 "(incomplete upload?)") from None
            yield image, count


def _read_source(source, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = os.fspath(source)
        with _open_file(path, name) as file:
            try:
                data = file.read()
            except OSError as err:
                raise ImageError(_file_error(name, path, err)) from None
    if not data:
        raise ImageError(f"the {name} is empty (0 bytes)")
    return data


def _is_video(head: bytes) -> bool:
    """MP4/QuickTime (ISO media that is not a HEIF/AVIF photo) or WebM/Matroska, by magic number."""
    if head.startswith(b"\x1aE\xdf\xa3"):
        return True
    return head[4:8] == b"ftyp" and head[8:12] not in (*_HEIF_BRANDS, b"avif", b"avis")


def _check_frames(name: str, size: tuple[int, int], count: int, max_pixels: int, max_frames: int, max_total: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"the {name} has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"the {name} is {width}×{height} = {describe_pixels(width * height)}; the limit is {describe_pixels(max_pixels)}"
        )
    if count > max_frames:
        raise ImageError(frames_refusal(name, count, max_frames))
    if count * width * height > max_total:
        raise ImageError(
            f"the {name} is {count} frames of {width}×{height} = {describe_pixels(count * width * height)}; "
            f"the limit is {describe_pixels(max_total)}"
        )


def _pillow_frames(image: Image.Image, count: int, name: str) -> Animation:
    fmt = {"WEBP": "WebP"}.get(image.format or "", image.format or "image")
    frames, durations = [], []
    try:
        for index in range(count):
            image.seek(index)
            # RGBA composes the frame over what the previous frames left (GIF disposal, WebP blending)
            frames.append(_to_rgb(image.convert("RGBA"), name))
            durations.append(_frame_ms(image.info.get("duration")))
    except MemoryError:
        raise ImageError(f"the {name} is too large to decode in the memory available") from None
    except ImageError:
        raise
    except Exception as err:
        raise ImageError(_broken_message(name, fmt, err)) from None
    loop = image.info.get("loop")
    for frame in frames:
        frame.info = {}
    return Animation(tuple(frames), tuple(durations), int(loop) if loop is not None else None)


def _frame_ms(value) -> int:
    """A frame's delay in ms; 0 or missing shows as DEFAULT_FRAME_MS in browsers, so it is kept as that."""
    try:
        ms = int(round(float(value)))
    except (TypeError, ValueError):
        return DEFAULT_FRAME_MS
    return ms if ms > 0 else DEFAULT_FRAME_MS


def _decode_video(data: bytes, max_pixels: int, max_frames: int, max_total: int, name: str) -> Animation:
    try:
        import av
    except ImportError:
        raise ImageError(
            f"the {name} is a video (MP4/WebM); reading videos needs the optional PyAV package: {VIDEO_EXTRA}, "
            "or send it as a GIF"
        ) from None
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ImageError(f"the {name} is a media file without a video track")
            stream = container.streams.video[0]
            # read while the container is open: PyAV 18 refuses a closed container's stream
            rate = float(stream.average_rate) if stream.average_rate else None
            size = (stream.codec_context.width, stream.codec_context.height)
            declared = stream.frames or 1  # 0 when the container does not say: counted while decoding
            _check_frames(name, size, declared, max_pixels, max_frames, max_total)
            frames, stamps = [], []
            for frame in container.decode(stream):
                if len(frames) == max_frames:
                    raise ImageError(f"the {name} has more than {max_frames} frames; the limit is {max_frames}")
                frames.append(frame.to_image().convert("RGB"))
                stamps.append(float(frame.pts * frame.time_base) if frame.pts is not None else None)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"the {name} is too large to decode in the memory available") from None
    except Exception:
        raise ImageError(f"the {name} is a corrupt or unsupported video: its frames cannot be decoded") from None
    if not frames:
        raise ImageError(f"the {name} is a video without any frames")
    _check_frames(name, frames[0].size, len(frames), max_pixels, max_frames, max_total)
    return Animation(tuple(frames), _video_durations(stamps, rate), 0)


def _video_durations(stamps: list[float | None], rate: float | None) -> tuple[int, ...]:
    default = max(1, round(1000 / rate)) if rate else DEFAULT_FRAME_MS
    if any(s is None for s in stamps):
        return (default,) * len(stamps)
    gaps = [round((b - a) * 1000) for a, b in zip(stamps, stamps[1:])]
    return tuple(g if g > 0 else default for g in gaps) + (default,)


@dataclass(frozen=True)
class EncodedAnimation:
    """An encoded animation and what fitting it into the byte budget cost."""

    data: bytes
    format: str  # "gif", "webp" or "mp4"
    size: tuple[int, int]
    frames: int
    colours: int | None  # the GIF palette's size
    given_up: tuple[str, ...] = ()  # e.g. ("colours 256→64", "size 128×96→96×72", "frames 24→12")

    @property
    def extension(self) -> str:
        return "." + self.format

    @property
    def content_type(self) -> str:
        return {"gif": "image/gif", "webp": "image/webp", "mp4": "video/mp4"}[self.format]


def encode_animation(animation: Animation, fmt: str = "gif", *, max_bytes: int | None = None, quality: int = 90) -> EncodedAnimation:
    """Encode ``animation`` keeping its timing and loop. ``fmt``: gif, webp or mp4 (PyAV).

    A GIF uses one palette for all frames (a palette per frame makes still areas flicker) and no
    dithering (error diffusion moves with every small change). Over ``max_bytes`` it gives up, in
    this order, palette colours (down to 32), size (down to half each side), then every other frame
    (their time goes to the frames kept, so the clip plays as long). Raises :class:`ImageError` when
    even that does not fit. ``max_bytes`` applies to GIF only; ``quality`` to WebP and MP4.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt == "webp":
        return EncodedAnimation(_webp_bytes(animation, quality), "webp", animation.size, len(animation.frames), None)
    if fmt == "mp4":
        return EncodedAnimation(_mp4_bytes(animation, quality), "mp4", animation.size, len(animation.frames), None)
    if fmt != "gif":
        raise ValueError(f"unknown animation format {fmt!r}; use gif, webp or mp4")
    return _fitted_gif(animation, max_bytes)


def _fitted_gif(animation: Animation, max_bytes: int | None) -> EncodedAnimation:
    original = animation
    current = animation
    colours = _GIF_COLOURS[0]
    data = _gif_bytes(current, colours)
    if max_bytes is not None and len(data) > max_bytes:
        for colours in _GIF_COLOURS[1:]:  # 1. fewer colours
            data = _gif_bytes(current, colours)
            if len(data) <= max_bytes:
                break
        width, height = original.size
        smallest = (max(1, round(width * _GIF_MIN_SCALE)), max(1, round(height * _GIF_MIN_SCALE)))
        while len(data) > max_bytes and current.size != smallest:  # 2. a smaller size
            factor = min(0.9, max(0.5, 0.95 * math.sqrt(max_bytes / len(data))))
            size = (max(smallest[0], round(current.size[0] * factor)), max(smallest[1], round(current.size[1] * factor)))
            current = _resized_animation(original, size)
            data = _gif_bytes(current, colours)
        while len(data) > max_bytes and len(current.frames) > 1:  # 3. fewer frames
            current = _every_other_frame(current)
            data = _gif_bytes(current, colours)
        if len(data) > max_bytes:
            raise ImageError(f"cannot encode the animation under {max_bytes} bytes, even as one small frame")
    return EncodedAnimation(data, "gif", current.size, len(current.frames), colours, _given_up(original, current, colours))


def _given_up(original: Animation, result: Animation, colours: int) -> tuple[str, ...]:
    given = []
    if colours != _GIF_COLOURS[0]:
        given.append(f"colours {_GIF_COLOURS[0]}→{colours}")
    if result.size != original.size:
        given.append(f"size {original.size[0]}×{original.size[1]}→{result.size[0]}×{result.size[1]}")
    if len(result.frames) != len(original.frames):
        given.append(f"frames {len(original.frames)}→{len(result.frames)}")
    return tuple(given)


def _resized_animation(animation: Animation, size: tuple[int, int]) -> Animation:
    frames = tuple(frame.resize(size, Image.Resampling.LANCZOS) for frame in animation.frames)
    return Animation(frames, animation.durations, animation.loop)


def _every_other_frame(animation: Animation) -> Animation:
    """Every other frame, each showing for its own time plus the dropped one's: the clip's length is kept."""
    frames = animation.frames[::2]
    durations = tuple(sum(animation.durations[i : i + 2]) for i in range(0, len(animation.durations), 2))
    return Animation(frames, durations, animation.loop)


def shared_palette(frames: Sequence[Image.Image], colours: int) -> Image.Image:
    """One palette ("P" image) for all ``frames``: median cut over a sample of every frame's pixels."""
    sample_side = 64  # enough pixels per frame to see its colours, cheap for a few hundred frames
    tiles = [frame.resize((min(sample_side, frame.width), min(sample_side, frame.height))) for frame in frames]
    mosaic = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for tile in tiles:
        mosaic.paste(tile, (x, 0))
        x += tile.width
    return mosaic.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)


def _gif_bytes(animation: Animation, colours: int) -> bytes:
    palette = shared_palette(animation.frames, colours)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in animation.frames]
    options = {} if animation.loop is None else {"loop": animation.loop}
    buffer = io.BytesIO()
    # palette=: without it Pillow writes a local palette with every frame after the first; optimize=False:
    # with it Pillow would shrink each frame's palette to the colours that frame uses. (Pillow merges a
    # frame identical to the one before into it, adding its duration: the timing is kept.)
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], duration=list(animation.durations),
        palette=bytes(palette.getpalette()[: 3 * colours]), optimize=False, disposal=1, **options,
    )
    return buffer.getvalue()


def _webp_bytes(animation: Animation, quality: int) -> bytes:
    buffer = io.BytesIO()
    animation.frames[0].save(
        buffer, "WEBP", save_all=True, append_images=list(animation.frames[1:]), duration=list(animation.durations),
        loop=animation.loop if animation.loop is not None else 1, quality=quality, method=4,
    )
    return buffer.getvalue()


def _mp4_bytes(animation: Animation, quality: int) -> bytes:
    try:
        import av
    except ImportError:
        raise ImageError(f"writing MP4 needs the optional PyAV package: {VIDEO_EXTRA}; or write a .gif") from None
    width, height = (side - side % 2 for side in animation.size)  # H.264 (4:2:0) needs even sides
    if width < 2 or height < 2:
        raise ImageError(f"the animation is too small for MP4 ({animation.size[0]}×{animation.size[1]})")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=1000)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)  # timestamps in ms keep each frame's own duration
        stream.options = {"crf": str(round(51 - quality * 0.4))}
        at = 0
        for frame, ms in zip(animation.frames, animation.durations):
            picture = av.VideoFrame.from_image(frame.crop((0, 0, width, height)))
            picture.pts, picture.time_base = at, Fraction(1, 1000)
            at += ms
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return buffer.getvalue()


_ANIMATION_EXTENSIONS = {".gif": "gif", ".webp": "webp", ".mp4": "mp4"}


def write_animation(animation: Animation, path: str | os.PathLike[str], *, quality: int = 90, max_bytes: int | None = None) -> EncodedAnimation:
    """Write ``animation`` to ``path`` as its extension says (.gif, .webp, .mp4); encoded in memory first."""
    target = os.fspath(path)
    fmt = _ANIMATION_EXTENSIONS.get(os.path.splitext(target)[1].lower())
    if fmt is None:
        raise ImageError(f"cannot write {os.path.basename(target) or target!r} as an animation: use .gif, .webp or .mp4")
    encoded = encode_animation(animation, fmt, max_bytes=max_bytes, quality=quality)
    try:
        with open(target, "wb") as file:
            file.write(encoded.data)
    except OSError as err:
        raise ImageError(f"cannot write {target}: {err.strerror or err}") from None
    return encoded


def check_animation(
    size: tuple[int, int], frames: int, duration_ms: int, style_sizes: Sequence[tuple[int, int]], params,
    *, name: str = "animation", reasons: Mapping[str, str] | None = None,
) -> None:
    """Refuse, before any tensor work, a clip over the caps in ``params`` (a StyleParams): frames,
    playing time and frames × pixels at ``params.animation_size``; then what
    :func:`nst.check_runnable` refuses for its frames at that size. Raises ImageError/ParamError.
    ``reasons`` names whose limit ``max_frames`` and ``max_clip_seconds`` are (the bot: "this server's
    limit"); "the limit" otherwise."""
    from .schedule import check_runnable  # here, not at the top: schedule imports this module

    reasons = reasons or {}
    if frames > params.max_frames:
        raise ImageError(frames_refusal(name, frames, params.max_frames, reasons.get("max_frames", "the limit")))
    seconds = duration_ms / 1000
    if seconds > params.max_clip_seconds:
        reason = reasons.get("max_clip_seconds", "the limit")
        raise ImageError(f"the {name} plays for {seconds:g} s; {reason} is {params.max_clip_seconds:g} s")
    width, height = fitted_size(size, params.animation_size)
    cost = frames * width * height
    if cost > params.max_clip_pixels:
        raise ImageError(
            f"the {name} is {frames} frames of {width}×{height} = {describe_pixels(cost)} to stylize; the limit "
            f"is {describe_pixels(params.max_clip_pixels)}: use fewer frames or a smaller animation_size"
        )
    check_runnable(size, style_sizes, params.replace(size=params.animation_size))


def frames_refusal(name: str, frames: int, limit: int, reason: str = "the limit") -> str:
    """The one wording of a clip over a frame cap, whoever counted its frames."""
    return f"the {name} has {frames} frames; {reason} is {limit}"


@dataclass(frozen=True)
class ClipFacts:
    """What the checks before queueing need of a content image, read without keeping its frames."""

    size: tuple[int, int]
    frames: int  # 1: a still
    duration_ms: int  # the playing time as the engine counts it (0 for a still)


def probe_animation(
    source: bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = 1000,
    name: str = "image",
    frames_reason: str = "the limit",
) -> ClipFacts:
    """The size, frame count and playing time of a still, an animated GIF/WebP or a clip, with the
    decoders' own refusals. An animated GIF/WebP is refused over ``max_frames`` from its header
    before any frame is decoded, then walked one frame at a time (each frame decoded and dropped:
    broken frames are found, durations counted as :func:`decode_animation` counts them), so a process
    that only checks never holds the clip; stills and videos go through :func:`decode_animation`."""
    data = _read_source(source, name)
    if not _is_video(data[:64]):
        with _animated(data, name) as (image, count):
            if count > 1:
                return _walked(image, count, max_pixels, max_frames, name, frames_reason)
    animation = decode_animation(data, max_pixels=max_pixels, max_frames=max_frames, name=name)
    return ClipFacts(animation.size, len(animation.frames), animation.duration_ms if animation.animated else 0)


def _walked(image: Image.Image, count: int, max_pixels: int, max_frames: int, name: str, frames_reason: str) -> ClipFacts:
    if count > max_frames:
        raise ImageError(frames_refusal(name, count, max_frames, frames_reason))
    _check_frames(name, image.size, count, max_pixels, max_frames, DEFAULT_MAX_ANIMATION_PIXELS)
    total = 0
    try:
        for index in range(count):
            image.seek(index)
            image.load()  # WebP sets a frame's duration when it decodes it
            total += _frame_ms(image.info.get("duration"))
    except MemoryError:
        raise ImageError(f"the {name} is too large to decode in the memory available") from None
    except Exception:  # noqa: BLE001 - a frame Pillow cannot read: the worker's decode would refuse it too
        raise ImageError(f"the {name} is a broken animation: one of its frames cannot be read") from None
    return ClipFacts(image.size, count, total)
