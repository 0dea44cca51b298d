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


CONTENT = "content image"


def roles(count: int) -> list[str]:
    """How each of ``count`` images is named in messages: the content first, then the style(s)."""
    if count <= 2:
        return [CONTENT, "style image"][:count]
    return [CONTENT, *(f"style image {i}" for i in range(1, count))]


def video_readable() -> bool:
    """Whether the engine can read clips here: PyAV (the ``video`` extra) is installed."""
    return importlib.util.find_spec("av") is not None


def check_video(kind: str, role: str, filename: str) -> None:
    """Refuse, from its content type alone, a clip the job cannot take: as a style (a still is needed),
    or as the content when PyAV is missing (the operator can add it)."""
    name = VIDEO_TYPES[kind]
    if role != CONTENT:
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
                         reasons: dict[str, str] | None = None, max_memory: int | str | None = None,
                         init_image: bytes = b"") -> CheckedInputs:
    """Refuse, before queueing, images VGG-19 cannot process at ``params`` (too small, too elongated,
    a style scaled below the minimum): nst.check_runnable's rule, the same as the CLI's and the
    library's, with its message naming the image, its size and the minimum. An animated content is
    checked against the clip caps in ``params`` (nst.check_animation); ``reasons`` says whose limit
    max_frames and max_clip_seconds are (e.g. "this server's limit"), for the refusal. ``max_memory``
    (engine.max_memory: bytes, or "unlimited"; None, "auto": the worker's device decides) refuses a
    still whose levels cannot fit that budget even in the smallest tiles, with the engine's message;
    ``init_image``: an upscale's picture (the job continues from it at ``params.size``, its content
    enlarged as the engine will), so the budget is checked at the size the job will really run."""
    from nst import check_animation, check_runnable as engine_check  # lazily: it loads the engine

    reasons = reasons or {}
    try:
        content_facts, style_sizes, animated_styles = await asyncio.to_thread(
            _read_inputs, content, styles, params, max_pixels, reasons)
        init_size = (await asyncio.to_thread(images.decode_image, init_image, max_pixels=max_pixels,
                                             name="picture to upscale")).size if init_image else None
        if content_facts.frames > 1:
            check_animation(content_facts.size, content_facts.frames, content_facts.duration_ms, style_sizes, params,
                            name=CONTENT, reasons=reasons)
        else:
            engine_check(content_facts.size, style_sizes, params, max_memory=max_memory, init_size=init_size)
    except ImageError as error:
        raise UserError(str(error)) from None
    except ParamError as error:
        if error.field == "max_memory":  # the operator's budget, not an option of the user's
            raise UserError(f"this job does not fit this bot's memory: {error.reason} "
                            "(the budget is set by the bot's operator)") from None
        raise option_refusal(error) from None
    notes = (ANIMATED_STYLE_NOTE,) if animated_styles else ()
    return CheckedInputs(content_facts.frames, content_facts.duration_ms, notes)


def _read_inputs(content: bytes, styles: Sequence[bytes], params, max_pixels: int, reasons: dict[str, str]):
    """(the content's size, frames and playing time, style sizes, whether a style is animated), in a
    thread. The engine's probe refuses a clip over the frame cap from its header before decoding any
    frame, then reads an animated GIF/WebP one frame at a time (the bot's process never holds it)."""
    names = roles(1 + len(styles))
    facts = images.probe_animation(content, max_pixels=max_pixels, max_frames=params.max_frames, name=names[0],
                                   frames_reason=reasons.get("max_frames", "the limit"))
    style_sizes = [images.decode_image(data, max_pixels=max_pixels, name=name).size for data, name in zip(styles, names[1:])]
    animated_styles = any(frame_count(data) > 1 for data in styles)
    return facts, style_sizes, animated_styles


def frame_count(data: bytes) -> int:
    """Frames of an animated GIF or WebP from its header (Pillow), 1 for anything else (videos are
    counted by the engine's decoder, which stops at the cap)."""
    try:
        with Image.open(io.BytesIO(data), formats=("GIF", "WEBP")) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001 - not a GIF/WebP, or broken: the decoder says what is wrong
        return 1
