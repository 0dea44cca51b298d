"""``!limits``: per-server limits, set by members with Manage Server (or the bot's owner)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import UserError
from bot.core.limits import (
    GUILD_LIMITS,
    LimitError,
    check_guild_limit,
    effective_limits,
    parse_guild_limit,
    parse_quota_roles,
)
from bot.core.numbers import is_whole
from bot.core.options import normalise_name
from bot.core.quotas import quota_limits
from bot.core.usage import span
from bot.frontend.checks import manage_server_or_owner, may_change_limits
from bot.frontend.errors import answer_from
from bot.frontend.replies import quote, reply

if TYPE_CHECKING:
    from bot.app import StyleBot


def shown(name: str, value) -> str:
    if name == "channels":
        return " ".join(f"<#{channel}>" for channel in value)
    if name == "quota_roles":
        return ", ".join(f"<@&{role}> {span(seconds)}" for role, seconds in value.items())
    if name in ("quota_member", "quota_server"):
        return f"{span(value)} a day"
    if name in ("cooldown", "max_clip_seconds"):
        return f"{value:g} s"
    return str(value)


_CHANNEL = re.compile(r"^<#(\d+)>$")
_ROLE = re.compile(r"^<@&(\d+)>$")
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
            quota_cap = spec.quota_cap(self.bot.config.quotas)
            if quota_cap is not None:
                cap_text = f", bot cap {span(quota_cap)} a day"
            lines.append(f"**{name}**: {current} — {spec.help}{cap_text}")
        lines.append(
            f"In effect here: {effective.max_epochs[0]} epochs, {effective.max_size[0]} px, "
            f"{effective.max_jobs_per_user} job(s) per member, cooldown {effective.cooldown:g} s, "
            f"named styles edited by {effective.style_editors}, animations of at most {effective.max_frames[0]} frames "
            f"and {effective.max_clip_seconds[0]:g} s."
        )
        lines.append(self._quotas_text(values))
        lines.append(f"Admins: `{prefix}limits set max_epochs 300`, `{prefix}limits unset max_epochs`.")
        return "\n".join(lines)

    def _quotas_text(self, values) -> str:
        """The daily quotas in force in this server (the operator's and its own), and what happens over them."""
        limits = quota_limits(self.bot.config, values)
        member = f"{span(limits.member)} a member" if limits.member is not None else "no cap per member"
        roles = "".join(f", <@&{role}> {span(seconds)}" for role, seconds in limits.roles.items())
        server = limits.server_cap()
        user = f"; at most {span(limits.user)} a user in all servers" if limits.user is not None else ""
        over = "wait in the slow lane" if self.bot.config.quotas.over_quota == "slow-lane" else "are refused"
        return (f"Daily quotas here: {member}{roles}, {span(server) + ' for the server' if server else 'no cap for the server'}"
                f"{user}; over quota, jobs {over} until 00:00 UTC.")

    async def set_text(self, guild: discord.Guild, user_id: int, name: str, values: list[str], prefix: str) -> str:
        name = normalise_name(name)
        if not values:
            raise UserError(f"give a value, e.g. `{prefix}limits set max_epochs 300`")
        caps, quotas = self.bot.config.caps, self.bot.config.quotas
        try:
            if name == "channels":
                value = check_guild_limit(name, [self._channel_id(guild, text) for text in values], caps)
            elif name == "quota_roles":
                value = parse_quota_roles(self._role_allowances(guild, values, prefix), caps, quotas)
            else:
                value = parse_guild_limit(name, " ".join(values), caps, quotas)
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

    @classmethod
    def _role_allowances(cls, guild: discord.Guild, values: list[str], prefix: str) -> list[tuple[int, str]]:
        """``@Patron 2h @VIP 1h30m`` -> [(role id, "2h"), ...]: each role, then its time (which may be
        typed in parts: ``1h 30m``)."""
        pairs: list[tuple[int, str]] = []
        for text in values:
            role = cls._role_id(guild, text)
            if role is not None:
                pairs.append((role, ""))
            elif not pairs:
                raise UserError(f"{quote(text, 40)} is not a role of this server; name a role first, "
                                f"e.g. `{prefix}limits set quota_roles @Patron 2h`")
            else:
                pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {text}".strip())
        for role, time in pairs:
            if not time:
                raise UserError(f"give <@&{role}> its time a day, e.g. `{prefix}limits set quota_roles @Patron 2h`")
        return pairs

    @staticmethod
    def _role_id(guild: discord.Guild, text: str) -> int | None:
        """A role of this server, as a mention (@Patron), an id or a name; None if ``text`` is none of those."""
        match = _ROLE.match(text)
        key = match.group(1) if match else text.lstrip("@")
        role = guild.get_role(int(key)) if is_whole(key) else discord.utils.get(guild.roles, name=key)
        if role is None and match:
            raise UserError(f"{quote(text, 40)} is not a role of this server")
        return role.id if role is not None and not role.is_default() else None

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
                                      "max_jobs_per_user, cooldown (seconds), channels (#a #b), style_editors (admins or everyone), "
                                      "quota_member and quota_server (a day: 30m, 2h), quota_roles (@Patron 2h @VIP 1h).")
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
    @app_commands.describe(name="which limit", value="a number (cooldown: seconds), #art #bots, admins/everyone, "
                                                        "quotas: 2h a day, quota_roles: @Patron 2h")
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
