"""The bot process's lifecycle under faults, as users run it (`python -m bot`) against the fake Discord:
workers die with a killed bot, and a second SIGTERM ends the shutdown promptly (issue 11, defects 3, 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from bot_harness import IMAGES, command, config_values, make_world, proc_stat, reply_to, time_budget
from bot_harness import write_config as write_test_config
from test_bot_process import ROOT, SECRET, finish, launched, no_unfinished_jobs, serving

ENDLESS = "--epochs 100000 --size 64"  # never ends by itself, however fast the CPU


def write_config(tmp_path: Path, weights_file: Path, grace: float = 60.0) -> Path:
    values = config_values(tmp_path, weights_file, bot={"status_interval": 0.3, "shutdown_grace": grace},
                           caps={"max_epochs": 100_000})
    return write_test_config(tmp_path / "config.toml", values)


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def fork_servers(bot_pid: int) -> list[int]:
    """The bot's worker fork server (multiprocessing's; its other child is the resource tracker)."""
    return [pid for pid in children(bot_pid) if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def worker_pids(bot_pid: int) -> list[int]:
    """The bot's worker processes: the fork server's children."""
    return [pid for server in fork_servers(bot_pid) for pid in children(server)]


def alive(pid: int) -> bool:
    """Running, i.e. not gone and not a zombie nobody reaped yet."""
    try:
        state = proc_stat(pid)[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_a_killed_bot_takes_its_workers_with_it(fake, tmp_path, weights_file):
    """Regression (defect 3): after SIGKILL the worker went on computing the dead bot's job to the end.
    The bot logs to a file, as under systemd or Docker (a pipe that closes would kill the worker by
    accident when it next writes)."""
    world = make_world(fake, token=SECRET)
    env = {**os.environ, **fake.env(), "DISCORD_TOKEN": SECRET}
    with open(tmp_path / "bot.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(write_config(tmp_path, weights_file)),
            cwd=ROOT, env=env, stdout=log, stderr=log,
        )
    workers: list[int] = []
    servers: list[int] = []
    try:
        await serving(fake, world, proc)
        running = await command(fake, world.general, world.alice, f"!stylize {ENDLESS}", IMAGES)
        await reply_to(fake, running, lambda m: "%" in m.content, timeout=time_budget(1, weights_file) + 30)
        servers, workers = fork_servers(proc.pid), worker_pids(proc.pid)
        assert len(servers) == 1 and len(workers) == 1 and alive(workers[0])
        proc.kill()
        await proc.wait()
        killed = time.monotonic()
        while alive(workers[0]) and time.monotonic() - killed < 5:
            await asyncio.sleep(0.05)
        gone_after = time.monotonic() - killed
        assert not alive(workers[0]), "the worker outlived the bot by 5 s"
        assert gone_after < 2.0, f"the worker took {gone_after:.1f} s to follow the bot"
        # The fork server goes once its workers have (they hold its pipe too); it unwinds an interpreter with torch.
        while alive(servers[0]) and time.monotonic() - killed < 15:
            await asyncio.sleep(0.05)
        assert not alive(servers[0]), "the fork server outlived the bot by 15 s"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in workers + servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_second_sigterm_ends_the_shutdown_promptly_and_users_are_told(fake, tmp_path, weights_file):
    """Regression (defect 4): the log said "exiting without waiting", yet the process waited out the whole
    grace period. With a 600 s grace, the second SIGTERM must end it within seconds."""
    world = make_world(fake, token=SECRET)
    async with launched(fake, write_config(tmp_path, weights_file, grace=600.0)) as proc:
        await serving(fake, world, proc)
        running = await command(fake, world.general, world.alice, f"!stylize {ENDLESS}", IMAGES)
        await reply_to(fake, running, lambda m: "%" in m.content, timeout=time_budget(1, weights_file) + 30)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.returncode is None  # the first one waits for the job (up to 600 s)
        second = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, err = await finish(proc, timeout=30)
        took = time.monotonic() - second
        told = await reply_to(fake, running, lambda m: "did not finish" in m.content, timeout=5)
    assert "the bot shut down while your job was running; please send it again later" in told.content
    assert took < 10, f"the second SIGTERM took {took:.1f} s to end the process"
    assert "second SIGTERM" in err and code in (0, 1), err


async def test_sigterm_right_after_delivery_records_the_job_done_and_exits_at_once(fake, tmp_path, weights_file):
    """Found by the container check: stopped just after posting a result, the bot waited out its drain
    timeout and closed the store under the job, which stayed 'running' (reported lost at the next start)."""
    world = make_world(fake, token=SECRET)
    values = config_values(tmp_path, weights_file, bot={"status_interval": 2.0, "preview_interval": 2.0},
                           web={"enabled": True, "port": 0})
    config = write_test_config(tmp_path / "config.toml", values)
    async with launched(fake, config) as proc:
        await serving(fake, world, proc)
        request = await command(fake, world.general, world.alice, "!stylize --epochs 20 --size 64", IMAGES)
        await reply_to(fake, request, lambda m: m.attachments and m.attachments[0].filename.startswith("stylized"),
                       timeout=time_budget(20, weights_file) + 30)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, err = await finish(proc, timeout=60)
        took = time.monotonic() - stopped
    assert code == 0, err
    await no_unfinished_jobs(tmp_path / "data")
    assert took < 10, f"the bot took {took:.1f} s to stop with nothing running\n{err[-2000:]}"
