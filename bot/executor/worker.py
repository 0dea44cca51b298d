"""A worker process: loads VGG-19 once on its device, then runs jobs it receives over a pipe.

Runs in a child process that local.worker_context starts: forked from a fork server that has only
imported torch and the engine (Linux), or spawned (elsewhere); either is safe with CUDA, which
only the worker itself initialises. It uses the engine only, never discord. Messages to the
parent (all tuples, first item the kind):
    ("ready", {"device": ..., "dtype": ...})      model loaded
    ("fatal", message)                            cannot run at all (e.g. no weights)
    ("event", seq, header, blob)                  one of the job's events, as base.encode_event makes it

It dies with the bot: a watchdog thread exits the process when the bot's end of a dedicated pipe
(the lifeline) closes, which the OS does when the bot dies however it dies. On Linux the kernel also
kills it when its parent dies (PR_SET_PDEATHSIG): the bot for a spawned worker, the fork server for a
forked one (the server itself outlives the bot until its workers have gone).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass

from .base import encode_event
from .jobrun import JobPayload, run_job

log = logging.getLogger("bot.worker")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class WorkerSpec:
    device: str
    weights: str
    threads: int = 0  # 0: torch's default
    log_level: str = "INFO"
    log_json: bool = False
    precision: str = "auto"  # engine.precision: only for the dtype reported as ready
    parent_pid: int = 0  # the bot, when it is this process's parent (spawn); 0: not checked (forked by a server)


def run_worker(conn, cancel_token, spec: WorkerSpec, lifeline=None) -> None:
    """Entry point of the child process. ``lifeline`` is the read end of a pipe whose write end only
    the parent holds: EOF on it means the parent is gone."""
    # Ctrl-C reaches the whole process group; the parent decides how jobs end, so ignore it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(spec.parent_pid, lifeline)
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

    dtype = compute_dtype(model.device, spec.precision)
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


def die_with_parent(parent_pid: int, lifeline) -> None:
    """Make sure this process does not outlive the bot (a SIGKILLed bot runs no clean-up)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (e.g. musl without it): the watchdog still works
            pass
    if parent_pid and os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if lifeline is not None:
        threading.Thread(target=_watch_lifeline, args=(lifeline,), name="nst-parent-watchdog", daemon=True).start()


def _watch_lifeline(lifeline) -> None:
    try:
        lifeline.recv()  # the parent never writes: this returns only by EOF when its end closes
    except (EOFError, OSError):
        pass
    os._exit(1)


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


def _run_job(conn, cancel_token, seq: int, job: JobPayload, model) -> None:
    def emit(event) -> None:
        _send(conn, ("event", seq, *encode_event(event)))

    emit(run_job(model, job, emit=emit, should_stop=lambda: cancel_token.value == seq))
