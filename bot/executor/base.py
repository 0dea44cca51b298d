"""The executor interface: jobs go in, a stream of events comes out, and the cogs never know where
the tensor work ran (local worker processes, or Celery workers on other machines).

    handle = await executor.submit(job, max_per_user=1, max_queue=20)   # may raise Refused
    async for event in handle:        # Queued, Started, Progress/Preview..., then Done, Failed or Detached
        ...
    await handle.cancel()             # queued: removed at once; running: stops within a step
    await executor.close(grace=60)    # no new jobs; running ones get `grace` seconds

Events, the same from both executors (the worker side, jobrun.run_job, produces them itself):

    Queued(position, starts_in)        waiting; 1 = next to start; starts_in: the estimated seconds
                                       until it starts (None: no estimate). Sent again when either
                                       changes meaningfully (worth_announcing)
    Started(device, attempt)           a worker took it; attempt > 1 after a worker died (Celery)
    Progress(step, total, ...)         every field of nst.Progress, carried as is (losses, elapsed,
                                       eta, level/levels, ...): at most one per PROGRESS_INTERVAL
    Preview(step, image)               a small JPEG of the picture so far (PREVIEW_SIDE px), every
                                       bot.preview_interval seconds; only the latest one matters
    Done(image, filename, content_type, stats)           terminal: the result and nst.Stats as a dict
    Failed(kind, reason)               terminal: kind is one of CANCELLED, TIMEOUT, CRASHED, ERROR,
                                       SHUTDOWN; reason is for the user, as is
    Detached(reason)                   terminal for this bot process: the job goes on elsewhere
                                       (Celery) and is re-attached after a restart

On the wire (the local workers' pipe, the Celery workers' Redis stream) an event is a JSON header
plus, for Done and Preview, the image bytes beside it: encode_event / decode_event below are the
only code that turns one into the other.

The executors keep the queue but do not decide its order: whoever runs the bot hands them an
:data:`Order` (``executor.set_order``), which ranks the waiting jobs, as :class:`QueueEntry` values,
and estimates each one's start. Without one they take jobs first come, first served
(:func:`arrival_order`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol, Sequence, Union


@dataclass(frozen=True)
class StyleJob:
    """Everything a worker needs, and where the result goes. Images are the raw uploaded bytes:
    one content image and one or more style images (several are blended)."""

    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int  # the user's command message: the result replies to it
    content: bytes
    styles: tuple[bytes, ...]
    params: dict[str, Any]  # StyleParams.as_dict()
    max_result_bytes: int  # the destination's upload limit
    max_pixels: int
    max_memory: int | str | None = None  # the step's memory budget (engine.max_memory; None: the device's default)
    init_image: bytes = b""  # a finished picture to continue from (Upscale ×2), or none
    work: float = 0.0  # planned pixel-steps (bot.core.scheduling.planned_work), for the order; 0: unknown
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    submitted_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "styles", tuple(self.styles))

    def describe(self) -> dict[str, Any]:
        """Loggable facts (no image bytes)."""
        return {
            "job": self.job_id,
            "user": self.user_id,
            "guild": self.guild_id,
            "epochs": self.params.get("epochs"),
            "size": self.params.get("size"),
            "styles": len(self.styles),
        }


# ----------------------------------------------------------------------------------------- events

PROGRESS_INTERVAL = 0.5  # seconds between progress events: the status message edits far less often
PREVIEW_SIDE = 256  # longest side of a preview image, in pixels
PREVIEW_FILENAME = "preview.jpg"
RESULT_STEM = "stylized"  # the result is posted as stylized.png / .jpg / .webp


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next to start
    starts_in: float | None = None  # estimated seconds until it starts; None: no estimate; inf: no worker online


@dataclass(frozen=True)
class Started:
    device: str
    attempt: int = 1


class Progress:
    """One optimisation step, as nst reports it: every field of ``nst.Progress`` (step, total,
    content_loss, style_loss, tv_loss, total_loss, elapsed, eta, and whatever nst adds, such as
    level/levels), read as attributes. Built from the engine's object, never copied by hand."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any):
        if "step" not in values or "total" not in values:
            raise TypeError("Progress needs at least step and total")
        object.__setattr__(self, "_values", dict(values))

    @classmethod
    def of(cls, progress: Any) -> "Progress":
        """From an ``nst.Progress`` (any dataclass): all of its fields."""
        return cls(**dataclasses.asdict(progress))

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_values")[name]
        except KeyError:
            raise AttributeError(f"Progress has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Progress) and other._values == self._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return "Progress(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def __reduce__(self):
        return (_progress, (self._values,))

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


def _progress(values: dict[str, Any]) -> Progress:
    return Progress(**values)


@dataclass(frozen=True)
class Preview:
    step: int
    image: bytes  # JPEG, at most PREVIEW_SIDE pixels on its longest side

    content_type = "image/jpeg"
    filename = PREVIEW_FILENAME


@dataclass(frozen=True)
class Done:
    image: bytes
    filename: str
    content_type: str
    stats: dict[str, Any]  # nst.Stats as a dict: seconds, steps, size, device, dtype, seed, losses


# Failure kinds, so callers can word and count them.
CANCELLED, TIMEOUT, CRASHED, ERROR, SHUTDOWN = "cancelled", "timeout", "crashed", "error", "shutdown"
FAILURE_KINDS = (CANCELLED, TIMEOUT, CRASHED, ERROR, SHUTDOWN)


@dataclass(frozen=True)
class Failed:
    kind: str  # one of FAILURE_KINDS
    reason: str  # for the user, as is


@dataclass(frozen=True)
class Detached:
    """The bot stops following a job that goes on elsewhere (Celery); it re-attaches after a restart."""

    reason: str


Event = Union[Queued, Started, Progress, Preview, Done, Failed, Detached]
TERMINAL = (Done, Failed, Detached)

_TYPES: dict[str, type] = {
    "queued": Queued, "started": Started, "progress": Progress, "preview": Preview,
    "done": Done, "failed": Failed, "detached": Detached,
}  # fmt: skip
_NAMES = {cls: name for name, cls in _TYPES.items()}


def encode_event(event: Event) -> tuple[str, bytes | None]:
    """(JSON header, image bytes or None): the one wire form of an event, for pipes and Redis alike."""
    if isinstance(event, Progress):
        values = event.as_dict()
    else:
        values = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    blob = values.pop("image", None)
    return json.dumps({"type": _NAMES[type(event)], **values}), blob


def decode_event(header: str | bytes, blob: bytes | None = None) -> Event:
    """The inverse of encode_event. Unknown failure kinds read as ERROR (a newer worker, an older bot)."""
    values = json.loads(header)
    cls = _TYPES[values.pop("type")]
    if cls is Failed and values.get("kind") not in FAILURE_KINDS:
        values["kind"] = ERROR
    if cls in (Done, Preview):
        values["image"] = blob if blob is not None else b""
    if cls is Progress:
        return Progress(**values)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def result_filename(extension: str) -> str:
    """``.png`` -> ``stylized.png``."""
    return RESULT_STEM + extension


def timeout_reason(seconds: float) -> str:
    """The one wording of a job stopped by caps.job_timeout."""
    return f"stopped: it ran past the time limit of {format_duration(seconds)}"


def format_duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


SHUTDOWN_QUEUED = "the bot shut down before your job started; please send it again later"
SHUTDOWN_RUNNING = "the bot shut down while your job was running; please send it again later"


class Refused(Exception):
    """The job was not accepted (queue full, too many jobs, shutting down); str() is for the user."""


SHUTTING_DOWN = "the bot is shutting down and not taking new jobs; please try again in a few minutes"


def check_admission(mine: int, total: int, *, max_per_user: int, max_queue: int) -> None:
    """Fair use, the same for every executor: ``mine`` of the user's and ``total`` jobs queued or running."""
    if mine >= max_per_user or total >= max_queue:
        raise admission_refusal(mine, total, max_per_user=max_per_user, max_queue=max_queue)


def admission_refusal(mine: int, total: int, *, max_per_user: int, max_queue: int) -> Refused:
    """Why a job over one of check_admission's two limits is refused (the user's own limit first)."""
    if mine >= max_per_user:
        jobs = "job" if mine == 1 else "jobs"
        return Refused(f"you already have {mine} {jobs} queued or running (the limit is {max_per_user}); wait for it or cancel it")
    return Refused(f"the queue is full ({max_queue} jobs); please try again later")


# ------------------------------------------------------------------------------------------- order

@dataclass(frozen=True)
class QueueEntry:
    """A job as the order sees it: waiting, or running (``started_at`` set)."""

    job_id: str
    user_id: int
    guild_id: int | None
    submitted_at: float
    work: float  # planned pixel-steps; 0: unknown
    started_at: float | None = None  # wall clock, once a worker took it
    remaining: float | None = None  # seconds left by the running job's own progress ETA, once it reported one


@dataclass(frozen=True)
class Placement:
    """A waiting job's place in the order, and its estimated start."""

    job_id: str
    position: int  # 1 = next to start
    starts_in: float | None = None  # seconds from now; None: no estimate; inf: no worker online


# (waiting, running, workers) -> every waiting job's placement, the next to start first. Synchronous
# and cheap: the local executor asks it whenever a worker frees and to refresh the announced positions.
Order = Callable[[Sequence[QueueEntry], Sequence[QueueEntry], int], list[Placement]]


def arrival_order(waiting: Sequence[QueueEntry], running: Sequence[QueueEntry], workers: int) -> list[Placement]:
    """First come, first served, without estimates: the order when nobody set one."""
    ranked = sorted(waiting, key=lambda entry: (entry.submitted_at, entry.job_id))
    return [Placement(entry.job_id, position) for position, entry in enumerate(ranked, start=1)]


ETA_CHANGE = 0.2  # an estimate is announced again once it moved by more than this share of itself...
ETA_CHANGE_SECONDS = 10.0  # ... and by more than this (a status edit is not worth a few seconds)


def worth_announcing(before: Queued | None, after: Queued) -> bool:
    """Whether a queued job's users should see ``after``, having seen ``before``: a new position, an
    estimate that appears, disappears or moved meaningfully; not every tick of the clock."""
    if before is None or before.position != after.position:
        return True
    old, new = before.starts_in, after.starts_in
    if _estimate_kind(old) != _estimate_kind(new):
        return True
    return _estimate_kind(new) == "finite" and abs(new - old) > max(ETA_CHANGE_SECONDS, ETA_CHANGE * old)


def _estimate_kind(seconds: float | None) -> str:
    return "none" if seconds is None else "never" if math.isinf(seconds) else "finite"


def ordered(order: Order, waiting: Sequence[QueueEntry], running: Sequence[QueueEntry], workers: int,
            log: Any) -> list[Placement]:
    """``order``'s placements, or first come, first served when it fails (a bug there must never stop
    the queue) or leaves a waiting job out."""
    try:
        placements = order(waiting, running, workers)
    except Exception:  # noqa: BLE001 - logged; the queue goes on in arrival order
        log.exception("the queue order failed; taking jobs in arrival order")
        return arrival_order(waiting, running, workers)
    if sorted(p.job_id for p in placements) != sorted(e.job_id for e in waiting):
        log.error("the queue order did not place every waiting job; taking jobs in arrival order")
        return arrival_order(waiting, running, workers)
    return placements


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
    starts_in: float | None = None  # queued jobs: the estimated seconds until it starts (None: no estimate)


class JobHandle:
    """The caller's end of one job: an async iterator of events ending with Done or Failed."""

    def __init__(self, job: StyleJob, canceller):
        self.job = job
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._canceller = canceller
        self.finished = False
        self.last_progress: Progress | None = None

    def emit(self, event: Event) -> None:
        """Called by the executor on the event loop; events after the terminal one are dropped."""
        if self.finished:
            return
        if isinstance(event, TERMINAL):
            self.finished = True
        if isinstance(event, Progress):
            self.last_progress = event
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
    restarts: int  # workers replaced after dying (/metrics); 0 for executors whose workers are not theirs

    async def start(self) -> None:
        """Bring workers up; raise ExecutorError with a human message if they cannot start."""

    async def submit(self, job: StyleJob, *, max_per_user: int, max_queue: int) -> JobHandle:
        """Queue a job, or raise Refused. The per-user check counts queued + running jobs."""

    def set_order(self, order: Order) -> None:
        """Rank the waiting jobs with ``order`` from now on (the default: arrival_order)."""

    def jobs(self) -> list[JobInfo]:
        """Running jobs, then queued ones in order."""

    async def cancel(self, job_id: str) -> bool:
        """Stop a job (queued: removed; running: stops within a step); JobHandle.cancel calls it. False if
        it already ended."""

    async def reattach(self, job: StyleJob) -> JobHandle | None:
        """Follow a job submitted before the bot restarted, or None if it did not survive the restart."""

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): every worker alive and ready."""

    async def close(self, grace: float = 0.0) -> None:
        """Refuse new jobs, let running ones finish for up to ``grace`` seconds, fail the rest (SHUTDOWN)."""

    def hurry(self) -> None:
        """A second signal: cut close()'s waits short; users are still told, within a second or two."""


class ExecutorError(Exception):
    """Workers cannot run (e.g. no VGG-19 weights); str() is for the operator."""
