"""Refusals: plain exceptions worded for humans. The core raises them; the front-end turns one into a
reply (bot.frontend.errors), the CLI into an exit status."""

from bot.core.text import shorten

# A refusal is sent as a message's content after a short prefix ("⚠️ "): it must leave room for it
# within Discord's 2,000 characters (bot.core.text.MAX_CONTENT), whichever handler sends it.
MAX_REFUSAL = 1900


class UserError(Exception):
    """Something the user can fix (wrong attachments, an option out of range, a limit hit)."""

    def __init__(self, message: str = "", *args):
        super().__init__(shorten(message, MAX_REFUSAL), *args)


class OptionError(UserError):
    """An option the user typed cannot be understood; str() is the reply."""
