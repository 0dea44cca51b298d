"""Application commands: ``/stylize`` (a content image, and a style image or a named style), the message menus "Stylize" and "Stylize with options",
``/cancel``, ``/queue`` and the owner's ``/sync``.

``/stylize``'s options are built from ``nst.params.FIELDS`` (type, range, choices, description), so
nothing is written twice: a field added to the engine appears here. Choice lists longer than Discord's
25 get autocomplete instead. Every command defers at once (Discord wants an answer within 3 s),
answers privately, and leaves the status and the result to ordinary channel messages, which outlive
the interaction's 15-minute token.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, Literal, Optional

import discord
from discord import app_commands

from nst.params import FIELDS, FieldSpec, format_number

from bot.core.limits import BOT_OPTIONS, OPTION_NAMES, USER_FIELDS
from bot.core.errors import UserError
from bot.core.store import StoreError
from bot.frontend.interactions import destination, say, submit_from_interaction
from bot.frontend.replies import acknowledge
from bot.frontend.cogs.styles import complete_style
from bot.frontend.cogs.stylize import cancel_jobs, queue_text, sync_commands, sync_scope
from bot.frontend.forms import describe_options, menu_form
from bot.frontend.render import style_image_slots
from bot.core.jobs import JobRequest

if TYPE_CHECKING:
    from bot.app import StyleBot

log = logging.getLogger(__name__)

FORM_STORE_WAIT = 1.5  # seconds a form waits for the store before opening (Discord's deadline: 3 s)
MAX_OPTIONS = 25  # Discord's limit per command
MAX_CHOICES = 25


def _annotation(spec: FieldSpec) -> Any:
    if spec.choices:
        return str if len(spec.choices) > MAX_CHOICES else Literal[tuple(spec.choices)]  # type: ignore[valid-type]
    if spec.kind is bool:
        return bool
    if spec.kind in (int, float) and spec.minimum is not None and spec.maximum is not None:
        return app_commands.Range[spec.kind, spec.kind(spec.minimum), spec.kind(spec.maximum)]
    if spec.kind in (int, float):
        return spec.kind
    return str  # layer lists, blend weights: text, validated by nst.params


def _description(spec: FieldSpec, default: Any) -> str:
    shown = "random" if default is None else format_number(default) if isinstance(default, (int, float)) else str(default)
    text = f"{spec.help} (default {shown})"
    return text if len(text) <= 100 else spec.help[:100]


STALE_COMMANDS = ("this command has changed since the bot's commands were last published (the style image is now "
                  "`style_image`, and `style` names a named style); the bot's owner needs to run `sync` again")


def style_slots(max_styles: int) -> list[str]:
    """``style_image``, then ``style_image2``… for blending, as many as fit next to the options."""
    room = MAX_OPTIONS - 1 - len(BOT_OPTIONS) - len(USER_FIELDS)
    return style_image_slots(min(max_styles, room))


async def _stylize(interaction: discord.Interaction, **given: Any) -> None:
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    await interaction.response.defer(ephemeral=True, thinking=True)  # first: downloads may take a while
    if isinstance(given.get("style"), discord.Attachment):  # Discord still has the /stylize of before named styles
        raise UserError(STALE_COMMANDS)
    images = [given.pop("content")] + [given.pop(name) for name in style_slots(bot.config.caps.max_styles) if given.get(name)]
    options = {name: value for name, value in given.items() if name in OPTION_NAMES and value is not None}
    request = JobRequest(
        user_id=interaction.user.id,
        destination=destination(interaction),
        attachments=images,
        options=options,
        via="slash",
        interactive=True,
    )
    await submit_from_interaction(interaction, request)


def build_stylize(bot: "StyleBot") -> app_commands.Command:
    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)]
    descriptions = {
        "content": "the picture to repaint (an animated GIF too, or a short clip)",
        "style": "a named style of this server (or a built-in); or attach style_image",
        "preset": "a saved preset (preset list): its values apply where you set none",
        "style_image": "the picture whose style to take (or name a style)",
    }
    parameters.append(inspect.Parameter("content", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Attachment))
    for name in BOT_OPTIONS:
        parameters.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[str], default=None))
    for slot in style_slots(bot.config.caps.max_styles):
        parameters.append(inspect.Parameter(
            slot, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[discord.Attachment], default=None,
        ))
        descriptions.setdefault(slot, "another style to blend in (weights: style_blend)")
    long_lists = []
    for name in USER_FIELDS:
        spec = FIELDS[name]
        parameters.append(inspect.Parameter(
            name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[_annotation(spec)], default=None
        ))
        descriptions[name] = _description(spec, getattr(bot.config.defaults, name))
        if spec.choices and len(spec.choices) > MAX_CHOICES:
            long_lists.append(name)

    async def callback(interaction: discord.Interaction, **given: Any) -> None:
        await _stylize(interaction, **given)

    callback.__qualname__ = callback.__name__ = "stylize"  # a plain function to discord.py, not a method
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__discord_app_commands_param_description__ = descriptions  # what @app_commands.describe sets
    command = app_commands.Command(
        name="stylize",
        description="Repaint a picture in the style of another",
        callback=callback,
    )
    for name in long_lists:
        command.autocomplete(name)(_choices_for(name))
    command.autocomplete("style")(_complete_styles)
    command.autocomplete("preset")(_complete_presets)
    return command


async def _complete_styles(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Style names here; after a comma (blending), the next name."""
    done, _, typed = current.rpartition(",")
    lead = f"{done}," if done else ""
    choices = await complete_style(interaction.client, interaction, typed)  # type: ignore[arg-type]
    return [app_commands.Choice(name=lead + c.name, value=lead + c.value) for c in choices if len(lead + c.value) <= 100]


