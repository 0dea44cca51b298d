"""The one error handler: prefix commands, slash commands, buttons and forms all end here when
something goes wrong. A refusal (UserError, a store outage, a failed check, input discord.py could
not parse) becomes its reply, private for interactions; anything else is a bug: logged with its
traceback and answered with one generic line, never the traceback."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Awaitable, Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.errors import UserError
from bot.core.store import StoreError
from bot.frontend.replies import acknowledge, answer, fit, reply

log = logging.getLogger(__name__)

STORE_DOWN = "the bot's database is unavailable right now; please try again later"
BUG = "something went wrong on our side; the bot's operator can find the details in its logs"
OUTDATED = ("this command has changed since the bot's commands were last published; "
            "the bot's owner needs to run `sync` again")
NOT_HERE = "you cannot use this command here"

# discord.py's wrappers around an exception raised in a command's body or a converter
_WRAPPERS = (commands.CommandInvokeError, commands.HybridCommandError, commands.ConversionError,
             app_commands.CommandInvokeError)


def unwrap(error: BaseException) -> BaseException:
    """The exception a command's own code raised, out of discord.py's wrappers."""
    while isinstance(error, _WRAPPERS) and getattr(error, "original", None) is not None:
        error = error.original
    return error


def describe(error: BaseException, *, usage: str | None = None) -> str | None:
    """The reply for an expected error (without the ⚠️), or None for a bug. ``usage``: the prefix
    command's usage line, for the argument errors that quote it."""
    error = unwrap(error)
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, StoreError):
        log.error("store error: %s", error)
        return STORE_DOWN
    if isinstance(error, app_commands.CommandSignatureMismatch):  # published commands older than this code
        log.warning("%s", error)
        return OUTDATED
    if isinstance(error, (commands.CheckFailure, app_commands.CheckFailure)):
        return str(error) or NOT_HERE
    return _describe_prefix_argument(error, usage)


def _describe_prefix_argument(error: BaseException, usage: str | None) -> str | None:
    if isinstance(error, commands.BadFlagArgument):
        return f"`--{error.flag.name.replace('_', '-')}`: {error.original}"
    if isinstance(error, commands.TooManyFlags):
        return f"give `--{error.flag.name.replace('_', '-')}` only once"
    if isinstance(error, commands.MissingRequiredArgument):
        return f"missing `{error.param.name}`; usage: `{usage}`"
    if isinstance(error, commands.TooManyArguments):
        return f"too many words (a name has no spaces); usage: `{usage}`"
    if isinstance(error, (commands.BadArgument, commands.ArgumentParsingError)):
        return str(error)
    return None


def _log_bug(error: BaseException, what: str) -> None:
    error = unwrap(error)
    log.error("%s failed", what, exc_info=(type(error), error, error.__traceback__))


async def on_prefix_error(ctx: commands.Context, error: commands.CommandError) -> None:
    """A prefix command's error, answered as a reply that pings nobody."""
    if isinstance(error, commands.CommandNotFound):
        return
    usage = f"{ctx.clean_prefix}{ctx.command.qualified_name} {ctx.command.signature}".strip() if ctx.command else None
    message = describe(error, usage=usage)
    if message is None:
        _log_bug(error, f"command {ctx.message.content[:100]!r}")
        message = BUG
    try:
        await reply(ctx, f"⚠️ {message}")
    except discord.Forbidden:  # e.g. no Read Message History, which replies need: say it plainly
        try:
            await ctx.send(fit(f"<@{ctx.author.id}> ⚠️ {message}"), allowed_mentions=discord.AllowedMentions(users=[ctx.author]))
        except discord.HTTPException as send_error:
            log.warning("could not answer a failed command: %s", send_error)
    except discord.HTTPException as reply_error:
        log.warning("could not reply to a failed command: %s", reply_error)


async def on_interaction_error(interaction: discord.Interaction, error: BaseException) -> None:
    """An interaction's error (slash command, menu, button, form), answered privately."""
    message = describe(error)
    if message is None:
        _log_bug(error, f"interaction {getattr(interaction.command, 'qualified_name', None) or interaction.data!r}"[:200])
        message = BUG
    await answer(interaction, f"⚠️ {message}")


@contextlib.asynccontextmanager
async def errors_answered(interaction: discord.Interaction):
    """Around work for a button, a form or a listener (outside the command tree's own handler): its
    error is answered by on_interaction_error instead of Discord's "This interaction failed"."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every error gets its reply; bugs are logged there
        await on_interaction_error(interaction, error)


async def answer_from(interaction: discord.Interaction, make: Callable[[], Awaitable[Any]], *, public: bool = False) -> None:
    """The one shape of a slash command's answer: acknowledge first (the store may be slow, Discord waits
    3 s), then answer with what ``make()`` returns (text, or (text, file)), or with its error."""
    await acknowledge(interaction, public=public)
    async with errors_answered(interaction):
        made = await make()
        text, file = made if isinstance(made, tuple) else (made, None)
        await answer(interaction, text, public=public, file=file)
