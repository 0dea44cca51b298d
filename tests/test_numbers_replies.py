"""The rules behind every reply and every number read from user text (bot.replies, bot.numbers); the
paths users take are in test_limits_e2e.py and test_hardening_e2e.py."""

from __future__ import annotations

import pytest
from nst.errors import ParamError

from bot.core import numbers
from bot.frontend import replies
from bot.core.limits import LimitError, check_option, parse_guild_limit
from bot_harness import make_config


@pytest.mark.parametrize("text, value", [("12", 12), (" 7 ", 7), ("0", 0)])
def test_whole_numbers_are_ascii_digits(text, value):
    assert numbers.whole(text, "page") == value


@pytest.mark.parametrize("text, why", [
    ("²", "`²` (superscript two) is not one of the digits 0-9"),
    ("①", "`①` (circled digit one) is not one of the digits 0-9"),
    ("٣", "`٣` (arabic-indic digit three) is not one of the digits 0-9"),
    ("１２", "`１` (fullwidth digit one) is not one of the digits 0-9"),
    ("-1", "page: must be a whole number, got '-1'"),
    ("1_000", "page: must be a whole number, got '1_000'"),
    ("x" * 500, "page: must be a whole number, got '" + "x" * 39 + "…'"),
])
def test_anything_else_is_refused_by_name(text, why):
    with pytest.raises(numbers.NotANumber, match="^page: ") as refused:
        numbers.whole(text, "page")
    assert why in str(refused.value)
    assert not numbers.is_whole(text)


def test_numbers_allow_signs_fractions_and_exponents_but_not_infinities():
    assert [numbers.number(t, "x") for t in ("-0.5", "1e9", ".5", "+3")] == [-0.5, 1e9, 0.5, 3.0]
    for text in ("nan", "inf", "1e999", "1_0", "٣"):
        with pytest.raises(numbers.NotANumber):
            numbers.number(text, "x")


def test_options_and_limits_follow_the_same_rule(tmp_path, weights_file):
    caps = make_config(tmp_path, weights_file).caps
    with pytest.raises(ParamError, match="`３` \\(fullwidth digit three\\) is not one of the digits 0-9"):
        check_option("epochs", "３")
    assert check_option("epochs", "300") == 300
    with pytest.raises(LimitError, match="`٣` \\(arabic-indic digit three\\)"):
        parse_guild_limit("max_epochs", "٣", caps)
    assert parse_guild_limit("max_epochs", "30", caps) == 30


def test_replies_fit_discords_limits():
    assert replies.fit("x" * 2000) == "x" * 2000
    assert replies.fit("x" * 5000) == "x" * 1999 + "…"
    assert replies.quote("y" * 150) == "y" * 99 + "…" and replies.quote("short") == "short"
    assert replies.prefilled("") is None and replies.prefilled(None) is None  # Discord refuses an empty value
    assert replies.prefilled("--epochs 3\n--size 64", 15) == "--epochs 3"  # cut at a whole line
    assert replies.prefilled("abc", 2) == "ab"
