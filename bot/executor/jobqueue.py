"""What the bot and the Celery workers share: the Celery app, Redis key names, and the event format.

Everything in Redis and in Celery messages is JSON or raw image bytes: never pickle, so whoever can
reach Redis cannot make a worker run code. Images travel as Redis keys with a time-to-live, not
inside messages; so do results, keyed by job id, which makes a re-delivered job idempotent.

Keys (``nst:`` prefix):
    job:<id>:content / :style    uploaded image bytes
    job:<id>:result              the encoded result image (the done event carries its metadata)
    job:<id>:events              a Redis stream: started, progress, done, failed (JSON in field "e")
    job:<id>:cancel              set to stop the job (before it starts, or within a step)
    job:<id>:attempts            deliveries so far
    active                       hash job id -> JSON {user_id, guild_id, submitted_at, state}
    pending                      sorted set of job ids not started yet, by submit time (positions)
    worker:<name>                heartbeat of a live worker (expires)
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "nst:"
ACTIVE = PREFIX + "active"
PENDING = PREFIX + "pending"
WORKERS = PREFIX + "worker:"
TASK_NAME = "nst.stylize"
QUEUE = "nst"
HEARTBEAT_EVERY = 5.0
HEARTBEAT_TTL = 15


@dataclass(frozen=True)
class JobKeys:
    job_id: str

    def _key(self, part: str) -> str:
        return f"{PREFIX}job:{self.job_id}:{part}"

    @property
    def content(self) -> str:
        return self._key("content")

    @property
    def style(self) -> str:
        return self._key("style")

    @property
    def result(self) -> str:
        return self._key("result")

    @property
    def events(self) -> str:
        return self._key("events")

    @property
    def cancel(self) -> str:
        return self._key("cancel")

    @property
    def attempts(self) -> str:
        return self._key("attempts")

    def all(self) -> list[str]:
        return [self.content, self.style, self.result, self.events, self.cancel, self.attempts]


@dataclass(frozen=True)
class QueueSettings:
    """The [executor] settings both sides need."""

    redis_url: str
    key_ttl: int  # seconds images, results and events live in Redis
    visibility_timeout: int  # seconds before an unacknowledged job is handed to another worker
    max_attempts: int
    job_timeout: float
    restore_interval: int = 10  # seconds between sweeps for jobs of dead workers


def redis_url(url: str, password_file: str = "") -> str:
    """The URL with the password from ``password_file`` (a Docker secret), when one is named."""
    if not password_file:
        return url
    password = Path(password_file).expanduser().read_text(encoding="utf-8").strip()
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "")
    netloc = f"{urllib.parse.quote(user)}:{urllib.parse.quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def make_celery(settings: QueueSettings):
    """The Celery app, configured identically in the bot (to send) and in workers (to run)."""
    from celery import Celery

    app = Celery("nst", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle
        result_serializer="json",
        task_ignore_result=True,  # results travel through our own keys
        task_default_queue=QUEUE,
        task_acks_late=True,  # ack after the job ran: a worker that dies mid-job does not lose it
        task_reject_on_worker_lost=True,  # ... and the job goes back to the queue
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,  # one job at a time per worker; the next waits in Redis
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # a delivered, unacknowledged job is handed to another worker after this long:
            # it must exceed the longest job, or a slow job would run twice
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
        },
    )
    return app


def encode_event(kind: str, data: dict[str, Any] | None = None) -> dict[str, str]:
    return {"e": json.dumps({"kind": kind, **(data or {})})}


def decode_event(fields: dict) -> dict[str, Any]:
    raw = fields.get(b"e") or fields.get("e")
    return json.loads(raw)
