"""Numbers read from what users type: one rule everywhere (a page, a channel id, a server limit, every
numeric option). Only the ASCII digits 0-9 make a number: Python's ``str.isdigit`` and ``int``/``float``
disagree about other scripts' digits (``"²".isdigit()`` is true, ``int("²")`` fails; ``int("٣")`` is 3),
so the bot never asks them; anything else numeric-looking is refused, naming the character.
"""

from __future__ import annotations

import math
import re
import unicodedata

from nst.errors import ParamError

from bot.core.text import quote

_WHOLE = re.compile(r"[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class NotANumber(ValueError):
    """Text that is not a number by the rule above; str() says why, for the user."""


def foreign_digit(text: str) -> str | None:
    """The first character of ``text`` that is numeric but not one of 0-9 (``²``, ``①``, ``٣``), else None."""
    return next((c for c in str(text) if c.isnumeric() and not "0" <= c <= "9"), None)


def _foreign(text: str, kind: str) -> str | None:
    """Why ``text`` is refused when it holds a digit other than 0-9, naming that character; else None."""
    foreign = foreign_digit(text)
    if foreign is None:
        return None
    name = unicodedata.name(foreign, "a digit of another script").lower()
    return f"`{foreign}` ({name}) is not one of the digits 0-9; write {kind} with 0-9"


def _why_not(text: str, what: str, kind: str = "a number") -> str:
    """``max_size: must be a number, got 'big'``, or which character is not a digit 0-9."""
    return f"{what}: {_foreign(text, kind) or f'must be {kind}, got {quote(text, 40)!r}'}"


def is_whole(text: str) -> bool:
    """``text`` is a whole number of ASCII digits (no sign, no spaces)."""
    return _WHOLE.fullmatch(str(text)) is not None


def whole(text: str, what: str) -> int:
    """A whole number ≥ 0 from ``text`` (``what`` names it in a refusal); NotANumber otherwise."""
    text = str(text).strip()
    if not is_whole(text):
        raise NotANumber(_why_not(text, what, "a whole number"))
    return int(text)


def number(text: str, what: str) -> float:
    """A finite number (``12``, ``-0.5``, ``1e9``) from ``text`` (``what`` names it); NotANumber otherwise."""
    text = str(text).strip()
    if _NUMBER.fullmatch(text) is None:
        raise NotANumber(_why_not(text, what))
    value = float(text)
    if not math.isfinite(value):
        raise NotANumber(f"{what}: must be a finite number, got {quote(text, 40)!r}")
    return value


def check_option_text(field: str, value: object) -> None:
    """Before an option's text reaches the engine's parser (which uses ``int``/``float``): refuse digits
    other than 0-9, as ParamError naming the option."""
    reason = _foreign(value, "numbers") if isinstance(value, str) else None
    if reason is not None:
        raise ParamError(field, reason)
