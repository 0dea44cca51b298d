"""The options form (a Discord modal): one text box with ``--name value`` lines, the same syntax as
``!stylize``, pre-filled, and one for the seed. Used by Vary and by "Stylize with options…"."""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import discord

from nst.params import FIELDS

from bot.core.errors import UserError
from bot.core.options import OptionError, normalise, option_name, shown_value
from bot.core.numbers import is_whole
from bot.core.jobs import JobRequest
from bot.frontend.interactions import destination, say, submit_from_interaction
from bot.frontend.replies import MAX_TEXT_INPUT, acknowledge, prefilled

log = logging.getLogger(__name__)

OPTIONS_LENGTH = MAX_TEXT_INPUT
SEED_LENGTH = 10  # the largest seed, 2**32 - 1, has 10 digits
_FLAG_VALUE = re.compile(r"--(\w+)\s+(.*?)(?=\s+--\w|\s*$)", re.S)


def describe_options(options: Mapping[str, Any]) -> str:
    """``--epochs 300`` lines for the form, in the field table's order."""
    return "\n".join(
        f"{option_name(name)} {shown_value(options[name])}"
        for name in FIELDS
        if name in options and name != "seed" and options[name] not in (None, (), [])  # unset: the default applies
    )


def parse_options(text: str) -> dict[str, str]:
    """Parse the form's text like ``!stylize`` options; raise UserError naming what is wrong."""
    text = " ".join(text.split())
    if not text:
        return {}
    try:
        normalised = normalise(text)
    except OptionError as error:
        raise UserError(str(error)) from None
    values: dict[str, str] = {}
    for match in _FLAG_VALUE.finditer(normalised):
        name = match.group(1)
        if name in values:
            raise UserError(f"give `{option_name(name)}` only once")
        values[name] = match.group(2).strip()
    return values


FORM_PREFIX = "nst:form:"
OPTIONS_ID, SEED_ID = "options", "seed"
# The pictures of "Stylize with options" forms this process opened, by form id: a message's attachments
# come with the menu's interaction (even without the Message Content intent), not with the form's.
_menu_images: dict[str, list[discord.Attachment]] = {}
_MENU_FORMS_KEPT = 500


class OptionsForm(discord.ui.Modal):
    """The form. It keeps nothing in memory that its submission needs: ``submitted`` (run for every
    form's submission by the Stylize cog's listener) reads what to do from the form's custom id, so a
    form opened before a restart works after it, like the buttons."""

    def __init__(self, title: str, custom_id: str, options_text: str, *, seed: str = ""):
        super().__init__(title=title[:45], custom_id=custom_id, timeout=900)
        self.add_item(discord.ui.TextInput(
            label="Options (one per line, as in !stylize)",
            custom_id=OPTIONS_ID,
            style=discord.TextStyle.paragraph,
            default=prefilled(options_text, OPTIONS_LENGTH),
            required=False,
            max_length=OPTIONS_LENGTH,
            placeholder="--epochs 300\n--style-weight 1e9",
        ))
        self.add_item(discord.ui.TextInput(
            label="Seed (empty = a new random seed)", custom_id=SEED_ID, required=False,
            default=prefilled(seed, SEED_LENGTH), max_length=SEED_LENGTH, placeholder="random",
        ))


def vary_form(job_id: str, options_text: str) -> OptionsForm:
    """Vary: the job's options; submitting re-runs the job (its images from the cache)."""
    return OptionsForm("Vary this job", f"{FORM_PREFIX}vary:{job_id}", options_text)


def menu_form(message: discord.Message, options_text: str, seed: str) -> OptionsForm:
    """"Stylize with options" on ``message``: submitting stylizes its pictures."""
    form_id = f"{FORM_PREFIX}menu:{message.channel.id}:{message.id}"
    _menu_images[form_id] = list(message.attachments)
    while len(_menu_images) > _MENU_FORMS_KEPT:
        del _menu_images[next(iter(_menu_images))]  # the oldest: a form left open very long re-reads its message
    return OptionsForm("Stylize with options", form_id, options_text, seed=seed)


def is_form_submission(interaction: discord.Interaction) -> bool:
    return (interaction.type is discord.InteractionType.modal_submit
            and str((interaction.data or {}).get("custom_id", "")).startswith(FORM_PREFIX))


def _values(components: Any) -> dict[str, str]:
    """``{custom_id: value}`` of the text inputs in a submitted modal (rows or labels around them)."""
    values: dict[str, str] = {}
    for component in components or []:
        if component.get("type") == discord.ComponentType.text_input.value:
            values[component.get("custom_id", "")] = component.get("value") or ""
        values.update(_values(component.get("components")))
        if isinstance(component.get("component"), dict):
            values.update(_values([component["component"]]))
    return values


async def submitted(interaction: discord.Interaction) -> None:
    """A form was submitted (by whichever process opened it): queue the job it describes, or say why not."""
    await acknowledge(interaction)  # first: reading the message again, and the job service, may take a while
    data = interaction.data or {}
    kind, _, target = str(data.get("custom_id"))[len(FORM_PREFIX):].partition(":")
    typed = _values(data.get("components"))
    values = parse_options(typed.get(OPTIONS_ID, ""))  # a refusal: answered by the caller's errors_answered
    values.pop("seed", None)
    if typed.get(SEED_ID, "").strip():
        values["seed"] = typed[SEED_ID].strip()
    user = interaction.user.id
    if kind == "vary":
        request = JobRequest(user_id=user, destination=destination(interaction, reply_to=interaction.message),
                             rerun_of=target, options=values, new_seed="seed" not in values, via="vary", interactive=True)
    elif kind == "menu":
        inputs = await _menu_inputs(interaction, target)
        if inputs is None:
            await say(interaction, "⚠️ this form has expired (the bot restarted since it was opened) and its pictures "
                                   "cannot be read again; pick **Stylize with options** on the message once more")
            return
        message, images = inputs
        request = JobRequest(user_id=user, destination=destination(interaction, reply_to=message),
                             attachments=images, options=values, via="menu", interactive=True)
    else:
        log.warning("a form of an unknown kind was submitted: %r", data.get("custom_id"))
        await say(interaction, "⚠️ this form has expired; please open it again")
        return
    await submit_from_interaction(interaction, request)


async def _menu_inputs(interaction: discord.Interaction, target: str):
    """(the message a "Stylize with options" form is about, its pictures): as the menu saw them when this
    process opened the form, else read again (possible with the Message Content intent); None if neither."""
    channel_id, _, message_id = target.partition(":")
    channel = interaction.channel
    if channel is None or not (is_whole(channel_id) and is_whole(message_id)) or channel.id != int(channel_id):
        return None
    images = _menu_images.get(f"{FORM_PREFIX}menu:{target}")
    if images is not None:
        return channel.get_partial_message(int(message_id)), images
    try:
        message = await channel.fetch_message(int(message_id))
    except discord.HTTPException:
        return None
    return (message, list(message.attachments)) if message.attachments else None
