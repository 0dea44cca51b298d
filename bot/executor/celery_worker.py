"""``nst-worker``: a Celery worker that runs style-transfer jobs on one device.

    nst-worker --config config.toml --device cuda:0     # one per GPU, on as many machines as you like

A worker needs only an outbound connection to Redis. It takes one job at a time (prefetch 1); the
job runs in a pool process that loads VGG-19 once and keeps it warm across jobs. A job is
acknowledged only after it ended, so if its process or the whole worker dies, Redis hands it to a
worker again (at most executor.max_attempts deliveries in all). Events are jobrun's, written to the
job's stream in base.encode_event's form; the result and the latest preview go to keys beside it.
A job killed at Celery's hard time limit is failed (TIMEOUT) by the worker's main process.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import socket
import sys
import threading
import time
from typing import Any, Sequence

from .base import CANCELLED, CRASHED, ERROR, TIMEOUT, Done, Failed, Preview, encode_event, timeout_reason
from .jobqueue import (
    ACTIVE,
    HEARTBEAT_EVERY,
    HEARTBEAT_TTL,
    PENDING,
    QUEUE,
    RUNNING,
    TASK_NAME,
    WORKER_CONCURRENCY,
    WORKERS,
    JobKeys,
    make_celery,
    safe_url,
)
from .jobrun import JobPayload, run_job

log = logging.getLogger("bot.worker")

CANCEL_POLL = 0.2  # seconds between checks of a job's cancel key (a GET, while steps run)


class _State:
    """Per process: settings from the command line, the model in pool processes, a Redis client."""

    settings = None
    name = ""
    weights = ""
    device = "auto"
    threads = 0
    model = None
    redis = None


STATE = _State()


def _redis():
    if STATE.redis is None:
        import redis

        STATE.redis = redis.Redis.from_url(STATE.settings.redis_url, socket_timeout=30, health_check_interval=30)
    return STATE.redis


def load_model_in_pool_process(**_: Any) -> None:
    """worker_process_init: each pool process loads the model once, on its device."""
    import torch

    from nst.model import load_vgg19

    STATE.redis = None  # never share a connection with the parent across fork
    if STATE.threads:
        torch.set_num_threads(STATE.threads)
    try:
        STATE.model = load_vgg19(STATE.weights, device=STATE.device)
    except Exception as error:  # noqa: BLE001 - the preflight check makes this rare
        log.critical("cannot load VGG-19 on %s: %s", STATE.device, error)
        os._exit(3)
    log.info("model loaded on %s in process %d", STATE.model.device, os.getpid())


def stylize_task(job: dict, max_attempts: int) -> None:
    """The Celery task. Every way it ends is an event in the job's stream; it never raises."""
    r = _redis()
    job_id = job["job_id"]
    keys = JobKeys(job_id)
    settings = STATE.settings
    ttl = settings.key_ttl

    def emit(event) -> None:
        header, blob = encode_event(event)
        if isinstance(event, Preview):  # only the latest matters: one key, overwritten
            r.set(keys.preview, blob, ex=ttl)
        r.xadd(keys.events, {"e": header}, maxlen=5000, approximate=True)
        r.expire(keys.events, ttl)

    def end(event) -> None:
        _finish(r, keys, encode_event(event)[0], ttl)

    attempt = r.incr(keys.attempts)
    r.expire(keys.attempts, ttl)
    if r.exists(keys.cancel):
        end(Failed(CANCELLED, "cancelled before it started"))
        return
    done = r.get(keys.meta)
    if done is not None:  # an earlier delivery finished but was not acknowledged: say so again
        _finish(r, keys, done, ttl)
        return
    if attempt > max_attempts:
        end(Failed(CRASHED, f"the job stopped its worker {attempt - 1} times and will not be tried again"))
        return
    r.zrem(PENDING, job_id)
    entry = r.hget(ACTIVE, job_id)
    if entry is not None:
        running = {**json.loads(entry), "state": RUNNING, "device": str(STATE.model.device), "started_at": time.time(),
                   "expires_at": settings.running_expiry(time.time())}  # fmt: skip
        r.hset(ACTIVE, job_id, json.dumps(running))
    content, styles = r.get(keys.content), r.lrange(keys.styles, 0, -1)
    if content is None or not styles:
        end(Failed(ERROR, "the images expired before a worker was free; please send them again"))
        return
    checked = 0.0

    def should_stop() -> bool:
        nonlocal checked
        now = time.monotonic()
        if now - checked >= CANCEL_POLL:
            checked = now
            return bool(r.exists(keys.cancel))
        return False

    init_image = r.get(keys.init_image) or b""  # an upscale's starting picture, set with the images
    outcome = run_job(STATE.model, JobPayload.from_message(job, content, styles, init_image), emit=emit, should_stop=should_stop,
                      device=f"{STATE.model.device} on {STATE.name}", attempt=attempt)  # fmt: skip
    if isinstance(outcome, Done):
        header, image = encode_event(outcome)
        r.set(keys.result, image, ex=ttl)
        r.set(keys.meta, header, ex=ttl)  # from here on, a re-delivery just reports this
    end(outcome)


