"""The fake Discord's sharding, as Discord documents it (docs: Gateway → Sharding, Get Gateway Bot;
Opcodes and Status Codes → Gateway Close Event Codes), through a raw websocket: what a sharded
IDENTIFY gets and what it is refused. The bot's own sharded run is in test_sharding_e2e.py."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

TOKEN = "test-token"


async def identify(fake, shard) -> tuple[list[dict], int | None]:
    """IDENTIFY with ``shard`` on a fresh websocket: the dispatches received until the fake has sent
    READY and the GUILD_CREATEs (or closed the socket), and the close code, if it closed."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["op"] == 10  # HELLO
            data = {"token": TOKEN, "intents": 1 | 1 << 9 | 1 << 12, "properties": {}}
            if shard is not None:
                data["shard"] = shard
            await ws.send_str(json.dumps({"op": 2, "d": data}))
            return await asyncio.wait_for(_read_until_ready(fake, ws, data), 10)


async def _read_until_ready(fake, ws, identify_data) -> tuple[list[dict], int | None]:
    received = []
    while True:
        try:
            message = await ws.receive(timeout=0.1)
        except asyncio.TimeoutError:
            if any(s.ready and s.identify == identify_data for s in fake.sessions):
                return received, None
            continue
        if message.type != aiohttp.WSMsgType.TEXT:
            return received, ws.close_code
        payload = json.loads(message.data)
        if payload["op"] == 0:
            received.append(payload)


async def gateway_bot(fake) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(fake.api_base + "/gateway/bot", headers={"Authorization": f"Bot {TOKEN}"}) as response:
            assert response.status == 200
            return await response.json()


async def test_get_gateway_bot_recommends_shards_and_counts_session_starts(fake):
    fake.add_bot(TOKEN)
    before = await gateway_bot(fake)
    assert set(before) == {"url", "shards", "session_start_limit"} and before["url"] == fake.gateway_url
    assert before["shards"] == 1  # no server yet
    assert before["session_start_limit"] == {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
    fake.gateway.recommended_shards = 4
    await identify(fake, [0, 4])
    after = await gateway_bot(fake)
    assert after["shards"] == 4
    limit = after["session_start_limit"]
    assert limit["remaining"] == 999 and 0 < limit["reset_after"] <= 24 * 3600 * 1000
    assert all(isinstance(v, int) for v in limit.values())


async def test_each_shard_gets_its_own_guilds_in_ready_and_guild_creates(fake):
    bot = fake.add_bot(TOKEN)
    guilds = [fake.add_guild(((1000 + i) << 22), name=f"g{i}") for i in range(4)]  # (id >> 22) % 2: 0, 1, 0, 1
    for shard in (0, 1):
        dispatches, code = await identify(fake, [shard, 2])
        assert code is None
        ready = next(d["d"] for d in dispatches if d["t"] == "READY")
        mine = [str(g.id) for g in guilds[shard::2]]
        assert ready["shard"] == [shard, 2] and [g["id"] for g in ready["guilds"]] == mine
        assert [d["d"]["id"] for d in dispatches if d["t"] == "GUILD_CREATE"] == mine
    assert bot.id  # the bot is in every guild (add_bots)


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [True, 2], [0], "0,1"])
async def test_an_invalid_shard_is_closed_with_4010(fake, shard):
    fake.add_bot(TOKEN)
    _, code = await identify(fake, shard)
    assert code == 4010


async def test_a_session_with_more_than_2500_guilds_is_closed_with_4011(fake):
    owner = fake.add_user("owner")
    fake.add_bot(TOKEN)
    for i in range(2501):
        fake.add_guild(((5000 + 2 * i) << 22), name=f"g{i}", owner_id=owner.id)  # all on shard 0 of 2
    _, code = await identify(fake, None)
    assert code == 4011
    _, code = await identify(fake, [1, 2])  # shard 1 of 2 holds none of them
    assert code is None
