"""python -m bot --config config.toml  (also the ``nst-bot`` console script).

Exit codes: 0 stopped cleanly, 1 lost Discord or crashed (or a second signal had to cut the shutdown
short), 2 configuration/start-up problem (one line on stderr naming it).

Signals: the first SIGTERM/SIGINT shuts down gracefully (running jobs get bot.shutdown_grace seconds).
A second one stops the running jobs at once; their users are still told, and the process is gone
within HURRIED_EXIT seconds whatever is still pending.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Sequence

log = logging.getLogger("bot")

HURRIED_EXIT = 3.0  # seconds after a second signal: enough to tell users, never the whole grace period

# Gateway close codes that only the config can cure (Discord's docs: Opcodes and Status Codes →
# Gateway Close Event Codes): the one line that names the fix.
GATEWAY_REFUSALS = {
    4010: "Discord refused the shard count (close code 4010, invalid shard): set bot.shards = \"auto\" "
          "(a bot moved to large bot sharding must run a multiple of the count Discord gave it)",
    4011: "Discord requires more shards for this bot's servers (close code 4011, sharding required): "
          "set bot.shards = \"auto\" or a larger count",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="The style-transfer Discord bot.")
    parser.add_argument("--config", default="config.toml", help="path to the TOML config (default: config.toml)")
    args = parser.parse_args(argv)

    from .config import load_or_report, read_token
    from .logs import setup_logging

    loaded = load_or_report(args.config, read_token)
    if loaded is None:
        return 2
    config, token = loaded
    setup_logging(config.bot.log_level, config.bot.log_json, secrets=[token])
    try:
        return asyncio.run(run(config, token))
    except KeyboardInterrupt:
        return 130


async def run(config, token: str) -> int:
    import discord

    from .app import StyleBot
    from .executor import ExecutorError
    from bot.core.store import StoreError

    bot = StyleBot(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: stopping running jobs now and exiting within %g s", signal.Signals(signum).name, HURRIED_EXIT)
            if bot.executor is not None:
                bot.executor.hurry()
            loop.call_later(HURRIED_EXIT, _exit_now)
            return
        log.info("%s received: shutting down gracefully", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    runner = asyncio.create_task(bot.start(token))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            await bot.close()
            await asyncio.wait({runner}, timeout=30)
            return 0
        runner.result()  # bot.start() returned or raised without a signal
        return 0
    except discord.LoginFailure:
        return _fail("Discord rejected the token (401 Unauthorized): check DISCORD_TOKEN or bot.token_file")
    except discord.PrivilegedIntentsRequired:
        return _fail(
            "Discord refused the Message Content intent: enable it for this bot in the Developer Portal "
            "(Bot → Privileged Gateway Intents → Message Content Intent)"
        )
    except (ExecutorError, StoreError) as error:
        return _fail(str(error))
    except discord.ConnectionClosed as error:
        if error.code in GATEWAY_REFUSALS:
            return _fail(GATEWAY_REFUSALS[error.code])
        log.error("lost Discord: %s", error)
        return 1
    except (discord.HTTPException, discord.GatewayNotFound, OSError) as error:
        log.error("lost Discord: %s", error)
        return 1
    except asyncio.CancelledError:
        return 1
    finally:
        stopper.cancel()
        if not bot.is_closed():
            await bot.close()


def _exit_now() -> None:
    """The hurried shutdown did not finish in time: go now (the database is crash-safe; workers die with us)."""
    log.warning("exiting now, before the shutdown finished")
    logging.shutdown()
    os._exit(1)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
