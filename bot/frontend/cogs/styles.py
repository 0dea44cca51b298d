"""``!style`` and ``/style``: a server's library of named styles (bot/styles.py keeps them).

Anyone may list and show them and use them (``stylize --style NAME``); adding, renaming and removing
takes Manage Server (or the bot's owner), unless the server's ``style_editors`` limit is ``everyone``.
``style list`` answers with a contact sheet: the thumbnails in a grid, each name under its picture.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.frontend import attachments
from bot.core.errors import UserError
from bot.core.jobs import UPLOAD_MARGIN
from bot.core.limits import NAME_RULE, effective_limits
from bot.core.numbers import NotANumber, foreign_digit, whole
from bot.frontend.errors import answer_from
from bot.frontend.replies import quote, reply
from bot.core.styles import PER_SHEET, Entry, describe_bytes, style_name
from bot.frontend.checks import may_configure

if TYPE_CHECKING:
    from bot.app import StyleBot

log = logging.getLogger(__name__)

HELP = (
    "A server's own library of named styles: add a painting once, then stylize with only your content image.\n\n"
    "  style add NAME       with one image attached (or replying to a message with one)\n"
    "  style list [PAGE]    a contact sheet of the styles, 12 to a page (built-ins framed in gold)\n"
    "  style show NAME      the stored image, who added it and when\n"
    "  style rename OLD NEW\n"
    "  style remove NAME\n\n"
    f"Names: {NAME_RULE}; case does not matter. Use one: `stylize --style NAME` with only the content "
    "attached; `--style a,b` blends two (attached style images come first). Keep a favourite as your default: "
    "`settings set style NAME`.\n"
    "Adding, renaming and removing: members with Manage Server, unless an admin opened it to everyone "
    "(`limits set style_editors everyone`). Built-in styles come from the bot's operator and cannot be changed. "
    "Removing a style never affects a job already queued with it."
)


class Styles(commands.Cog, name="Named styles"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    # ------------------------------------------------------------------ what each action answers

    async def may_edit(self, user: discord.abc.User, guild: discord.Guild | None) -> None:
        if guild is None:
            raise UserError("named styles belong to a server: use this command in the server")
        if await may_configure(self.bot, user):
            return
        limits = effective_limits(await self.bot.store.guild_limits(guild.id), self.bot.config.caps)
        if limits.style_editors != "everyone":
            raise UserError("only members with the Manage Server permission can add, rename or remove this server's "
                            "styles (an admin can open it to everyone: `limits set style_editors everyone`)")

    async def add(self, user: discord.abc.User, guild: discord.Guild | None, name: str,
                  images: list[discord.Attachment], prefix: str) -> str:
        await self.may_edit(user, guild)
        name = style_name(name)
        caps = self.bot.config.caps
        if len(images) != 1:
            raise UserError(f"attach exactly one image to `{prefix}style add {name}` (I found {len(images)}), "
                            "or reply to a message that has one")
        attachments.check_attachment(images[0], "style image", max_bytes=caps.max_attachment_bytes, max_pixels=caps.max_pixels)
        await self.bot.styles.check_room(guild.id, name)  # before the download (add checks again, locked)
        (data,) = await attachments.download(images, max_bytes=caps.max_attachment_bytes, max_pixels=caps.max_pixels,
                                             allowed_hosts=self.bot.config.bot.attachment_hosts, names=["style image"])
        record = await self.bot.styles.add(guild.id, name, data, user.id)
        return (f"✅ Added the style `{record.name}` ({record.width}×{record.height}, {describe_bytes(record.bytes)}). "
                f"Use it with only your content image: `{prefix}stylize --style {record.name}`")

    async def listing(self, guild: discord.Guild | None, page: int, prefix: str) -> tuple[str, discord.File | None]:
        image, page, pages, own, builtin = await self.bot.styles.sheet(guild.id if guild else None, page)
        styles = self.bot.config.styles
        lines = []
        if guild is not None:
            used = sum({e.record.sha256: e.record.bytes for e in own}.values())
            lines.append(f"**This server's styles** ({len(own)} of {styles.max_per_server}, "
                         f"{describe_bytes(used)} of {describe_bytes(styles.max_bytes_per_server)}): "
                         + (", ".join(f"`{e.name}`" for e in own) or "none yet"))
        if builtin:
            lines.append("**Built-in** (from the bot's operator, framed in gold): " + ", ".join(f"`{e.name}`" for e in builtin))
        if image is None:
            lines.append(f"Add one: `{prefix}style add NAME` with an image attached.")
            return "\n".join(lines)[:2000], None
        if pages > 1:
            following = f" · `{prefix}style list {page + 1}` for the next" if page < pages else ""
            lines.append(f"Sheet {page} of {pages} ({PER_SHEET} to a sheet){following}.")
        lines.append(f"Use one: `{prefix}stylize --style NAME` with only your content image attached.")
        text = "\n".join(lines)
        if len(text) > 2000:  # a long library: the names are on the sheet
            text = "\n".join(line for line in lines if not line.startswith("**"))
        return text, discord.File(io.BytesIO(image), filename=f"styles-{page}.png")

    async def show(self, guild: discord.Guild | None, name: str) -> tuple[str, discord.File]:
        entry: Entry = await self.bot.styles.get(guild.id if guild else None, style_name(name))
        try:
            data = await asyncio.to_thread(entry.path.read_bytes)
        except OSError as error:
            log.error("style %r: cannot read %s: %s", entry.name, entry.path, error)
            raise UserError(f"the image of style `{entry.name}` cannot be read right now; please tell a server admin") from None
        if entry.builtin:
            text = f"**{entry.name}** (built-in, from the bot's operator)"
        else:
            record = entry.record
            when = datetime.fromtimestamp(record.added_at, timezone.utc)
            text = (f"**{entry.name}**: {record.width}×{record.height}, {describe_bytes(record.bytes)}, "
                    f"added by <@{record.added_by}> <t:{int(when.timestamp())}:R>")
        limit = guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        if len(data) > limit - UPLOAD_MARGIN:  # an operator's built-in may be any size: Discord would refuse it
            raise UserError(f"{text}: its image ({describe_bytes(len(data))}) is too large to send here")
        return text, discord.File(io.BytesIO(data), filename=f"{entry.name}{entry.path.suffix}")

    async def rename(self, user, guild, old: str, new: str) -> str:
        await self.may_edit(user, guild)
        name = await self.bot.styles.rename(guild.id, old, new)
        return f"Renamed the style `{style_name(old)}` to `{name}`."

    async def remove(self, user, guild, name: str) -> str:
        await self.may_edit(user, guild)
        record = await self.bot.styles.remove(guild.id, name)
        return f"Removed the style `{record.name}`. Jobs already queued with it still finish."

    # ------------------------------------------------------------------ prefix commands

    async def _list_page(self, ctx: commands.Context, page: str, refusal: str) -> None:
        try:
            number = whole(page, "the sheet number")
        except NotANumber as error:
            raise UserError(str(error) if foreign_digit(page) else refusal) from None
        text, file = await self.listing(ctx.guild, number, ctx.clean_prefix)
        await _reply(ctx, text, file)

    @commands.group(name="style", invoke_without_command=True, help=HELP)
    async def style(self, ctx: commands.Context, page: str = "1"):
        await self._list_page(ctx, page, f"`{quote(page, 40)}` is not a style command; see `{ctx.clean_prefix}help style`")

    @style.command(name="add", ignore_extra=False, help="Add a style: style add NAME, with one image attached (or replying to one).")
    async def add_(self, ctx: commands.Context, name: str):
        async with ctx.typing():
            text = await self.add(ctx.author, ctx.guild, name, await attachments.find_images(ctx.message), ctx.clean_prefix)
        await _reply(ctx, text)

    @style.command(name="list", help="The styles as a contact sheet: style list [PAGE].")
    async def list_(self, ctx: commands.Context, page: str = "1"):
        await self._list_page(ctx, page, f"give a sheet number, e.g. `{ctx.clean_prefix}style list 2`")

    @style.command(name="show", ignore_extra=False, help="One style's image and details: style show NAME.")
    async def show_(self, ctx: commands.Context, name: str):
        text, file = await self.show(ctx.guild, name)
        await _reply(ctx, text, file)

    @style.command(name="rename", ignore_extra=False, help="Rename a style: style rename OLD NEW.")
    async def rename_(self, ctx: commands.Context, old: str, new: str):
        await _reply(ctx, await self.rename(ctx.author, ctx.guild, old, new))

    @style.command(name="remove", ignore_extra=False, aliases=["delete"], help="Remove a style: style remove NAME.")
    async def remove_(self, ctx: commands.Context, name: str):
        await _reply(ctx, await self.remove(ctx.author, ctx.guild, name))

    # ------------------------------------------------------------------ /style

    slash = app_commands.Group(name="style", description="This server's named styles")

    async def _answer(self, interaction: discord.Interaction, make, *, public: bool = False) -> None:
        await answer_from(interaction, make, public=public)

    @slash.command(name="add", description="Add a style to this server's library")
    @app_commands.describe(name=f"its name: {NAME_RULE}", image="the style image")
    async def slash_add(self, interaction: discord.Interaction, name: str, image: discord.Attachment):
        await self._answer(interaction, lambda: self.add(interaction.user, interaction.guild, name, [image], "/"))

    @slash.command(name="list", description="The styles as a contact sheet")
    @app_commands.describe(page="which sheet (12 styles each)")
    async def slash_list(self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1):
        await self._answer(interaction, lambda: self.listing(interaction.guild, page, "/"))

    @slash.command(name="show", description="One style's image and details")
    async def slash_show(self, interaction: discord.Interaction, name: str):
        await self._answer(interaction, lambda: self.show(interaction.guild, name))

    @slash.command(name="rename", description="Rename a style of this server")
    async def slash_rename(self, interaction: discord.Interaction, old: str, new: str):
        await self._answer(interaction, lambda: self.rename(interaction.user, interaction.guild, old, new))

    @slash.command(name="remove", description="Remove a style from this server's library")
    async def slash_remove(self, interaction: discord.Interaction, name: str):
        await self._answer(interaction, lambda: self.remove(interaction.user, interaction.guild, name))

    @slash_show.autocomplete("name")
    async def _complete_any(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await complete_style(self.bot, interaction, current)

    @slash_rename.autocomplete("old")
    @slash_remove.autocomplete("name")
    async def _complete_own(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await complete_style(self.bot, interaction, current, builtin=False)


async def complete_style(bot: "StyleBot", interaction: discord.Interaction, current: str, *,
                         builtin: bool = True) -> list[app_commands.Choice[str]]:
    """The style names here that contain what was typed (the server's, then the built-ins)."""
    own, builtins = await bot.styles.entries(interaction.guild.id if interaction.guild else None)
    typed = current.strip().lower()
    names = [e.name for e in own + (builtins if builtin else []) if typed in e.name]
    return [app_commands.Choice(name=name, value=name) for name in dict.fromkeys(names)][:25]


async def _reply(ctx: commands.Context, text: str, file: discord.File | None = None) -> None:
    await reply(ctx, text, file=file)
