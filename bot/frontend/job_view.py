"""What a job looks like in its channel, whichever front-end it came from: a status message (queue
position, progress, a live preview, a Cancel button) and then the result with Again / Vary /
Details / Delete under it. Ordinary channel messages, so a job outlives any interaction token."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence

import discord

from bot.core.jobs import DEFAULT_UPLOAD_LIMIT, Destination
from bot.core.limits import effective_limits
from bot.core.scheduling import Estimate, queued_text
from bot.core.store import StoreError
from bot.executor.base import CANCELLED, Done, Failed, Preview, Progress, StyleJob
from bot.frontend import attachments
from bot.frontend.checks import member_role_ids
from bot.frontend.components import again_view, cancel_view, result_view
from bot.frontend.render import progress_line, result_line
from bot.frontend.replies import fit
from bot.frontend.status import StatusMessage

if TYPE_CHECKING:
    from bot.app import StyleBot

log = logging.getLogger(__name__)


class JobMessages:
    def __init__(
        self,
        bot: "StyleBot",
        job: StyleJob,
        where: "Destination",
        notes: Sequence[str],
        *,
        existing_status: discord.PartialMessage | None = None,
        on_status: Callable[[discord.Message], Awaitable[None]] | None = None,
        named: Sequence[str] = (),
        upscaled_from: Mapping[str, Any] | None = None,
    ):
        self.bot = bot
        self.job = job
        self.where = where
        self.named = tuple(named)  # the named styles the job uses, for the result line
        self.upscaled_from = upscaled_from  # {"job", "size"}: the picture this job upscales, for the result line
        self.notes = "".join(f"\n⚠️ {note}" for note in notes)
        # Not a reply (slash command): say whose job it is (status messages never ping anyone).
        self.who = "" if where.reply_to is not None else f"<@{job.user_id}> "
        self.status = StatusMessage(
            where.channel,
            bot.pacer,
            bot.config.bot.status_interval,
            reply_to=where.reply_to,
            existing=existing_status,
            on_created=on_status,
            view=cancel_view(job.job_id),
            preview_interval=bot.config.bot.preview_interval,
        )

    async def queued(self, position: int, starts_in: float | None = None) -> None:
        line = f"⏳ Queued, position {position}" if starts_in is None else queued_text(Estimate(self.job.job_id, position, starts_in))
        await self.status.show(f"{self.who}{line}. **Cancel** withdraws it.{self.notes}")

    async def started(self, device: str) -> None:
        await self.status.show(f"{self.who}🎨 Started on {device}…{self.notes}", now=True)

    async def progress(self, event: Progress) -> None:
        await self.status.show(f"{self.who}{progress_line(event)}{self.notes}")

    def preview(self, event: Preview) -> None:
        self.status.preview(event.image, event.filename)

    async def failed(self, event: Failed, *, retry: bool = False) -> None:
        """``retry``: offer an Again button (a job lost in a restart whose images are still cached)."""
        icon = "🛑" if event.kind == CANCELLED else "❌"
        view = again_view(self.job.job_id) if retry else None
        await self.status.finish(f"{self.who}{icon} Your job did not finish: {event.reason}", view=view)

    async def detached(self, reason: str) -> None:
        await self.status.finish(f"{self.who}⏸️ {reason}{self.notes}")

    def summary(self, stats: dict[str, Any]) -> str:
        line = result_line(stats, self.job.params, self.bot.config.defaults, self.named)
        if self.upscaled_from:  # with both sizes: what the upscale made of the picture, plainly
            width, height = self.upscaled_from["size"]
            made = stats.get("encoded_size") or stats["size"]
            line += (f"\n⤴️ upscaled ×2 from job `{self.upscaled_from['job'][:8]}` "
                     f"({width}×{height} → {made[0]}×{made[1]})")
        return line

    async def upscalable(self, stats: dict[str, Any]) -> bool:
        """Whether Upscale ×2 goes under this result: a still (not an animated GIF: its frames were reduced to
        fit the upload, and continuing a clip frame by frame would be a new clip job, not an upscale) whose
        next size is within the upscale limit of this place, decided now (a press re-checks it)."""
        if "frames" in stats:
            return False
        guild_limits = None
        if self.job.guild_id:
            try:
                guild_limits = await self.bot.store.guild_limits(self.job.guild_id)
            except StoreError as error:  # show it: pressing it checks the limits again
                log.warning("no server limits for the Upscale button of job %s: %s", self.job.job_id, error)
        size = tuple(stats.get("encoded_size") or stats["size"])
        return effective_limits(guild_limits, self.bot.config.caps).upscale_refusal(size) is None

    async def deliver(self, done: Done) -> str | None:
        """Post the result with its buttons; the reason for the user when Discord refused it. On success
        the status message stays until ``delivered()``, so the outcome is recorded first."""
        file = discord.File(io.BytesIO(done.image), filename=done.filename)
        view = result_view(self.job.job_id, upscale=await self.upscalable(done.stats))
        reply_to = self.where.reply_to
        try:
            await self.where.channel.send(
                fit(f"<@{self.job.user_id}> {self.summary(done.stats)}{self.notes}"),
                file=file,
                reference=reply_to.to_reference(fail_if_not_exists=False) if reply_to is not None else None,
                view=view,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(self.job.user_id)], replied_user=False),
            )
        except discord.HTTPException as error:
            log.error("could not deliver job %s: %s", self.job.job_id, error)
            reason = "the result was made, but Discord refused the upload; please try a smaller --size"
            if error.status == 403:
                reason = "the result was made, but I am no longer allowed to post it in this channel"
            await self.status.finish(f"{self.who}❌ {reason}")
            return reason
        return None

    async def delivered(self) -> None:
        """The result is posted (and recorded): the status message goes."""
        await self.status.finish()


class DiscordJobs:
    """The job service's front-end on Discord (bot.core.jobs.JobFrontend): the view of a job, the
    attachments, the bot's permissions, and a job's channel found again after a restart."""

    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    def view(self, job: StyleJob, where: Destination, notes: Sequence[str], *, existing_status=None, on_status=None,
             named: Sequence[str] = (), upscaled_from: Mapping[str, Any] | None = None) -> JobMessages:
        return JobMessages(self.bot, job, where, notes, existing_status=existing_status, on_status=on_status, named=named,
                           upscaled_from=upscaled_from)

    def missing_permissions(self, where: Destination) -> list[str]:
        return missing_permissions(where)

    def check_attachments(self, attached, **limits) -> None:
        attachments.check_attachments(attached, **limits)

    async def download(self, attached, **limits) -> Sequence[bytes]:
        return await attachments.download(attached, **limits, check_content=False)  # the job service decodes it

    async def find_destination(self, channel_id: int, message_id: int | None, status_message_id: int | None):
        try:
            channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        except discord.HTTPException as error:
            log.warning("channel %s is gone: %s", channel_id, error)
            return None
        guild = getattr(channel, "guild", None)
        where = Destination(
            channel=channel,
            guild=guild,
            reply_to=channel.get_partial_message(message_id) if message_id else None,
            upload_limit=guild.filesize_limit if guild else DEFAULT_UPLOAD_LIMIT,
        )
        existing = channel.get_partial_message(status_message_id) if status_message_id else None
        return where, existing

    async def role_ids(self, user_id: int, where: Destination) -> list[int]:
        """The member's roles (quota allowances), when the request did not carry them: from the member
        cache, else asked of Discord (the bot has no members intent); none if Discord cannot say."""
        guild = where.guild
        if guild is None:
            return []
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.HTTPException as error:
                log.warning("cannot read the roles of member %s in server %s: %s", user_id, guild.id, error)
                return []
        return member_role_ids(member)


def missing_permissions(where: "Destination") -> list[str]:
    """The permissions the bot lacks in the destination, by their names in Discord's settings."""
    if where.guild is None:
        return []  # a DM: the bot may always answer there
    permissions = where.permissions
    me = where.guild.me
    if me is not None and hasattr(where.channel, "permissions_for"):
        permissions = where.channel.permissions_for(me)
    if permissions is None:
        return []  # nothing known: Discord will say at the first post (logged there)
    in_thread = isinstance(where.channel, discord.Thread)
    needed = [
        ("view_channel", "View Channel"),
        ("send_messages_in_threads" if in_thread else "send_messages", "Send Messages in Threads" if in_thread else "Send Messages"),
        ("attach_files", "Attach Files"),
    ]
    if where.reply_to is not None:  # Discord needs it to reply to a message
        needed.append(("read_message_history", "Read Message History"))
    return [name for flag, name in needed if not getattr(permissions, flag)]
