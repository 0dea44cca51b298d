"""The re-run image cache: entries come back whole, expire after their lifetime, and the cache stays
within its byte budget by dropping the oldest entries first."""

from __future__ import annotations

import uuid

import pytest

from bot.core.imagecache import ImageCache


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def job_id() -> str:
    return uuid.uuid4().hex


async def test_round_trip_with_several_styles(tmp_path):
    cache = ImageCache(tmp_path / "cache", max_bytes=10_000, ttl=60)
    job = job_id()
    await cache.put(job, b"content", (b"style-a", b"style-b"))
    await cache.put_meta(job, {"stats": {"seed": 7}})
    got = await cache.get(job)
    assert got.content == b"content" and got.styles == (b"style-a", b"style-b")
    assert await cache.styles_kept(job) == 2 and await cache.styles_kept(job_id()) == 0
    assert await cache.get_meta(job) == {"stats": {"seed": 7}}
    assert await cache.get(job_id()) is None  # never cached


async def test_entries_expire_after_the_ttl(tmp_path):
    clock = Clock()
    cache = ImageCache(tmp_path / "cache", max_bytes=10_000, ttl=60, clock=clock)
    job = job_id()
    await cache.put(job, b"c", (b"s",))
    clock.now += 59
    assert await cache.get(job) is not None
    clock.now += 2
    assert await cache.get(job) is None and await cache.get_meta(job) is None and await cache.styles_kept(job) == 0
    assert await cache.prune() == 1
    assert not (tmp_path / "cache" / job).exists()


async def test_the_oldest_entries_go_when_the_cache_is_full(tmp_path):
    clock = Clock()
    cache = ImageCache(tmp_path / "cache", max_bytes=2_500, ttl=3600, clock=clock)
    jobs = []
    for _ in range(4):
        jobs.append(job_id())
        await cache.put(jobs[-1], b"x" * 500, (b"y" * 500,))  # 1000 bytes each (+ a stamp)
        clock.now += 1
    kept = [await cache.get(job) is not None for job in jobs]
    assert kept == [False, False, True, True]


async def test_inputs_larger_than_the_cache_and_a_disabled_cache(tmp_path):
    cache = ImageCache(tmp_path / "cache", max_bytes=100, ttl=60)
    job = job_id()
    await cache.put(job, b"x" * 200, (b"y",))
    assert await cache.get(job) is None
    off = ImageCache(tmp_path / "off", max_bytes=0, ttl=60)
    await off.put(job, b"c", (b"s",))
    assert not off.enabled and await off.get(job) is None and not (tmp_path / "off").exists()


async def test_job_ids_cannot_name_paths(tmp_path):
    cache = ImageCache(tmp_path / "cache", max_bytes=100, ttl=60)
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(ValueError):
            await cache.get(bad)
