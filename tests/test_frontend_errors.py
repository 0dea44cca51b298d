"""The one error handler's mapping (bot.frontend.errors.describe): every error type a prefix command,
a slash command, a button or a form can end with, and the reply it gets. None means a bug: logged
with its traceback, answered with one generic line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from discord import app_commands
from discord.ext import commands

from bot.core.errors import OptionError, UserError
from bot.core.store import StoreError
from bot.frontend.errors import OUTDATED, STORE_DOWN, describe, unwrap

USAGE = "!style rename OLD NEW"
COMMAND = SimpleNamespace(name="stylize", qualified_name="stylize")


@pytest.mark.parametrize(
    "error, reply",
    [
        (UserError("attach a style image"), "attach a style image"),
        (OptionError("unknown option `--colour`"), "unknown option `--colour`"),
        (commands.CommandInvokeError(UserError("please wait 3 s")), "please wait 3 s"),  # raised in a prefix command
        (app_commands.CommandInvokeError(COMMAND, UserError("not here")), "not here"),  # raised in a slash command
        (commands.ConversionError(str, UserError("bad value")), "bad value"),  # raised in a converter
        (StoreError("disk I/O error"), STORE_DOWN),
        (commands.CommandInvokeError(StoreError("locked")), STORE_DOWN),
        (app_commands.CommandInvokeError(COMMAND, StoreError("locked")), STORE_DOWN),
        (commands.CheckFailure("only members with the Manage Server permission can change this server's limits"),
         "only members with the Manage Server permission can change this server's limits"),
        (commands.NotOwner(), "you cannot use this command here"),
        (app_commands.CheckFailure(), "you cannot use this command here"),
        (app_commands.CommandSignatureMismatch(COMMAND), OUTDATED),
        (commands.BadArgument("that is not a number"), "that is not a number"),
        (commands.MissingRequiredArgument(SimpleNamespace(name="name", displayed_name=None)), f"missing `name`; usage: `{USAGE}`"),
        (commands.TooManyArguments(), f"too many words (a name has no spaces); usage: `{USAGE}`"),
        (commands.UnexpectedQuoteError('"'), str(commands.UnexpectedQuoteError('"'))),
    ],
)
def test_every_expected_error_has_its_reply(error, reply):
    assert describe(error, usage=USAGE) == reply


@pytest.mark.parametrize("error", [
    RuntimeError("a bug"),
    commands.CommandInvokeError(KeyError("a bug")),
    app_commands.CommandInvokeError(COMMAND, ZeroDivisionError()),
])
def test_a_bug_has_no_reply_of_its_own(error):
    assert describe(error) is None


def test_unwrap_reaches_the_commands_own_exception_through_nested_wrappers():
    original = UserError("x")
    assert unwrap(commands.HybridCommandError(app_commands.CommandInvokeError(COMMAND, original))) is original
