"""``help``: discord.py's default help, with the user's text quoted the way every other reply quotes it
(shortened, bot.replies.quote) and its answers within Discord's limits (``help <4,000 characters>``
would otherwise echo them all back in "No command called ... found" and be refused by Discord)."""

from __future__ import annotations

import discord
from discord.ext import commands

from bot.frontend.replies import fit, quote


class HelpCommand(commands.DefaultHelpCommand):
    def command_not_found(self, string: str) -> str:
        return super().command_not_found(quote(string, 40))

    def subcommand_not_found(self, command: commands.Command, string: str) -> str:
        return super().subcommand_not_found(command, quote(string, 40))

    async def send_error_message(self, error: str) -> None:
        await self.get_destination().send(fit(error), allowed_mentions=discord.AllowedMentions.none())
