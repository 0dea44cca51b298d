"""``!stylize``, ``!cancel`` and ``!queue``: from a message with two images to a reply with the result."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from nst.errors import ParamError

from .. import attachments
from ..errors import UserError
from ..executor.base import CANCELLED, SHUTDOWN, SHUTTING_DOWN, Detached, Done, Failed, JobHandle, Progress, Queued, Refused, Started, StyleJob
from ..limits import effective_limits, resolve
from ..options import StyleOptions, option_name, options_help
from ..status import StatusMessage

if TYPE_CHECKING:
    from ..app import StyleBot

log = logging.getLogger(__name__)

# Room for the multipart envelope and the message text next to the file.
UPLOAD_MARGIN = 64 * 1024


class Stylize(commands.Cog, name="Style transfer"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot
        self.accepting = True
        self.following: set[asyncio.Task] = set()  # tasks waiting on a job: shutdown lets them finish
        self._resumed = False
        self.stylize.help = self.stylize.help.replace("{options}", options_help(bot.config.defaults))

    @commands.command(
        usage="[--epochs N] [--style-weight X] [--content-weight X] [--size N] [--seed N] ...",
        help=(
            "Repaint the first attached image (content) in the style of the second (style).\n"
            "Attach two images, or reply to a message that has them.\n\n"
            "Options (your saved defaults from `settings` apply to what you leave out):\n"
            "```\n{options}\n```\n"
            "Example: stylize --epochs 300 --style-weight 1e9 --size 384 --seed 7"
        ),
    )
    async def stylize(self, ctx: commands.Context, *, options: StyleOptions):
        config = self.bot.config
        store = self.bot.store
        if not self.accepting:
            raise UserError(SHUTTING_DOWN)
        guild_limits = await store.guild_limits(ctx.guild.id) if ctx.guild else None
        limits = effective_limits(guild_limits, config.caps)
        if ctx.guild and limits.channels and ctx.channel.id not in limits.channels:
            where = ", ".join(f"<#{channel}>" for channel in limits.channels)
            raise UserError(f"on this server, `{ctx.clean_prefix}stylize` works in {where} only")

        images = await attachments.find_images(ctx.message)
        attachments.check_attachments(images, max_bytes=config.caps.max_attachment_bytes, max_pixels=config.caps.max_pixels)
        try:
            resolved = resolve(config.defaults, await store.user_settings(ctx.author.id), options.given(), guild_limits, config.caps)
        except ParamError as error:
            raise UserError(f"`{option_name(error.field)}`: {error.reason}") from None
        await self._check_cooldown(ctx, limits.cooldown)
        content, style = await attachments.download(
            images, max_bytes=config.caps.max_attachment_bytes, max_pixels=config.caps.max_pixels
        )
        upload_limit = ctx.guild.filesize_limit if ctx.guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        job = StyleJob(
            user_id=ctx.author.id,
            guild_id=ctx.guild.id if ctx.guild else None,
            channel_id=ctx.channel.id,
            message_id=ctx.message.id,
            content=content,
            style=style,
            params=resolved.params.as_dict(),
            max_result_bytes=upload_limit - UPLOAD_MARGIN,
            max_pixels=config.caps.max_pixels,
        )
        try:
            handle = await self.bot.executor.submit(
                job, max_per_user=limits.max_jobs_per_user, max_queue=config.caps.max_queue
            )
        except Refused as refusal:
            raise UserError(str(refusal)) from None
        await self.bot.record_job(job)
        self._track(asyncio.current_task())
        await self._follow(handle, ctx.message, "".join(f"\n⚠️ {note}" for note in resolved.notes))

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every job's last message has been posted."""
        if self.following:
            await asyncio.wait(set(self.following), timeout=timeout)

    async def _check_cooldown(self, ctx: commands.Context, cooldown: float) -> None:
        if cooldown <= 0:
            return
        last = await self.bot.store.last_job_started(ctx.author.id, ctx.guild.id if ctx.guild else None)
        if last is not None and time.time() - last < cooldown:
            wait = cooldown - (time.time() - last)
            raise UserError(f"please wait {wait:.0f} s before your next job (the cooldown here is {cooldown:g} s)")

    async def _follow(
        self,
        handle: JobHandle,
        request: discord.Message | discord.PartialMessage,
        notes: str = "",
        status: StatusMessage | None = None,
    ) -> None:
        """Turn the job's events into a status message and, at the end, the result reply."""
        job = handle.job
        prefix = self.bot.config.bot.command_prefix

        async def remember_status(message: discord.Message) -> None:
            await self.bot.update_job(job.job_id, status_message_id=message.id)

        status = status or StatusMessage(request, self.bot.config.bot.status_interval, on_created=remember_status)
        async for event in handle:
            if isinstance(event, Queued):
                await status.show(f"⏳ Queued, position {event.position}. `{prefix}cancel` withdraws it.{notes}")
            elif isinstance(event, Started):
                await status.show(f"🎨 Started on {event.device}…{notes}", now=True)
                await self.bot.update_job(job.job_id, state="running")
            elif isinstance(event, Progress):
                await status.show(f"🎨 {progress_line(event)}{notes}")
            elif isinstance(event, Done):
                await self._deliver(job, request, event, notes, status)
            elif isinstance(event, Failed):
                icon = "🛑" if event.kind == CANCELLED else "❌"
                self.bot.metrics.job_finished(event.kind)
                await status.finish(f"{icon} Your job did not finish: {event.reason}")
                state = {CANCELLED: "cancelled", SHUTDOWN: "interrupted"}.get(event.kind, "failed")
                await self.bot.update_job(job.job_id, state=state, outcome=event.reason, finished_at=time.time())
            elif isinstance(event, Detached):  # the job goes on without us; resume_jobs picks it up again
                await status.finish(f"⏸️ {event.reason}{notes}")

    async def _deliver(self, job: StyleJob, request, done: Done, notes: str, status: StatusMessage) -> None:
        file = discord.File(io.BytesIO(done.image), filename=done.filename)
        reference = request.to_reference(fail_if_not_exists=False)  # the request may have been deleted
        try:
            await request.channel.send(f"<@{job.user_id}> {timing_line(done.stats)}{notes}", file=file, reference=reference)
        except discord.HTTPException as error:
            log.error("could not deliver job %s: %s", job.job_id, error)
            reason = "the result was made, but Discord refused the upload; please try a smaller --size"
            self.bot.metrics.job_finished("undelivered")
            await status.finish(f"❌ {reason}")
            await self.bot.update_job(job.job_id, state="failed", outcome=reason, finished_at=time.time())
            return
        await status.finish()
        self.bot.metrics.job_finished("done", done.stats)
        await self.bot.update_job(job.job_id, state="done", outcome=timing_line(done.stats), finished_at=time.time())

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Once per process: pick up the jobs recorded before a restart (queued or running)."""
        if self._resumed:
            return
        self._resumed = True
        for record in await self.bot.store.unfinished_jobs():
            self._track(asyncio.create_task(self._resume(record)))

    async def _resume(self, record) -> None:
        try:
            channel = self.bot.get_channel(record.channel_id) or await self.bot.fetch_channel(record.channel_id)
        except discord.HTTPException as error:
            log.warning("job %s: its channel is gone (%s); dropping it", record.job_id, error)
            await self.bot.update_job(record.job_id, state="failed", outcome="channel gone", finished_at=time.time())
            return
        request = channel.get_partial_message(record.message_id)
        existing = channel.get_partial_message(record.status_message_id) if record.status_message_id else None
        status = StatusMessage(request, self.bot.config.bot.status_interval, existing=existing)
        job = StyleJob(
            user_id=record.user_id, guild_id=record.guild_id, channel_id=record.channel_id, message_id=record.message_id,
            content=b"", style=b"", params=record.params, max_result_bytes=0, max_pixels=0,
            job_id=record.job_id, submitted_at=record.created_at,
        )
        handle = await self.bot.executor.reattach(job)
        if handle is None:
            reason = "the bot restarted and your job was lost; please send it again"
            await status.finish(f"❌ Your job did not finish: {reason}")
            await self.bot.update_job(record.job_id, state="interrupted", outcome=reason, finished_at=time.time())
            return
        log.info("re-attached to job %s", record.job_id)
        await self._follow(handle, request, status=status)

    def _track(self, task: asyncio.Task) -> None:
        self.following.add(task)
        task.add_done_callback(self.following.discard)

    @commands.command(help="Cancel your queued or running job (a running job stops within one step).")
    async def cancel(self, ctx: commands.Context):
        handles = self.bot.executor.handles_for_user(ctx.author.id)
        if not handles:
            raise UserError("you have no job queued or running")
        for handle in handles:
            await handle.cancel()
        await ctx.reply("🛑 Cancelling your job.", mention_author=False)

    @commands.command(name="queue", help="Show the jobs running and waiting.")
    async def queue(self, ctx: commands.Context):
        jobs = self.bot.executor.jobs()
        if not jobs:
            await ctx.reply("The queue is empty: your job would start at once.", mention_author=False)
            return
        here = ctx.guild.id if ctx.guild else None
        lines = []
        for info in jobs:
            who = f"<@{info.user_id}>" if info.guild_id == here or info.user_id == ctx.author.id else "someone elsewhere"
            if info.state == "running":
                lines.append(f"🎨 {who}: {info.fraction:.0%} on {info.device}")
            else:
                lines.append(f"{info.position}. {who}: waiting")
        await ctx.reply("\n".join(lines), mention_author=False, allowed_mentions=discord.AllowedMentions.none())


def progress_line(event: Progress) -> str:
    return (
        f"{event.step / event.total:.0%} · step {event.step}/{event.total} · "
        f"{_seconds(event.elapsed)} elapsed · about {_seconds(event.eta)} left"
    )


def timing_line(stats: dict) -> str:
    """e.g. ``500 epochs · 512×384 · 41.2 s on cuda:0``."""
    width, height = stats["size"]
    line = f"{stats['steps']} epochs · {width}×{height} · {stats['seconds']:.1f} s on {stats['device']}"
    sent = stats.get("encoded_size")
    if sent and tuple(sent) != (width, height):
        line += f" (sent at {sent[0]}×{sent[1]} to fit the upload limit)"
    return line


def _seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.0f} s" if value < 120 else f"{value // 60:.0f} min {value % 60:02.0f} s"
