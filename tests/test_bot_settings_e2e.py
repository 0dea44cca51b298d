"""Per-user settings and per-server limits through the real discord.py command pipeline, persisted in
a real SQLite file across a full restart of the bot."""

from __future__ import annotations

import random


from bot.core.store import Store
from bot_harness import IMAGES, command, make_config, reply_to, running_bot


async def say(fake, channel, user, text, attachments=(), predicate=lambda m: True, timeout=30):
    request = await command(fake, channel, user, text, attachments)
    return (await reply_to(fake, request, predicate, timeout=timeout)).content


async def test_settings_survive_a_restart_and_apply_to_stylize(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file)
    g, alice = world.general, world.alice
    async with running_bot(fake, config):
        assert "Saved: epochs = 12" in await say(fake, g, alice, "!settings set epochs 12")
        assert "Saved: style_weight = 1e9" in await say(fake, g, alice, "!settings set --style-weight 1e9")
        assert "Saved: pool = avg" in await say(fake, g, alice, "!settings set pool avg")
        refused = await say(fake, g, alice, "!settings set lr -1")
        assert "`--lr`: must be" in refused and "greater than 0" in refused
        assert "unknown setting `colour`" in await say(fake, g, alice, "!settings set colour blue")
        assert "chosen per job" in await say(fake, g, alice, "!settings set style_blend 0.7,0.3")
        assert "Saved: schedule = reference" in await say(fake, g, alice, "!settings set schedule reference")
        await say(fake, g, alice, "!settings unset schedule")
        both_zero = await say(fake, g, alice, "!settings set content_weight 0")
        assert "Saved" in both_zero
        assert "cannot both be 0" in await say(fake, g, alice, "!settings set style_weight 0")
        await say(fake, g, alice, "!settings unset content_weight")
    async with running_bot(fake, config):  # a full restart: new process state, same database file
        shown = await say(fake, g, alice, "!settings")
        assert "epochs" in shown and "12  (your default)" in shown
        assert "1e9  (your default)" in shown and "avg  (your default)" in shown
        assert "100  (bot default)" in shown  # content_weight was unset
        assert "style_blend" not in shown  # per job only
        assert "auto  (bot default)" in shown  # lr: the schedule's own rate, shown as typed
        result = await say(fake, g, alice, "!stylize", IMAGES, predicate=lambda m: m.attachments, timeout=60)
        assert "12 epochs" in result
        result = await say(fake, g, alice, "!stylize --epochs 3", IMAGES, predicate=lambda m: m.attachments, timeout=60)
        assert "3 epochs" in result  # the command overrides the default
        assert "Removed your epochs" in await say(fake, g, alice, "!settings unset epochs")
        assert "You had no epochs saved" in await say(fake, g, alice, "!settings unset epochs")
        assert "removed 2 saved values" in await say(fake, g, alice, "!settings reset")
        assert "8  (bot default)" in await say(fake, g, alice, "!settings")


async def test_only_server_managers_and_the_owner_change_limits(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps={"max_epochs": 400})
    g = world.general
    async with running_bot(fake, config) as bot:
        refused = await say(fake, g, world.alice, "!limits set max_epochs 5")
        assert "only members with the Manage Server permission" in refused
        assert await bot.store.guild_limits(world.guild.id) == {}
        assert "max_epochs is now 10" in await say(fake, g, world.boss, "!limits set max_epochs 10")
        assert "max_size is now 64" in await say(fake, g, world.operator, "!limits set max_size 64")  # the bot's owner
        assert "cooldown is now 0 s" in await say(fake, g, world.owner, "!limits set cooldown 0")  # the server's owner
        above = await say(fake, g, world.boss, "!limits set max_epochs 5000")
        assert "above the bot operator's cap of 400; the most you can set is 400" in above
        assert await bot.store.guild_limits(world.guild.id) == {"max_epochs": 10, "max_size": 64, "cooldown": 0.0}
        shown = await say(fake, g, world.alice, "!limits")
        assert "**max_epochs**: 10" in shown and "bot cap 400" in shown and "**channels**: not set" in shown
        # the limit applies, and the reply says by which limit
        result = await say(fake, g, world.alice, "!stylize --epochs 30 --size 100", IMAGES, predicate=lambda m: m.attachments, timeout=60)
        assert "10 epochs · 64×48" in result
        assert "epochs 30 → 10: this server's limit" in result and "size 100 → 64: this server's limit" in result
    async with running_bot(fake, config) as bot:  # limits survive a restart
        assert await bot.store.guild_limits(world.guild.id) == {"max_epochs": 10, "max_size": 64, "cooldown": 0.0}
        assert "Removed this server's max_size" in await say(fake, g, world.boss, "!limits unset max_size")
        assert "only members with the Manage Server permission" in await say(fake, g, world.alice, "!limits unset max_epochs")


async def test_interleaved_settings_writes_keep_the_last_value_then_channels_and_cooldown(fake, world, tmp_path, weights_file):
    users = [fake.add_user(f"user{i}") for i in range(10)]
    for user in users:
        fake.add_member(world.guild.id, user.id)
    config = make_config(tmp_path, weights_file, caps={"max_jobs_per_user": 1, "max_queue": 50})
    rng = random.Random(5)
    authors = [user for user in users for _ in range(5)]  # 50 writes, 5 per user
    rng.shuffle(authors)
    sequence = [(user, rng.randint(1, 400)) for user in authors]  # random values: "last" is not "largest"
    last: dict[int, int] = {}
    async with running_bot(fake, config) as bot:
        requests = []
        for i, (user, value) in enumerate(sequence):
            requests.append(await command(fake, world.general, user, f"!settings set epochs {value}"))
            last[user.id] = value
            if i % 10 == 0:  # stylize commands in between, from the same users
                requests.append(await command(fake, world.general, user, "!stylize --epochs 2", IMAGES))
        for request in requests:
            await reply_to(fake, request, timeout=60)
        for user in users:
            assert (await bot.store.user_settings(user.id))["epochs"] == last[user.id]
        # then, on the same bot (a start loads a worker: seconds), channels and the cooldown
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=60, what="the interleaved jobs are finished")
        await channels_and_cooldown(fake, world, bot)
    store = await Store.open(config.database_path)
    try:
        for user in users:
            assert (await store.user_settings(user.id)) == {"epochs": last[user.id]}
    finally:
        await store.close()


async def channels_and_cooldown(fake, world, bot):
    """Restricts the server to #art with a cooldown: last in its session."""
    text = await say(fake, world.general, world.boss, f"!limits set channels <#{world.art.id}>")
    assert f"channels is now <#{world.art.id}>" in text
    refused = await say(fake, world.general, world.alice, "!stylize", IMAGES)
    assert f"works in <#{world.art.id}> only" in refused
    await say(fake, world.art, world.alice, "!stylize", IMAGES, predicate=lambda m: m.attachments, timeout=60)
    assert "is not a text channel" in await say(fake, world.general, world.boss, "!limits set channels #nowhere")
    await say(fake, world.art, world.boss, "!limits set cooldown 600")
    assert "please wait" in await say(fake, world.art, world.alice, "!stylize", IMAGES)
