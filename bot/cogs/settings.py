"""``!settings``: each user's own defaults for ``!stylize`` options, kept across restarts and servers."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from discord.ext import commands

from nst.errors import ParamError
from nst.params import FIELDS, check_value, format_number

from ..errors import UserError
from ..limits import SOURCE_BOT, USER_FIELDS, effective_limits, resolve
from ..options import option_name

if TYPE_CHECKING:
    from ..app import StyleBot


def field_name(text: str) -> str:
    """Accept style_weight, style-weight and --style-weight."""
    name = text.strip().lstrip("-").replace("-", "_").lower()
    if name not in USER_FIELDS:
        raise UserError(f"unknown setting `{text}`; settings are: {', '.join(USER_FIELDS)}")
    return name


def shown(value) -> str:
    if value is None:
        return "random"
    return format_number(value) if isinstance(value, (int, float)) else str(value)


class Settings(commands.Cog, name="Your settings"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot
        # One lock per user: their settings commands apply in the order they were sent, even when a
        # read-check-write of one overlaps the next. Locks are FIFO; dropped when nobody holds them.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, user_id: int) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def cog_before_invoke(self, ctx: commands.Context) -> None:
        ctx.settings_lock = self._lock(ctx.author.id)
        await ctx.settings_lock.acquire()

    async def cog_after_invoke(self, ctx: commands.Context) -> None:
        ctx.settings_lock.release()

    @commands.group(invoke_without_command=True, help="Show your defaults for stylize, and where each value comes from.")
    async def settings(self, ctx: commands.Context):
        config = self.bot.config
        saved = await self.bot.store.user_settings(ctx.author.id)
        guild_limits = await self.bot.store.guild_limits(ctx.guild.id) if ctx.guild else None
        resolved = resolve(config.defaults, saved, {}, guild_limits, config.caps)
        limits = effective_limits(guild_limits, config.caps)
        ceilings = {"epochs": limits.max_epochs, "size": limits.max_size}
        rows = []
        for name in USER_FIELDS:
            value = getattr(resolved.params, name)
            source = resolved.sources[name]
            line = f"{name:15} {shown(value):>10}  ({source})"
            if name in ceilings and name in saved and saved[name] is not None and saved[name] > ceilings[name][0]:
                line = f"{name:15} {shown(value):>10}  (your default {shown(saved[name])}, lowered by {ceilings[name][1]})"
            rows.append(line)
        where = "this server" if ctx.guild else "direct messages"
        await ctx.reply(
            f"Your stylize defaults in {where}:\n```\n" + "\n".join(rows) + "\n```"
            f"Change one with `{ctx.clean_prefix}settings set style_weight 1e9`; "
            f"`{ctx.clean_prefix}settings unset NAME` or `{ctx.clean_prefix}settings reset` go back to the bot's defaults.",
            mention_author=False,
        )

    @settings.command(name="set", help="Save a default for a stylize option, e.g. settings set style_weight 1e9")
    async def set_(self, ctx: commands.Context, name: str, *, value: str):
        field = field_name(name)
        try:
            typed = check_value(field, value)
            saved = {**await self.bot.store.user_settings(ctx.author.id), field: typed}
            # the combination must still make a valid job (e.g. not both weights 0)
            resolve(self.bot.config.defaults, saved, {}, None, self.bot.config.caps)
        except ParamError as error:
            raise UserError(f"`{option_name(error.field)}`: {error.reason}") from None
        await self.bot.store.set_user_setting(ctx.author.id, field, typed)
        note = ""
        if ctx.guild and field in ("epochs", "size"):
            guild_limits = await self.bot.store.guild_limits(ctx.guild.id)
            limits = effective_limits(guild_limits, self.bot.config.caps)
            ceiling, reason = limits.max_epochs if field == "epochs" else limits.max_size
            if typed > ceiling:
                note = f" Here it is lowered to {ceiling} by {reason}."
        await ctx.reply(
            f"Saved: {field} = {shown(typed)} ({FIELDS[field].help}). It applies in every server, within each server's limits.{note}",
            mention_author=False,
        )

    @settings.command(help="Forget one of your defaults.")
    async def unset(self, ctx: commands.Context, name: str):
        field = field_name(name)
        removed = await self.bot.store.unset_user_setting(ctx.author.id, field)
        default = shown(getattr(self.bot.config.defaults, field))
        if removed:
            await ctx.reply(f"Removed your {field}; the {SOURCE_BOT} ({default}) applies again.", mention_author=False)
        else:
            await ctx.reply(f"You had no {field} saved; the {SOURCE_BOT} is {default}.", mention_author=False)

    @settings.command(help="Forget all your defaults.")
    async def reset(self, ctx: commands.Context):
        count = await self.bot.store.reset_user_settings(ctx.author.id)
        what = f"{count} saved value{'s' if count != 1 else ''}" if count else "nothing (you had no saved values)"
        await ctx.reply(f"Reset: removed {what}. Every option uses the bot's defaults again.", mention_author=False)

