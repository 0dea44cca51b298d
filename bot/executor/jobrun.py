"""Running one job inside a worker process: decode, stylize, encode, and every way that can end.

Shared by the local worker processes (worker.py) and the Celery workers (celery_worker.py), which
differ only in how events travel back to the bot. Imports the engine only, never discord.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

PROGRESS_INTERVAL = 0.5  # seconds between progress events: the status message edits far less often

log = logging.getLogger("bot.worker")


@dataclass(frozen=True)
class Finished:
    """The encoded result and the stats the bot's timing line needs."""

    image: bytes
    extension: str
    content_type: str
    stats: dict[str, Any]


@dataclass(frozen=True)
class Stopped:
    """The job did not finish: kind "cancelled" (should_stop said so) or "error", and a reason for the user."""

    kind: str
    reason: str


def run_job(
    model,
    job: dict[str, Any],
    *,
    on_progress: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
) -> Finished | Stopped:
    """``job`` holds content, style (bytes), params, max_result_bytes, max_pixels and job_id.
    ``on_progress`` receives at most one progress payload per PROGRESS_INTERVAL, and the last step."""
    import torch

    from nst import images
    from nst.errors import Cancelled, NSTError
    from nst.params import StyleParams
    from nst.transfer import stylize

    last_sent = 0.0

    def throttled(progress) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if now - last_sent >= PROGRESS_INTERVAL or progress.step == progress.total:
            last_sent = now
            on_progress(
                {
                    "step": progress.step,
                    "total": progress.total,
                    "content_loss": progress.content_loss,
                    "style_loss": progress.style_loss,
                    "total_loss": progress.total_loss,
                    "elapsed": progress.elapsed,
                    "eta": progress.eta,
                }
            )

    try:
        result = stylize(
            images.decode_image(job["content"], max_pixels=job["max_pixels"], name="content image"),
            images.decode_image(job["style"], max_pixels=job["max_pixels"], name="style image"),
            StyleParams.from_mapping(job["params"]),
            model=model,
            on_progress=throttled,
            should_stop=should_stop,
        )
        encoded = images.encode_image(result.image, max_bytes=job["max_result_bytes"])
    except Cancelled:
        return Stopped("cancelled", "cancelled")
    except NSTError as error:
        return Stopped("error", str(error))
    except torch.OutOfMemoryError:
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
        return Stopped("error", "ran out of memory at this size; try a smaller --size")
    except Exception:  # noqa: BLE001 - a bug: logged here, a short line for the user
        log.exception("job %s failed", job.get("job_id"))
        return Stopped("error", "an internal error stopped this job; the operator can find it in the logs")
    stats = asdict(result.stats)
    stats.update(encoded_size=list(encoded.size), format=encoded.format, quality=encoded.quality)
    return Finished(encoded.data, encoded.extension, encoded.content_type, stats)
