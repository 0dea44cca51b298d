"""Celery executor: jobs go to a durable queue in Redis; GPU workers anywhere run them.

The bot stores the two images as Redis keys, sends a JSON task, and follows the job's event stream
(one XREAD for all its jobs). Jobs outlive the bot: on restart it re-attaches to the ones it
recorded and posts their results where they belong (see Stylize.resume_jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from .base import SHUTTING_DOWN, check_admission
from .base import CANCELLED, CRASHED, ERROR, TIMEOUT, Detached, Done, ExecutorError, Failed, JobHandle, JobInfo, Progress, Queued, Refused, Started, StyleJob
from .jobqueue import ACTIVE, PENDING, QUEUE, TASK_NAME, WORKERS, JobKeys, QueueSettings, decode_event, make_celery, safe_url

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
REFRESH_EVERY = 1.0  # seconds between reads of the shared queue (positions, !queue, health)
FAILURE_KINDS = {"cancelled": CANCELLED, "timeout": TIMEOUT, "crashed": CRASHED, "error": ERROR}


class _Followed:
    def __init__(self, handle: JobHandle, last_id: str = "0-0"):
        self.handle = handle
        self.last_id = last_id
        self.started = False
        self.position: int | None = None


class CeleryExecutor:
    def __init__(self, settings: QueueSettings):
        self.settings = settings
        self.restarts = 0  # workers are not ours to restart; kept for /metrics
        self._redis = None
        self._celery = None
        self._followed: dict[str, _Followed] = {}
        self._reader: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._snapshot: list[JobInfo] = []
        self._workers: list[str] = []
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
        self._celery = make_celery(self.settings)
        await self._refresh()
        self._reader = asyncio.create_task(self._read_events(), name="nst-events")
        log.info("jobs go to Celery through %s; %d worker(s) alive", safe_url(self.settings.redis_url), len(self._workers))

    async def close(self, grace: float = 0.0) -> None:
        """Jobs keep running on the workers: wait up to ``grace`` for the ones we follow, then let go
        of the rest (they are re-attached when the bot is back)."""
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + grace
        while self._followed and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for job_id, followed in list(self._followed.items()):
            followed.handle.emit(Detached("the bot is restarting; your job goes on, and its result will be posted here when the bot is back"))
            self._followed.pop(job_id, None)
        # bounded: a Redis that went away must not hold up the bot's shutdown
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=5)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.aclose(), 5)
        if self._celery is not None:
            await asyncio.wait_for(asyncio.to_thread(self._celery.close), 5)

    # ------------------------------------------------------------------------------ jobs

    async def submit(self, job: StyleJob, *, max_per_user: int, max_queue: int) -> JobHandle:
        if self._closing:
            raise Refused(SHUTTING_DOWN)
        active = [json.loads(v) for v in (await self._redis.hgetall(ACTIVE)).values()]
        mine = sum(1 for entry in active if entry["user_id"] == job.user_id)
        check_admission(mine, len(active), max_per_user=max_per_user, max_queue=max_queue)
        keys = JobKeys(job.job_id)
        ttl = self.settings.key_ttl
        entry = {"user_id": job.user_id, "guild_id": job.guild_id, "submitted_at": job.submitted_at, "state": "queued"}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.content, job.content, ex=ttl)
            pipe.set(keys.style, job.style, ex=ttl)
            pipe.hset(ACTIVE, job.job_id, json.dumps(entry))
            pipe.zadd(PENDING, {job.job_id: job.submitted_at})
            await pipe.execute()
        kwargs = {
            "job_id": job.job_id,
            "params": job.params,
            "max_result_bytes": job.max_result_bytes,
            "max_pixels": job.max_pixels,
            "timeout": self.settings.job_timeout,
            "max_attempts": self.settings.max_attempts,
        }
        try:
            # kombu publishes synchronously: keep it off the loop
            await asyncio.to_thread(
                self._celery.send_task, TASK_NAME, kwargs=kwargs, task_id=job.job_id, queue=QUEUE,
                time_limit=self.settings.job_timeout + 120,
            )
        except Exception as error:  # noqa: BLE001 - nothing queued: undo the bookkeeping and refuse
            await self._forget_job(keys)
            log.error("could not queue job %s: %s", job.job_id, error)
            raise Refused("the job queue is unavailable right now; please try again later") from None
        handle = JobHandle(job, self.cancel)
        self._follow(handle)
        await self._announce(job.job_id)
        return handle

    async def reattach(self, job: StyleJob) -> JobHandle | None:
        """Follow a job submitted before a restart, replaying its events; None if Redis forgot it."""
        keys = JobKeys(job.job_id)
        if not await self._redis.exists(keys.events) and not await self._redis.hexists(ACTIVE, job.job_id):
            return None
        handle = JobHandle(job, self.cancel)
        self._follow(handle)
        await self._announce(job.job_id)
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

    def handles_for_user(self, user_id: int) -> list[JobHandle]:
        return [f.handle for f in self._followed.values() if f.handle.job.user_id == user_id]

    def health(self) -> tuple[bool, str]:
        if not self._redis_ok:
            return False, f"cannot reach Redis at {safe_url(self.settings.redis_url)}"
        if not self._workers:
            return False, "no Celery worker is alive"
        return True, f"{len(self._workers)} worker(s) alive: {', '.join(sorted(self._workers))}"

    # ------------------------------------------------------------------------------ internals

    def _follow(self, handle: JobHandle) -> None:
        self._followed[handle.job.job_id] = _Followed(handle)
        self._wake.set()

    async def _forget_job(self, keys: JobKeys) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.content, keys.style)
            pipe.hdel(ACTIVE, keys.job_id)
            pipe.zrem(PENDING, keys.job_id)
            await pipe.execute()

    async def _announce(self, job_id: str) -> None:
        followed = self._followed.get(job_id)
        if followed is None or followed.started:
            return
        rank = await self._redis.zrank(PENDING, job_id)
        if rank is not None and rank + 1 != followed.position:
            followed.position = rank + 1
            followed.handle.emit(Queued(rank + 1))

    async def _read_events(self) -> None:
        last_refresh = 0.0
        while True:
            try:
                if time.monotonic() - last_refresh >= REFRESH_EVERY:
                    last_refresh = time.monotonic()
                    await self._refresh()
                    for job_id in list(self._followed):
                        await self._announce(job_id)
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
                    for entry_id, fields in entries:
                        await self._deliver(job_id, entry_id.decode(), decode_event(fields))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - Redis away: report unhealthy, try again
                if self._redis_ok:
                    log.error("lost Redis: %s", error)
                self._redis_ok = False
                await asyncio.sleep(1.0)

    async def _deliver(self, job_id: str, entry_id: str, event: dict[str, Any]) -> None:
        followed = self._followed.get(job_id)
        if followed is None:
            return
        followed.last_id = entry_id
        handle, kind = followed.handle, event.pop("kind")
        if kind == "started":
            followed.started = True
            handle.emit(Started(event["device"]))
        elif kind == "progress":
            handle.emit(Progress(**event))
        elif kind == "done":
            image = await self._redis.get(JobKeys(job_id).result)
            if image is None:
                handle.emit(Failed(ERROR, "the result expired before it could be posted; please send the job again"))
            else:
                handle.emit(Done(image, event["filename"], event["content_type"], event["stats"]))
            self._followed.pop(job_id, None)
        elif kind == "failed":
            handle.emit(Failed(FAILURE_KINDS.get(event["failure"], ERROR), event["reason"]))
            self._followed.pop(job_id, None)

    async def _refresh(self) -> None:
        """Read the shared queue: for !queue, positions and health."""
        active = await self._redis.hgetall(ACTIVE)
        pending = [m.decode() for m in await self._redis.zrange(PENDING, 0, -1)]
        workers = [key.decode().removeprefix(WORKERS) async for key in self._redis.scan_iter(match=WORKERS + "*")]
        self._redis_ok = True
        infos = []
        for job_id, raw in active.items():
            entry = json.loads(raw)
            job_id = job_id.decode()
            followed = self._followed.get(job_id)
            position = pending.index(job_id) + 1 if job_id in pending else None
            state = "queued" if position is not None else "running"
            fraction = 0.0
            last = followed.handle.last_event if followed else None
            if isinstance(last, Progress):
                fraction = last.step / last.total
            infos.append(JobInfo(job_id, entry["user_id"], entry["guild_id"], state, position, fraction, entry.get("device"), entry["submitted_at"]))
        infos.sort(key=lambda i: (i.state != "running", i.position or 0, i.submitted_at))
        self._snapshot, self._workers = infos, workers

