"""``!settings``: each user's own defaults for ``!stylize`` options, kept across restarts and servers."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from nst.errors import ParamError
from nst.params import FIELDS, format_number

from bot.core.errors import UserError
from bot.core.limits import BOT_OPTIONS, SETTING_NAMES, SOURCE_BOT, check_option, effective_limits, option_help, resolve
from bot.core.options import normalise_name, option_refusal
from bot.frontend.errors import answer_from
from bot.frontend.replies import quote, reply

if TYPE_CHECKING:
    from bot.app import StyleBot


def field_name(text: str) -> str:
    """Accept style_weight, style-weight and --style-weight."""
    name = normalise_name(text)
    if name not in SETTING_NAMES:
        if (name in FIELDS and FIELDS[name].user_option) or name in BOT_OPTIONS:
            raise UserError(f"`{name}` is chosen per job (give it as an option to stylize), not kept as a setting")
        raise UserError(f"unknown setting `{quote(text, 40)}`; settings are: {', '.join(SETTING_NAMES)}")
    return name


def shown(value, name: str | None = None) -> str:
    if value is None:
        return FIELDS[name].none_word if name in FIELDS else "random"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
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

    # ------------------------------------------------------------------ what each action answers

    async def show_text(self, user_id: int, guild: discord.Guild | None, prefix: str) -> str:
        config = self.bot.config
        saved = await self.bot.store.user_settings(user_id)
        guild_limits = await self.bot.store.guild_limits(guild.id) if guild else None
        resolved = resolve(config.defaults, saved, {}, guild_limits, config.caps)
        rows = []
        for name in SETTING_NAMES:
            if name == "style":
                value = ",".join(resolved.styles) or "none"
            else:
                value = shown(getattr(resolved.params, name), name)
            rows.append(f"{name:15} {value:>10}  ({resolved.explain(name)})")
        where = "this server" if guild else "direct messages"
        return (
            f"Your stylize defaults in {where}:\n```\n" + "\n".join(rows) + "\n```"
            f"Change one with `{prefix}settings set style_weight 1e9` (or `{prefix}settings set style NAME` for a "
            f"favourite named style); `{prefix}settings unset NAME` or `{prefix}settings reset` go back to the bot's "
            f"defaults. A command's options, then a `--preset`, come before these."
        )

    async def set_text(self, user_id: int, guild: discord.Guild | None, name: str, value: str) -> str:
        field = field_name(name)
        try:
            typed = check_option(field, value)
            saved = {**await self.bot.store.user_settings(user_id), field: typed}
            # the combination must still make a valid job (e.g. not both weights 0)
            resolve(self.bot.config.defaults, saved, {}, None, self.bot.config.caps)
        except ParamError as error:
            raise option_refusal(error) from None
        note = ""
        if field == "style":
            for style in typed:  # a typo would only show at the next job: refuse it now
                await self.bot.styles.get(guild.id if guild else None, style)
            typed = list(typed)
            note = " It is used when you attach only a content image, in every server that has a style of that name."
        await self.bot.store.set_user_setting(user_id, field, typed)
        if guild and field in ("epochs", "size"):
            guild_limits = await self.bot.store.guild_limits(guild.id)
            limits = effective_limits(guild_limits, self.bot.config.caps)
            ceiling, reason = limits.max_epochs if field == "epochs" else limits.max_size
            if typed > ceiling:
                note = f" Here it is lowered to {ceiling} by {reason}."
        return f"Saved: {field} = {shown(typed, field)} ({option_help(field)}). It applies in every server, within each server's limits.{note}"

    async def unset_text(self, user_id: int, name: str) -> str:
        field = field_name(name)
        removed = await self.bot.store.unset_user_setting(user_id, field)
        default = "none" if field in BOT_OPTIONS else shown(getattr(self.bot.config.defaults, field), field)
        if removed:
            return f"Removed your {field}; the {SOURCE_BOT} ({default}) applies again."
        return f"You had no {field} saved; the {SOURCE_BOT} is {default}."

    async def reset_text(self, user_id: int) -> str:
        count = await self.bot.store.reset_user_settings(user_id)
        what = f"{count} saved value{'s' if count != 1 else ''}" if count else "nothing (you had no saved values)"
        return f"Reset: removed {what}. Every option uses the bot's defaults again."

    # ------------------------------------------------------------------ prefix commands

    @commands.group(invoke_without_command=True, help="Show your defaults for stylize, and where each value comes from.")
    async def settings(self, ctx: commands.Context):
        await reply(ctx, await self.show_text(ctx.author.id, ctx.guild, ctx.clean_prefix))

    @settings.command(name="set", help="Save a default for a stylize option, e.g. settings set style_weight 1e9")
    async def set_(self, ctx: commands.Context, name: str, *, value: str):
        await reply(ctx, await self.set_text(ctx.author.id, ctx.guild, name, value))

    @settings.command(help="Forget one of your defaults.")
    async def unset(self, ctx: commands.Context, name: str):
        await reply(ctx, await self.unset_text(ctx.author.id, name))

    @settings.command(help="Forget all your defaults.")
    async def reset(self, ctx: commands.Context):
        await reply(ctx, await self.reset_text(ctx.author.id))

    # ------------------------------------------------------------------ /settings (the same, privately)

    slash = app_commands.Group(name="settings", description="Your defaults for /stylize and !stylize")

    async def _answer(self, interaction: discord.Interaction, action) -> None:
        async def locked():  # one change at a time per user
            async with self._lock(interaction.user.id):
                return await action

        await answer_from(interaction, locked)

    @slash.command(name="show", description="Show your defaults and where each value comes from")
    async def slash_show(self, interaction: discord.Interaction):
        await self._answer(interaction, self.show_text(interaction.user.id, interaction.guild, "/"))

    @slash.command(name="set", description="Save a default for a stylize option")
    @app_commands.describe(name="the option, e.g. style_weight", value="its value, e.g. 1e9")
    async def slash_set(self, interaction: discord.Interaction, name: str, value: str):
        await self._answer(interaction, self.set_text(interaction.user.id, interaction.guild, name, value))

    @slash.command(name="unset", description="Forget one of your defaults")
    @app_commands.describe(name="the option to forget")
    async def slash_unset(self, interaction: discord.Interaction, name: str):
        await self._answer(interaction, self.unset_text(interaction.user.id, name))

    @slash.command(name="reset", description="Forget all your defaults")
    async def slash_reset(self, interaction: discord.Interaction):
        await self._answer(interaction, self.reset_text(interaction.user.id))

    @slash_set.autocomplete("name")
    @slash_unset.autocomplete("name")
    async def _complete_name(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return complete_setting(current)


def complete_setting(current: str) -> list[app_commands.Choice[str]]:
    """The setting names that contain what was typed, with their help (the list is long)."""
    current = normalise_name(current)
    names = [name for name in SETTING_NAMES if current in name]
    return [app_commands.Choice(name=f"{name}: {option_help(name)}"[:100], value=name) for name in names[:25]]
