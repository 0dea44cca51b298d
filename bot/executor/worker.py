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
from dataclasses import asdict, dataclass
from typing import Any

from .jobrun import Finished, run_job

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
    def event(kind: str, payload: Any = None) -> None:
        _send(conn, ("event", seq, kind, payload))

    event("started", {"device": str(model.device)})
    outcome = run_job(
        model, job, on_progress=lambda payload: event("progress", payload), should_stop=lambda: cancel_token.value == seq
    )
    if isinstance(outcome, Finished):
        event("done", asdict(outcome))
    else:
        event("failed", {"kind": outcome.kind, "reason": outcome.reason})
