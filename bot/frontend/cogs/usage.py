"""``!usage`` and ``/usage``: a member's compute time today against every quota that applies where they
ask, and when it resets; ``usage reset @member`` for a server's admins (the member's own quota in their
server) and the bot's owner (everywhere)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import UserError
from bot.core.quotas import QuotaService
from bot.frontend.checks import may_configure
from bot.frontend.errors import answer_from
from bot.frontend.replies import quote, reply

if TYPE_CHECKING:
    from bot.app import StyleBot

_USER = re.compile(r"^<@!?(\d+)>$")


def role_ids(user: discord.abc.User) -> list[int]:
    """A member's roles (none for a user in direct messages)."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


class Usage(commands.Cog, name="Usage"):
    def __init__(self, bot: "StyleBot"):
        self.bot = bot

    @property
    def quotas(self) -> QuotaService:
        """The job service's (made in setup_hook, before the cogs)."""
        assert self.bot.quotas is not None, "the bot's quota service is made before the cogs are added"
        return self.bot.quotas

    # ------------------------------------------------------------------ what each action answers

    async def show_text(self, user: discord.abc.User, guild: discord.Guild | None) -> str:
        lines = await self.quotas.lines(user_id=user.id, guild_id=guild.id if guild else None, role_ids=role_ids(user))
        return "\n".join(["**Compute time used today**", *lines])

    async def reset_text(self, author: discord.abc.User, guild: discord.Guild | None, target: int, prefix: str) -> str:
        """A bot owner resets everywhere; a server's admins, the member's own quota in their server."""
        if await self.bot.is_owner(author):
            await self.quotas.reset(user_id=target, guild_id=None, by=author.id)
            return f"Reset <@{target}>'s usage everywhere: what they ran until now no longer counts today."
        if guild is None:
            raise UserError("usage is reset per server: use this command in the server, "
                            f"e.g. `{prefix}usage reset @member`")
        if not await may_configure(self.bot, author):
            raise UserError("only members with the Manage Server permission (or the bot's owner) can reset usage")
        await self.quotas.reset(user_id=target, guild_id=guild.id, by=author.id)
        return (f"Reset <@{target}>'s usage in this server: what they ran here until now no longer counts against "
                "their quota in this server (the bot operator's own daily caps still count it).")

    @staticmethod
    def _target(text: str, prefix: str) -> int:
        """The member to reset: a mention or a user id."""
        match = _USER.match(text.strip())
        key = match.group(1) if match else text.strip()
        if not key.isascii() or not key.isdigit():
            raise UserError(f"{quote(text, 40)} is not a member: mention them, e.g. `{prefix}usage reset @member`")
        return int(key)

    # ------------------------------------------------------------------ prefix commands

    @commands.group(invoke_without_command=True, help="Show your compute time today against the quotas, "
                                                      "and when they reset.")
    async def usage(self, ctx: commands.Context):
        await reply(ctx, await self.show_text(ctx.author, ctx.guild))

    @usage.command(name="reset", help="Reset a member's usage today: server admins in their server, "
                                      "the bot's owner everywhere (a mention or a user id).")
    async def reset(self, ctx: commands.Context, member: str):
        target = self._target(member, ctx.clean_prefix)
        await reply(ctx, await self.reset_text(ctx.author, ctx.guild, target, ctx.clean_prefix))

    # ------------------------------------------------------------------ slash commands (private answers)

    @app_commands.command(name="usage", description="Your compute time today against the quotas, and when they reset")
    async def slash_usage(self, interaction: discord.Interaction):
        await answer_from(interaction, lambda: self.show_text(interaction.user, interaction.guild))

    @app_commands.command(name="usage-reset", description="Reset a member's usage today (admins: in this server)")
    @app_commands.describe(member="whose usage")
    @app_commands.default_permissions(manage_guild=True)
    async def slash_reset(self, interaction: discord.Interaction, member: discord.User):
        await answer_from(interaction, lambda: self.reset_text(interaction.user, interaction.guild, member.id, "/"))
