"""Running one job inside a worker process: decode, stylize, encode, and every way that can end.

Shared by the local worker processes (worker.py) and the Celery workers (celery_worker.py): both
call run_job, which produces the executor's own events (base.py); the two differ only in how those
events travel back to the bot. The job's deadline is enforced here, the same way for both. Imports
the engine only, never discord.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

from .base import (
    CANCELLED,
    ERROR,
    PREVIEW_SIDE,
    PROGRESS_INTERVAL,
    TIMEOUT,
    Done,
    Event,
    Failed,
    Preview,
    Progress,
    Started,
    result_filename,
    timeout_reason,
)

log = logging.getLogger("bot.worker")

OUT_OF_MEMORY = "ran out of memory at this size; try a smaller --size"
INTERNAL = "an internal error stopped this job; the operator can find it in the logs"


@dataclass(frozen=True)
class JobPayload:
    """What a worker needs of a StyleJob, in plain values, built in one place for both executors.

    It crosses a pipe to a local worker whole; on Celery the images travel apart (Redis keys, so a
    task message stays small): ``message()`` is the rest, and ``from_message`` joins them again."""

    job_id: str
    params: dict[str, Any]
    max_result_bytes: int
    max_pixels: int
    timeout: float
    preview_interval: float
    max_memory: int | str | None = None  # bytes, "unlimited", or None: the engine's default for the device
    content: bytes = b""
    styles: tuple[bytes, ...] = ()
    init_image: bytes = b""  # the picture an upscale continues from (b"": none)

    @classmethod
    def of(cls, job, *, timeout: float, preview_interval: float) -> "JobPayload":
        return cls(
            job_id=job.job_id, params=dict(job.params), max_result_bytes=job.max_result_bytes,
            max_pixels=job.max_pixels, timeout=timeout, preview_interval=preview_interval,
            max_memory=job.max_memory, content=job.content, styles=tuple(job.styles), init_image=job.init_image,
        )  # fmt: skip

    def message(self) -> dict[str, Any]:
        """Everything but the images, as JSON-able values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _IMAGES}

    @classmethod
    def from_message(cls, message: dict[str, Any], content: bytes, styles: Sequence[bytes],
                     init_image: bytes = b"") -> "JobPayload":
        return cls(**message, content=content, styles=tuple(styles), init_image=init_image)


_IMAGES = frozenset({"content", "styles", "init_image"})


def out_of_memory_errors(torch) -> tuple[type[BaseException], ...]:
    """The exception types torch raises when a device runs out of memory, on every supported torch:
    ``torch.OutOfMemoryError`` only exists from 2.5; ``torch.cuda.OutOfMemoryError`` from 1.13."""
    found = [getattr(torch, "OutOfMemoryError", None), getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)]
    return tuple(dict.fromkeys(t for t in found if isinstance(t, type)))


def run_job(
    model,
    job: JobPayload,
    *,
    emit: Callable[[Event], None],
    should_stop: Callable[[], bool],
    device: str | None = None,
    attempt: int = 1,
) -> Done | Failed:
    """Run ``job`` and return its terminal event; Started, Progress (at most one per
    PROGRESS_INTERVAL, and the last step) and Preview events go to ``emit`` on the way. The job stops
    with TIMEOUT once it has run ``job.timeout`` seconds, and with CANCELLED when ``should_stop``
    says so (the executor knows whether that was a user's cancel or a shutdown)."""
    import torch

    from nst import images
    from nst.errors import Cancelled, NSTError
    from nst.params import StyleParams

    started = time.monotonic()
    deadline = started + job.timeout
    timed_out = False
    last_progress = 0.0

    def stop() -> bool:
        nonlocal timed_out
        if time.monotonic() >= deadline:
            timed_out = True
            return True
        return should_stop()

    def progress(report) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if now - last_progress >= PROGRESS_INTERVAL or report.step == report.total:
            last_progress = now
            emit(Progress.of(report))

    def preview(step: int, image) -> None:
        emit(Preview(step, _preview_jpeg(image)))

    emit(Started(device or str(model.device), attempt))
    oom = out_of_memory_errors(torch)
    try:
        params = StyleParams.from_mapping(job.params)
        # an animated GIF/WebP or a clip: every frame (the bot checked the caps before queueing; the
        # engine checks them again); a still (or a one-frame GIF) as ever
        clip = images.decode_animation(job.content, max_pixels=job.max_pixels, max_frames=params.max_frames,
                                       name="content image")
        styles = [
            images.decode_image(data, max_pixels=job.max_pixels, name=_style_name(i, len(job.styles)))
            for i, data in enumerate(job.styles)
        ]
        style = styles[0] if len(styles) == 1 else styles
        run = _run_animation if clip.animated else _run_still
        return run(model, clip, style, params, job, progress=progress, preview=preview, stop=stop)
    except Cancelled:
        if timed_out:
            return Failed(TIMEOUT, timeout_reason(job.timeout))
        return Failed(CANCELLED, "cancelled")
    except NSTError as error:
        return Failed(ERROR, str(error))
    except oom:
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
        return Failed(ERROR, OUT_OF_MEMORY)
    except Exception:  # noqa: BLE001 - a bug: logged here, a short line for the user
        log.exception("job %s failed", job.job_id)
        return Failed(ERROR, INTERNAL)


def _run_still(model, clip, style, params, job: JobPayload, *, progress, preview, stop) -> Done:
    from nst import images
    from nst.transfer import stylize

    interval = job.preview_interval
    # an upscale continues from the delivered picture (bounded like any input image)
    start = images.decode_image(job.init_image, max_pixels=job.max_pixels, name="picture to upscale") if job.init_image else None
    result = stylize(
        clip.frames[0], style, params, model=model, on_progress=progress,
        on_preview=preview if interval > 0 else None, preview_seconds=interval, should_stop=stop,
        max_memory=job.max_memory, init_image=start,
    )
    encoded = images.encode_image(result.image, max_bytes=job.max_result_bytes)
    stats = asdict(result.stats)
    stats.update(encoded_size=list(encoded.size), format=encoded.format, quality=encoded.quality)
    return Done(encoded.data, result_filename(encoded.extension), encoded.content_type, stats)


def _run_animation(model, clip, style, params, job: JobPayload, *, progress, preview, stop) -> Done:
    """Every frame (nst.stylize_animation: progress over the whole clip, a preview of each finished
    frame), then one GIF within the upload budget: fewer colours, then smaller, then fewer frames."""
    from nst import images
    from nst.animation import stylize_animation

    result = stylize_animation(
        clip, style, params, model=model, on_progress=progress,
        on_preview=preview if job.preview_interval > 0 else None, should_stop=stop,
    )
    encoded = images.encode_animation(result.animation, "gif", max_bytes=job.max_result_bytes)
    stats = asdict(result.first.stats)
    stats.update(
        seconds=result.seconds, steps=sum(result.frame_steps), size=list(result.animation.size),
        frames=len(result.animation.frames), durations=list(clip.durations),
        encoded_size=list(encoded.size), encoded_frames=encoded.frames, colours=encoded.colours,
        given_up=list(encoded.given_up), format=encoded.format,
    )
    return Done(encoded.data, result_filename(encoded.extension), encoded.content_type, stats)


def _style_name(index: int, count: int) -> str:
    return "style image" if count == 1 else f"style image {index + 1}"


def _preview_jpeg(image) -> bytes:
    small = image.convert("RGB")
    if max(small.size) > PREVIEW_SIDE:
        small = small.copy()
        small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
