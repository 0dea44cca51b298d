"""Presets: named sets of stylize options, a member's own or a server's (set by its admins).

``--preset NAME`` looks in the member's own presets first, then in the server's. A preset holds the
values one may keep as defaults (bot.limits.PRESET_NAMES: the engine's options and ``style``), checked
with exactly the rules of command options (nst.params through bot.limits), and applies under the
command's options and over the member's defaults (bot.limits.resolve decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from nst.errors import ParamError

from bot.core.errors import UserError
from bot.core.limits import NAME_RULE, PRESET_NAMES, check_name, check_option, resolve, source_of_preset
from bot.core.options import option_name, option_refusal, shown_value
from bot.core.text import did_you_mean, quote

if TYPE_CHECKING:
    from bot.config import Config
    from bot.core.store import Store


@dataclass(frozen=True)
class Preset:
    name: str
    scope: str  # "user" or "guild"
    options: dict[str, Any]

    @property
    def source(self) -> str:
        return source_of_preset(self.name, self.scope)


def preset_name(text: str) -> str:
    try:
        return check_name(text, "preset")
    except ParamError:
        raise UserError(f"preset names are {NAME_RULE}; `{quote(text, 40)}` is not one") from None


def check_preset(values: Mapping[str, Any], config: "Config") -> dict[str, Any]:
    """Typed, validated preset contents (the same rules as command options, and a valid combination)."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in PRESET_NAMES:
            why = "a preset cannot hold another preset" if name == "preset" else "it is chosen per job"
            raise UserError(f"`{option_name(name)}` cannot be saved in a preset ({why})")
        try:
            typed[name] = check_option(name, value)
        except ParamError as error:
            raise option_refusal(error) from None
    if not typed:
        raise UserError("a preset needs at least one option, e.g. `--epochs 300 --style-weight 1e9`")
    try:
        resolve(config.defaults, {}, {}, None, config.caps, preset=typed)  # the combination must make a job
    except ParamError as error:
        raise option_refusal(error) from None
    if "style" in typed:
        typed["style"] = list(typed["style"])  # JSON
    return typed


async def find_preset(store: "Store", user_id: int, guild_id: int | None, name: str) -> Preset:
    """The member's preset ``name``, else the server's; refused with the close names."""
    name = preset_name(name)
    mine = await store.presets("user", user_id)
    if name in mine:
        return Preset(name, "user", mine[name])
    server = await store.presets("guild", guild_id) if guild_id else {}
    if name in server:
        return Preset(name, "guild", server[name])
    suggestion = did_you_mean(name, [*mine, *server])
    text = f"you have no preset named `{name}`" + (" and neither has this server" if guild_id else "")
    if suggestion:
        raise UserError(text + suggestion)
    raise UserError(text + "; see `preset list`")


def describe(options: Mapping[str, Any]) -> str:
    """``--epochs 300 --style starry`` for a preset's contents."""
    return " ".join(f"{option_name(name)} {shown_value(value)}" for name, value in options.items())
