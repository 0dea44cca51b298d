"""Buttons that keep working after a restart: discord.py DynamicItems whose custom id carries the job
id (``nst:<action>:<job id>``), registered in ``setup_hook``. Nothing about them lives in memory.

Cancel (on the status message): the job's owner or a server admin. Under every result: Again (same
inputs and options, a new seed), Vary (a form pre-filled with the job's options), Details (private:
every parameter, the seed, the losses, device and precision, and lines that reproduce it), Upscale ×2
(under a still whose next size fits the limits: the delivered picture continued at twice its size),
Delete (the owner or an admin). Re-runs go through the job service like any new command.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord

from bot.core.jobs import JobRequest
from bot.core.limits import USER_FIELDS
from bot.frontend.checks import may_moderate
from bot.frontend.errors import errors_answered
from bot.frontend.interactions import destination, say, submit_from_interaction
from bot.frontend.replies import acknowledge
from bot.frontend.forms import describe_options, vary_form
from bot.frontend.render import details_text

if TYPE_CHECKING:
    from bot.app import StyleBot

log = logging.getLogger(__name__)

_ID = r"(?P<job>[0-9a-f]{32})"


class _JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nst:(?P<action>[a-z]+):" + _ID):
    """Shared behaviour; each subclass below has its own template and callback."""

    action = ""
    label = ""
    emoji: str | None = None
    style = discord.ButtonStyle.secondary

    def __init__(self, job_id: str):
        super().__init__(
            discord.ui.Button(label=self.label, emoji=self.emoji, style=self.style, custom_id=f"nst:{self.action}:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]):
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        async with errors_answered(interaction):
            await self.act(interaction)

    async def act(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError

    async def record(self, interaction: discord.Interaction):
        """The job's record, or None (said to the user). Acknowledge first: the store may be slow."""
        bot: "StyleBot" = interaction.client  # type: ignore[assignment]
        record = await bot.store.get_job(self.job_id)
        if record is None:
            await say(interaction, "⚠️ I have no record of that job any more.")
        return record


_OWNER = re.compile(r"<@!?(\d+)>")


def result_owner(message: discord.Message | None) -> int | None:
    """Whose result a message is: the result line starts by naming its owner (``<@id> 500 epochs · …``),
    so the message answers the question even after the job's record was pruned."""
    match = _OWNER.match(message.content) if message is not None else None
    return int(match.group(1)) if match else None


class CancelButton(_JobButton, template=r"nst:cancel:" + _ID):
    action, label, emoji, style = "cancel", "Cancel", "🛑", discord.ButtonStyle.danger

    async def act(self, interaction: discord.Interaction) -> None:
        """From the running job's handle alone (in memory): no database, so the answer comes at once."""
        handle = interaction.client.jobs.handle(self.job_id)
        if handle is None:
            await say(interaction, "This job has already ended.")
            return
        if not await may_moderate(interaction, handle.job.user_id):
            await say(interaction, f"⚠️ only <@{handle.job.user_id}> or a server admin can cancel this job.")
            return
        if not await handle.cancel():
            await say(interaction, "This job has already ended.")
            return
        log.info("job %s cancelled by %s", self.job_id, interaction.user.id)
        await say(interaction, "🛑 Cancelling the job.")


class AgainButton(_JobButton, template=r"nst:again:" + _ID):
    action, label, emoji, style = "again", "Again", "🔁", discord.ButtonStyle.primary

    async def act(self, interaction: discord.Interaction) -> None:
        request = JobRequest(
            user_id=interaction.user.id,
            destination=destination(interaction, reply_to=interaction.message),
            rerun_of=self.job_id,
            new_seed=True,
            via="again",
            interactive=True,
        )
        await submit_from_interaction(interaction, request)


class VaryButton(_JobButton, template=r"nst:vary:" + _ID):
    action, label, emoji = "vary", "Vary", "🎛️"

    async def act(self, interaction: discord.Interaction) -> None:
        """A form (the first response: it cannot follow a defer) pre-filled from the image cache's copy
        of the job's parameters, a file beside its images: never waiting for the database."""
        bot: "StyleBot" = interaction.client  # type: ignore[assignment]
        meta = await bot.jobs.cache.get_meta(self.job_id)
        if meta is None or not meta.get("params") or not await bot.jobs.cache.styles_kept(self.job_id):
            await say(interaction, f"⚠️ {bot.jobs.expired_message()}")
            return
        params = meta["params"]
        options = {name: params[name] for name in USER_FIELDS if name in params and name != "seed"}
        await interaction.response.send_modal(vary_form(self.job_id, describe_options(options)))


class DetailsButton(_JobButton, template=r"nst:details:" + _ID):
    action, label, emoji = "details", "Details", "ℹ️"

    async def act(self, interaction: discord.Interaction) -> None:
        bot: "StyleBot" = interaction.client  # type: ignore[assignment]
        await acknowledge(interaction)
        record = await self.record(interaction)
        if record is None:
            return
        meta = await bot.jobs.cache.get_meta(self.job_id)
        styles = await bot.jobs.cache.styles_kept(self.job_id) or 1
        text = details_text(self.job_id, record.params, meta, bot.config.defaults, bot.config.bot.command_prefix, styles,
                            record.info)
        await say(interaction, text)


class UpscaleButton(_JobButton, template=r"nst:upscale:" + _ID):
    action, label, emoji = "upscale", "Upscale ×2", "⤴️"

    async def act(self, interaction: discord.Interaction) -> None:
        """A new job of whoever pressed it, through the same admission as Again, continuing from the picture
        this message delivered: downloaded from the message itself, so what is upscaled is exactly what the
        user sees, whatever the image cache kept (which still has to hold the job's content and styles)."""
        pictures = [a for a in interaction.message.attachments if (a.content_type or "").startswith("image/")]
        if not pictures:
            await say(interaction, "⚠️ this message has no picture to upscale any more.")
            return
        request = JobRequest(
            user_id=interaction.user.id,
            destination=destination(interaction, reply_to=interaction.message),
            rerun_of=self.job_id,
            via="upscale",
            interactive=True,
            upscale=pictures[0],
        )
        await submit_from_interaction(interaction, request)


class DeleteButton(_JobButton, template=r"nst:delete:" + _ID):
    action, label, emoji = "delete", "Delete", "🗑️"

    async def act(self, interaction: discord.Interaction) -> None:
        await acknowledge(interaction)
        owner = result_owner(interaction.message)  # named in the result: no record needed (it may be pruned)
        if owner is None:
            record = await self.record(interaction)
            if record is None:
                return
            owner = record.user_id
        if not await may_moderate(interaction, owner):
            await say(interaction, f"⚠️ only <@{owner}> or a server admin can delete this result.")
            return
        try:
            await interaction.message.delete()
        except discord.HTTPException as error:
            log.warning("could not delete result of job %s: %s", self.job_id, error)
            await say(interaction, "⚠️ I could not delete that message.")
            return
        await say(interaction, "🗑️ Deleted.")


DYNAMIC_ITEMS = (CancelButton, AgainButton, VaryButton, DetailsButton, UpscaleButton, DeleteButton)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def again_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AgainButton(job_id))
    return view


def result_view(job_id: str, *, upscale: bool = False) -> discord.ui.View:
    """The buttons under a result; ``upscale``: with Upscale ×2 (the caller decides whether it could run)."""
    view = discord.ui.View(timeout=None)
    buttons = (AgainButton, VaryButton, DetailsButton, *((UpscaleButton,) if upscale else ()), DeleteButton)
    for cls in buttons:
        view.add_item(cls(job_id))
    return view
