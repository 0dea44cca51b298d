"""The bot with the Celery executor, as users start it (subprocesses), with real workers and Redis:
several bot processes share the workers, and a restarted bot delivers results of earlier jobs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import redis

from bot_harness import IMAGES, command, make_world, reply_to, time_budget
from redis_harness import Worker, celery_config, redis_server

try:
    from fake_discord import FakeDiscord
except ImportError:
    from tests.fake_discord import FakeDiscord

ROOT = Path(__file__).resolve().parent.parent
TOKEN_A, TOKEN_B = "token-bot-a", "token-bot-b"


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
async def fake(redis_url):
    redis.Redis.from_url(redis_url).flushall()
    async with FakeDiscord() as server:
        yield server
        server.assert_clean()


class BotProcess:
    def __init__(self, fake, config: Path, token: str, log: Path):
        self.fake, self.config, self.token, self.log = fake, config, token, log
        self.proc = None

    async def start(self):
        env = {**os.environ, **self.fake.env(), "DISCORD_TOKEN": self.token}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(self.config), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=open(self.log, "ab"),
        )
        return self

    async def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def bot_config(tmp_path: Path, weights_file: Path, redis_url: str, name: str, prefix: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = celery_config(folder, weights_file, redis_url)
    path.write_text(path.read_text().replace("[bot]\n", f'[bot]\ncommand_prefix = "{prefix}"\n'))
    return path


async def answered(fake, channel, user, text="!queue", timeout=60):
    request = await command(fake, channel, user, text)
    return await reply_to(fake, request, timeout=timeout)


async def test_two_bot_processes_share_two_workers_and_each_job_is_delivered_once(fake, tmp_path, weights_file, redis_url):
    world = make_world(fake, token=TOKEN_A)
    bot_b = fake.add_bot(token=TOKEN_B, name="StyleBot B")
    config_a = bot_config(tmp_path, weights_file, redis_url, "a", "!")
    config_b = bot_config(tmp_path, weights_file, redis_url, "b", "?")
    workers = [Worker(config_a, f"w{i}@test", tmp_path / f"worker{i}.log") for i in range(2)]
    bots = [BotProcess(fake, config_a, TOKEN_A, tmp_path / "bot-a.log"), BotProcess(fake, config_b, TOKEN_B, tmp_path / "bot-b.log")]
    try:
        for bot in bots:  # the bots start while the workers load their models (both are already starting)
            await bot.start()
        for worker in workers:
            await asyncio.to_thread(worker.wait_ready)
        for bot_user in (world.bot_user, bot_b):
            await fake.wait_ready(timeout=60, bot_id=bot_user.id)
        await answered(fake, world.general, world.dave, "!queue")
        await answered(fake, world.general, world.dave, "?queue")
        requests = []
        for prefix, user in (("!", world.alice), ("?", world.bob)):
            for _ in range(3):
                requests.append(await command(fake, world.general, user, f"{prefix}stylize --epochs 10", IMAGES))
        for request in requests:
            await reply_to(fake, request, lambda m: m.attachments, timeout=time_budget(6 * 10, weights_file))
        await asyncio.sleep(3)  # time for any duplicate to show up
    finally:
        for bot in bots:
            await bot.stop()
        for worker in workers:
            worker.stop()
    for request in requests:
        results = [m for m in fake.bot_messages() if m.message_reference == request.id and m.attachments]
        assert len(results) == 1, f"request {request.content!r}: {len(results)} results"
    assert len([m for m in fake.bot_messages() if m.attachments]) == 6
    worker_logs = [w.log_path.read_text() for w in workers]
    assert all("succeeded" in text for text in worker_logs), "both workers took jobs"


async def test_a_restarted_bot_delivers_the_result_to_the_right_message(fake, tmp_path, weights_file, redis_url):
    world = make_world(fake, token=TOKEN_A)
    config = bot_config(tmp_path, weights_file, redis_url, "a", "!")
    worker = Worker(config, "w0@test", tmp_path / "worker.log")
    first = BotProcess(fake, config, TOKEN_A, tmp_path / "bot-1.log")
    second = BotProcess(fake, config, TOKEN_A, tmp_path / "bot-2.log")
    try:
        await first.start()  # while the worker loads its model
        await asyncio.to_thread(worker.wait_ready)
        await fake.wait_ready(timeout=60)
        await answered(fake, world.general, world.dave)
        request = await command(fake, world.general, world.alice, "!stylize --epochs 60 --size 64", IMAGES)
        status = await reply_to(fake, request, lambda m: "%" in m.content, timeout=time_budget(1, weights_file) + 30)
        await first.stop(signal.SIGKILL)  # the bot dies mid-job; the job goes on in the worker
        await second.start()
        await fake.wait_ready(timeout=60)
        result = await reply_to(fake, request, lambda m: m.attachments, timeout=time_budget(60, weights_file) + 60)
        assert "60 epochs · 64×48" in result.content and f"<@{world.alice.id}>" in result.content
        await fake.wait_until(lambda: status.deleted, timeout=10, what="the old status message is cleaned up")
    finally:
        await first.stop()
        await second.stop()
        worker.stop()
    statuses = [m for m in fake.bot_messages() if m.message_reference == request.id and not m.attachments]
    assert [m.id for m in statuses] == [status.id], "the restarted bot reused the status message"
    assert "re-attached to job" in (tmp_path / "bot-2.log").read_text()