def on_task_failure(sender=None, task_id=None, exception=None, kwargs=None, **_: Any) -> None:
    """task_failure in the worker's main process: a job killed at the hard time limit sent no event
    (its process is gone), so say it here and free its slot."""
    from celery.exceptions import TimeLimitExceeded

    if not isinstance(exception, TimeLimitExceeded) or not task_id:
        return
    timeout = (kwargs or {}).get("timeout") or STATE.settings.job_timeout
    r = _redis()
    keys = JobKeys(task_id)
    log.warning("job %s hit the hard time limit; its process was killed", task_id)
    r.set(keys.cancel, "1", ex=STATE.settings.key_ttl)  # a re-delivery must not run it again
    _finish(r, keys, encode_event(Failed(TIMEOUT, timeout_reason(timeout)))[0], STATE.settings.key_ttl)


def _finish(r, keys: JobKeys, header, ttl: int) -> None:
    """The job is over: in one transaction, free its images and its place in the shared bookkeeping
    and add its terminal event (whoever sees the event sees the slot free)."""
    with r.pipeline(transaction=True) as pipe:
        pipe.delete(keys.content, keys.styles, keys.init_image, keys.preview)
        pipe.hdel(ACTIVE, keys.job_id)
        pipe.zrem(PENDING, keys.job_id)
        pipe.xadd(keys.events, {"e": header}, maxlen=5000, approximate=True)
        pipe.expire(keys.events, ttl)
        pipe.execute()


class Heartbeat:
    """A key that expires unless refreshed: the bot's /healthz counts live workers by it, and its
    dispatcher sends as many jobs as the live workers' concurrency allows."""

    def __init__(self, name: str, device: str, concurrency: int = WORKER_CONCURRENCY):
        self.key = WORKERS + name
        self.value = json.dumps({"name": name, "device": device, "pid": os.getpid(), "since": time.time(),
                                 "concurrency": concurrency})
        self._stop = threading.Event()

    def start(self, **_: Any) -> None:
        threading.Thread(target=self._beat, name="nst-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                _redis().set(self.key, self.value, ex=HEARTBEAT_TTL)
            except Exception as error:  # noqa: BLE001 - Redis briefly away: try again next beat
                log.warning("heartbeat failed: %s", error)
            self._stop.wait(HEARTBEAT_EVERY)

    def stop(self, **_: Any) -> None:
        self._stop.set()
        try:
            _redis().delete(self.key)
        except Exception:  # noqa: BLE001
            pass


def _preflight(weights: str, device: str, queue) -> None:
    try:
        from nst.model import load_vgg19

        model = load_vgg19(weights, device=device)
        queue.put(("ok", str(model.device)))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        queue.put(("error", str(error)))


def preflight(weights: str, device: str) -> tuple[bool, str]:
    """Load the model once in a throw-away process: a bad device or weights file stops start-up with
    the reason, and the worker's own process never initialises CUDA before its pool forks."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_preflight, args=(weights, device, queue))
    process.start()
    try:
        status, detail = queue.get(timeout=600)
    except Exception:  # noqa: BLE001
        status, detail = "error", f"the check process died (exit code {process.exitcode})"
    process.join(30)
    return status == "ok", detail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst-worker", description="A Celery worker for style-transfer jobs (one per device).")
    parser.add_argument("--config", default="config.toml", help="the bot's TOML config (engine and executor sections)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: engine.devices[0])")
    parser.add_argument("--name", default=None, help="worker name (default: nst-<device>@<hostname>)")
    args = parser.parse_args(argv)

    from ..config import load_or_report, queue_settings
    from ..logs import setup_logging

    loaded = load_or_report(args.config, queue_settings)
    if loaded is None:
        return 2
    config, settings = loaded
    setup_logging(config.bot.log_level, config.bot.log_json, secrets=[settings.redis_url])
    STATE.settings = settings
    STATE.weights = config.engine.weights
    STATE.device = args.device or config.engine.devices[0]
    STATE.threads = config.engine.cpu_threads
    ok, detail = preflight(STATE.weights, STATE.device)
    if not ok:
        print(f"error: {detail}", file=sys.stderr)
        return 2
    name = (args.name or f"nst-{detail.replace(':', '')}@%h").replace("%h", socket.gethostname())
    STATE.name = name
    log.info("worker %s on %s, queue %r at %s", name, detail, QUEUE, safe_url(settings.redis_url))

    from celery.signals import task_failure, worker_process_init, worker_ready, worker_shutdown

    app = make_celery(settings)
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)(stylize_task)
    heartbeat = Heartbeat(name, detail)
    worker_process_init.connect(load_model_in_pool_process, weak=False)
    task_failure.connect(on_task_failure, weak=False)
    worker_ready.connect(heartbeat.start, weak=False)
    worker_shutdown.connect(heartbeat.stop, weak=False)
    app.worker_main([
        "worker", "--pool=prefork", f"--concurrency={WORKER_CONCURRENCY}", "--prefetch-multiplier=1", f"--queues={QUEUE}",
        "--without-gossip", "--without-mingle", f"--hostname={name}", f"--loglevel={config.bot.log_level.upper()}",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