async def _complete_presets(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    typed = current.strip().lower()
    mine = await bot.store.presets("user", interaction.user.id)
    server = await bot.store.presets("guild", interaction.guild.id) if interaction.guild else {}
    names = [name for name in dict.fromkeys([*mine, *server]) if typed in name]
    return [app_commands.Choice(name=name, value=name) for name in names[:MAX_CHOICES]]


def _choices_for(name: str):
    choices = FIELDS[name].choices or ()

    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        current = current.lower()
        matches = [c for c in choices if current in c.lower()]
        return [app_commands.Choice(name=c, value=c) for c in matches[:MAX_CHOICES]]

    complete.__qualname__ = complete.__name__ = f"complete_{name}"
    return complete


# ---------------------------------------------------------------------------------- message menus


async def _menu_stylize(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    request = JobRequest(
        user_id=interaction.user.id,
        destination=destination(interaction, reply_to=message),
        attachments=list(message.attachments),
        via="menu",
        interactive=True,
    )
    await submit_from_interaction(interaction, request)


async def _menu_with_options(interaction: discord.Interaction, message: discord.Message) -> None:
    """Open the options form pre-filled with the user's defaults; submitting it queues the job
    (bot.cogs.forms.submitted)."""
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    saved = await _saved_defaults(bot, interaction.user.id)
    defaults = bot.config.defaults
    current = {name: saved.get(name, getattr(defaults, name)) for name in USER_FIELDS}
    seed = current.get("seed")
    await interaction.response.send_modal(menu_form(message, describe_options(current), "" if seed is None else str(seed)))


async def _saved_defaults(bot: "StyleBot", user_id: int) -> dict[str, Any]:
    """The user's saved defaults, to pre-fill a form. A form must be the interaction's first response
    (within Discord's 3 s): if the store is slow or failing, the form opens without them (they still
    apply to what the user leaves out when the job is resolved)."""
    try:
        return await asyncio.wait_for(bot.store.user_settings(user_id), FORM_STORE_WAIT)
    except (StoreError, asyncio.TimeoutError) as error:
        log.warning("form opened without the user's saved defaults: %s", error or "the store is slow")
        return {}


# ---------------------------------------------------------------------------------- the rest


async def _cancel(interaction: discord.Interaction) -> None:
    await say(interaction, await cancel_jobs(interaction.client, interaction.user.id))


async def _queue(interaction: discord.Interaction) -> None:
    await say(interaction, queue_text(interaction.client, interaction.guild, interaction.user.id))


async def _sync(interaction: discord.Interaction, scope: Literal["global", "here", "clear"] = "global") -> None:
    bot: "StyleBot" = interaction.client  # type: ignore[assignment]
    if not await bot.is_owner(interaction.user):
        raise UserError("only the bot's owner can sync its commands")
    scope = sync_scope(scope, interaction.guild, "/sync")
    await acknowledge(interaction)
    await say(interaction, await sync_commands(bot, scope, interaction.guild))


def register(bot: "StyleBot") -> None:
    """Add every application command to the bot's tree (locally: `sync` publishes them)."""
    tree = bot.tree
    tree.add_command(build_stylize(bot))
    tree.add_command(app_commands.ContextMenu(name="Stylize", callback=_menu_stylize))
    tree.add_command(app_commands.ContextMenu(name="Stylize with options", callback=_menu_with_options))
    tree.add_command(app_commands.Command(name="cancel", description="Cancel your queued or running job", callback=_cancel))
    tree.add_command(app_commands.Command(name="queue", description="Show the jobs running and waiting", callback=_queue))
    sync = app_commands.Command(name="sync", description="Bot owner: publish the commands to Discord", callback=_sync)
    app_commands.describe(scope="global = every server; here = this server at once; clear = remove this server's copy")(sync)
    tree.add_command(sync)
