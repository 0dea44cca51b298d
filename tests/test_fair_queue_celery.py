"""End to end (issue 23) with Celery: the bot holds jobs in Redis and sends one to the broker only when
a worker slot is free, the one the fair order ranks first; held jobs survive a restart of the bot.
Bots as users start them (subprocesses), a real worker and Redis, the fake Discord."""

from __future__ import annotations

import asyncio
import json
import signal

import redis

from bot.executor.jobqueue import ACTIVE, HELD
from bot_harness import IMAGES, command, make_world, reply_to, time_budget
from redis_harness import Worker
# the fixtures too: one Redis per module, a fresh fake Discord and an empty Redis per test
from test_celery_bot import TOKEN_A, BotProcess, answered, bot_config, fake, redis_url  # noqa: F401

LONG = "--epochs 100 --size 64"
SHORT = "--epochs 2"


def policy(path, name: str, **caps):
    """The config at ``path`` with the queue policy ``name`` (and caps)."""
    text = path.read_text() + f'\n[queue]\npolicy = "{name}"\n'
    for key, value in caps.items():
        text = text.replace("[caps]\n", f"[caps]\n{key} = {value}\n")
    path.write_text(text)
    return path


def held_states(redis_url) -> list[str]:
    return [json.loads(raw)["state"] for raw in redis.Redis.from_url(redis_url).hvals(ACTIVE)]


async def test_round_robin_across_servers_with_one_worker_of_concurrency_one(fake, tmp_path, weights_file, redis_url):
    """Server A queues 3 jobs, server B then 1: B's is the second to run (delivered second: one worker
    runs one job at a time), though it reached Redis last; under first come, first served it would be last."""
    world = make_world(fake, token=TOKEN_A)
    b_guild = fake.add_guild(name="Other Club", owner_id=world.owner.id)
    b_channel = fake.add_text_channel(b_guild.id, "general")
    erin = fake.add_user("erin")
    fake.add_member(b_guild.id, erin.id)
    config = policy(bot_config(tmp_path, weights_file, redis_url, "a", "!"), "round-robin", max_queue=10)
    worker = Worker(config, "w0@test", tmp_path / "worker.log")
    bot = BotProcess(fake, config, TOKEN_A, tmp_path / "bot.log")
    try:
        await bot.start()
        await asyncio.to_thread(worker.wait_ready)
        await fake.wait_ready(timeout=60)
        await answered(fake, world.general, world.dave)
        requests = [await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)]
        await reply_to(fake, requests[0], lambda m: "Started" in m.content or "%" in m.content,
                       timeout=time_budget(1, weights_file) + 30)
        for _ in range(2):
            request = await command(fake, world.general, world.alice, f"!stylize {SHORT}", IMAGES)
            await reply_to(fake, request, lambda m: "Queued" in m.content, timeout=30)
            requests.append(request)
        requests.append(await command(fake, b_channel, erin, f"!stylize {SHORT}", IMAGES))
        status = await reply_to(fake, requests[3], lambda m: "Queued" in m.content, timeout=30)
        assert held_states(redis_url).count(HELD) == 3, "the waiting jobs are held back, not sent to the broker"
        listing = await answered(fake, b_channel, erin)
        results = [await reply_to(fake, r, lambda m: m.attachments, timeout=time_budget(100 + 3 * 2, weights_file) + 30)
                   for r in requests]
    finally:
        await bot.stop()
        worker.stop()
    delivered = sorted(results, key=lambda m: m.id)
    assert [m.message_reference for m in delivered] == [requests[i].id for i in (0, 3, 1, 2)]
    shown = [v.content for v in status.edits] + [status.content]
    assert any(text.startswith("⏳ Queued, position 1 · starts in") for text in shown), shown  # B's went ahead at once
    assert "⏳ Your job: position 1 · starts in" in listing.content, listing.content


async def test_a_held_job_is_sent_after_the_bot_restarts(fake, tmp_path, weights_file, redis_url):
    """No worker: the job waits, held in Redis. The bot restarts; a worker comes; the new bot process sends
    the held job and delivers its result to the right message."""
    world = make_world(fake, token=TOKEN_A)
    config = bot_config(tmp_path, weights_file, redis_url, "a", "!")
    first = BotProcess(fake, config, TOKEN_A, tmp_path / "bot-1.log")
    second = BotProcess(fake, config, TOKEN_A, tmp_path / "bot-2.log")
    worker = None
    try:
        await first.start()
        await fake.wait_ready(timeout=60)
        request = await command(fake, world.general, world.alice, f"!stylize {SHORT}", IMAGES)
        status = await reply_to(fake, request, lambda m: "when a worker is back online" in m.content, timeout=30)
        assert status.content.startswith("⏳ Queued, position 1 · starts when a worker is back online"), status.content
        await asyncio.sleep(2)  # two refreshes of the queue: with no worker, nothing is sent
        assert held_states(redis_url) == [HELD]
        await first.stop(signal.SIGTERM)
        assert held_states(redis_url) == [HELD]
        await second.start()
        await fake.wait_ready(timeout=60)
        worker = Worker(config, "w0@test", tmp_path / "worker.log")
        await asyncio.to_thread(worker.wait_ready)
        result = await reply_to(fake, request, lambda m: m.attachments, timeout=time_budget(2, weights_file) + 60)
        assert f"<@{world.alice.id}>" in result.content
    finally:
        await first.stop()
        await second.stop()
        if worker is not None:
            worker.stop()
    assert "re-attached to job" in (tmp_path / "bot-2.log").read_text()
    assert "sent to the workers" in (tmp_path / "bot-2.log").read_text()
