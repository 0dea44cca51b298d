"""What every interaction that starts a job shares: a private answer, the destination (the interaction's
channel within its upload limit), and the submission answered privately."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord

from bot.core.jobs import Destination, JobRequest
from bot.frontend.errors import on_interaction_error
from bot.frontend.checks import member_role_ids
from bot.frontend.replies import answer

if TYPE_CHECKING:
    from bot.app import StyleBot


async def say(interaction: discord.Interaction, text: str) -> None:
    """A private answer, whether or not the interaction was acknowledged yet (bot.replies.answer)."""
    await answer(interaction, text)


def destination(interaction: discord.Interaction, *, reply_to=None) -> Destination:
    """Where a job started from an interaction posts: the interaction's channel, within its upload limit."""
    guild = interaction.guild
    limit = interaction.filesize_limit
    if guild is not None:
        limit = min(limit, guild.filesize_limit)
    return Destination(
        channel=interaction.channel,
        guild=guild,
        reply_to=reply_to,
        upload_limit=limit,
        permissions=interaction.app_permissions,
    )


async def submit_from_interaction(interaction: discord.Interaction, request: JobRequest) -> None:
    """Submit and answer privately: the refusal, or where the job's messages will appear."""
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    if request.role_ids is None and interaction.guild is not None:  # the member's roles came with the interaction
        request = dataclasses.replace(request, role_ids=member_role_ids(interaction.user))
    try:
        submitted = await bot.jobs.submit(request)
    except Exception as error:  # noqa: BLE001 - answered by the one handler
        await on_interaction_error(interaction, error)
        return
    notes = "".join(f"\n⚠️ {note}" for note in submitted.notes)
    seed = submitted.job.params.get("seed")
    await say(interaction, f"✅ Queued (seed {seed}). Progress and the result appear in this channel.{notes}")
