"""The executor interface: jobs go in, a stream of events comes out, and the cogs never know where
the tensor work ran (local worker processes, or Celery workers on other machines).

    handle = await executor.submit(job, max_per_user=1, max_queue=20)   # may raise Refused
    async for event in handle:        # Queued, Started, Progress..., then Done, Failed or Detached
        ...
    await handle.cancel()             # queued: removed at once; running: stops within a step
    await executor.close(grace=60)    # no new jobs; running ones get `grace` seconds
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Union


@dataclass(frozen=True)
class StyleJob:
    """Everything a worker needs, and where the result goes. Images are the raw uploaded bytes."""

    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int  # the user's command message: the result replies to it
    content: bytes
    style: bytes
    params: dict[str, Any]  # StyleParams.as_dict()
    max_result_bytes: int  # the destination's upload limit
    max_pixels: int
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    submitted_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        """Loggable facts (no image bytes)."""
        return {
            "job": self.job_id,
            "user": self.user_id,
            "guild": self.guild_id,
            "epochs": self.params.get("epochs"),
            "size": self.params.get("size"),
        }


# ----------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next to start


@dataclass(frozen=True)
class Started:
    device: str


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    content_loss: float
    style_loss: float
    total_loss: float
    elapsed: float
    eta: float


@dataclass(frozen=True)
class Done:
    image: bytes
    filename: str
    content_type: str
    stats: dict[str, Any]  # nst.Stats as a dict: seconds, steps, size, device, dtype, seed, losses


# Failure kinds, so callers can word and count them.
CANCELLED, TIMEOUT, CRASHED, ERROR, SHUTDOWN = "cancelled", "timeout", "crashed", "error", "shutdown"


@dataclass(frozen=True)
class Failed:
    kind: str  # one of the constants above
    reason: str  # for the user, as is


@dataclass(frozen=True)
class Detached:
    """The bot stops following a job that goes on elsewhere (Celery); it re-attaches after a restart."""

    reason: str


Event = Union[Queued, Started, Progress, Done, Failed, Detached]
TERMINAL = (Done, Failed, Detached)


class Refused(Exception):
    """The job was not accepted (queue full, too many jobs, shutting down); str() is for the user."""


SHUTTING_DOWN = "the bot is shutting down and not taking new jobs; please try again in a few minutes"


def check_admission(mine: int, total: int, *, max_per_user: int, max_queue: int) -> None:
    """Fair use, the same for every executor: ``mine`` of the user's and ``total`` jobs queued or running."""
    if mine >= max_per_user:
        jobs = "job" if mine == 1 else "jobs"
        raise Refused(f"you already have {mine} {jobs} queued or running (the limit is {max_per_user}); wait for it or cancel it")
    if total >= max_queue:
        raise Refused(f"the queue is full ({max_queue} jobs); please try again later")


@dataclass
class JobInfo:
    """A snapshot line for !queue."""

    job_id: str
    user_id: int
    guild_id: int | None
    state: str  # "queued" or "running"
    position: int | None  # for queued jobs
    fraction: float  # progress of running jobs, 0..1
    device: str | None
    submitted_at: float


class JobHandle:
    """The caller's end of one job: an async iterator of events ending with Done or Failed."""

    def __init__(self, job: StyleJob, canceller):
        self.job = job
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._canceller = canceller
        self.finished = False
        self.last_event: Event | None = None

    def emit(self, event: Event) -> None:
        """Called by the executor on the event loop; events after the terminal one are dropped."""
        if self.finished:
            return
        if isinstance(event, TERMINAL):
            self.finished = True
        self.last_event = event
        self._events.put_nowait(event)

    async def cancel(self) -> bool:
        """Stop the job (queued: removed; running: stops within a step). False if it already ended."""
        if self.finished:
            return False
        return await self._canceller(self.job.job_id)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, TERMINAL):
                return


class Executor(Protocol):
    async def start(self) -> None:
        """Bring workers up; raise ExecutorError with a human message if they cannot start."""

    async def submit(self, job: StyleJob, *, max_per_user: int, max_queue: int) -> JobHandle:
        """Queue a job, or raise Refused. The per-user check counts queued + running jobs."""

    def jobs(self) -> list[JobInfo]:
        """Running jobs, then queued ones in order."""

    def handles_for_user(self, user_id: int) -> list[JobHandle]:
        """The user's unfinished jobs."""

    async def reattach(self, job: StyleJob) -> JobHandle | None:
        """Follow a job submitted before the bot restarted, or None if it did not survive the restart."""

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): every worker alive and ready."""

    async def close(self, grace: float = 0.0) -> None:
        """Refuse new jobs, let running ones finish for up to ``grace`` seconds, fail the rest (SHUTDOWN)."""


class ExecutorError(Exception):
    """Workers cannot run (e.g. no VGG-19 weights); str() is for the operator."""
