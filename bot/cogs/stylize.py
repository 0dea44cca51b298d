"""The prefix commands: ``!stylize`` (a message with two or more images), ``!cancel``, ``!queue`` and
the owner's ``!sync``. They turn a message into a job request; the job service does the rest."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from .. import attachments
from ..errors import UserError
from ..jobs import Destination, JobRequest, Silent
from ..options import options_help
from ..replies import reply
from ..store import StoreError
from .buttons import say
from .forms import is_form_submission, parse_options
from .forms import submitted as form_submitted

if TYPE_CHECKING:
    from ..app import StyleBot

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
            "attached style images).\n\n"
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
        )
        try:
            await self.bot.jobs.submit(request)
        except Silent as silent:
            log.warning("stylize from user %s not run: %s", ctx.author.id, silent)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Every options form's submission, whichever process opened the form (see bot.cogs.forms)."""
        if is_form_submission(interaction):
            try:
                await form_submitted(interaction)
            except StoreError as error:
                log.error("store error: %s", error)
                await say(interaction, "⚠️ the bot's database is unavailable right now; please try again later")
            except Exception:  # noqa: BLE001 - a bug: logged, and a plain line instead of "interaction failed"
                log.exception("options form failed")
                await say(interaction, "⚠️ something went wrong on our side; the bot's operator can find the details in its logs")

    @commands.command(help="Cancel your queued or running job (a running job stops within one step).")
    async def cancel(self, ctx: commands.Context):
        handles = self.bot.jobs.handles_for_user(ctx.author.id)
        if not handles:
            raise UserError("you have no job queued or running")
        for handle in handles:
            await handle.cancel()
        await reply(ctx, "🛑 Cancelling your job.")

    @commands.command(name="queue", help="Show the jobs running and waiting.")
    async def queue(self, ctx: commands.Context):
        await reply(ctx, queue_text(self.bot, ctx.guild, ctx.author.id))

    @commands.command(
        help="Bot owner: publish the slash commands and menus to Discord. "
             "`sync` = everywhere (may take a while to show), `sync here` = this server at once, "
             "`sync clear` = remove this server's copies."
    )
    @commands.is_owner()
    async def sync(self, ctx: commands.Context, scope: str = "global"):
        from .slash import sync_commands

        scope = scope.lower()
        if scope not in ("global", "here", "clear"):
            raise UserError("give `global`, `here` or `clear`")
        if scope != "global" and ctx.guild is None:
            raise UserError(f"`{ctx.clean_prefix}sync {scope}` works in a server")
        await reply(ctx, await sync_commands(self.bot, scope, ctx.guild))


def queue_text(bot: "StyleBot", guild: discord.Guild | None, user_id: int) -> str:
    jobs = bot.executor.jobs()
    if not jobs:
        return "The queue is empty: your job would start at once."
    lines = []
    for info in jobs:
        # A job is named to its owner, and in the server it runs for; a direct message's job only to its owner.
        shown = info.user_id == user_id or (guild is not None and info.guild_id == guild.id)
        who = f"<@{info.user_id}>" if shown else "someone elsewhere"
        if info.state == "running":
            lines.append(f"🎨 {who}: {info.fraction:.0%} on {info.device}")
        else:
            lines.append(f"{info.position}. {who}: waiting")
    return "\n".join(lines)
