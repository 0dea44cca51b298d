"""The bot started as users start it (`python -m bot --config ...`), in a subprocess, against the fake
Discord: start-up errors, a job served, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from bot.core.store import Store
from bot_harness import IMAGES, command, config_values, make_world, reply_to, step_seconds, time_budget
from bot_harness import write_config as write_test_config

try:
    from fake_discord.gateway import MAX_GUILDS_PER_SHARD
except ImportError:  # tests/ as a package
    from tests.fake_discord.gateway import MAX_GUILDS_PER_SHARD


ROOT = Path(__file__).resolve().parent.parent
SECRET = "sekrit-token-0123456789"
LONG = "--epochs 300 --size 64"


def write_config(tmp_path: Path, weights_file: Path, grace: float = 60.0) -> Path:
    values = config_values(tmp_path, weights_file, bot={"status_interval": 0.3, "shutdown_grace": grace})
    return write_test_config(tmp_path / "config.toml", values)


async def start(fake, config: Path, token: str = SECRET, args=None):
    env = {**os.environ, **fake.env(), "DISCORD_TOKEN": token}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *(args or ["--config", str(config)]),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, err.decode()


@contextlib.asynccontextmanager
async def launched(fake, config: Path, token: str = SECRET, args=None):
    """A bot subprocess that is killed at the end if the test did not stop it."""
    proc = await start(fake, config, token=token, args=args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def no_unfinished_jobs(data: Path) -> None:
    """The database opens (it was closed cleanly) and records no job as still queued or running."""
    store = await Store.open(data / "bot.sqlite3")
    try:
        assert await store.unfinished_jobs() == []
    finally:
        await store.close()


async def serving(fake, world, proc) -> None:
    """Until the bot answers a command (READY reached and cogs loaded)."""
    await fake.wait_ready(timeout=60)
    probe = await command(fake, world.general, world.dave, "!queue")
    await reply_to(fake, probe, timeout=30)


def lasting(seconds: float, weights_file: Path, least: int = 100, most: int = 300) -> int:
    """Epochs of a 64 px job that runs at least ``seconds`` at the measured step time (``least`` to ``most``):
    long enough on any CPU for what a test does while it runs, without a fixed count sized for a slow one."""
    return max(least, min(most, math.ceil(seconds / step_seconds(weights_file))))


async def test_sigterm_lets_the_running_job_finish_and_refuses_new_ones(fake, tmp_path, weights_file):
    world = make_world(fake, token=SECRET)
    epochs = lasting(6.0, weights_file)  # still running when the late command is answered
    budget = time_budget(epochs, weights_file)  # the grace must cover the job on this CPU, however slow
    config = write_config(tmp_path, weights_file, grace=budget)
    async with launched(fake, config) as proc:
        await serving(fake, world, proc)
        running = await command(fake, world.general, world.alice, f"!stylize --epochs {epochs} --size 64", IMAGES)
        await reply_to(fake, running, lambda m: "%" in m.content, timeout=time_budget(1, weights_file) + 30)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        late = await command(fake, world.general, world.bob, "!stylize", IMAGES)
        assert "shutting down" in (await reply_to(fake, late)).content
        result = await reply_to(fake, running, lambda m: m.attachments, timeout=budget)
        # the default schedule may stop early once the loss stops improving: at most the steps asked for
        steps = int(re.search(r"> (\d+) epochs", result.content).group(1))
        assert 0 < steps <= epochs and (f"of {epochs}" in result.content) == (steps < epochs), result.content
        code, err = await finish(proc, timeout=budget)
    assert code == 0, err
    assert SECRET not in err and "SIGTERM received: shutting down gracefully" in err
    assert "job end" in err and "outcome=done" in err
    await no_unfinished_jobs(tmp_path / "data")  # closed cleanly, intact


async def test_sigterm_after_the_grace_tells_the_user_their_job_was_interrupted(fake, tmp_path, weights_file):
    world = make_world(fake, token=SECRET)
    async with launched(fake, write_config(tmp_path, weights_file, grace=0.5)) as proc:
        await serving(fake, world, proc)
        running = await command(fake, world.general, world.alice, "!stylize --epochs 2000 --size 64", IMAGES)
        await reply_to(fake, running, lambda m: "%" in m.content, timeout=30)
        proc.send_signal(signal.SIGTERM)
        told = await reply_to(fake, running, lambda m: "did not finish" in m.content, timeout=30)
        assert "the bot shut down while your job was running; please send it again later" in told.content
        code, err = await finish(proc)
    assert code == 0, err
    await no_unfinished_jobs(tmp_path / "data")  # closed cleanly, intact


async def test_after_a_crash_the_restarted_bot_tells_the_user_their_job_was_lost(fake, tmp_path, weights_file):
    world = make_world(fake, token=SECRET)
    config = write_config(tmp_path, weights_file)
    async with launched(fake, config) as proc:
        await serving(fake, world, proc)
        running = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
        status = await reply_to(fake, running, lambda m: "%" in m.content, timeout=30)
        proc.kill()  # no graceful shutdown: the local workers die with the bot
        await proc.wait()
    async with launched(fake, config) as again:
        told = await reply_to(fake, running, lambda m: "did not finish" in m.content, timeout=90)
        assert told.id == status.id  # the same status message, edited
        assert "the bot restarted and your job was lost; please send it again" in told.content
        again.send_signal(signal.SIGTERM)
        code, err = await finish(again)
    assert code == 0, err
    await no_unfinished_jobs(tmp_path / "data")  # closed cleanly, intact


@pytest.mark.parametrize("case", ["wrong token", "no config", "bad config", "too few shards"])  # a refused intent: test_intents_e2e.py
async def test_start_up_problems_exit_2_with_one_clear_line(fake, tmp_path, weights_file, case):
    config = write_config(tmp_path, weights_file)
    args = None
    if case == "wrong token":
        fake.add_bot(token=SECRET)
        token, expected = "not-the-token", "Discord rejected the token (401 Unauthorized)"
    elif case == "no config":
        token, expected, args = SECRET, "config file not found", ["--config", str(tmp_path / "missing.toml")]
    elif case == "bad config":
        config.write_text(config.read_text().replace("devices", "device"))
        token, expected = SECRET, "engine.device is not a known key (did you mean devices?)"
    else:  # one shard for more servers than a shard may hold: Discord closes it with 4011
        owner = fake.add_user("owner")
        fake.add_bot(token=SECRET)
        for _ in range(MAX_GUILDS_PER_SHARD + 1):
            fake.add_guild(owner_id=owner.id)
        config.write_text(config.read_text().replace("[bot]\n", "[bot]\nshards = 1\n"))
        token, expected = SECRET, "Discord requires more shards for this bot's servers (close code 4011, sharding required)"
    proc = await start(fake, config, token=token, args=args)
    code, err = await finish(proc)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, err
    assert "Traceback" not in err and SECRET not in err
