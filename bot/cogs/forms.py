"""The options form (a Discord modal): one text box with ``--name value`` lines, the same syntax as
``!stylize``, pre-filled, and one for the seed. Used by Vary and by "Stylize with options…"."""

from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable, Mapping

import discord

from nst.params import FIELDS

from ..errors import UserError
from ..options import OptionError, normalise, option_name, shown_value

log = logging.getLogger(__name__)

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


Submitted = Callable[[discord.Interaction, dict[str, str]], Awaitable[None]]


class OptionsForm(discord.ui.Modal):
    def __init__(self, title: str, options_text: str, on_submit: Submitted, *, seed: str = ""):
        super().__init__(title=title[:45], timeout=900)
        self._on_submit = on_submit
        self.options = discord.ui.TextInput(
            label="Options (one per line, as in !stylize)",
            style=discord.TextStyle.paragraph,
            default=options_text[:4000] or None,
            required=False,
            max_length=4000,
            placeholder="--epochs 300\n--style-weight 1e9",
        )
        self.seed = discord.ui.TextInput(
            label="Seed (empty = a new random seed)", required=False, default=seed or None, max_length=10,
            placeholder="random",
        )
        self.add_item(self.options)
        self.add_item(self.seed)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        from .buttons import say

        try:
            values = parse_options(self.options.value or "")
            values.pop("seed", None)
            if (self.seed.value or "").strip():
                values["seed"] = self.seed.value.strip()
        except UserError as error:
            await say(interaction, f"⚠️ {error}")
            return
        await self._on_submit(interaction, values)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        from .buttons import say

        log.error("options form failed", exc_info=(type(error), error, error.__traceback__))
        await say(interaction, "⚠️ something went wrong on our side; the bot's operator can find the details in its logs")
