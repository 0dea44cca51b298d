"""Upscale ×2 end to end (real discord.py client, fake Discord, a real worker): a new job of whoever
pressed it, continuing from the delivered picture at twice its size, through the same admission as
Again (the image cache, the limits); the button left out where the next size could not run, refused
with the numbers when pressed after a limit was lowered; after a restart too. And engine.max_memory:
a job that cannot fit the operator's budget is refused before anything is queued.

The test images: a 96×72 content, results at the harness's default size 48 (48×36), so an upscale
is 96×72; caps.max_upscale_size 128 leaves no room for a second one (192)."""

from __future__ import annotations

import io
import time

from PIL import Image

from bot_harness import IMAGES, command, make_config, reply_to, run_scenarios, running_bot, submitted_jobs, time_budget
from test_celery import one_worker, redis_server_url, shared_worker  # noqa: F401 - fixtures for the Celery test
from test_buttons_e2e import press, private_answer, result_for

UPSCALE = "Upscale ×2"
CAPS = {"max_upscale_size": 128}


def labels(fake, message) -> list[str]:
    return [button["label"] for button in fake.buttons(message)]


def is_red(data: bytes) -> bool:
    """Whether a picture is still mostly the red one an upscale started from (a few steps change it little;
    the test content is sky blue and green)."""
    with Image.open(io.BytesIO(data)) as image:
        red, green, blue = image.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return red > 150 and green < 100 and blue < 100


def picture_size(message) -> tuple[int, int]:
    with Image.open(io.BytesIO(message.attachments[0].data)) as image:
        return image.size


async def test_upscale_scenarios_sharing_one_bot(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps=CAPS, cache={"ttl": 3600})
    async with running_bot(fake, config) as bot:
        await run_scenarios(fake, world, bot, (
            upscale_continues_from_the_picture_at_twice_its_size, an_expired_image_cache_is_said_plainly,
            a_limit_lowered_after_the_result_refuses_with_the_numbers,
        ))


async def upscale_continues_from_the_picture_at_twice_its_size(fake, world, bot):
    result = await result_for(fake, await command(fake, world.general, world.alice, "!stylize --seed 4 --tv-weight 1", IMAGES))
    assert picture_size(result) == (48, 36)
    assert labels(fake, result) == ["Again", "Vary", "Details", UPSCALE, "Delete"]
    with submitted_jobs(bot) as jobs:
        ix = await press(fake, world.bob, result, UPSCALE)  # anyone may: the new job is bob's
        assert "Queued (seed 4)" in await private_answer(ix)  # the job's own options, its seed too
        upscaled = await result_for(fake, result)  # replies to the result it came from
    job = jobs[0]
    assert job.user_id == world.bob.id and job.params["size"] == 96 and job.params["tv_weight"] == 1
    assert job.init_image == result.attachments[0].data  # the delivered picture itself
    assert picture_size(upscaled) == (96, 72)
    assert upscaled.content.startswith(f"<@{world.bob.id}> ")
    assert upscaled.content.endswith(f"\n⤴️ upscaled ×2 from job `{job_id_of(fake, result)[:8]}` (48×36 → 96×72)")
    assert UPSCALE not in labels(fake, upscaled)  # 192 px would be above caps.max_upscale_size (128)
    ix = await press(fake, world.bob, upscaled, "Details")
    assert "Upscale ×2 of the delivered picture" in await private_answer(ix)  # where its size came from


def job_id_of(fake, result) -> str:
    return fake.button(result, label="Again")["custom_id"].rsplit(":", 1)[1]


async def an_expired_image_cache_is_said_plainly(fake, world, bot):
    result = await result_for(fake, await command(fake, world.general, world.carol, "!stylize", IMAGES))
    bot.jobs.cache.clock = lambda: time.time() + 3601  # an hour later
    try:
        ix = await press(fake, world.carol, result, UPSCALE)
        assert "the images of that job are no longer kept (the bot keeps them for 1 h)" in await private_answer(ix)
        assert bot.executor.jobs() == []
    finally:
        bot.jobs.cache.clock = time.time


async def a_limit_lowered_after_the_result_refuses_with_the_numbers(fake, world, bot):
    result = await result_for(fake, await command(fake, world.general, world.dave, "!stylize", IMAGES))
    assert UPSCALE in labels(fake, result)
    await reply_to(fake, await command(fake, world.general, world.boss, "!limits set max_size 64"))
    try:
        ix = await press(fake, world.dave, result, UPSCALE)  # a stale button: refused with the numbers
        assert ("upscaling this 48×36 picture ×2 would make it 96 px on its longer side; this server's limit for "
                "upscaled pictures is 64 px") in await private_answer(ix)
        assert bot.executor.jobs() == []
        later = await result_for(fake, await command(fake, world.general, world.dave, "!stylize", IMAGES))
        assert picture_size(later) == (48, 36) and UPSCALE not in labels(fake, later)  # left out from the start
    finally:
        await reply_to(fake, await command(fake, world.general, world.boss, "!limits unset max_size"))


async def test_upscale_after_a_full_restart(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps=CAPS)
    async with running_bot(fake, config):
        result = await result_for(fake, await command(fake, world.general, world.alice, "!stylize --seed 6", IMAGES))
    async with running_bot(fake, config):  # a new process: only the custom id, the database and the cache remain
        ix = await press(fake, world.alice, result, UPSCALE)
        assert "Queued (seed 6)" in await private_answer(ix)
        upscaled = await result_for(fake, result)
        assert picture_size(upscaled) == (96, 72) and "⤴️ upscaled ×2 from job" in upscaled.content


async def test_a_job_beyond_the_memory_budget_is_refused_before_queueing(fake, world, tmp_path, weights_file):
    """A budget no step fits (every step needs the engine's fixed part, about 192 MiB): the engine's own
    message, before any job is queued."""
    config = make_config(tmp_path, weights_file, engine={"max_memory": "64MiB"})
    async with running_bot(fake, config) as bot:
        with submitted_jobs(bot) as jobs:
            request = await command(fake, world.general, world.alice, "!stylize", IMAGES)
            refusal = await reply_to(fake, request)
        assert refusal.content.startswith("⚠️ this job does not fit this bot's memory: a 48×36 picture needs about")
        assert "more than the memory budget of 64.0 MiB" in refusal.content and "set by the bot's operator" in refusal.content
        assert jobs == [] and bot.executor.jobs() == []


async def test_an_upscale_through_a_celery_worker(redis_server_url, shared_worker, one_worker, weights_file):
    """On Celery the starting picture travels apart from the task message, like the other images (a Redis
    key, gone with them when the job ends): the worker continues from it at twice its size."""
    import dataclasses

    import redis

    from bot.executor.base import Done
    from bot.executor.jobqueue import JobKeys
    from bot.config import load_config, queue_settings
    from bot_harness import png
    from test_celery import LIMITS, events, executor, job

    config_path, _ = one_worker
    upscale = dataclasses.replace(job(epochs=2, size=96), init_image=png(Image.new("RGB", (48, 36), (230, 20, 20))))
    async with executor(config_path) as ex:
        handle = await ex.submit(upscale, **LIMITS)
        seen = await events(handle, timeout=time_budget(4, weights_file))
    done = seen[-1]
    assert isinstance(done, Done) and tuple(done.stats["size"]) == (96, 72) and len(done.stats["tiles"]) == 1
    assert is_red(done.image)  # continued from the red picture, not started from the content
    r = redis.Redis.from_url(queue_settings(load_config(config_path)).redis_url)
    assert not r.exists(JobKeys(upscale.job_id).init_image)
