"""Parsing ``!stylize`` options: ``--epochs 300 --style-weight 1e9 --size 384 --seed 7``, and the bot's
own ``--style NAME`` and ``--preset NAME`` (bot.limits.BOT_OPTIONS).

The raw text is checked and normalised (``--style-weight`` and ``--style_weight=1e9`` both work;
``--colour`` is refused by name). Values stay text here and are validated by ``nst.params`` like
everywhere else.
"""

from __future__ import annotations

import re
from typing import Any

from nst.params import FIELDS, StyleParams, format_number

from nst.errors import ParamError

from bot.core.errors import OptionError, UserError
from bot.core.limits import BOT_OPTIONS, OPTION_NAMES, USER_FIELDS
from bot.core.text import quote

_FLAG = re.compile(r"(?<!\S)--([A-Za-z][\w-]*)(=(\S*))?")


def option_refusal(error: ParamError) -> UserError:
    """The reply for an option the engine or the bot refused: the option's name and the reason, the
    user's value in it shortened (the reason quotes it whole)."""
    return UserError(f"`{option_name(error.field)}`: {quote(error.reason, 300)}")


def normalise_name(text: str) -> str:
    """The one spelling of an option, setting or limit name: ``--Style-Weight`` -> ``style_weight``."""
    return text.strip().lstrip("-").replace("-", "_").lower()


def option_name(field: str) -> str:
    """How a field is typed as an option: ``style_weight`` -> ``--style-weight``."""
    return "--" + field.replace("_", "-")


def shown_value(value: Any) -> str:
    """An option's value as typed after its flag: ``1e9``, ``0.7,0.3``; ``random`` for no seed."""
    if value is None:
        return "random"
    if isinstance(value, (list, tuple)):
        return ",".join(shown_value(v) for v in value)
    return format_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def normalise(text: str) -> str:
    """Check every ``--flag`` is known and has a value; rewrite them to the converter's spelling."""
    known = set(OPTION_NAMES)
    first = _FLAG.search(text)
    leading = text[: first.start()].strip() if first else text.strip()
    if leading:
        raise OptionError(f"unexpected text {quote(leading, 40)!r}; options look like `--epochs 300` (see `help stylize`)")
    out, position = [], 0
    for match in _FLAG.finditer(text):
        name = normalise_name(match.group(1))
        if name not in known:
            raise OptionError(f"unknown option `--{quote(match.group(1), 40)}`; "
                              f"options are {', '.join(option_name(f) for f in OPTION_NAMES)}")
        out.append(text[position : match.start()])
        out.append(f"--{name}" + (f" {match.group(3)}" if match.group(2) else ""))
        position = match.end()
    out.append(text[position:])
    normalised = "".join(out)
    matches = list(_FLAG.finditer(normalised))
    for match, following in zip(matches, [*matches[1:], None]):
        end = following.start() if following else len(normalised)
        if not normalised[match.end() : end].strip():
            raise OptionError(f"`{option_name(match.group(1))}` needs a value, e.g. `{_example(match.group(1))}`")
    return normalised


_EXAMPLES = {"style": "starry", "preset": "fast", "seed": 7}


def _example(field: str) -> str:
    value = _EXAMPLES.get(field) or getattr(StyleParams(), field)
    return f"{option_name(field)} {format_number(value) if isinstance(value, (int, float)) else value}"


def options_help(defaults: StyleParams) -> str:
    """The option table shown by ``help stylize``, with the operator's defaults."""
    lines = [f"{option_name(name):17} {spec.help}" for name, spec in BOT_OPTIONS.items()]
    for field in USER_FIELDS:
        spec = FIELDS[field]
        default = getattr(defaults, field)
        shown = "random" if default is None else format_number(default)
        lines.append(f"{option_name(field):17} {spec.help}; {spec.describe_range()} (default {shown})")
    return "\n".join(lines)
