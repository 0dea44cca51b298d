"""Refusals raised inside commands; the bot's error handler replies with str(error) and nothing else."""

from discord.ext import commands


class UserError(commands.CommandError):
    """Something the user can fix (wrong attachments, an option out of range, a limit hit)."""
