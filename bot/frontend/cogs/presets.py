"""``!preset`` and ``/preset``: named sets of stylize options, a member's own or a server's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import UserError
from bot.core.presets import check_preset, describe, preset_name
from bot.frontend.errors import answer_from
from bot.frontend.replies import reply
from bot.frontend.checks import may_configure
from bot.frontend.forms import parse_options

if TYPE_CHECKING:
    from bot.app import StyleBot

HELP = (
    "Named sets of stylize options, used with `stylize --preset NAME`.\n\n"
    "  preset save NAME --epochs 300 --style-weight 1e9 ...   your own (saving a name again replaces it)\n"
    "  preset save --server NAME ...                          this server's, for everyone (Manage Server)\n"
    "  preset list\n"
    "  preset remove NAME        (--server NAME: this server's)\n\n"
    "A preset may hold every option you could keep as a default (see `settings`), `--style NAME` included. "
    "Values apply in this order: the command's options, then the preset, then your defaults, then the bot's; "
    "then this server's limits and the bot's caps lower what is above them. `--preset NAME` finds your own "
    "preset first, then the server's."
)
SERVER_FLAG = "--server"


def split_server_flag(text: str) -> tuple[bool, str]:
    """(``--server`` was given, the rest of the text)."""
    words = text.split()
    server = any(word.lower() == SERVER_FLAG for word in words)
    return server, " ".join(word for word in words if word.lower() != SERVER_FLAG)


class Presets(commands.Cog, name="Presets"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot
        self._saving = asyncio.Lock()  # the count check and the write together: two saves at once never pass the cap

    async def _owner(self, user: discord.abc.User, guild: discord.Guild | None, server: bool) -> tuple[str, int]:
        """(scope, owner id) of the presets a command changes; refuses non-admins for the server's."""
        if not server:
            return "user", user.id
        if guild is None:
            raise UserError("server presets belong to a server: use this command in the server")
        if not await may_configure(self.bot, user):
            raise UserError("only members with the Manage Server permission can change this server's presets")
        return "guild", guild.id

    async def save(self, user: discord.abc.User, guild: discord.Guild | None, name: str, options_text: str,
                   server: bool) -> str:
        scope, owner = await self._owner(user, guild, server)
        name = preset_name(name)
        values = check_preset(parse_options(options_text), self.bot.config)
        for style in values.get("style", ()):  # a typo would only show at the next job: refuse it now
            await self.bot.styles.get(guild.id if guild else None, style)
        async with self._saving:
            existing = await self.bot.store.presets(scope, owner)
            cap = self.bot.config.caps.max_presets
            if name not in existing and len(existing) >= cap:
                whose = "This server has" if scope == "guild" else "You have"
                raise UserError(f"{whose} {len(existing)} presets, the most the bot keeps ({cap}); remove one first")
            await self.bot.store.save_preset(scope, owner, name, values, changed_by=user.id)
        whose = "this server's" if scope == "guild" else "your"
        verb = "Replaced" if name in existing else "Saved"
        return f"{verb} {whose} preset `{name}`: {describe(values)}. Use it: `stylize --preset {name}`."

    async def listing(self, user: discord.abc.User, guild: discord.Guild | None) -> str:
        mine = await self.bot.store.presets("user", user.id)
        server = await self.bot.store.presets("guild", guild.id) if guild else {}
        lines = ["**Your presets**" + (":" if mine else ": none yet")]
        lines += [f"`{name}`: {describe(values)}" for name, values in mine.items()]
        if guild is not None:
            lines.append("**This server's presets**" + (":" if server else ": none"))
            lines += [f"`{name}`: {describe(values)}" for name, values in server.items()]
        lines.append("Save one: `preset save NAME --epochs 300 --style-weight 1e9`; use it: `stylize --preset NAME`.")
        text = "\n".join(lines)
        return text if len(text) <= 2000 else text[:1990] + "\n…"

    async def remove(self, user: discord.abc.User, guild: discord.Guild | None, name: str, server: bool) -> str:
        scope, owner = await self._owner(user, guild, server)
        name = preset_name(name)
        whose = "this server's" if scope == "guild" else "your"
        if not await self.bot.store.remove_preset(scope, owner, name):
            raise UserError(f"there is no preset `{name}` among {whose} presets (see `preset list`)")
        return f"Removed {whose} preset `{name}`."

    # ------------------------------------------------------------------ prefix commands

    @commands.group(name="preset", invoke_without_command=True, help=HELP)
    async def preset(self, ctx: commands.Context):
        await _reply(ctx, await self.listing(ctx.author, ctx.guild))

    @preset.command(name="save", usage="[--server] NAME --epochs 300 --style-weight 1e9 ...",
                    help="Save a preset: preset save NAME --epochs 300 ... (--server: this server's, for admins).")
    async def save_(self, ctx: commands.Context, *, text: str):
        server, rest = split_server_flag(text)
        name, _, options = rest.partition(" ")
        if not name or name.startswith("--"):
            raise UserError(f"give the preset a name first: `{ctx.clean_prefix}preset save NAME --epochs 300`")
        await _reply(ctx, await self.save(ctx.author, ctx.guild, name, options, server))

    @preset.command(name="list", help="Your presets and this server's.")
    async def list_(self, ctx: commands.Context):
        await _reply(ctx, await self.listing(ctx.author, ctx.guild))

    @preset.command(name="remove", aliases=["delete"], usage="[--server] NAME", help="Remove a preset (--server: this server's).")
    async def remove_(self, ctx: commands.Context, *, text: str):
        server, name = split_server_flag(text)
        await _reply(ctx, await self.remove(ctx.author, ctx.guild, name, server))

    # ------------------------------------------------------------------ /preset (privately)

    slash = app_commands.Group(name="preset", description="Named sets of stylize options")

    @slash.command(name="save", description="Save a preset of stylize options")
    @app_commands.describe(name="the preset's name", options="as in !stylize, e.g. --epochs 300 --style-weight 1e9",
                           server="this server's preset, for everyone (Manage Server)")
    async def slash_save(self, interaction: discord.Interaction, name: str, options: str, server: bool = False):
        await answer_from(interaction, lambda: self.save(interaction.user, interaction.guild, name, options, server))

    @slash.command(name="list", description="Your presets and this server's")
    async def slash_list(self, interaction: discord.Interaction):
        await answer_from(interaction, lambda: self.listing(interaction.user, interaction.guild))

    @slash.command(name="remove", description="Remove a preset")
    @app_commands.describe(server="remove this server's preset of that name (Manage Server)")
    async def slash_remove(self, interaction: discord.Interaction, name: str, server: bool = False):
        await answer_from(interaction, lambda: self.remove(interaction.user, interaction.guild, name, server))

    @slash_remove.autocomplete("name")
    async def _complete_remove(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """The member's own preset names, or the server's when ``server`` is set, that contain what was typed."""
        server = bool(getattr(interaction.namespace, "server", False))
        if server and interaction.guild is None:
            return []
        scope, owner = ("guild", interaction.guild.id) if server else ("user", interaction.user.id)
        typed = current.strip().lower()
        names = [name for name in await self.bot.store.presets(scope, owner) if typed in name]
        return [app_commands.Choice(name=name, value=name) for name in names[:25]]


async def _reply(ctx: commands.Context, text: str) -> None:
    await reply(ctx, text)
