"""Celery executor: jobs go to a durable queue in Redis; GPU workers anywhere run them.

The bot stores the images and the task's message as Redis keys and holds the job there; its
dispatcher sends the task to the broker only when a worker slot is free, the job the order ranks
first (jobqueue.py: one bot process dispatches at a time, under a short lock, so the order holds
with many bots, many workers and across restarts). It follows each job's event stream
(one XREAD for all its jobs). Events are base.py's, in base.encode_event's wire form; the images of
Done and Preview events live in keys beside the stream (jobqueue.py). Jobs outlive the bot: on
restart it re-attaches to the ones it recorded and posts their results where they belong.

Admission (the per-user and queue limits) is one Redis script: check and insert are atomic, so
several bot processes, or two commands at once, cannot both take the last slot. Every entry in the
shared bookkeeping expires: a job that ended without a word (a worker killed at Celery's hard time
limit, say) is failed and its slot freed by the next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid

from .base import (
    CANCELLED,
    CRASHED,
    ERROR,
    SHUTTING_DOWN,
    Detached,
    Done,
    ExecutorError,
    Failed,
    JobHandle,
    JobInfo,
    Order,
    Placement,
    Preview,
    Progress,
    Queued,
    QueueEntry,
    Refused,
    Started,
    StyleJob,
    admission_refusal,
    arrival_order,
    decode_event,
    encode_event,
    ordered,
    worth_announcing,
)
from .jobrun import JobPayload
from .jobqueue import (
    ACTIVE,
    ADMIT_SCRIPT,
    DISPATCH_LOCK,
    DISPATCH_LOCK_MS,
    EXPIRED_REASON,
    HELD,
    PENDING,
    PREFIX,
    QUEUE,
    SENT,
    SWAP_SCRIPT,
    SWEEP_SCRIPT,
    TASK_NAME,
    UNLOCK_SCRIPT,
    WORKER_CONCURRENCY,
    WORKERS,
    JobKeys,
    QueueSettings,
    make_celery,
    safe_url,
)

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
REFRESH_EVERY = 1.0  # seconds between reads of the shared queue (positions, !queue, health, sweep)
DETACHED = "the bot is restarting; your job goes on, and its result will be posted here when the bot is back"


class _Followed:
    def __init__(self, handle: JobHandle, last_id: str = "0-0"):
        self.handle = handle
        self.last_id = last_id
        self.started = False
        self.announced: Queued | None = None


class CeleryExecutor:
    def __init__(self, settings: QueueSettings):
        self.settings = settings
        self.restarts = 0  # workers are not ours to restart; kept for /metrics
        self._redis = None
        self._celery = None
        self._admit = None
        self._sweep = None
        self._swap = None
        self._unlock = None
        self._order: Order = arrival_order
        self._token = uuid.uuid4().hex  # this process's mark on the dispatch lock
        self._followed: dict[str, _Followed] = {}
        self._reader: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._snapshot: list[JobInfo] = []
        self._workers: dict[str, int] = {}  # live worker -> its concurrency
        self._redis_ok = False
        self._closing = False

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, health_check_interval=30)
        try:
            await self._redis.ping()
        except Exception as error:  # noqa: BLE001 - any connection problem ends start-up with its reason
            await self._redis.aclose()
            raise ExecutorError(f"cannot reach Redis at {safe_url(self.settings.redis_url)}: {error}") from None
        self._admit = self._redis.register_script(ADMIT_SCRIPT)
        self._sweep = self._redis.register_script(SWEEP_SCRIPT)
        self._swap = self._redis.register_script(SWAP_SCRIPT)
        self._unlock = self._redis.register_script(UNLOCK_SCRIPT)
        self._celery = make_celery(self.settings)
        await self._refresh()
        self._reader = asyncio.create_task(self._read_events(), name="nst-events")
        log.info("jobs go to Celery through %s; %d worker(s) alive", safe_url(self.settings.redis_url), len(self._workers))

    async def close(self, grace: float = 0.0) -> None:
        """Jobs keep running on the workers: wait up to ``grace`` for the ones we follow (hurry() ends
        the wait), then let go of the rest (they are re-attached when the bot is back)."""
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + grace
        while self._followed and time.monotonic() < deadline and not self._hurry.is_set():
            await asyncio.sleep(0.2)
        for job_id, followed in list(self._followed.items()):
            followed.handle.emit(Detached(DETACHED))
            self._followed.pop(job_id, None)
        # bounded: a Redis that went away must not hold up the bot's shutdown
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=5)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), 5)
        if self._celery is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._celery.close), 5)

    def hurry(self) -> None:
        """Stop waiting for followed jobs (a second signal): they go on and are re-attached later."""
        self._hurry.set()

    # ------------------------------------------------------------------------------ jobs

    async def submit(self, job: StyleJob, *, max_per_user: int, max_queue: int) -> JobHandle:
        if self._closing:
            raise Refused(SHUTTING_DOWN)
        settings = self.settings
        entry = {
            "user_id": job.user_id,
            "user": str(job.user_id),  # matched as text in the script: ids exceed Lua's exact integers
            "guild_id": job.guild_id,
            "submitted_at": job.submitted_at,
            "work": job.work,
            "state": HELD,  # sent by the dispatcher when a worker slot is free
            "expires_at": settings.queued_expiry(time.time()),
        }
        admitted, mine, total = await self._admit(
            keys=[ACTIVE, PENDING],
            args=[*self._sweep_args(), job.job_id, str(job.user_id), max_per_user, max_queue,
                  json.dumps(entry), job.submitted_at],
        )  # fmt: skip
        if not admitted:  # the script applies check_admission's two limits atomically, on the counts it returns
            raise admission_refusal(int(mine), int(total), max_per_user=max_per_user, max_queue=max_queue)
        keys = JobKeys(job.job_id)
        ttl = settings.key_ttl
        payload = JobPayload.of(job, timeout=settings.job_timeout, preview_interval=settings.preview_interval)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.content, job.content, ex=ttl)
                pipe.delete(keys.styles)
                pipe.rpush(keys.styles, *job.styles)
                pipe.expire(keys.styles, ttl)
                if job.init_image:  # an upscale's starting picture
                    pipe.set(keys.init_image, job.init_image, ex=ttl)
                pipe.set(keys.task, json.dumps(payload.message()), ex=ttl)  # what the dispatcher sends
                await pipe.execute()
        except Exception as error:  # noqa: BLE001 - nothing queued: undo the bookkeeping and refuse
            with contextlib.suppress(Exception):
                await self._forget_job(keys)
            log.error("could not queue job %s: %s", job.job_id, error)
            raise Refused("the job queue is unavailable right now; please try again later") from None
        handle = JobHandle(job, self.cancel)
        self._follow(handle)
        try:
            await self._refresh()  # announces its place, and sends it at once if a worker slot is free
        except Exception as error:  # noqa: BLE001 - it is queued: the reader's next refresh sends it
            log.warning("could not refresh the queue after job %s: %s", job.job_id, error)
        return handle

    def set_order(self, order: Order) -> None:
        self._order = order

    async def reattach(self, job: StyleJob) -> JobHandle | None:
        """Follow a job submitted before a restart, replaying its events; None if Redis forgot it."""
        keys = JobKeys(job.job_id)
        if not await self._redis.exists(keys.events) and not await self._redis.hexists(ACTIVE, job.job_id):
            return None
        handle = JobHandle(job, self.cancel)
        self._follow(handle)
        await self._refresh()
        return handle

    async def cancel(self, job_id: str) -> bool:
        followed = self._followed.get(job_id)
        keys = JobKeys(job_id)
        await self._redis.set(keys.cancel, "1", ex=self.settings.key_ttl)  # workers check it before and during
        if await self._redis.zrem(PENDING, job_id):  # it had not started: it never will
            await self._forget_job(keys)
            if followed is not None:
                followed.handle.emit(Failed(CANCELLED, "cancelled before it started"))
                self._followed.pop(job_id, None)
        return True

    def jobs(self) -> list[JobInfo]:
        return list(self._snapshot)

    def health(self) -> tuple[bool, str]:
        if not self._redis_ok:
            return False, f"cannot reach Redis at {safe_url(self.settings.redis_url)}"
        if not self._workers:
            return False, "no Celery worker is alive"
        return True, f"{len(self._workers)} worker(s) alive: {', '.join(sorted(self._workers))}"

    # ------------------------------------------------------------------------------ internals

    def _sweep_args(self) -> list:
        header, _ = encode_event(Failed(CRASHED, EXPIRED_REASON))
        return [PREFIX, header, self.settings.key_ttl, time.time()]

    def _follow(self, handle: JobHandle) -> None:
        self._followed[handle.job.job_id] = _Followed(handle)
        self._wake.set()

    async def _forget_job(self, keys: JobKeys) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.content, keys.styles, keys.init_image, keys.task)
            pipe.hdel(ACTIVE, keys.job_id)
            pipe.zrem(PENDING, keys.job_id)
            await pipe.execute()

    def _announce(self, job_id: str, placement: Placement) -> None:
        followed = self._followed.get(job_id)
        if followed is None or followed.started:
            return
        queued = Queued(placement.position, placement.starts_in)
        if worth_announcing(followed.announced, queued):
            followed.announced = queued
            followed.handle.emit(queued)

    # ------------------------------------------------------------------------------ dispatch

    async def _dispatch(self) -> None:
        """Send held jobs to the broker while worker slots are free, the order's first first. One bot
        process at a time: the others find the lock taken and leave it to the holder (they try again
        at their next refresh)."""
        if self._closing or not await self._redis.set(DISPATCH_LOCK, self._token, nx=True, px=DISPATCH_LOCK_MS):
            return
        try:
            raw = await self._redis.hgetall(ACTIVE)
            entries = {job_id.decode(): (value, json.loads(value)) for job_id, value in raw.items()}
            workers = await self._read_workers()
            capacity = sum(workers.values())
            busy = sum(1 for _, entry in entries.values() if entry.get("state") != HELD)
            held = [self._queue_entry(job_id, entry) for job_id, (_, entry) in entries.items() if entry.get("state") == HELD]
            if not held or busy >= capacity:
                return
            running = [self._queue_entry(job_id, entry) for job_id, (_, entry) in entries.items()
                       if entry.get("state") != HELD]
            for placement in ordered(self._order, held, running, capacity, log)[:capacity - busy]:
                value, entry = entries[placement.job_id]
                await self._send(placement.job_id, value, entry)
        finally:
            await self._unlock(keys=[DISPATCH_LOCK], args=[self._token])

    async def _send(self, job_id: str, value: bytes, entry: dict) -> None:
        """Publish one held job's task, unless a cancel or another dispatcher got to it first."""
        keys = JobKeys(job_id)
        sent = json.dumps({**entry, "state": SENT})
        if not await self._swap(keys=[ACTIVE], args=[job_id, value, sent]):
            return
        message = await self._redis.get(keys.task)
        if message is None:  # its keys expired: the sweep fails it
            return
        settings = self.settings
        kwargs = {"job": json.loads(message), "max_attempts": settings.max_attempts}
        try:
            # kombu publishes synchronously: keep it off the loop
            await asyncio.to_thread(
                self._celery.send_task, TASK_NAME, kwargs=kwargs, task_id=job_id, queue=QUEUE,
                time_limit=settings.hard_time_limit,
            )
        except Exception as error:  # noqa: BLE001 - the broker is away: held again, sent at a later refresh
            log.error("could not send job %s to the workers: %s", job_id, error)
            await self._swap(keys=[ACTIVE], args=[job_id, sent, value])
            return
        await self._redis.delete(keys.task)
        log.info("job %s sent to the workers", job_id)

    def _queue_entry(self, job_id: str, entry: dict) -> QueueEntry:
        """An active entry as the order sees it. A sent job counts as started now (a slot is its); a
        running job we follow has its own ETA."""
        started = entry.get("started_at") or (time.time() if entry.get("state") == SENT else None)
        followed = self._followed.get(job_id)
        last = followed.handle.last_progress if followed is not None else None
        eta = getattr(last, "eta", None) if isinstance(last, Progress) else None
        return QueueEntry(job_id, entry["user_id"], entry.get("guild_id"), entry["submitted_at"], float(entry.get("work") or 0.0),
                          started_at=started, remaining=float(eta) if isinstance(eta, (int, float)) else None)

    async def _read_workers(self) -> dict[str, int]:
        """Live workers (by their heartbeats) and how many jobs each runs at once."""
        names = [key async for key in self._redis.scan_iter(match=WORKERS + "*")]
        values = await self._redis.mget(names) if names else []
        workers = {}
        for key, value in zip(names, values):
            if value is None:  # expired between the scan and the read
                continue
            try:
                concurrency = int(json.loads(value).get("concurrency") or WORKER_CONCURRENCY)
            except (ValueError, TypeError, AttributeError):
                concurrency = WORKER_CONCURRENCY
            workers[key.decode().removeprefix(WORKERS)] = max(1, concurrency)
        return workers

    async def _read_events(self) -> None:
        last_refresh = 0.0
        while True:
            try:
                if time.monotonic() - last_refresh >= REFRESH_EVERY:
                    last_refresh = time.monotonic()
                    await self._refresh()
                streams = {JobKeys(job_id).events: f.last_id for job_id, f in self._followed.items()}
                if not streams:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), REFRESH_EVERY)
                    except asyncio.TimeoutError:
                        pass
                    continue
                replies = await self._redis.xread(streams, block=READ_BLOCK_MS)
                self._redis_ok = True
                for stream, entries in replies or []:
                    job_id = stream.decode().split(":")[2]
                    await self._deliver(job_id, entries)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - Redis away: report unhealthy, try again
                if self._redis_ok:
                    log.error("lost Redis: %s", error)
                self._redis_ok = False
                await asyncio.sleep(1.0)

    async def _deliver(self, job_id: str, entries: list) -> None:
        """Turn one job's new stream entries into events. Of several previews, only the last is fetched."""
        followed = self._followed.get(job_id)
        if followed is None:
            return
        decoded = [(entry_id.decode(), decode_event(fields[b"e"])) for entry_id, fields in entries]
        last_preview = max((i for i, (_, e) in enumerate(decoded) if isinstance(e, Preview)), default=None)
        for index, (entry_id, event) in enumerate(decoded):
            followed.last_id = entry_id
            handle = followed.handle
            if isinstance(event, Started):
                followed.started = True
            elif isinstance(event, Preview):
                if index != last_preview:
                    continue
                image = await self._redis.get(JobKeys(job_id).preview)
                if image is None:
                    continue
                event = Preview(event.step, image)
            elif isinstance(event, Done):
                image = await self._redis.get(JobKeys(job_id).result)
                if image is None:
                    event = Failed(ERROR, "the result expired before it could be posted; please send the job again")
                else:
                    event = Done(image, event.filename, event.content_type, event.stats)
            handle.emit(event)
            if isinstance(event, (Done, Failed)):
                self._followed.pop(job_id, None)
                return

    async def _refresh(self) -> None:
        """Read the shared queue: fail entries that expired, send held jobs to free slots, then the
        positions and estimates (announced to the jobs we follow), !queue's listing and health."""
        await self._sweep(keys=[ACTIVE, PENDING], args=self._sweep_args())
        await self._dispatch()
        raw = await self._redis.hgetall(ACTIVE)
        workers = await self._read_workers()
        self._redis_ok = True
        entries = {job_id.decode(): json.loads(value) for job_id, value in raw.items()}
        sent = sorted((job_id for job_id, e in entries.items() if e.get("state") == SENT),
                      key=lambda job_id: (entries[job_id]["submitted_at"], job_id))
        held = [self._queue_entry(job_id, e) for job_id, e in entries.items() if e.get("state") == HELD]
        running = [self._queue_entry(job_id, e) for job_id, e in entries.items() if e.get("state") != HELD]
        capacity = sum(workers.values())
        # sent jobs are next (a worker takes them in a moment), then the held ones in the order's ranking
        placements = [Placement(job_id, position, 0.0 if capacity else None) for position, job_id in enumerate(sent, start=1)]
        placements += [Placement(p.job_id, p.position + len(sent), p.starts_in)
                       for p in ordered(self._order, held, running, capacity, log)]
        infos = []
        for job_id, entry in entries.items():
            if entry.get("state") in (HELD, SENT):
                continue
            followed = self._followed.get(job_id)
            last = followed.handle.last_progress if followed else None
            infos.append(JobInfo(job_id, entry["user_id"], entry["guild_id"], "running", None,
                                 last.fraction if last is not None else 0.0, entry.get("device"), entry["submitted_at"]))
        infos.sort(key=lambda i: i.submitted_at)
        for placement in placements:
            entry = entries[placement.job_id]
            infos.append(JobInfo(placement.job_id, entry["user_id"], entry["guild_id"], "queued", placement.position, 0.0,
                                 None, entry["submitted_at"], placement.starts_in))
            self._announce(placement.job_id, placement)
        self._snapshot, self._workers = infos, workers
