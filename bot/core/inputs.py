"""A job's input images, whichever front-end received them: how each is named in messages, and the
engine's rule on what it can process, checked before anything is queued.

The content may be an animation (an animated GIF or WebP, or an MP4/WebM clip when PyAV, the
``video`` extra, is installed): the whole clip is then one job, checked here against the clip caps
in its parameters (frames, playing time, frames × pixels) before it is queued. Style images are
stills: an animated one gives its first frame, and the job's notes say so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from nst import images
from nst.errors import ImageError, ParamError

from bot.core.errors import UserError
from bot.core.options import option_refusal

# Discord's content types of the clips the engine reads with PyAV, and how they are named to users.
VIDEO_TYPES = {"video/mp4": "MP4", "video/webm": "WebM", "video/quicktime": "QuickTime"}
ANIMATED_STYLE_NOTE = "the style image is animated: its first frame is used"


def roles(count: int) -> list[str]:
    """How each of ``count`` images is named in messages: the content first, then the style(s)."""
    if count <= 2:
        return ["content image", "style image"][:count]
    return ["content image", *(f"style image {i}" for i in range(1, count))]


def video_readable() -> bool:
    """Whether the engine can read clips here: PyAV (the ``video`` extra) is installed."""
    return importlib.util.find_spec("av") is not None


def check_video(kind: str, role: str, filename: str) -> None:
    """Refuse, from its content type alone, a clip the job cannot take: as a style (a still is needed),
    or as the content when PyAV is missing (the operator can add it)."""
    name = VIDEO_TYPES[kind]
    if role != "content image":
        raise UserError(f"the {role} ({filename}) is a video ({name}); a style must be a picture")
    if not video_readable():
        raise UserError(
            f"the {role} ({filename}) is a video ({name}), and this bot cannot read videos: its operator has not "
            f'installed the optional video support (`pip install ".[video]"`); send it as a GIF instead'
        )


@dataclass(frozen=True)
class CheckedInputs:
    """What the check learnt about a job's images: how many frames the content has, and notes for the user."""

    frames: int  # 1: a still
    duration_ms: int  # the animation's playing time (0 for a still)
    notes: tuple[str, ...] = ()

    @property
    def animated(self) -> bool:
        return self.frames > 1


async def check_runnable(content: bytes, styles: Sequence[bytes], params, *, max_pixels: int,
                         reasons: dict[str, str] | None = None, max_memory: int | str | None = None) -> CheckedInputs:
    """Refuse, before queueing, images VGG-19 cannot process at ``params`` (too small, too elongated,
    a style scaled below the minimum): nst.check_runnable's rule, the same as the CLI's and the
    library's, with its message naming the image, its size and the minimum. An animated content is
    checked against the clip caps in ``params`` (nst.check_animation); ``reasons`` says whose limit
    max_frames and max_clip_seconds are (e.g. "this server's limit"), for the refusal. ``max_memory``
    (engine.max_memory: bytes, or "unlimited"; None, "auto": the worker's device decides) refuses a
    still whose levels cannot fit that budget even in the smallest tiles, with the engine's message."""
    from nst import check_animation, check_runnable as engine_check  # lazily: it loads the engine

    try:
        content_facts, style_sizes, animated_styles = await asyncio.to_thread(
            _read_inputs, content, styles, params, max_pixels, reasons or {})
        size, frames, duration_ms = content_facts
        if frames > 1:
            check_animation(size, frames, duration_ms, style_sizes, params)
        else:
            engine_check(size, style_sizes, params, max_memory=max_memory)
    except ImageError as error:
        raise UserError(str(error)) from None
    except ParamError as error:
        if error.field == "max_memory":  # the operator's budget, not an option of the user's
            raise UserError(f"this job does not fit this bot's memory: {error.reason} "
                            "(the budget is set by the bot's operator)") from None
        raise option_refusal(error) from None
    notes = (ANIMATED_STYLE_NOTE,) if animated_styles else ()
    return CheckedInputs(frames, duration_ms if frames > 1 else 0, notes)


def _read_inputs(content: bytes, styles: Sequence[bytes], params, max_pixels: int, reasons: dict[str, str]):
    """((content size, frames, milliseconds), style sizes, whether a style is animated), in a thread.
    The content's frame count is read from its header and refused before any frame is decoded; an
    animated GIF/WebP is then read one frame at a time (the bot's process never holds the clip)."""
    names = roles(1 + len(styles))
    frames = frame_count(content)
    _check_clip(frames, None, params, reasons)
    if frames > 1:
        size = images.decode_image(content, max_pixels=max_pixels, name=names[0]).size  # the stills' checks
        duration_ms = _playing_time(content, names[0])
    else:  # a still, or a clip (PyAV: decoding stops at the frame cap)
        clip = images.decode_animation(content, max_pixels=max_pixels, max_frames=params.max_frames, name=names[0])
        size, frames, duration_ms = clip.size, len(clip.frames), clip.duration_ms
    _check_clip(frames, duration_ms if frames > 1 else None, params, reasons)
    style_sizes = [images.decode_image(data, max_pixels=max_pixels, name=name).size for data, name in zip(styles, names[1:])]
    animated_styles = any(frame_count(data) > 1 for data in styles)
    return (size, frames, duration_ms), style_sizes, animated_styles


def _playing_time(data: bytes, name: str) -> int:
    """An animated GIF/WebP's playing time in ms, as the engine counts it (a frame without a usable
    delay shows for images.DEFAULT_FRAME_MS), decoding one frame at a time."""
    total = 0
    try:
        with Image.open(io.BytesIO(data), formats=("GIF", "WEBP")) as image:
            for index in range(image.n_frames):
                image.seek(index)
                image.load()  # WebP sets a frame's duration when it decodes it
                duration = image.info.get("duration")
                total += duration if isinstance(duration, (int, float)) and duration > 0 else images.DEFAULT_FRAME_MS
    except Exception:  # noqa: BLE001 - a frame Pillow cannot read: the same refusal as the worker's decode
        raise ImageError(f"the {name} is a broken animation: one of its frames cannot be read") from None
    return round(total)


def _check_clip(frames: int, duration_ms: int | None, params, reasons: dict[str, str]) -> None:
    """The clip caps a server may lower, refused with whose limit they are (nst.check_animation checks
    them again, with the frames × pixels cap and what VGG-19 can process)."""
    if frames > params.max_frames:
        reason = reasons.get("max_frames", "the limit")
        raise UserError(f"the content image is an animation of {frames} frames; {reason} is {params.max_frames} frames")
    if duration_ms is not None and duration_ms / 1000 > params.max_clip_seconds:
        reason = reasons.get("max_clip_seconds", "the limit")
        raise UserError(f"the content image is an animation of {duration_ms / 1000:g} s; {reason} is "
                        f"{params.max_clip_seconds:g} s")


def frame_count(data: bytes) -> int:
    """Frames of an animated GIF or WebP from its header (Pillow), 1 for anything else (videos are
    counted by the engine's decoder, which stops at the cap)."""
    try:
        with Image.open(io.BytesIO(data), formats=("GIF", "WEBP")) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001 - not a GIF/WebP, or broken: the decoder says what is wrong
        return 1
