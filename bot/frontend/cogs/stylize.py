"""The prefix commands: ``!stylize`` (a message with two or more images), ``!cancel``, ``!queue`` and
the owner's ``!sync``. They turn a message into a job request; the job service does the rest."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.frontend import attachments
from bot.core.errors import UserError
from bot.core.jobs import Destination, JobRequest, Silent
from bot.core.options import options_help
from bot.core.scheduling import starts_in_text
from bot.frontend.errors import errors_answered
from bot.frontend.checks import member_role_ids
from bot.frontend.replies import reply
from bot.frontend.forms import is_form_submission, parse_options
from bot.frontend.forms import submitted as form_submitted

if TYPE_CHECKING:
    from bot.app import StyleBot

log = logging.getLogger(__name__)


class Stylize(commands.Cog, name="Style transfer"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot
        self.stylize.help = self.stylize.help.replace("{options}", options_help(bot.config.defaults))

    @commands.command(
        usage="[--style NAME] [--preset NAME] [--epochs N] [--style-weight X] [--size N] [--seed N] ...",
        help=(
            "Repaint the first attached image (content) in the style of the second (style).\n"
            "Attach two images, or reply to a message that has them. More images after the second are\n"
            "blended as styles (their weights: --style-blend). Or attach only the content and name one of\n"
            "this server's styles: --style starry (see `style list`; --style a,b blends them, after any\n"
            "attached style images).\n"
            "An animated GIF or WebP as the content (or an MP4/WebM clip, where the bot reads videos) gives an\n"
            "animated GIF: every frame, at the bot's animation size (a smaller --size makes it quicker).\n\n"
            "Options (a --preset's values, then your saved defaults from `settings`, apply to what you leave out):\n"
            "```\n{options}\n```\n"
            "Example: stylize --epochs 300 --style-weight 1e9 --size 384 --seed 7\n"
            "Example: stylize --style starry --preset fast   (with only the content image attached)"
        ),
    )
    async def stylize(self, ctx: commands.Context, *, options: str = ""):
        given = parse_options(options)  # the same parser as the options form: every field of nst.params
        images = await attachments.find_images(ctx.message)
        request = JobRequest(
            user_id=ctx.author.id,
            destination=Destination(
                channel=ctx.channel,
                guild=ctx.guild,
                reply_to=ctx.message,
                upload_limit=ctx.guild.filesize_limit if ctx.guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
            ),
            attachments=images,
            options=given,
            via="prefix",
            role_ids=member_role_ids(ctx.author) if ctx.guild else None,
        )
        try:
            await self.bot.jobs.submit(request)
        except Silent as silent:
            log.warning("stylize from user %s not run: %s", ctx.author.id, silent)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Every options form's submission, whichever process opened the form (see bot.cogs.forms)."""
        if is_form_submission(interaction):
            async with errors_answered(interaction):
                await form_submitted(interaction)

    @commands.command(help="Cancel your queued or running job (a running job stops within one step).")
    async def cancel(self, ctx: commands.Context):
        await reply(ctx, await cancel_jobs(self.bot, ctx.author.id))

    @commands.command(name="queue", help="Show the jobs running and waiting, and when yours starts.")
    async def queue(self, ctx: commands.Context):
        await reply(ctx, queue_text(self.bot, ctx.guild, ctx.author.id))

    @commands.command(
        help="Bot owner: publish the slash commands and menus to Discord. "
             "`sync` = everywhere (may take a while to show), `sync here` = this server at once, "
             "`sync clear` = remove this server's copies."
    )
    @commands.is_owner()
    async def sync(self, ctx: commands.Context, scope: str = "global"):
        scope = sync_scope(scope, ctx.guild, f"{ctx.clean_prefix}sync")
        await reply(ctx, await sync_commands(self.bot, scope, ctx.guild))


# One implementation per command: !cancel and /cancel, !queue and /queue, !sync and /sync call these.


async def cancel_jobs(bot: "StyleBot", user_id: int) -> str:
    handles = bot.jobs.handles_for_user(user_id)
    if not handles:
        raise UserError("you have no job queued or running")
    for handle in handles:
        await handle.cancel()
    return "🛑 Cancelling your job."


def sync_scope(scope: str, guild: discord.Guild | None, command: str) -> str:
    scope = scope.lower()
    if scope not in ("global", "here", "clear"):
        raise UserError("give `global`, `here` or `clear`")
    if scope != "global" and guild is None:
        raise UserError(f"`{command} {scope}` works in a server")
    return scope


async def sync_commands(bot: "StyleBot", scope: str, guild: discord.Guild | None) -> str:
    """Publish the command tree: globally, to one server (a copy, visible at once), or clear that copy."""
    try:
        if scope == "global":
            synced = await bot.tree.sync()
            return (f"Synced {len(synced)} commands everywhere: {', '.join(c.name for c in synced)}. "
                    "Discord may take a little while to show them in every server.")
        if scope == "here":
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            return f"Synced {len(synced)} commands to this server (visible at once)."
        bot.tree.clear_commands(guild=guild)
        await bot.tree.sync(guild=guild)
        return "Removed this server's copy of the commands; the global ones stay."
    except discord.HTTPException as error:
        log.error("command sync failed: %s", error)
        return f"⚠️ Discord refused the sync: {error.text or error.status}"


def queue_text(bot: "StyleBot", guild: discord.Guild | None, user_id: int) -> str:
    """The jobs running and waiting, in the order they will start, and the caller's own jobs' places
    and estimated starts first."""
    jobs = bot.executor.jobs()
    if not jobs:
        return "The queue is empty: your job would start at once."
    lines = [your_place(info) for info in jobs if info.user_id == user_id and info.state == "queued"]
    for info in jobs:
        # A job is named to its owner, and in the server it runs for; a direct message's job only to its owner.
        shown = info.user_id == user_id or (guild is not None and info.guild_id == guild.id)
        who = f"<@{info.user_id}>" if shown else "someone elsewhere"
        if info.state == "running":
            lines.append(f"🎨 {who}: {info.fraction:.0%} on {info.device}")
        else:
            lines.append(f"{info.position}. {who}: waiting")
    return "\n".join(lines)


def your_place(info) -> str:
    """ "⏳ Your job: position 2 · starts in about 40 s" (the estimate when the queue has one)."""
    place = f"⏳ Your job: position {info.position}"
    return place if info.starts_in is None else f"{place} · {starts_in_text(info.starts_in)}"
