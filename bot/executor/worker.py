"""A worker process: loads VGG-19 once on its device, then runs jobs it receives over a pipe.

Runs in a child process started with the 'spawn' method (safe with CUDA). It imports the engine
only, never discord. Messages to the parent (all tuples, first item the kind):
    ("ready", {"device": ..., "dtype": ...})      model loaded
    ("fatal", message)                            cannot run at all (e.g. no weights)
    ("event", seq, "started" | "progress" | "done" | "failed", payload)
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

PROGRESS_INTERVAL = 0.5  # seconds between progress messages: the status message edits far less often

log = logging.getLogger("bot.worker")


@dataclass(frozen=True)
class WorkerSpec:
    device: str
    weights: str
    threads: int = 0  # 0: torch's default
    log_level: str = "INFO"
    log_json: bool = False


def run_worker(conn, cancel_token, spec: WorkerSpec) -> None:
    """Entry point of the child process."""
    # Ctrl-C reaches the whole process group; the parent decides how jobs end, so ignore it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..logs import setup_logging

    setup_logging(spec.log_level, spec.log_json)
    try:
        model = _load(spec)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which refuses to start
        from nst.errors import NSTError

        message = str(error) if isinstance(error, NSTError) else f"the worker could not start: {error!r}"
        _send(conn, ("fatal", message))
        return
    from nst.model import compute_dtype

    dtype = compute_dtype(model.device, "auto")
    _send(conn, ("ready", {"device": str(model.device), "dtype": str(dtype or "float32").replace("torch.", "")}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        _, seq, job = message
        _run_job(conn, cancel_token, seq, job, model)


def _load(spec: WorkerSpec):
    import torch

    from nst.model import load_vgg19

    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    return load_vgg19(spec.weights, device=spec.device)


def _send(conn, message) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass  # the parent is gone; the next recv ends the loop


def _run_job(conn, cancel_token, seq: int, job: dict[str, Any], model) -> None:
    import torch

    from nst import images
    from nst.errors import Cancelled, NSTError
    from nst.params import StyleParams
    from nst.transfer import stylize

    def event(kind: str, payload: Any = None) -> None:
        _send(conn, ("event", seq, kind, payload))

    last_sent = 0.0

    def on_progress(progress) -> None:
        nonlocal last_sent
        now = time.monotonic()
        if now - last_sent >= PROGRESS_INTERVAL or progress.step == progress.total:
            last_sent = now
            event(
                "progress",
                {
                    "step": progress.step,
                    "total": progress.total,
                    "content_loss": progress.content_loss,
                    "style_loss": progress.style_loss,
                    "total_loss": progress.total_loss,
                    "elapsed": progress.elapsed,
                    "eta": progress.eta,
                },
            )

    event("started", {"device": str(model.device)})
    try:
        content = images.decode_image(job["content"], max_pixels=job["max_pixels"], name="content image")
        style = images.decode_image(job["style"], max_pixels=job["max_pixels"], name="style image")
        params = StyleParams.from_mapping(job["params"])
        result = stylize(
            content,
            style,
            params,
            model=model,
            on_progress=on_progress,
            should_stop=lambda: cancel_token.value == seq,
        )
        encoded = images.encode_image(result.image, max_bytes=job["max_result_bytes"])
    except Cancelled as stop:
        event("failed", {"kind": "cancelled", "reason": str(stop)})
        return
    except NSTError as error:
        event("failed", {"kind": "error", "reason": str(error)})
        return
    except torch.OutOfMemoryError:
        _free_memory(model)
        event("failed", {"kind": "error", "reason": "ran out of memory at this size; try a smaller --size"})
        return
    except Exception:  # noqa: BLE001 - a bug: log it here, tell the user something short
        log.error("job %s failed:\n%s", job.get("job_id"), traceback.format_exc())
        event("failed", {"kind": "error", "reason": "an internal error stopped this job; the operator can find it in the logs"})
        return
    stats = asdict(result.stats)
    stats["encoded_size"] = list(encoded.size)
    stats["format"] = encoded.format
    stats["quality"] = encoded.quality
    event("done", {"image": encoded.data, "extension": encoded.extension, "content_type": encoded.content_type, "stats": stats})


def _free_memory(model) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.empty_cache()
