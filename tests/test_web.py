"""/healthz and /metrics, read over HTTP from a running bot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp

from bot_harness import IMAGES, command, make_config, make_world, reply_to, running_bot


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.text()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


async def until(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_health_flips_while_a_worker_is_replaced_and_metrics_move(fake, tmp_path, weights_file):
    world = make_world(fake)
    config = make_config(tmp_path, weights_file, web={"enabled": True, "port": 0})
    async with running_bot(fake, config) as bot:
        assert bot.web.host == "127.0.0.1"
        base = f"http://127.0.0.1:{bot.web.port}"
        status, body = await get(base + "/healthz")
        assert status == 200 and '"status": "ok"' in body
        assert [(s["id"], s["connected"]) for s in json.loads(body)["shards"]] == [(0, True)]  # "auto": one shard here

        status, text = await get(base + "/metrics")
        assert status == 200
        assert metric(text, "nst_queue_depth") == 0 and metric(text, "nst_worker_restarts_total") == 0
        assert metric(text, "nst_gateway_connected") == 1
        assert metric(text, 'nst_gateway_shard_connected{shard="0"}') == 1
        assert 'nst_gateway_latency_seconds{shard="0"}' in text
        assert 'nst_jobs_total{outcome="done"}' not in text

        request = await command(fake, world.general, world.alice, "!stylize", IMAGES)
        await reply_to(fake, request, lambda m: m.attachments, timeout=60)
        await until(lambda: _done_counted(base))
        _, text = await get(base + "/metrics")
        assert metric(text, 'nst_jobs_total{outcome="done"}') == 1
        assert metric(text, "nst_job_duration_seconds_count") == 1
        assert metric(text, "nst_job_steps_per_second_count") == 1
        assert metric(text, "nst_event_loop_lag_seconds_count") > 0

        # The replacement is held until the 503 has been seen: on a fast CPU a replacement can be ready
        # between two polls, and the window this test checks would pass unseen.
        release = asyncio.Event()
        replace = bot.executor._replace

        def held_replace(worker):
            async def later():
                await release.wait()
                replace(worker)
            asyncio.get_running_loop().create_task(later())

        bot.executor._replace = held_replace
        os.kill(bot.executor._workers[0].process.pid, signal.SIGKILL)
        async def unhealthy():
            status, body = await get(base + "/healthz")
            return status == 503 and "worker 0 (cpu)" in body
        assert await until(unhealthy, timeout=10)
        release.set()
        async def healthy():
            return (await get(base + "/healthz"))[0] == 200
        assert await until(healthy, timeout=60)
        _, text = await get(base + "/metrics")
        assert metric(text, "nst_worker_restarts_total") == 1


async def _done_counted(base: str) -> bool:
    _, text = await get(base + "/metrics")
    return 'nst_jobs_total{outcome="done"}' in text


async def test_health_is_503_when_the_gateway_is_lost(fake, tmp_path, weights_file):
    make_world(fake)
    config = make_config(tmp_path, weights_file, web={"enabled": True, "port": 0})
    async with running_bot(fake, config) as bot:
        base = f"http://127.0.0.1:{bot.web.port}"
        # An invalidated session: discord.py waits a few seconds before it identifies again.
        await fake.disconnect_gateway(close_code=4000, invalidate=True)

        async def unhealthy():
            status, body = await get(base + "/healthz")
            return status == 503 and json.loads(body)["reason"] == "shard 0 of 1 not connected to the Discord gateway"

        assert await until(unhealthy, timeout=10)
        assert await until(lambda: _healthy(base), timeout=30)


async def _healthy(base: str) -> bool:
    return (await get(base + "/healthz"))[0] == 200


async def test_web_is_off_unless_enabled(fake, tmp_path, weights_file):
    make_world(fake)
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        assert bot.web is None
