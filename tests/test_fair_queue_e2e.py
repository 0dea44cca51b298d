"""End to end (issue 23), local worker: the fair order of waiting jobs, the slow lane and the refusal of
members over their daily quota, and the position and estimated start in the status message and in
!queue. The real bot against the fake Discord, one CPU worker, tiny jobs."""

from __future__ import annotations

import time

from bot_harness import IMAGES, command, make_config, reply_to, running_bot, submitted_jobs, time_budget

LONG = "--epochs 40 --size 64"  # the job that keeps the one worker busy while the others queue
SHORT = "--epochs 2"


def versions(message) -> list[str]:
    return [v.content for v in message.edits] + [message.content]


async def result_of(fake, request, weights_file, steps: int):
    return await reply_to(fake, request, lambda m: m.attachments and m.attachments[0].filename.startswith("stylized"),
                          timeout=time_budget(steps, weights_file))


def second_server(fake, world):
    """Server B, with a member of its own."""
    guild = fake.add_guild(name="Other Club", owner_id=world.owner.id)
    channel = fake.add_text_channel(guild.id, "general")
    erin = fake.add_user("erin")
    fake.add_member(guild.id, erin.id)
    return guild, channel, erin


async def start_order(bot, jobs) -> list[int]:
    """The users of ``jobs`` in the order their workers started them (the records' started_at)."""
    records = [await bot.store.get_job(job.job_id) for job in jobs]
    assert all(record.started_at is not None for record in records), records
    return [record.user_id for record in sorted(records, key=lambda record: record.started_at)]


async def test_round_robin_across_servers_with_the_estimate_in_the_status_and_in_queue(fake, world, tmp_path, weights_file):
    """Server A queues 3 jobs, server B then 1: under round-robin B's runs second, not last. Queued jobs
    show their position and estimated start, in their status messages and in !queue."""
    config = make_config(tmp_path, weights_file, queue={"policy": "round-robin"},
                         caps={"max_jobs_per_user": 3, "max_queue": 10})
    _, b_channel, erin = second_server(fake, world)
    async with running_bot(fake, config) as bot:
        with submitted_jobs(bot) as jobs:
            requests = [await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)]
            await fake.wait_until(lambda: [i.state for i in bot.executor.jobs()] == ["running"], timeout=30,
                                  what="the first job runs")
            for _ in range(2):
                requests.append(await command(fake, world.general, world.alice, f"!stylize {SHORT}", IMAGES))
            await fake.wait_until(lambda: len(bot.executor.jobs()) == 3, timeout=30, what="server A's jobs queued")
            requests.append(await command(fake, b_channel, erin, f"!stylize {SHORT}", IMAGES))
            await fake.wait_until(lambda: len(bot.executor.jobs()) == 4, timeout=30, what="server B's job queued")
            listing = await reply_to(fake, await command(fake, b_channel, erin, "!queue"))
            for request in requests:
                await result_of(fake, request, weights_file, 40 + 3 * 2)
        assert await start_order(bot, jobs) == [world.alice.id, erin.id, world.alice.id, world.alice.id]
    assert "⏳ Your job: position 1 · starts in" in listing.content, listing.content
    status = [m for m in fake.bot_messages(b_channel.id) if m.message_reference == requests[3].id and not m.attachments]
    shown = [text for message in status for text in versions(message)]
    assert any(text.startswith("⏳ Queued, position 1 · starts in") for text in shown), shown


async def test_a_job_over_quota_waits_in_the_slow_lane_behind_a_later_one(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, quotas={"user_daily": 60, "over_quota": "slow-lane"})
    async with running_bot(fake, config) as bot:
        await bot.store.record_usage("earlier", world.alice.id, world.guild.id, 75.0, None, time.time())
        with submitted_jobs(bot) as jobs:
            first = await command(fake, world.general, world.bob, f"!stylize {LONG}", IMAGES)
            await fake.wait_until(lambda: [i.state for i in bot.executor.jobs()] == ["running"], timeout=30,
                                  what="bob's job runs")
            slow = await command(fake, world.general, world.alice, f"!stylize {SHORT}", IMAGES)
            await fake.wait_until(lambda: len(bot.executor.jobs()) == 2, timeout=30, what="alice's job queued")
            later = await command(fake, world.general, world.carol, f"!stylize {SHORT}", IMAGES)
            results = [await result_of(fake, request, weights_file, 40 + 2 * 2) for request in (first, slow, later)]
        assert await start_order(bot, jobs) == [world.bob.id, world.carol.id, world.alice.id]
        # the member over quota is told why and until when, with the job (the others are not)
        assert "⚠️ you have used 1 min of your 1 min today; your jobs wait in the slow lane until 00:00 UTC" \
            in results[1].content, results[1].content
        assert "slow lane" not in results[2].content
        charged = await bot.quotas.used(user_id=world.bob.id, guild_id=world.guild.id)
        assert charged.user > 0  # bob's finished job is in the ledger, with the worker's own seconds


