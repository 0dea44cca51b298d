"""``!limits``: per-server limits, set by members with Manage Server (or the bot's owner)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import UserError
from bot.core.limits import GUILD_LIMITS, LimitError, check_guild_limit, effective_limits, parse_guild_limit
from bot.core.numbers import is_whole
from bot.core.options import normalise_name
from bot.frontend.checks import manage_server_or_owner, may_change_limits
from bot.frontend.errors import answer_from
from bot.frontend.replies import quote, reply

if TYPE_CHECKING:
    from bot.app import StyleBot


def shown(name: str, value) -> str:
    if name == "channels":
        return " ".join(f"<#{channel}>" for channel in value)
    if name in ("cooldown", "max_clip_seconds"):
        return f"{value:g} s"
    return str(value)


_CHANNEL = re.compile(r"^<#(\d+)>$")
LimitName = Literal[tuple(GUILD_LIMITS)]  # type: ignore[valid-type]  # /limits' choices: the catalogue itself


class Limits(commands.Cog, name="Server limits"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    # ------------------------------------------------------------------ what each action answers

    async def show_text(self, guild: discord.Guild | None, prefix: str) -> str:
        caps = self.bot.config.caps
        if guild is None:
            return (
                "Limits are per server, so none apply in direct messages: here only the bot's own caps do "
                f"(at most {caps.max_epochs} epochs, {caps.max_size} px, {caps.max_jobs_per_user} job(s) at a time, "
                f"animations of {caps.max_frames} frames and {caps.max_clip_seconds:g} s). "
                "Use this command in a server to see its limits."
            )
        values = await self.bot.store.guild_limits(guild.id)
        effective = effective_limits(values, caps)
        lines = []
        for name, spec in GUILD_LIMITS.items():
            value = values.get(name)
            current = shown(name, value) if value is not None else "not set" + (f" ({spec.choices[0]})" if spec.choices else "")
            cap = spec.cap(caps)
            cap_text = f", bot cap {cap:g}" if cap is not None else ""
            lines.append(f"**{name}**: {current} — {spec.help}{cap_text}")
        lines.append(
            f"In effect here: {effective.max_epochs[0]} epochs, {effective.max_size[0]} px, "
            f"{effective.max_jobs_per_user} job(s) per member, cooldown {effective.cooldown:g} s, "
            f"named styles edited by {effective.style_editors}, animations of at most {effective.max_frames[0]} frames "
            f"and {effective.max_clip_seconds[0]:g} s."
        )
        lines.append(f"Admins: `{prefix}limits set max_epochs 300`, `{prefix}limits unset max_epochs`.")
        return "\n".join(lines)

    async def set_text(self, guild: discord.Guild, user_id: int, name: str, values: list[str], prefix: str) -> str:
        name = normalise_name(name)
        if not values:
            raise UserError(f"give a value, e.g. `{prefix}limits set max_epochs 300`")
        try:
            if name == "channels":
                value = check_guild_limit(name, [self._channel_id(guild, text) for text in values], self.bot.config.caps)
            else:
                value = parse_guild_limit(name, " ".join(values), self.bot.config.caps)
        except LimitError as error:
            raise UserError(str(error)) from None
        await self.bot.store.set_guild_limit(guild.id, name, value, changed_by=user_id)
        return f"This server's {name} is now {shown(name, value)}."

    async def unset_text(self, guild: discord.Guild, name: str) -> str:
        name = normalise_name(name)
        if name not in GUILD_LIMITS:
            raise UserError(f"unknown limit `{quote(name, 40)}`; limits are: {', '.join(GUILD_LIMITS)}")
        removed = await self.bot.store.unset_guild_limit(guild.id, name)
        return f"Removed this server's {name}." if removed else f"This server had no {name} set."

    @staticmethod
    def _channel_id(guild: discord.Guild, text: str) -> int:
        """A text channel of this server, as a mention (#art), an id or a name."""
        match = _CHANNEL.match(text)
        key = match.group(1) if match else text.lstrip("#")
        channel = guild.get_channel(int(key)) if is_whole(key) else discord.utils.get(guild.text_channels, name=key)
        if not isinstance(channel, discord.TextChannel):
            raise UserError(f"{quote(text, 40)} is not a text channel of this server")
        return channel.id

    # ------------------------------------------------------------------ prefix commands

    @commands.group(invoke_without_command=True, help="Show this server's limits for stylize.")
    async def limits(self, ctx: commands.Context):
        await reply(ctx, await self.show_text(ctx.guild, ctx.clean_prefix))

    @limits.command(name="set", help="Set a limit: max_epochs, max_size, max_frames, max_clip_seconds, "
                                      "max_jobs_per_user, cooldown (seconds), channels (#a #b), style_editors (admins or everyone).")
    @manage_server_or_owner()
    async def set_(self, ctx: commands.Context, name: str, *values: str):
        await reply(ctx, await self.set_text(ctx.guild, ctx.author.id, name, list(values), ctx.clean_prefix))

    @limits.command(help="Remove a limit (the bot's cap applies again).")
    @manage_server_or_owner()
    async def unset(self, ctx: commands.Context, name: str):
        await reply(ctx, await self.unset_text(ctx.guild, name))

    # ------------------------------------------------------------------ /limits: hidden from members
    # by default_permissions (server admins can change who sees it); the check above still runs.

    slash = app_commands.Group(
        name="limits", description="This server's limits for stylize", guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    async def _answer(self, interaction: discord.Interaction, make, *, check: bool = True) -> None:
        async def checked():
            if check:
                await may_change_limits(self.bot, interaction.user, interaction.guild)
            return await make()

        await answer_from(interaction, checked)

    @slash.command(name="show", description="Show this server's limits")
    async def slash_show(self, interaction: discord.Interaction):
        await self._answer(interaction, lambda: self.show_text(interaction.guild, "/"), check=False)

    @slash.command(name="set", description="Set a limit")
    @app_commands.describe(name="which limit", value="a number (seconds for cooldown), channels: #art #bots, "
                                                        "or admins/everyone for style_editors")
    async def slash_set(
        self,
        interaction: discord.Interaction,
        name: LimitName,
        value: str,
    ):
        await self._answer(interaction, lambda: self.set_text(interaction.guild, interaction.user.id, name, value.split(), "/"))

    @slash.command(name="unset", description="Remove a limit (the bot's cap applies again)")
    @app_commands.describe(name="which limit")
    async def slash_unset(
        self,
        interaction: discord.Interaction,
        name: LimitName,
    ):
        await self._answer(interaction, lambda: self.unset_text(interaction.guild, name))
