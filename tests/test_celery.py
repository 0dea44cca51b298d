"""The Celery executor with real workers (CPU, tiny images, random weights) on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import pytest
import redis

from bot.config import load_config, queue_settings
from bot.executor.base import CANCELLED, Done, Failed, Progress, Queued, Refused, Started, StyleJob
from bot.executor.distributed import CeleryExecutor
from bot.executor.jobqueue import ACTIVE, PENDING, JobKeys
from bot_harness import CONTENT_PNG, PRECISION, STYLE_PNG
from nst.params import StyleParams
from redis_harness import Worker, celery_config, redis_server

LIMITS = dict(max_per_user=5, max_queue=20)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
def config_path(tmp_path, weights_file, redis_url):
    redis.Redis.from_url(redis_url).flushall()
    return celery_config(tmp_path, weights_file, redis_url)


@contextlib.contextmanager
def workers(config_path, tmp_path, count=1):
    started = [Worker(config_path, f"w{i}@test", tmp_path / f"worker{i}.log") for i in range(count)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


@contextlib.asynccontextmanager
async def executor(config_path):
    ex = CeleryExecutor(queue_settings(load_config(config_path)))
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()


def job(user=1, epochs=8, size=48) -> StyleJob:
    return StyleJob(user_id=user, guild_id=1, channel_id=2, message_id=3, content=CONTENT_PNG, styles=(STYLE_PNG,),
                    params=StyleParams(epochs=epochs, size=size, seed=3, precision=PRECISION).as_dict(), max_result_bytes=8_000_000,
                    max_pixels=10**7)


async def events(handle, timeout=60):
    async def collect():
        return [e async for e in handle]
    return await asyncio.wait_for(collect(), timeout)


async def until_event(handle, predicate, timeout=30):
    async def wait():
        seen = []
        async for event in handle:
            seen.append(event)
            if predicate(event):
                return event, seen
            assert not isinstance(event, (Done, Failed)), event
    return await asyncio.wait_for(wait(), timeout)


def stream(redis_url, job_id) -> list[dict]:
    entries = redis.Redis.from_url(redis_url).xrange(JobKeys(job_id).events)
    return [json.loads(fields[b"e"]) for _, fields in entries]


async def test_a_job_end_to_end_with_rising_progress(config_path, tmp_path, redis_url):
    with workers(config_path, tmp_path):
        async with executor(config_path) as ex:
            assert ex.health()[0] and "w0@test" in ex.health()[1]
            handle = await ex.submit(job(epochs=30), **LIMITS)
            seen = await events(handle)
    assert isinstance(seen[0], Queued) and seen[0].position == 1
    started = [e for e in seen if isinstance(e, Started)]
    assert len(started) == 1 and started[0].device == "cpu on w0@test"
    steps = [e.step for e in seen if isinstance(e, Progress)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == 30
    done = seen[-1]
    assert isinstance(done, Done) and done.stats["steps"] == 30 and done.stats["size"] == [48, 36]
    r = redis.Redis.from_url(redis_url)
    assert r.hlen(ACTIVE) == 0 and r.zcard(PENDING) == 0
    assert not r.exists(JobKeys(handle.job.job_id).content)  # images freed; the result stays (TTL) for idempotency
    assert r.ttl(JobKeys(handle.job.job_id).result) > 0


async def test_cancel_running_at_40_percent_and_queued_never_runs(config_path, tmp_path, redis_url):
    with workers(config_path, tmp_path):
        async with executor(config_path) as ex:
            running = await ex.submit(job(1, epochs=150, size=64), **LIMITS)
            queued = await ex.submit(job(2), **LIMITS)
            await until_event(running, lambda e: isinstance(e, Progress) and e.step / e.total >= 0.4)
            assert await queued.cancel()
            assert (await events(queued, timeout=5))[-1] == Failed(CANCELLED, "cancelled before it started")
            assert await running.cancel()
            last = (await events(running, timeout=10))[-1]
            assert last == Failed(CANCELLED, "cancelled")
            await asyncio.sleep(8)  # past the visibility timeout: nothing is re-delivered
    for handle, starts in ((running, 1), (queued, 0)):
        kinds = [e["type"] for e in stream(redis_url, handle.job.job_id)]
        assert kinds.count("started") == starts and "done" not in kinds
    progress = [e["step"] for e in stream(redis_url, running.job.job_id) if e["type"] == "progress"]
    assert progress[-1] < 150


async def test_killed_job_process_is_redelivered_and_completes(config_path, tmp_path, redis_url):
    with workers(config_path, tmp_path) as (worker,):
        async with executor(config_path) as ex:
            handle = await ex.submit(job(epochs=100, size=64), **LIMITS)
            await until_event(handle, lambda e: isinstance(e, Progress) and e.step >= 20)
            os.kill(worker.pool_process(), signal.SIGKILL)
            seen = await events(handle, timeout=60)
    assert isinstance(seen[-1], Done) and seen[-1].stats["steps"] == 100
    kinds = [e["type"] for e in stream(redis_url, handle.job.job_id)]
    assert kinds.count("started") == 2 and kinds.count("done") == 1
    assert [e["attempt"] for e in stream(redis_url, handle.job.job_id) if e["type"] == "started"] == [1, 2]


async def test_killed_worker_hands_the_job_to_the_other_worker(config_path, tmp_path, redis_url):
    with workers(config_path, tmp_path, count=2) as pool:
        async with executor(config_path) as ex:
            handle = await ex.submit(job(epochs=60, size=64), **LIMITS)
            started, _ = await until_event(handle, lambda e: isinstance(e, Started))
            victim = next(w for w in pool if started.device.endswith(w.name))
            survivor = next(w for w in pool if w is not victim)
            await until_event(handle, lambda e: isinstance(e, Progress))
            killed_at = time.monotonic()
            victim.kill()
            seen = await events(handle, timeout=30)
            elapsed = time.monotonic() - killed_at
    assert isinstance(seen[-1], Done)
    assert any(isinstance(e, Started) and e.device.endswith(survivor.name) for e in seen)
    assert elapsed < 15, f"re-delivery took {elapsed:.1f} s"


async def test_attempts_are_bounded(config_path, tmp_path, redis_url):
    """A job that kills its worker every time is given up after max_attempts (2) deliveries."""
    with workers(config_path, tmp_path) as (worker,):
        async with executor(config_path) as ex:
            handle = await ex.submit(job(epochs=200, size=64), **LIMITS)
            for _ in range(2):
                await until_event(handle, lambda e: isinstance(e, Progress))
                os.kill(worker.pool_process(), signal.SIGKILL)
            last = (await events(handle, timeout=60))[-1]
    assert isinstance(last, Failed) and last.kind == "crashed" and "will not be tried again" in last.reason


async def test_shared_caps_and_queue_listing(config_path, tmp_path, redis_url):
    async with executor(config_path) as ex:  # no worker: jobs stay queued
        first = await ex.submit(job(1), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="you already have 1 job"):
            await ex.submit(job(1), max_per_user=1, max_queue=2)
        await ex.submit(job(2), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="the queue is full"):
            await ex.submit(job(3), max_per_user=1, max_queue=2)
        await asyncio.sleep(1.2)
        assert [(i.user_id, i.state, i.position) for i in ex.jobs()] == [(1, "queued", 1), (2, "queued", 2)]
        assert ex.health() == (False, "no Celery worker is alive")
        await first.cancel()