async def test_a_job_over_quota_is_refused_where_the_operator_says_so(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, quotas={"user_daily": 60, "over_quota": "refuse"})
    async with running_bot(fake, config) as bot:
        await bot.store.record_usage("earlier", world.alice.id, world.guild.id, 75.0, None, time.time())
        refused = await command(fake, world.general, world.alice, f"!stylize {SHORT}", IMAGES)
        reply = await reply_to(fake, refused)
        assert reply.content.startswith("⚠️ ") and "new jobs are refused until 00:00 UTC" in reply.content, reply.content
        assert bot.executor.jobs() == []


async def test_a_roles_allowance_keeps_its_members_out_of_the_slow_lane_by_prefix_and_by_slash(fake, world, tmp_path, weights_file):
    """The member cap of a server would put both in the slow lane; alice's role gives her more. The
    prefix command carries her roles; a slash command's are asked of Discord (the bot has no members
    intent)."""
    from test_slash_e2e import private_answer

    config = make_config(tmp_path, weights_file, quotas={"over_quota": "slow-lane"})
    patron = fake.add_role(world.guild.id, "Patron")
    fake.update_member(world.guild.id, world.alice.id, roles=[patron])
    async with running_bot(fake, config) as bot:
        fake.register_tree(bot)
        await bot.store.set_guild_limit(world.guild.id, "quota_member", 60.0)
        await bot.store.set_guild_limit(world.guild.id, "quota_roles", {str(patron.id): 3600.0})
        for user in (world.alice, world.bob):
            await bot.store.record_usage(f"earlier-{user.id}", user.id, world.guild.id, 75.0, None, time.time())
        prefix = {}
        for user in (world.alice, world.bob):
            request = await command(fake, world.general, user, f"!stylize {SHORT}", IMAGES)
            prefix[user.id] = (await result_of(fake, request, weights_file, 2)).content
        ix = await fake.slash(world.alice, world.general, "stylize", options={"content": IMAGES[0], "style_image": IMAGES[1]})
        assert "slow lane" not in await private_answer(ix)
        ix = await fake.slash(world.bob, world.general, "stylize", options={"content": IMAGES[0], "style_image": IMAGES[1]})
        assert "your jobs wait in the slow lane until 00:00 UTC" in await private_answer(ix)
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=time_budget(4, weights_file), what="both ran")
    assert "slow lane" not in prefix[world.alice.id]
    assert "you have used 1 min of your 1 min in this server today; your jobs wait in the slow lane" in prefix[world.bob.id]


async def test_a_job_cancelled_after_it_started_is_charged_the_seconds_it_ran_and_one_cancelled_before_is_not(
        fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file)
    async with running_bot(fake, config) as bot:
        sent = time.time()
        running = await command(fake, world.general, world.bob, "!stylize --epochs 400 --size 64", IMAGES)
        await reply_to(fake, running, lambda m: "%" in m.content, timeout=time_budget(2, weights_file))
        waiting = await command(fake, world.general, world.carol, f"!stylize {SHORT}", IMAGES)
        await reply_to(fake, waiting, lambda m: "Queued" in m.content, timeout=30)
        await reply_to(fake, await command(fake, world.general, world.carol, "!cancel"))
        await reply_to(fake, await command(fake, world.general, world.bob, "!cancel"))
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=time_budget(2, weights_file), what="both ended")
        await bot.jobs.drain(timeout=10)
        rows = await bot.store.usage_since(0.0)
    assert [(user, guild) for user, guild, _, _ in rows] == [(world.bob.id, world.guild.id)]  # carol's never ran
    assert 0 < rows[0][2] < time.time() - sent  # from its start to its end, as the bot saw them
