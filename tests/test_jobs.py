"""The job service's own guarantees, end to end: restart recovery touches only an earlier process's
jobs (issue 11, defect 2), and the bot's channel permissions are checked before anything is queued
(defect 6)."""

from __future__ import annotations

import asyncio
import logging

from bot.app import StyleBot
from bot_harness import IMAGES, TOKEN, command, make_config, reply_to, running_bot, submitted_jobs

try:
    from fake_discord import P
except ImportError:  # tests/ as a package
    from tests.fake_discord import P


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


async def test_a_job_sent_before_on_ready_is_not_reported_lost(fake, world, tmp_path, weights_file):
    """Commands work as soon as the gateway is READY, seconds before discord.py's on_ready (it waits
    guild_ready_timeout for more servers). The restart check at on_ready must leave such jobs alone."""
    config = make_config(tmp_path, weights_file, caps={"max_epochs": 100_000})
    bot = StyleBot(config, guild_ready_timeout=5.0)
    with fake.patch_client():
        task = asyncio.create_task(bot.start(TOKEN))
        try:
            await fake.wait_ready(timeout=60)
            request = await command(fake, world.general, world.alice, "!stylize --epochs 50000 --size 64", IMAGES)
            await fake.wait_until(lambda: bot.jobs.handles_for_user(world.alice.id), timeout=30, poll=0.05,
                                  what="the job accepted")
            assert not bot.is_ready(), "on_ready came first: the case under test did not happen"
            await asyncio.wait_for(bot.wait_until_ready(), 60)
            await reply_to(fake, request, lambda m: "%" in m.content, timeout=60)  # still running after on_ready
            await asyncio.sleep(0.5)  # the restart check runs at on_ready: give a wrong verdict time to show
            await reply_to(fake, await command(fake, world.general, world.alice, "!cancel"))
            stopped = await reply_to(fake, request, lambda m: "did not finish" in m.content, timeout=60)
            assert stopped.content.endswith("did not finish: cancelled")
            for message in fake.bot_messages(world.general.id):
                assert all("lost" not in v.content for v in [*message.edits, message]), message.content
            job_id = bot_job_id(bot, world)
            while (await bot.store.get_job(job_id)).state == "running":
                await asyncio.sleep(0.05)
            assert (await bot.store.get_job(job_id)).state == "cancelled"
        finally:
            await bot.close()
            await asyncio.wait({task}, timeout=30)


def bot_job_id(bot, world) -> str:
    import sqlite3

    with sqlite3.connect(bot.config.database_path) as db:
        return db.execute("SELECT job_id FROM jobs WHERE user_id = ?", (world.alice.id,)).fetchone()[0]


async def test_attach_files_denied_is_said_before_queueing(fake, world, tmp_path, weights_file):
    fake.set_overwrite(world.art.id, world.bot_user.id, deny=P.ATTACH_FILES)
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        request = await command(fake, world.art, world.alice, "!stylize", IMAGES)
        reply = await reply_to(fake, request)
        assert "I need the **Attach Files** permission in this channel" in reply.content
        assert bot.executor.jobs() == [] and await bot.store.unfinished_jobs() == []
        assert bot_jobs(bot) == 0
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.art, "stylize", options={"content": IMAGES[0], "style_image": IMAGES[1]})
        await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=30)
        answer = ix.followups[0] if ix.followups else ix.original
        assert "**Attach Files**" in answer.content and answer.ephemeral_to == world.alice.id
        assert bot_jobs(bot) == 0


async def test_read_message_history_denied_is_said_without_a_reply(fake, world, tmp_path, weights_file):
    fake.set_overwrite(world.art.id, world.bot_user.id, deny=P.READ_MESSAGE_HISTORY)
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        await command(fake, world.art, world.alice, "!stylize", IMAGES)
        said = await fake.wait_for_message(channel_id=world.art.id, timeout=30)
        assert said.content.startswith(f"<@{world.alice.id}> ⚠️ I need the **Read Message History** permission")
        assert bot_jobs(bot) == 0


async def test_send_messages_denied_runs_nothing_and_logs_why(fake, world, tmp_path, weights_file, caplog):
    fake.set_overwrite(world.art.id, world.bot_user.id, deny=P.SEND_MESSAGES)
    with caplog.at_level(logging.WARNING, logger="bot"):
        async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
            await command(fake, world.art, world.alice, "!stylize", IMAGES)
            await fake.wait_until(lambda: "missing Send Messages" in caplog.text, timeout=30, poll=0.05,
                                  what="the refusal logged")
            # the same bot still works where it may speak
            result = await reply_to(fake, await command(fake, world.general, world.alice, "!stylize", IMAGES), is_result, timeout=120)
            assert result.attachments
            assert bot_jobs(bot) == 1
    assert fake.bot_messages(world.art.id) == []


def bot_jobs(bot) -> int:
    import sqlite3

    with sqlite3.connect(bot.config.database_path) as db:
        return db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]



async def test_a_finished_job_is_charged_its_workers_seconds_and_the_fair_orders_state_survives_a_restart(
        fake, world, tmp_path, weights_file):
    """Issue 23: a job that ran is charged once to its member and server, the worker's own seconds (within
    what the bot saw between its start and its end); fair-share's shares and the measured speed are kept
    in the store, and a restarted bot orders by them."""
    config = make_config(tmp_path, weights_file)
    async with running_bot(fake, config) as bot:
        with submitted_jobs(bot) as jobs:
            request = await command(fake, world.general, world.alice, "!stylize --epochs 4", IMAGES)
            await reply_to(fake, request, is_result, timeout=60)
        await bot.jobs.drain(timeout=10)  # its record is written after the result is posted
        record = await bot.store.get_job(jobs[0].job_id)
        rows = await bot.store.usage_since(0.0)
        shares, speed = bot.jobs.fair.shares, bot.jobs.fair.speed
    assert [(user, guild) for user, guild, _, _ in rows] == [(world.alice.id, world.guild.id)]
    seconds = rows[0][2]
    assert 0 < seconds <= record.finished_at - record.started_at + 0.5
    assert record.work == jobs[0].work > 0
    assert world.guild.id in shares.servers and (world.guild.id, world.alice.id) in shares.members
    assert speed.samples == 1 and speed.seconds_per_unit == seconds / jobs[0].work
    async with running_bot(fake, config) as again:
        assert again.jobs.fair.shares == shares and again.jobs.fair.speed == speed
        assert [row[2] for row in await again.store.usage_since(0.0)] == [seconds]  # charged once


def test_the_fair_queue_counts_a_job_sent_to_its_worker_before_its_start_is_reported():
    """Between the executor sending a job and the service handling its Started event, the order must
    already count it: else the next free worker (or the estimates) would go to the same server again."""
    from bot.core.fairqueue import FairQueue
    from bot.executor.base import QueueEntry

    fair = FairQueue("fair-share", None, None, clock=lambda: 1000.0)
    for job_id, user, guild in (("a1", 1, 10), ("a2", 1, 10), ("b1", 2, 20)):
        fair.admitted(job_id, user, guild, (), False)
    running = [QueueEntry("a1", 1, 10, 900.0, 1e6, started_at=999.0)]
    waiting = [QueueEntry("a2", 1, 10, 901.0, 1e6), QueueEntry("b1", 2, 20, 950.0, 1e6)]
    assert [p.job_id for p in fair.order(waiting, running, 1)] == ["b1", "a2"]
    assert [p.job_id for p in fair.order(waiting, [], 1)] == ["a2", "b1"]  # nothing ran: the oldest first
