"""The bot: a sharded commands bot whose setup_hook opens the store, starts the executor and loads the cogs.

It always runs through discord.py's AutoShardedBot: ``bot.shards`` shards ("auto": the count Discord
recommends, one for a small bot) in this one process, each its own gateway connection. Events of a
server arrive on its shard; events without one (direct messages) on shard 0 only, which discord.py
merges into the one event stream the cogs see.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

import discord
from discord.ext import commands

from bot.config import Config, make_executor
from bot.core.imagecache import ImageCache
from bot.core.jobs import JobService
from bot.core.quotas import QuotaService
from bot.core.store import Store, prune_periodically
from bot.core.styles import StyleLibrary
from bot.executor import Executor
from bot.frontend.errors import on_interaction_error, on_prefix_error
from bot.frontend.help import HelpCommand
from bot.frontend.job_view import DiscordJobs
from bot.frontend.status import CHANNEL_EDIT_GAP, ChannelPacer
from bot.web import Metrics, WebServer

log = logging.getLogger(__name__)


def intents(message_content: bool = True) -> discord.Intents:
    """Only what the commands need."""
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels and roles: permission checks, upload limits
    wanted.guild_messages = True  # commands in servers
    wanted.dm_messages = True  # commands in direct messages
    # Privileged: prefix commands in servers need it. Without it, slash commands, the message menu,
    # mentions ("@bot stylize") and DMs still work.
    wanted.message_content = message_content
    return wanted


@dataclass(frozen=True)
class ShardState:
    """One gateway shard, as /healthz and /metrics report it."""

    shard_id: int
    connected: bool  # READY or RESUMED received, and no disconnect since
    latency: float | None  # seconds from a heartbeat to its acknowledgement; None while unknown


class StyleBot(commands.AutoShardedBot):
    def __init__(self, config: Config, *, executor: Executor | None = None, **options):
        # The bot never joins voice: skip discord.py's start-up warnings about voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        # Kept: discord.py identifies with this very object, so the fallback in connect() can drop the
        # Message Content intent from it when Discord refuses it.
        self._intents = intents(config.bot.message_content)
        super().__init__(
            command_prefix=commands.when_mentioned_or(config.bot.command_prefix),
            intents=self._intents,
            case_insensitive=True,
            strip_after_prefix=True,  # "@bot stylize" and "! stylize" work too
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True),
            help_command=HelpCommand(no_category="Other", dm_help=False),
            shard_count=config.bot.shards,  # None ("auto"): discord.py asks Discord's /gateway/bot
            **options,
        )
        self.config = config
        self.executor: Executor | None = executor
        self.store: Store | None = None
        self.styles: StyleLibrary | None = None
        self.quotas: QuotaService | None = None
        self.metrics = Metrics(self)
        self.web: WebServer | None = None
        self._shards_connected: dict[int, bool] = {}  # from the shard events: READY/RESUMED vs disconnect
        self.shutting_down = False
        self._lag_sampler: asyncio.Task | None = None
        self._pruner: asyncio.Task | None = None
        self._usage_refresher: asyncio.Task | None = None
        self.message_content = self._intents.message_content
        # Edits in one channel: at most one per CHANNEL_EDIT_GAP (Discord's limit); a status_interval
        # set below it (a private test server) lowers the gap to match.
        self.pacer = ChannelPacer(min(CHANNEL_EDIT_GAP, config.bot.status_interval))
        cache = ImageCache(config.cache_dir, max_bytes=config.cache.max_bytes, ttl=config.cache.ttl)
        self.jobs = JobService(config, cache, self.metrics, DiscordJobs(self))

    async def setup_hook(self) -> None:
        from bot.frontend import slash
        from bot.frontend.cogs.limits import Limits
        from bot.frontend.components import DYNAMIC_ITEMS
        from bot.frontend.cogs.presets import Presets
        from bot.frontend.cogs.settings import Settings
        from bot.frontend.cogs.styles import Styles
        from bot.frontend.cogs.stylize import Stylize
        from bot.frontend.cogs.usage import Usage

        self.store = await Store.open(self.config.database_path)
        self.styles = StyleLibrary(self.config, self.store)
        await self.styles.sweep()
        if self.executor is None:
            self.executor = make_executor(self.config)
        await self.executor.start()
        self.quotas = QuotaService(self.config, self.store)
        self.jobs.start(store=self.store, styles=self.styles, executor=self.executor, quotas=self.quotas)
        await self.jobs.load_order()
        self.executor.set_order(self.jobs.fair.order)  # the queue's order is the fair queue's from now on
        for cog in (Stylize(self), Styles(self), Presets(self), Settings(self), Limits(self), Usage(self)):
            await self.add_cog(cog)
        slash.register(self)  # published by the owner's `sync`, never at start (Discord limits creates)
        self.add_dynamic_items(*DYNAMIC_ITEMS)  # buttons of earlier processes' messages work too
        self.tree.on_error = on_interaction_error
        await self.jobs.cache.prune()
        self._lag_sampler = asyncio.create_task(self.metrics.sample_loop_lag())
        self._pruner = asyncio.create_task(prune_periodically(self.store, self.config.bot.job_history_days * 86400))
        self._usage_refresher = asyncio.create_task(self.jobs.fair.refresh_periodically())
        if self.config.web.enabled:
            self.web = WebServer(self, self.config.web.host, self.config.web.port)
            await self.web.start()
        log.info("ready to serve: prefix %r, database %s", self.config.bot.command_prefix, self.store.path)

    async def is_owner(self, user: discord.abc.User) -> bool:
        """The application's owner (or team) and anyone listed in bot.owner_ids."""
        return user.id in self.config.bot.owner_ids or await super().is_owner(user)

    async def connect(self, *, reconnect: bool = True) -> None:
        """Connect every shard, without the Message Content intent if the application does not have it.
        Asked before IDENTIFY: a shard refused it at IDENTIFY (close code 4014) ends the sharded
        client, so the fallback cannot wait for Discord's refusal."""
        if self._intents.message_content and not await self._message_content_allowed():
            log.warning(
                "Discord refused the Message Content intent: running without it. Slash commands, the "
                "message menu, mentions (@bot stylize) and DMs work; prefix commands in servers do not. "
                "Enable it in the Developer Portal (Bot → Privileged Gateway Intents), or set "
                "bot.message_content = false to silence this warning."
            )
            self._intents.message_content = False
            self.message_content = False
        await super().connect(reconnect=reconnect)

    async def _message_content_allowed(self) -> bool:
        """Whether the Developer Portal's Message Content switch is on: the application's flags say it
        (GATEWAY_MESSAGE_CONTENT, or _LIMITED below 100 servers). Unknown: let IDENTIFY decide."""
        try:
            flags = (await self.application_info()).flags
        except discord.HTTPException as error:
            log.warning("could not read the application's flags (%s); asking for the Message Content intent", error)
            return True
        return flags.gateway_message_content or flags.gateway_message_content_limited

    # ------------------------------------------------------------------------------ shards

    async def on_shard_connect(self, shard_id: int) -> None:
        self._shards_connected[shard_id] = True

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._shards_connected[shard_id] = True

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._shards_connected[shard_id] = False

    def shard_states(self) -> list[ShardState]:
        """Every shard this process runs, connected or not; none before the count is known."""
        if self.shard_count is None:
            return []
        return [self._shard_state(shard_id) for shard_id in self.shard_ids or range(self.shard_count)]

    def _shard_state(self, shard_id: int) -> ShardState:
        connected = self._shards_connected.get(shard_id, False)
        shard = self.get_shard(shard_id)
        latency = shard.latency if shard is not None and connected else None
        return ShardState(shard_id, connected, latency if latency is not None and math.isfinite(latency) else None)

    async def on_ready(self) -> None:
        """Every shard is ready (discord.py waits for all of them)."""
        log.info("connected as %s (%s) to %d server(s) on %d shard(s)", self.user, self.user.id if self.user else "?",
                 len(self.guilds), self.shard_count or 0)
        await self.jobs.resume()

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        await on_prefix_error(ctx, error)

    # ------------------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Graceful: refuse new jobs, let running ones finish (bot.shutdown_grace), tell the users of the
        others, then close the gateway and the database."""
        if not self.shutting_down:
            self.shutting_down = True
            self.jobs.stop_accepting()
            if self.executor is not None:
                await self.executor.close(grace=self.config.bot.shutdown_grace)
            await self.jobs.drain(timeout=15.0)
        await super().close()
        if self._lag_sampler is not None:
            self._lag_sampler.cancel()
        if self._pruner is not None:
            self._pruner.cancel()
        if self._usage_refresher is not None:
            self._usage_refresher.cancel()
        if self.web is not None:
            await self.web.stop()
        if self.store is not None:
            await self.store.close()
