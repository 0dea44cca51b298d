"""Refusals raised inside commands; the bot's error handler replies with str(error) and nothing else."""

from discord.ext import commands

# A refusal is sent as a message's content after a short prefix ("⚠️ "): it must leave room for it
# within Discord's 2,000 characters (bot.replies.MAX_CONTENT), whichever handler sends it.
MAX_REFUSAL = 1900


class UserError(commands.CommandError):
    """Something the user can fix (wrong attachments, an option out of range, a limit hit)."""

    def __init__(self, message: str = "", *args):
        from .replies import shorten

        super().__init__(shorten(message, MAX_REFUSAL), *args)
