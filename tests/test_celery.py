"""The Celery executor with real workers (CPU, tiny images, random weights) on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import io
import signal
import time

import pytest
import redis
from PIL import Image

from bot.config import load_config, queue_settings
from bot.executor.base import CANCELLED, CRASHED, TIMEOUT, Done, Failed, Placement, Preview, Progress, Queued, Refused, Started, StyleJob, timeout_reason
from bot.executor.distributed import CeleryExecutor
from bot.executor.jobqueue import ACTIVE, HELD, PENDING, QUEUE, SENT, WORKERS, JobKeys
from bot_harness import CONTENT_PNG, PRECISION, STYLE_PNG, png, time_budget
from conftest import make_style
from nst.params import StyleParams
from redis_harness import Worker, celery_config, redis_server

LIMITS = dict(max_per_user=5, max_queue=20)


# One Redis, one database per kind of test, so that the shared worker (database 0) never sees the jobs
# of the tests without a worker (1) or of the test with its own two workers (2).
SHARED_DB, IDLE_DB, PAIR_DB = 0, 1, 2
# The job of the two-worker test: a few steps, since its visibility timeout (the wait for re-delivery)
# is sized from them; enough that the victim is still running when it is killed after its first progress.
QUICK_STEPS = 12


@pytest.fixture(scope="module")
def redis_server_url():
    with redis_server() as url:
        yield url.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def shared_worker(redis_server_url, tmp_path_factory, weights_file):
    """One worker for the module's tests that need a single worker: started once (a worker start is
    two model loads, ~10 s), as in production where a worker outlives its jobs and its pool processes.
    Jobs of up to 200 steps; the timeout is sized from the measured step time."""
    url = f"{redis_server_url}/{SHARED_DB}"
    redis.Redis.from_url(url).flushdb()
    folder = tmp_path_factory.mktemp("shared-worker")
    config = celery_config(folder, weights_file, url, steps=200)
    with workers(config, folder) as (worker,):
        yield config, worker


@pytest.fixture
def one_worker(shared_worker, tmp_path):
    """The shared worker, alive and idle: nothing of an earlier test is still queued or running."""
    config, worker = shared_worker
    assert worker.proc.poll() is None, "the shared worker died in an earlier test:\n" + worker_log(worker)[-3000:]
    r = redis.Redis.from_url(queue_settings(load_config(config)).redis_url)
    assert r.hlen(ACTIVE) == 0 and r.zcard(PENDING) == 0, "an earlier test left a job behind"
    return config, worker


@pytest.fixture
def config_path(tmp_path, weights_file, redis_url):
    """For tests without a worker: jobs of up to 200 steps; the timeout is sized from the measured step time."""
    return celery_config(tmp_path, weights_file, redis_url, steps=200)


@pytest.fixture
def redis_url(redis_server_url):
    """The database of the tests without a worker (or with their own), emptied for each test."""
    url = f"{redis_server_url}/{IDLE_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def shared_url(redis_server_url):
    return f"{redis_server_url}/{SHARED_DB}"


@pytest.fixture
def quick_config(tmp_path, weights_file, redis_server_url):
    """Jobs of up to QUICK_STEPS steps: a short job timeout, so a short visibility timeout (fast
    re-delivery, which the test waits for); its own database, for its own two workers."""
    url = f"{redis_server_url}/{PAIR_DB}"
    redis.Redis.from_url(url).flushdb()
    return url, celery_config(tmp_path, weights_file, url, steps=QUICK_STEPS)


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
async def executor(config_path, **settings):
    ex = CeleryExecutor(dataclasses.replace(queue_settings(load_config(config_path)), **settings))
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


async def until_event(handle, predicate, timeout):
    async def wait():
        seen = []
        async for event in handle:
            seen.append(event)
            if predicate(event):
                return event, seen
            assert not isinstance(event, (Done, Failed)), event
    return await asyncio.wait_for(wait(), timeout)


def worker_log(worker) -> str:
    return worker.log_path.read_text(errors="replace")


def stream(redis_url, job_id) -> list[dict]:
    entries = redis.Redis.from_url(redis_url).xrange(JobKeys(job_id).events)
    return [json.loads(fields[b"e"]) for _, fields in entries]


async def test_a_job_end_to_end_with_rising_progress_and_previews(one_worker, shared_url, weights_file):
    config_path, _ = one_worker
    redis_url = shared_url
    async with executor(config_path, preview_interval=0.01) as ex:
        assert ex.health()[0] and "w0@test" in ex.health()[1]
        handle = await ex.submit(job(epochs=30), **LIMITS)
        seen = await events(handle, timeout=time_budget(30, weights_file))
    assert isinstance(seen[0], Queued) and seen[0].position == 1
    started = [e for e in seen if isinstance(e, Started)]
    assert len(started) == 1 and started[0].device == "cpu on w0@test" and started[0].attempt == 1
    steps = [e.step for e in seen if isinstance(e, Progress)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == 30
    assert all(isinstance(e.tv_loss, float) for e in seen if isinstance(e, Progress))  # every nst.Progress field
    previews = [e for e in seen if isinstance(e, Preview)]
    assert previews and all(p.image.startswith(b"\xff\xd8") for p in previews)  # JPEG bytes from the preview key
    assert Image.open(io.BytesIO(previews[-1].image)).size == (48, 36)
    done = seen[-1]
    assert isinstance(done, Done) and done.stats["steps"] == 30 and done.stats["size"] == [48, 36]
    assert done.filename == "stylized.png"
    r = redis.Redis.from_url(redis_url)
    assert r.hlen(ACTIVE) == 0 and r.zcard(PENDING) == 0
    keys = JobKeys(handle.job.job_id)
    assert not r.exists(keys.content) and not r.exists(keys.styles) and not r.exists(keys.preview)
    assert r.ttl(keys.result) > 0  # the result stays (TTL) for idempotency
    # previews are bounded: one key, and only small markers in the stream
    assert all(set(fields) == {b"e"} for _, fields in r.xrange(keys.events))


async def test_two_style_images_reach_the_worker(one_worker, weights_file):
    config_path, _ = one_worker
    second = png(make_style(40).rotate(90))
    async with executor(config_path) as ex:
        blended = dataclasses.replace(job(epochs=4), styles=(STYLE_PNG, second))
        handle = await ex.submit(blended, **LIMITS)
        seen = await events(handle, timeout=time_budget(4, weights_file))
    assert isinstance(seen[-1], Done), seen[-1]


async def test_cancel_running_at_40_percent_and_queued_never_runs(one_worker, shared_url, weights_file):
    config_path, worker = one_worker
    redis_url = shared_url
    async with executor(config_path) as ex:
        running = await ex.submit(job(1, epochs=150, size=64), **LIMITS)
        queued = await ex.submit(job(2), **LIMITS)
        await until_event(running, lambda e: isinstance(e, Progress) and e.fraction >= 0.4, timeout=time_budget(60, weights_file))
        assert await queued.cancel()
        assert (await events(queued, timeout=5))[-1] == Failed(CANCELLED, "cancelled before it started")
        assert await running.cancel()
        last = (await events(running, timeout=time_budget(3, weights_file)))[-1]
        assert last == Failed(CANCELLED, "cancelled")
        # acknowledged, so never re-delivered (the worker logs each task it finished)
        await wait_for(lambda: f"[{running.job.job_id}] succeeded" in worker_log(worker), "the cancelled task is acknowledged")
    for handle, starts in ((running, 1), (queued, 0)):
        kinds = [e["type"] for e in stream(redis_url, handle.job.job_id)]
        assert kinds.count("started") == starts and "done" not in kinds
    progress = [e["step"] for e in stream(redis_url, running.job.job_id) if e["type"] == "progress"]
    assert progress[-1] < 150


async def test_killed_job_process_is_redelivered_and_completes(one_worker, shared_url, weights_file):
    """Regression (issue 11, defect 12): the re-delivered job used to run past a fixed 5 s timeout on a
    slower CPU; the timeout is now sized from the measured step time."""
    config_path, worker = one_worker
    redis_url = shared_url
    async with executor(config_path) as ex:
        handle = await ex.submit(job(epochs=40, size=64), **LIMITS)
        await until_event(handle, lambda e: isinstance(e, Progress) and e.step >= 10, timeout=time_budget(10, weights_file))
        os.kill(worker.pool_process(), signal.SIGKILL)
        seen = await events(handle, timeout=time_budget(40, weights_file) + 30)
    assert isinstance(seen[-1], Done) and seen[-1].stats["steps"] == 40
    kinds = [e["type"] for e in stream(redis_url, handle.job.job_id)]
    assert kinds.count("started") == 2 and kinds.count("done") == 1
    assert [e["attempt"] for e in stream(redis_url, handle.job.job_id) if e["type"] == "started"] == [1, 2]


async def test_killed_worker_hands_the_job_to_the_other_worker(quick_config, tmp_path, weights_file):
    _, quick_config = quick_config
    settings = queue_settings(load_config(quick_config))
    with workers(quick_config, tmp_path, count=2) as pool:
        async with executor(quick_config) as ex:
            handle = await ex.submit(job(epochs=QUICK_STEPS, size=64), **LIMITS)
            started, _ = await until_event(handle, lambda e: isinstance(e, Started), timeout=time_budget(0, weights_file))
            victim = next(w for w in pool if started.device.endswith(w.name))
            survivor = next(w for w in pool if w is not victim)
            await until_event(handle, lambda e: isinstance(e, Progress), timeout=time_budget(1, weights_file))
            killed_at = time.monotonic()
            victim.kill()
            bound = settings.visibility_timeout + 2 * settings.restore_interval + time_budget(QUICK_STEPS, weights_file)
            seen = await events(handle, timeout=bound)
            elapsed = time.monotonic() - killed_at
    assert isinstance(seen[-1], Done)
    assert any(isinstance(e, Started) and e.device.endswith(survivor.name) for e in seen)
    assert elapsed < bound


async def test_attempts_are_bounded(one_worker, weights_file):
    """A job that kills its worker every time is given up after max_attempts (2) deliveries."""
    config_path, worker = one_worker
    async with executor(config_path) as ex:
        handle = await ex.submit(job(epochs=200, size=64), **LIMITS)
        for _ in range(2):
            await until_event(handle, lambda e: isinstance(e, Progress), timeout=time_budget(1, weights_file) + 30)
            os.kill(worker.pool_process(), signal.SIGKILL)
        last = (await events(handle, timeout=60))[-1]
    assert isinstance(last, Failed) and last.kind == CRASHED and "will not be tried again" in last.reason


async def test_hard_time_limit_fails_the_job_and_frees_the_slot(one_worker, shared_url, weights_file):
    """Regression (issue 11, defect 11): a job killed by Celery's hard time limit used to be acknowledged
    with no event and an active entry that never expired, so its user could never submit again."""
    config_path, worker = one_worker
    redis_url = shared_url
    settings = queue_settings(load_config(config_path))
    # the job's own deadline (job_timeout) is far away; Celery's hard limit kills it after 2 s
    async with executor(config_path, hard_limit_margin=2 - settings.job_timeout) as ex:
        endless = await ex.submit(job(1, epochs=100_000, size=64), max_per_user=1, max_queue=5)
        await until_event(endless, lambda e: isinstance(e, Started), timeout=time_budget(0, weights_file))
        last = (await events(endless, timeout=30))[-1]
        assert last == Failed(TIMEOUT, timeout_reason(settings.job_timeout))
        assert "hit the hard time limit" in worker_log(worker)
        r = redis.Redis.from_url(redis_url)
        assert not r.hexists(ACTIVE, endless.job.job_id)
        again = await ex.submit(job(1, epochs=2), max_per_user=1, max_queue=5)  # the slot is free
        assert isinstance((await events(again, timeout=time_budget(2, weights_file) + 30))[-1], Done)


async def test_an_expired_entry_is_failed_and_never_blocks_its_user(config_path, tmp_path, redis_url):
    """An entry whose job ended without a word (e.g. a worker killed at the hard limit by an older Celery
    that sends no failure signal) expires: its follower is told, and the user's slot is free again."""
    r = redis.Redis.from_url(redis_url)
    async with executor(config_path) as ex:  # no worker: jobs stay where they are
        stuck = await ex.submit(job(1), max_per_user=1, max_queue=5)
        with pytest.raises(Refused, match="you already have 1 job"):
            await ex.submit(job(1), max_per_user=1, max_queue=5)
        entry = json.loads(r.hget(ACTIVE, stuck.job.job_id))
        r.hset(ACTIVE, stuck.job.job_id, json.dumps({**entry, "state": "running", "expires_at": time.time() - 1}))
        r.zrem(PENDING, stuck.job.job_id)
        told = (await events(stuck, timeout=10))[-1]
        assert told.kind == CRASHED and "no worker finished it or reported on it in time" in told.reason
        assert not r.hexists(ACTIVE, stuck.job.job_id)
        fresh = await ex.submit(job(1), max_per_user=1, max_queue=5)
        await fresh.cancel()


