"""Who may do what, defined once. Three roles:

- **owner**: the application's owner (or team) and anyone in ``bot.owner_ids`` (StyleBot.is_owner):
  ``sync``, and everything below.
- **may configure** a server: Manage Server there (or the owner): server limits, the server's named
  styles and presets.
- **may moderate** a job: its owner, or Manage Server / Manage Messages in its channel (or the
  bot's owner): Cancel and Delete on someone else's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.core.errors import UserError

if TYPE_CHECKING:
    from bot.app import StyleBot


async def may_configure(bot: "StyleBot", user: discord.abc.User) -> bool:
    """A member with Manage Server (in the server of the command), or the bot's owner."""
    if await bot.is_owner(user):
        return True
    return isinstance(user, discord.Member) and user.guild_permissions.manage_guild


async def may_change_limits(bot: "StyleBot", user: discord.abc.User, guild: discord.Guild | None) -> None:
    """Members with Manage Server, or the bot's owner; anyone else is refused before anything changes."""
    if guild is None:
        raise UserError("limits are per server: use this command in the server you want to change")
    if not await may_configure(bot, user):
        raise UserError("only members with the Manage Server permission can change this server's limits")


def manage_server_or_owner():
    """A prefix command's check: may_change_limits, its refusal a CheckFailure (discord.py passes only
    CommandErrors from checks on to the error handler)."""

    async def predicate(ctx: commands.Context) -> bool:
        try:
            await may_change_limits(ctx.bot, ctx.author, ctx.guild)
        except UserError as refusal:
            raise commands.CheckFailure(str(refusal)) from None
        return True

    return commands.check(predicate)


def is_moderator(interaction: discord.Interaction) -> bool:
    """Manage Server or Manage Messages in this channel."""
    permissions = interaction.permissions
    member = interaction.user
    if isinstance(member, discord.Member):
        permissions = permissions | member.guild_permissions
    return permissions.administrator or permissions.manage_guild or permissions.manage_messages


async def may_moderate(interaction: discord.Interaction, owner_id: int) -> bool:
    """The job's owner, a moderator of its channel, or the bot's owner."""
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    return interaction.user.id == owner_id or is_moderator(interaction) or await bot.is_owner(interaction.user)


def member_role_ids(member: Any) -> list[int]:
    """A member's role ids (quota allowances), without @everyone; none for a user outside a server."""
    roles = getattr(member, "roles", None) or []
    guild = getattr(member, "guild", None)
    return [role.id for role in roles if guild is None or role.id != guild.id]
