"""Discord's documented text limits as plain functions (no discord import): what the core may say fits
them whichever front-end sends it. User text quoted in a reply is shortened with an ellipsis
(``quote``); ``fit`` is the guarantee for a whole message.

Limits: discord-api-docs developers/resources/message.mdx ("Create Message": content up to 2000
characters) and developers/components/reference.mdx ("Text Input": value max 4000 characters).
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

MAX_CONTENT = 2000  # a message's content
MAX_TEXT_INPUT = 4000  # a text input's value (and its max_length)
MAX_QUOTE = 100  # user text quoted inside a reply
ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    text = str(text)
    return text if len(text) <= limit else text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def quote(text: Any, limit: int = MAX_QUOTE) -> str:
    """User text as a reply quotes it: at most ``limit`` characters (an ellipsis marks a cut)."""
    return shorten(str(text), limit)


def fit(text: str) -> str:
    """A message's content within Discord's limit."""
    return shorten(text, MAX_CONTENT)


def prefilled(text: str | None, max_length: int = MAX_TEXT_INPUT) -> str | None:
    """A text input's pre-filled value: None when empty (Discord refuses an empty one), else at most
    ``max_length`` characters, cut at a line break where there is one (the options form has a line per
    option)."""
    if not text:
        return None
    if len(text) <= max_length:
        return text
    cut = text[:max_length]
    return cut[: cut.rfind("\n")] if "\n" in cut else cut


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """``; did you mean `a`, `b`?`` with the names close to ``name``, or "" when none is."""
    close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
    return "; did you mean " + ", ".join(f"`{c}`" for c in close) + "?" if close else ""