async def test_admission_is_atomic_across_simultaneous_submits(config_path, tmp_path, redis_url):
    """Regression (issue 11, defect 10): the check read the active set, awaited, then wrote, so two
    commands of one user at once could both pass. Two executors (two bot processes) race here."""
    r = redis.Redis.from_url(redis_url)
    async with executor(config_path) as one, executor(config_path) as two:
        for _ in range(5):
            outcomes = await asyncio.gather(
                *(ex.submit(job(7), max_per_user=1, max_queue=50) for ex in (one, two, one, two)),
                return_exceptions=True,
            )
            accepted = [o for o in outcomes if not isinstance(o, BaseException)]
            refused = [o for o in outcomes if isinstance(o, Refused)]
            assert len(accepted) == 1 and len(refused) == 3, outcomes
            assert r.hlen(ACTIVE) == 1
            await accepted[0].cancel()
            assert r.hlen(ACTIVE) == 0


async def test_shared_caps_and_queue_listing(config_path, tmp_path, redis_url):
    async with executor(config_path) as ex:  # no worker: jobs stay queued
        first = await ex.submit(job(1), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="you already have 1 job"):
            await ex.submit(job(1), max_per_user=1, max_queue=2)
        await ex.submit(job(2), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="the queue is full"):
            await ex.submit(job(3), max_per_user=1, max_queue=2)
        listing = [(1, "queued", 1), (2, "queued", 2)]
        await wait_for(lambda: [(i.user_id, i.state, i.position) for i in ex.jobs()] == listing, "the listing is read", timeout=10)
        assert [(i.user_id, i.state, i.position) for i in ex.jobs()] == listing
        assert ex.health() == (False, "no Celery worker is alive")
        await first.cancel()


