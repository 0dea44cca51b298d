"""The bot: a commands.Bot whose setup_hook opens the store, starts the executor and loads the cogs."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from .config import Config
from .errors import UserError
from .executor import Executor, StyleJob, make_executor
from .store import JobRecord, Store, StoreError
from .web import Metrics, WebServer

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """Only what the commands need."""
    wanted = discord.Intents.none()
    wanted.guilds = True  # channels and roles: permission checks, upload limits
    wanted.guild_messages = True  # commands in servers
    wanted.dm_messages = True  # commands in direct messages
    wanted.message_content = True  # privileged: prefix commands and attachments need it
    return wanted


class StyleBot(commands.Bot):
    def __init__(self, config: Config, *, executor: Executor | None = None, **options):
        # The bot never joins voice: skip discord.py's start-up warnings about voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned_or(config.bot.command_prefix),
            intents=intents(),
            case_insensitive=True,
            strip_after_prefix=True,  # "@bot stylize" and "! stylize" work too
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True),
            help_command=commands.DefaultHelpCommand(no_category="Other", dm_help=False),
            **options,
        )
        self.config = config
        self.executor: Executor | None = executor
        self.store: Store | None = None
        self.metrics = Metrics(self)
        self.web: WebServer | None = None
        self.gateway_connected = False
        self.shutting_down = False
        self._lag_sampler: asyncio.Task | None = None

    async def setup_hook(self) -> None:
        from .cogs.admin import Limits
        from .cogs.settings import Settings
        from .cogs.stylize import Stylize

        self.store = await Store.open(self.config.database_path)
        if self.executor is None:
            self.executor = make_executor(self.config)
        await self.executor.start()
        for cog in (Stylize(self), Settings(self), Limits(self)):
            await self.add_cog(cog)
        self._lag_sampler = asyncio.create_task(self.metrics.sample_loop_lag())
        if self.config.web.enabled:
            self.web = WebServer(self, self.config.web.host, self.config.web.port)
            await self.web.start()
        log.info("ready to serve: prefix %r, database %s", self.config.bot.command_prefix, self.store.path)

    async def is_owner(self, user: discord.abc.User) -> bool:
        """The application's owner (or team) and anyone listed in bot.owner_ids."""
        return user.id in self.config.bot.owner_ids or await super().is_owner(user)

    async def on_ready(self) -> None:
        self.gateway_connected = True
        log.info("connected as %s (%s) to %d server(s)", self.user, self.user.id if self.user else "?", len(self.guilds))

    async def on_resumed(self) -> None:
        self.gateway_connected = True

    async def on_disconnect(self) -> None:
        self.gateway_connected = False

    async def on_command_error(self, ctx: commands.Context, error: commands.CommandError) -> None:
        if isinstance(error, commands.CommandNotFound):
            return
        message = describe_error(ctx, error)
        if message is None:
            original = getattr(error, "original", error)
            log.error("command %r failed", ctx.message.content[:100], exc_info=(type(original), original, original.__traceback__))
            message = "something went wrong on our side; the bot's operator can find the details in its logs"
        try:
            await ctx.reply(f"⚠️ {message}", mention_author=False, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as reply_error:
            log.warning("could not reply to a failed command: %s", reply_error)

    # ------------------------------------------------------------------------------ job records

    async def record_job(self, job: StyleJob) -> None:
        record = JobRecord(
            job_id=job.job_id,
            user_id=job.user_id,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            message_id=job.message_id,
            status_message_id=None,
            params=job.params,
            state="queued",
            outcome=None,
            attempts=0,
            created_at=job.submitted_at,
            updated_at=job.submitted_at,
            finished_at=None,
        )
        try:
            await self.store.add_job(record)
        except StoreError as error:  # bookkeeping must not stop the job itself
            log.error("could not record job %s: %s", job.job_id, error)

    async def update_job(self, job_id: str, **fields) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        try:
            await self.store.update_job(job_id, **fields)
        except StoreError as error:
            log.error("could not update job %s: %s", job_id, error)

    # ------------------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Graceful: refuse new jobs, let running ones finish (bot.shutdown_grace), tell the users of the
        others, then close the gateway and the database."""
        if not self.shutting_down:
            self.shutting_down = True
            stylize = self.get_cog("Style transfer")
            if stylize is not None:
                stylize.accepting = False
            if self.executor is not None:
                await self.executor.close(grace=self.config.bot.shutdown_grace)
            if stylize is not None:
                await stylize.drain(timeout=15.0)
        await super().close()
        if self._lag_sampler is not None:
            self._lag_sampler.cancel()
        if self.web is not None:
            await self.web.stop()
        if self.store is not None:
            await self.store.close()


def describe_error(ctx: commands.Context, error: commands.CommandError) -> str | None:
    """The reply for an expected error, or None for a bug (logged, answered with a generic line)."""
    prefix = ctx.clean_prefix
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, commands.BadFlagArgument):
        return f"`--{error.flag.name.replace('_', '-')}`: {error.original}"
    if isinstance(error, commands.TooManyFlags):
        return f"give `--{error.flag.name.replace('_', '-')}` only once"
    if isinstance(error, commands.MissingRequiredArgument):
        usage = f"{prefix}{ctx.command.qualified_name} {ctx.command.signature}".strip()
        return f"missing `{error.param.name}`; usage: `{usage}`"
    if isinstance(error, (commands.BadArgument, commands.ArgumentParsingError)):
        return str(error)
    if isinstance(error, commands.CheckFailure):
        return str(error) or "you cannot use this command here"
    if isinstance(error, commands.CommandInvokeError) and isinstance(error.original, StoreError):
        log.error("store error: %s", error.original)
        return "the bot's database is unavailable right now; please try again later"
    return None
