"""``!limits``: per-server limits, set by members with Manage Server (or the bot's owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from ..errors import UserError
from ..limits import GUILD_LIMITS, LimitError, check_guild_limit, effective_limits, parse_guild_limit

if TYPE_CHECKING:
    from ..app import StyleBot


def manage_server_or_owner():
    """Members with Manage Server, or the bot's owner; anyone else is refused before anything changes."""

    async def predicate(ctx: commands.Context) -> bool:
        if ctx.guild is None:
            raise UserError("limits are per server: use this command in the server you want to change")
        if await ctx.bot.is_owner(ctx.author):
            return True
        if isinstance(ctx.author, discord.Member) and ctx.author.guild_permissions.manage_guild:
            return True
        raise UserError("only members with the Manage Server permission can change this server's limits")

    return commands.check(predicate)


def shown(name: str, value) -> str:
    if name == "channels":
        return " ".join(f"<#{channel}>" for channel in value)
    if name == "cooldown":
        return f"{value:g} s"
    return str(value)


class Limits(commands.Cog, name="Server limits"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    @commands.group(invoke_without_command=True, help="Show this server's limits for stylize.")
    async def limits(self, ctx: commands.Context):
        caps = self.bot.config.caps
        if ctx.guild is None:
            await ctx.reply(
                "Limits are per server, so none apply in direct messages: here only the bot's own caps do "
                f"(at most {caps.max_epochs} epochs, {caps.max_size} px, {caps.max_jobs_per_user} job(s) at a time). "
                "Use this command in a server to see its limits.",
                mention_author=False,
            )
            return
        values = await self.bot.store.guild_limits(ctx.guild.id)
        effective = effective_limits(values, caps)
        lines = []
        for name, spec in GUILD_LIMITS.items():
            value = values.get(name)
            current = shown(name, value) if value is not None else "not set"
            cap = spec.cap(caps)
            cap_text = f", bot cap {cap:g}" if cap is not None else ""
            lines.append(f"**{name}**: {current} — {spec.help}{cap_text}")
        lines.append(
            f"In effect here: {effective.max_epochs[0]} epochs, {effective.max_size[0]} px, "
            f"{effective.max_jobs_per_user} job(s) per member, cooldown {effective.cooldown:g} s."
        )
        lines.append(f"Admins: `{ctx.clean_prefix}limits set max_epochs 300`, `{ctx.clean_prefix}limits unset max_epochs`.")
        await ctx.reply("\n".join(lines), mention_author=False, allowed_mentions=discord.AllowedMentions.none())

    @limits.command(name="set", help="Set a limit: max_epochs, max_size, max_jobs_per_user, cooldown (seconds), channels (#a #b).")
    @manage_server_or_owner()
    async def set_(self, ctx: commands.Context, name: str, *values: str):
        name = name.strip().lower().replace("-", "_")
        if not values:
            raise UserError(f"give a value, e.g. `{ctx.clean_prefix}limits set max_epochs 300`")
        try:
            if name == "channels":
                value = check_guild_limit(name, [await self._channel_id(ctx, text) for text in values], self.bot.config.caps)
            else:
                value = parse_guild_limit(name, " ".join(values), self.bot.config.caps)
        except LimitError as error:
            raise UserError(str(error)) from None
        await self.bot.store.set_guild_limit(ctx.guild.id, name, value, changed_by=ctx.author.id)
        await ctx.reply(f"This server's {name} is now {shown(name, value)}.", mention_author=False)

    @limits.command(help="Remove a limit (the bot's cap applies again).")
    @manage_server_or_owner()
    async def unset(self, ctx: commands.Context, name: str):
        name = name.strip().lower().replace("-", "_")
        if name not in GUILD_LIMITS:
            raise UserError(f"unknown limit `{name}`; limits are: {', '.join(GUILD_LIMITS)}")
        removed = await self.bot.store.unset_guild_limit(ctx.guild.id, name)
        text = f"Removed this server's {name}." if removed else f"This server had no {name} set."
        await ctx.reply(text, mention_author=False)

    @staticmethod
    async def _channel_id(ctx: commands.Context, text: str) -> int:
        try:
            channel = await commands.TextChannelConverter().convert(ctx, text)
        except commands.BadArgument:
            raise UserError(f"{text} is not a text channel of this server") from None
        return channel.id