async def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def test_jobs_are_held_until_a_worker_slot_frees_and_sent_once_in_the_orders_ranking(config_path, tmp_path, redis_url):
    """Issue 23: the bot sends a task to the broker only when a live worker has a free slot, the job its
    order ranks first; two bot processes dispatching at once never send one job twice."""
    r = redis.Redis.from_url(redis_url)
    newest_first = lambda waiting, running, workers: [  # noqa: E731
        Placement(e.job_id, i, None) for i, e in enumerate(sorted(waiting, key=lambda e: -e.submitted_at), start=1)]
    async with executor(config_path) as one, executor(config_path) as two:  # no worker yet: every job is held
        for ex in (one, two):
            ex.set_order(newest_first)
        handles = [await one.submit(dataclasses.replace(job(user), submitted_at=time.time() + user), **LIMITS)
                   for user in (1, 2, 3)]
        await asyncio.sleep(1.5)  # a refresh of each: nothing to send to
        assert [json.loads(v)["state"] for v in r.hvals(ACTIVE)] == [HELD] * 3 and r.llen(QUEUE) == 0
        r.set(WORKERS + "fake@test", json.dumps({"name": "fake@test", "concurrency": 1}), ex=30)  # one slot
        await wait_for(lambda: r.llen(QUEUE) == 1, "one task is sent", timeout=10)
        await asyncio.sleep(2.5)  # more refreshes of both bots: the slot is taken
        assert r.llen(QUEUE) == 1
        states = {handle.job.user_id: json.loads(r.hget(ACTIVE, handle.job.job_id))["state"] for handle in handles}
        assert states == {1: HELD, 2: HELD, 3: SENT}  # the newest, as the order ranked them
        await wait_for(lambda: [(i.user_id, i.position) for i in one.jobs()] == [(3, 1), (2, 2), (1, 3)], "the listing")
        for handle in handles:
            await handle.cancel()
    r.delete(QUEUE, WORKERS + "fake@test")
