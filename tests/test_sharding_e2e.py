"""Sharding (issue 18, item 8): the bot runs its gateway through discord.py's sharded client, with as
many shards as bot.shards says ("auto": what Discord's GET /gateway/bot recommends). One sharded bot
for every scenario (a start is the expensive part): the fake deals the servers to the shards, jobs from
a server on each shard and from a DM are delivered, /healthz and /metrics report each shard, and one
shard held down while it reconnects leaves the other serving."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from bot.app import StyleBot
from bot_harness import IMAGES, command, make_config, reply_to, running_bot

SHARDS = 2


def guild_id_on(shard: int, before: int) -> int:
    """A snowflake a little older than ``before`` (the fake never makes one that old again) whose guild
    lands on ``shard`` of SHARDS: (id >> 22) % SHARDS == shard."""
    timestamp = (before >> 22) - 16
    return (timestamp - timestamp % SHARDS + shard) << 22


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.text()


async def healthz(base: str) -> tuple[int, dict]:
    status, body = await get(base + "/healthz")
    return status, json.loads(body)


async def until(check, timeout: float = 30.0):
    """Until ``check()`` (a coroutine function) returns something truthy; that value."""
    async def loop():
        while not (result := await check()):
            await asyncio.sleep(0.1)
        return result

    return await asyncio.wait_for(loop(), timeout)


def sharded_world(fake):
    operator = fake.add_user("operator")
    bot_user = fake.add_bot(name="StyleBot", owner_id=operator.id)
    near = fake.ids.next()
    guilds, channels = [], []
    for shard in range(SHARDS):
        guild = fake.add_guild(guild_id_on(shard, near), name=f"Server on shard {shard}", owner_id=operator.id)
        guilds.append(guild)
        channels.append(fake.add_text_channel(guild.id, "general"))
    users = [fake.add_user(name) for name in ("alice", "bob", "carol", "dave")]
    for guild in guilds:
        for user in users:
            fake.add_member(guild.id, user.id)
    return bot_user, guilds, channels, users


def dispatched(session, event: str) -> list[dict]:
    return [p["d"] for p in session.buffer if p["t"] == event]


def shard_of(session) -> int:
    return session.shard[0]


async def test_a_sharded_bot_serves_every_shard_and_dms_and_survives_one_shards_reconnect(fake, tmp_path, weights_file):
    bot_user, guilds, channels, (alice, bob, carol, dave) = sharded_world(fake)
    fake.gateway.recommended_shards = SHARDS  # bot.shards = "auto": the count GET /gateway/bot recommends
    config = make_config(tmp_path, weights_file, web={"enabled": True, "port": 0}, defaults={"epochs": 2})
    assert config.bot.shards is None
    async with running_bot(fake, config) as bot:
        base = f"http://127.0.0.1:{bot.web.port}"
        # The fake dealt each server to its shard, DMs to shard 0 only.
        assert bot.shard_count == SHARDS
        sessions = sorted((s for s in fake.sessions if s.connected), key=shard_of)
        assert [s.shard for s in sessions] == [[0, SHARDS], [1, SHARDS]]
        for shard, session in enumerate(sessions):
            assert dispatched(session, "READY")[0]["shard"] == [shard, SHARDS]
            assert [g["id"] for g in dispatched(session, "READY")[0]["guilds"]] == [str(guilds[shard].id)]
            assert [g["id"] for g in dispatched(session, "GUILD_CREATE")] == [str(guilds[shard].id)]
            assert bot.get_guild(guilds[shard].id).shard_id == shard
        # Every shard connected, each with its latency.
        status, health = await until(lambda: _all_latencies_known(base))
        assert status == 200 and [s["id"] for s in health["shards"]] == [0, 1]
        assert all(s["connected"] and s["latency"] >= 0 for s in health["shards"])
        _, metrics = await get(base + "/metrics")
        for shard in range(SHARDS):
            assert f'nst_gateway_latency_seconds{{shard="{shard}"}}' in metrics
            assert f'nst_gateway_shard_connected{{shard="{shard}"}} 1.0' in metrics
        assert "\nnst_gateway_connected 1.0" in metrics

        # A job from the server on shard 1 and one from a DM, which only shard 0 receives (once).
        request = await command(fake, channels[1], alice, "!stylize", IMAGES)
        dm = fake.open_dm(carol.id)
        dm_request = await fake.user_sends(dm.id, carol.id, "!stylize", attachments=IMAGES)
        assert await reply_to(fake, request, is_result, timeout=120)
        assert await reply_to(fake, dm_request, is_result, timeout=120)
        received_by = [shard_of(s) for s in sessions for d in dispatched(s, "MESSAGE_CREATE") if d["id"] == str(dm_request.id)]
        assert received_by == [0]
        assert len([m for m in fake.bot_messages(dm.id) if m.message_reference == dm_request.id and is_result(m)]) == 1

        # Shard 1 loses its session; its new IDENTIFY is held back (the hook discord.py calls before each).
        release = asyncio.Event()
        identify_as_usual = bot.before_identify_hook

        async def hold_shard_1(shard_id, *, initial=False):
            if shard_id == 1:
                await release.wait()
            await identify_as_usual(shard_id, initial=initial)

        bot.before_identify_hook = hold_shard_1
        try:
            await serve_with_shard_1_down(fake, bot_user, base, channels, bob, dave)
        finally:
            release.set()  # the sharded client's connect loop waits for this shard's IDENTIFY: never leave it held
        # Shard 1 comes back (a new session) and serves its server again.
        await until(lambda: _status(base, 200))
        request = await command(fake, channels[1], alice, "!stylize", IMAGES)
        assert await reply_to(fake, request, is_result, timeout=120)
        assert sorted(shard_of(s) for s in fake.sessions if s.connected) == [0, 1]


async def serve_with_shard_1_down(fake, bot_user, base, channels, bob, dave) -> None:
    """Shard 1's session invalidated, its new IDENTIFY held: /healthz and /metrics say so, and shard 0
    serves its server and the DMs."""
    assert await fake.gateway.disconnect(4000, bot_id=bot_user.id, shard_id=1, invalidate=True) == 1
    status, health = await until(lambda: _status(base, 503))
    assert health["reason"] == "shard 1 of 2 not connected to the Discord gateway"
    assert [(s["id"], s["connected"]) for s in health["shards"]] == [(0, True), (1, False)]
    _, metrics = await get(base + "/metrics")
    assert 'nst_gateway_shard_connected{shard="1"} 0.0' in metrics and "\nnst_gateway_connected 0.0" in metrics

    request = await command(fake, channels[0], bob, "!stylize", IMAGES)
    dm = fake.open_dm(dave.id)
    dm_request = await fake.user_sends(dm.id, dave.id, "!stylize", attachments=IMAGES)
    assert await reply_to(fake, request, is_result, timeout=120)
    assert await reply_to(fake, dm_request, is_result, timeout=120)
    assert not (await healthz(base))[1]["shards"][1]["connected"]  # all that while, shard 1 was down


async def _all_latencies_known(base: str):
    status, health = await healthz(base)
    return (status, health) if status == 200 and all(s["latency"] is not None for s in health["shards"]) else None


async def _status(base: str, wanted: int):
    status, health = await healthz(base)
    return (status, health) if status == wanted else None


@pytest.mark.parametrize("shards, expected", [(None, None), (3, 3)])
def test_bot_shards_sets_the_shard_count(tmp_path, weights_file, shards, expected):
    """A count is used as given; "auto" (None) leaves it to discord.py, which asks GET /gateway/bot."""
    config = make_config(tmp_path, weights_file, bot={"shards": "auto" if shards is None else shards})
    assert StyleBot(config).shard_count == expected
