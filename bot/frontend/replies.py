"""The one way out for what the bot says to people: every reply, private answer, status line and form
goes through here, so Discord's documented limits hold whatever a user typed (a message's content at
most 2,000 characters; a text input's pre-filled value within 1..its max_length). User text quoted in
a reply is shortened with an ellipsis (``quote``) so the reason stays readable; ``fit`` is the
guarantee for the whole message. The limits themselves are plain functions in bot.core.text.

Limits: discord-api-docs developers/resources/message.mdx ("Create Message": content up to 2000
characters) and developers/components/reference.mdx ("Text Input": value max 4000 characters).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.ext import commands

from bot.core.text import MAX_CONTENT, MAX_QUOTE, MAX_TEXT_INPUT, fit, prefilled, quote, shorten  # noqa: F401 (the front-end's one import)

log = logging.getLogger(__name__)

async def reply(ctx: commands.Context, text: str, *, file: discord.File | None = None,
                mentions: discord.AllowedMentions | None = None) -> discord.Message:
    """Answer a prefix command, as a reply that pings nobody (unless ``mentions`` says whom)."""
    extra: dict[str, Any] = {"file": file} if file is not None else {}
    return await ctx.reply(fit(text), mention_author=False,
                           allowed_mentions=mentions or discord.AllowedMentions.none(), **extra)


async def answer(interaction: discord.Interaction, text: str, *, public: bool = False,
                 file: discord.File | None = None) -> None:
    """Answer an interaction (privately unless ``public``), whether or not it was acknowledged yet; a
    refusal by Discord is logged (the interaction may have expired), never raised."""
    extra: dict[str, Any] = {"file": file} if file is not None else {}
    content, mentions = fit(text), discord.AllowedMentions.none()
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=not public, allowed_mentions=mentions, **extra)
        else:
            await interaction.response.send_message(content, ephemeral=not public, allowed_mentions=mentions, **extra)
    except discord.HTTPException as error:
        log.warning("could not answer an interaction: %s", error)


async def acknowledge(interaction: discord.Interaction, *, public: bool = False) -> None:
    """Defer (Discord wants a first response within 3 s) before work that may take longer, such as the
    database; a no-op when already acknowledged."""
    if not interaction.response.is_done():
        try:
            await interaction.response.defer(ephemeral=not public, thinking=True)
        except discord.HTTPException as error:
            log.warning("could not acknowledge an interaction: %s", error)
