"""Shared pieces for the bot's tests: a config for tests, a fake Discord world, a running StyleBot.

The bot runs in-process against tests/fake_discord with its real setup_hook: real SQLite store,
real worker process (CPU, random VGG-19 weights from a file), real discord.py client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import discord
from PIL import Image

from bot.app import StyleBot
from bot.config import Config, parse_config
from conftest import make_content, make_style

if TYPE_CHECKING:
    from fake_discord import FakeDiscord


def __getattr__(name: str):
    """``bot_harness.FakeDiscord``, imported on first use: executor and worker tests need only the
    config builder and the images here, not the fake Discord."""
    if name != "FakeDiscord":
        raise AttributeError(name)
    try:
        from fake_discord import FakeDiscord
    except ImportError:  # tests/ as a package
        from tests.fake_discord import FakeDiscord
    return FakeDiscord

TOKEN = "test-token"
# NST_TEST_PRECISION=fp32 runs every job of the tests in fp32, as on a CPU without bf16 (CI does both).
PRECISION = os.environ.get("NST_TEST_PRECISION", "auto")
FAKE_CDN_HOSTS = ["127.0.0.1"]  # the fake Discord hosts attachments on its own loopback address


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


CONTENT_PNG = png(make_content(96, 72))
STYLE_PNG = png(make_style(64))
IMAGES = [("content.png", CONTENT_PNG, "image/png"), ("style.png", STYLE_PNG, "image/png")]


@functools.lru_cache(maxsize=None)
def step_seconds(weights_file: Path) -> float:
    """Seconds one optimisation step of a 64 px test job takes on this machine, now (one torch thread,
    like the tests' workers; NST_TEST_PRECISION): measured once, so that timeouts can be sized from
    step counts instead of assuming a fast CPU."""
    import time

    import torch

    from nst.model import load_vgg19
    from nst.params import StyleParams
    from nst.transfer import stylize

    model = load_vgg19(weights_file, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = StyleParams(epochs=2, size=64, seed=1, precision=PRECISION)
        stylize(make_content(96, 72), make_style(64), params, model=model)  # warm-up
        started = time.perf_counter()
        stylize(make_content(96, 72), make_style(64), params.replace(epochs=6), model=model)
        return (time.perf_counter() - started) / 6
    finally:
        torch.set_num_threads(threads)


def time_budget(steps: int, weights_file: Path) -> float:
    """A generous wall-time bound for ``steps`` steps of a 64 px job here: 4x the measured step time
    (other processes share the CPU), plus 10 s for start-up and messages."""
    return round(10.0 + 4.0 * steps * step_seconds(weights_file), 1)


def config_values(tmp_path: Path, weights_file: Path, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The raw config for tests: small jobs of every step, quick status edits, one CPU worker, data under tmp_path,
    attachments from the fake's CDN, precision from NST_TEST_PRECISION; ``sections`` override or add keys."""
    raw: dict[str, dict[str, Any]] = {
        "bot": {"data_dir": str(tmp_path / "data"), "status_interval": 0.2, "shutdown_grace": 5.0, "log_level": "INFO",
                "attachment_hosts": FAKE_CDN_HOSTS, "preview_interval": 0},  # previews: on in their own tests
        "engine": {"weights": str(weights_file), "devices": ["cpu"], "cpu_threads": 1, "precision": PRECISION},
        # every step (stop_tolerance 0): a long job that converged early (fast CPUs, bf16) would end
        # before a test cancels it, restarts the bot under it or sees its previews
        "defaults": {"epochs": 8, "size": 48, "stop_tolerance": 0},
        "caps": {"max_epochs": 400, "max_size": 128},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def make_config(tmp_path: Path, weights_file: Path, **sections: dict[str, Any]) -> Config:
    return parse_config(config_values(tmp_path, weights_file, **sections), source="test-config")


def write_config(path: Path, raw: dict[str, dict[str, Any]]) -> Path:
    """Write a config as TOML, for bots and workers started as subprocesses."""
    def value(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in keys.items()) + "\n"
                            for name, keys in raw.items()))
    return path


def make_world(fake: FakeDiscord, token: str = TOKEN) -> SimpleNamespace:
    operator = fake.add_user("operator")  # owns the bot's application: a plain member of the server
    bot_user = fake.add_bot(token=token, name="StyleBot", owner_id=operator.id)
    owner = fake.add_user("owner")  # owns the server
    guild = fake.add_guild(name="Art Club", owner_id=owner.id)
    general = fake.add_text_channel(guild.id, "general")
    art = fake.add_text_channel(guild.id, "art")
    admin_role = fake.add_role(guild.id, "Admin", permissions=discord.Permissions(manage_guild=True).value)
    users = {}
    fake.add_member(guild.id, operator.id)
    for name in ("alice", "bob", "carol", "dave"):
        users[name] = fake.add_user(name)
        fake.add_member(guild.id, users[name].id)
    boss = fake.add_user("boss")
    fake.add_member(guild.id, boss.id, roles=[admin_role])
    return SimpleNamespace(bot_user=bot_user, operator=operator, owner=owner, guild=guild, general=general, art=art,
                           admin_role=admin_role, boss=boss, **users)


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, config: Config, **options):
    """Start a StyleBot (real setup_hook, real worker) until on_ready; always close it."""
    bot = StyleBot(config, guild_ready_timeout=0.2, **options)
    with fake.patch_client():
        task = asyncio.create_task(bot.start(TOKEN))
        ready = asyncio.create_task(bot.wait_until_ready())
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
            assert ready in done, "bot did not become ready within 60 s"
            yield bot
        finally:
            ready.cancel()
            if not bot.is_closed():
                await bot.close()
            await asyncio.wait({task}, timeout=30)
            assert task.done(), "bot.start() did not return after close()"


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces): state, ppid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


async def run_scenarios(fake: FakeDiscord, world, bot, scenarios) -> list:
    """Run scenarios one after the other on one bot, each having to leave no job queued or running;
    returns the checks they hand back, to run once the bot is closed."""
    after_close = []
    for scenario in scenarios:
        check = await scenario(fake, world, bot)
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=10, what=f"{scenario.__name__} left no job behind")
        if check is not None:
            after_close.append(check)
    return after_close


@contextlib.contextmanager
def submitted_jobs(bot):
    """The jobs the bot hands its executor while the block runs (the executor still runs them)."""
    jobs = []
    original = bot.executor.submit

    async def spy(job, **limits):
        jobs.append(job)
        return await original(job, **limits)

    bot.executor.submit = spy
    try:
        yield jobs
    finally:
        del bot.executor.submit  # the executor's own method again


async def command(fake: FakeDiscord, channel, user, text: str, attachments=(), reply_to=None):
    """Type a message as a user; returns the fake's message."""
    return await fake.user_sends(channel.id, user.id, text, attachments=list(attachments), reply_to=reply_to)


async def reply_to(fake: FakeDiscord, message, predicate=lambda m: True, timeout: float = 30):
    """The bot's first message replying to ``message`` that satisfies predicate (in its current version)."""
    return await fake.wait_for_message(
        lambda m: m.message_reference == message.id and predicate(m), channel_id=message.channel_id, timeout=timeout
    )
