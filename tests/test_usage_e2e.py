"""Quotas through the real discord.py pipeline and a real SQLite file: ``!usage`` and ``/usage`` show the
usage ledger against the quotas, a server's admins set their own quota limits (never above the operator's),
and reset a member's usage (a member may not; the bot's owner resets everywhere), across a restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.core.usage import duration
from bot_harness import IMAGES, command, make_config, reply_to, running_bot, time_budget


async def say(fake, channel, user, text):
    return (await reply_to(fake, await command(fake, channel, user, text))).content


async def private_answer(ix, timeout: float = 30):
    await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=timeout)
    message = ix.followups[0] if ix.followups else ix.original
    assert message.ephemeral_to == ix.user_id, "the answer should be private"
    return message.content


async def charge(bot, job_id: str, user_id: int, guild_id: int | None, seconds: float) -> None:
    assert await bot.store.record_usage(job_id, user_id, guild_id, seconds, None, time.time())


async def ledger_rows(bot, user_id: int, guild_id: int) -> list:
    """The user's counted ledger rows (resets applied) in that server, once a charge has landed (it is
    recorded when the job ends, beside the result)."""
    deadline = time.monotonic() + 10
    while True:
        rows = [row for row in await bot.store.usage_since(0.0) if row[:2] == (user_id, guild_id) and row[2] > 0]
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_usage_limits_and_resets_through_discord(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, quotas={"user_daily": 3600, "server_daily": 7200})
    g, alice, bob, boss = world.general, world.alice, world.bob, world.boss
    patron = fake.add_role(world.guild.id, "Patron")
    fake.update_member(world.guild.id, alice.id, roles=[patron])
    async with running_bot(fake, config) as bot:
        fake.register_tree(bot)
        await charge(bot, "a1", alice.id, world.guild.id, 600.0)
        await charge(bot, "a2", alice.id, None, 300.0)  # a direct message: her own cap counts it
        await charge(bot, "b1", bob.id, world.guild.id, 1200.0)

        shown = await say(fake, g, alice, "!usage")
        assert "You, everywhere: 15 min of 1 h today" in shown
        assert "You, in this server: 10 min today" in shown  # no per-member quota set yet
        assert "This server: 30 min of 2 h today" in shown
        assert "Usage resets at 00:00 UTC (in " in shown
        answer = await private_answer(await fake.slash(bob, g, "usage"))
        assert "You, everywhere: 20 min of 1 h today" in answer and "This server: 30 min of 2 h today" in answer

        # a server's own quota limits: durations, never above the operator's caps, roles by mention
        assert "quota_member is now 5 min a day" in await say(fake, g, boss, "!limits set quota_member 5m")
        above = await say(fake, g, boss, "!limits set quota_server 3h")
        assert "above the bot operator's daily cap per server of 2 h; the most you can set is 2 h" in above
        assert "must be a duration like 90s, 30m, 2h or 1h30m" in await say(fake, g, boss, "!limits set quota_member lots")
        roles = await say(fake, g, boss, f"!limits set quota_roles <@&{patron.id}> 30m 30s")
        assert f"quota_roles is now <@&{patron.id}> 30 min 30 s" in roles
        above = await say(fake, g, boss, f"!limits set quota_roles <@&{patron.id}> 2h")
        assert "above the bot operator's daily cap per user of 1 h" in above
        assert f"quota_roles is now <@&{patron.id}> 45 min" in await say(fake, g, boss, f"!limits set quota_roles <@&{patron.id}> 45m")
        assert "only members with the Manage Server permission" in await say(fake, g, alice, "!limits set quota_member 2h")
        assert await bot.store.guild_limits(world.guild.id) == {"quota_member": 300.0, "quota_roles": {str(patron.id): 2700.0}}
        limits = await say(fake, g, alice, "!limits")
        assert "**quota_member**: 5 min a day" in limits and "bot cap 1 h a day" in limits
        assert f"Daily quotas here: 5 min a member, <@&{patron.id}> 45 min, 2 h for the server" in limits

        shown = await say(fake, g, alice, "!usage")  # her role's allowance, not the member quota
        assert "You, in this server: 10 min of 45 min today" in shown and "slow lane" not in shown
        shown = await say(fake, g, bob, "!usage")
        assert "You, in this server: 20 min of 5 min today" in shown
        assert "You have used 20 min of your 5 min in this server today; your jobs wait in the slow lane" in shown

        # resets: refused for a member; an admin's frees the member's quota here; the owner's, everything
        assert "only members with the Manage Server permission (or the bot's owner) can reset usage" in await say(
            fake, g, alice, f"!usage reset <@{bob.id}>")
        with pytest.raises(PermissionError):  # /usage-reset is hidden from members (default permissions)
            await fake.slash(alice, g, "usage-reset", options={"member": bob})
        assert f"Reset <@{bob.id}>'s usage in this server" in await say(fake, g, boss, f"!usage reset <@{bob.id}>")
        shown = await say(fake, g, bob, "!usage")
        assert "You, in this server: 0 s of 5 min today" in shown and "slow lane" not in shown
        assert "You, everywhere: 20 min of 1 h today" in shown  # the operator's cap still counts it
        assert "is not a member" in await say(fake, g, boss, "!usage reset everyone")
        assert f"Reset <@{alice.id}>'s usage everywhere" in await say(fake, g, world.operator, f"!usage reset <@{alice.id}>")

        # a job that runs is charged to the ledger with the worker's own seconds, and counts after a reset
        result = await reply_to(fake, await command(fake, g, alice, "!stylize --epochs 4", IMAGES),
                                lambda m: bool(m.attachments), timeout=time_budget(4, weights_file))
        assert result.attachments
        charged = await ledger_rows(bot, alice.id, world.guild.id)
        assert len(charged) == 1  # the owner's reset took the earlier 10 min out: only the new job counts
        _, _, seconds, member_seconds = charged[0]
        assert seconds == member_seconds and 0 < seconds < time_budget(4, weights_file)

    async with running_bot(fake, config) as bot:  # the ledger, the limits and the resets survive a restart
        fake.register_tree(bot)
        answer = await private_answer(await fake.slash(alice, g, "usage"))
        assert f"You, everywhere: {duration(seconds)} of 1 h today" in answer
        assert f"This server: {duration(1200.0 + seconds)} of 2 h today" in answer
        shown = await say(fake, g, bob, "!usage")
        assert "You, in this server: 0 s of 5 min today" in shown
        reset = await private_answer(await fake.slash(boss, g, "usage-reset", options={"member": alice}))
        assert f"Reset <@{alice.id}>'s usage in this server" in reset
