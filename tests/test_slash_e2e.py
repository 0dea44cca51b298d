"""Application commands end to end: the real discord.py client against the fake Discord's interactions.

/stylize (typed options from nst.params, deferred, private refusals, results as channel messages that
outlive the interaction token), the "Stylize" message menus, /settings and /limits, and `sync`.
"""

from __future__ import annotations

import asyncio
import math

from nst.params import FIELDS

from bot.core.limits import USER_FIELDS
from bot_harness import IMAGES, command, make_config, png, reply_to, running_bot, step_seconds, submitted_jobs, time_budget
from conftest import make_content, make_style

CONTENT, STYLE = IMAGES
SMALL = ("small.png", png(make_content(48, 36)), "image/png")


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


async def private_answer(ix, timeout: float = 60):
    """The text of the bot's private answer to an interaction (after a defer: its first follow-up)."""
    await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=timeout)
    message = ix.followups[0] if ix.followups else ix.original
    assert message.ephemeral_to == ix.user_id, "the answer should be private"
    return message.content


def stylize_command(fake) -> dict:
    return next(c for c in fake.commands() if c["name"] == "stylize" and c.get("type", 1) == 1)


async def test_default_config_scenarios_on_one_bot(fake, world, tmp_path, weights_file):
    """Scenarios that need nothing but the default test config, one after the other on one bot (a start
    loads a worker: seconds), each ending with nothing queued or running. The deferred job comes first:
    it finds its messages as the first matches in the channel; the message menu, which saves a default, last."""
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        fake.register_tree(bot)
        await stylize_options_come_from_the_parameter_table(fake, world, bot)
        await a_deferred_stylize_delivers_after_the_token_expired(fake, world, bot, weights_file)
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=10, what="the deferred job is finished")
        await blending_in_a_dm_and_autocomplete(fake, world, bot)
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=10, what="the blended job is finished")
        await the_message_menu_uses_the_users_defaults_or_a_form(fake, world, bot)


async def stylize_options_come_from_the_parameter_table(fake, world, bot):
    options = {o["name"]: o for o in stylize_command(fake)["options"]}
    assert options["content"]["type"] == 11 and options["content"]["required"]  # ATTACHMENT
    # the style: an image, or a named style of the server (then only the content is attached)
    assert options["style_image"]["type"] == 11 and not options["style_image"].get("required")
    assert options["style_image2"]["type"] == 11 and not options["style_image2"].get("required")  # blending
    assert options["style"]["type"] == 3 and options["style"]["autocomplete"]
    assert options["preset"]["type"] == 3 and options["preset"]["autocomplete"]
    for name in USER_FIELDS:
        spec, option = FIELDS[name], options[name]
        assert option["description"].startswith(spec.help[:60])
        if spec.choices and len(spec.choices) <= 25:
            assert [c["value"] for c in option["choices"]] == list(spec.choices)
        elif spec.kind in (int, float) and spec.maximum is not None:
            assert option["min_value"] == spec.minimum and option["max_value"] == spec.maximum
            assert option["type"] == (4 if spec.kind is int else 10)
    # the Discord client itself refuses a value outside the range: the bot never sees it
    try:
        await fake.slash(world.alice, world.general, "stylize", options={"content": CONTENT, "style_image": STYLE, "epochs": 0})
    except ValueError:
        pass
    else:
        raise AssertionError("epochs 0 was sent")


async def a_deferred_stylize_delivers_after_the_token_expired(fake, world, bot, weights_file):
    """The first job in the channel: the status and result are found as the channel's first matches."""
    # long enough (about 4 s at this machine's measured step time) to catch its status message
    epochs = max(60, min(300, math.ceil(4.0 / step_seconds(weights_file))))
    ix = await fake.slash(world.alice, world.general, "stylize",
                          options={"content": CONTENT, "style_image": STYLE, "epochs": epochs, "size": 48, "seed": 11})
    await ix.wait_acknowledged()
    assert ix.deferred and ix.ephemeral
    assert "Queued (seed 11)" in await private_answer(ix)
    fake.expire_interaction(ix)  # as if 15 minutes had passed: the token is dead from here on
    status = await fake.wait_for_message(lambda m: "%" in m.content and not m.ephemeral_to, channel_id=world.general.id, timeout=60)
    assert status.content.startswith(f"<@{world.alice.id}> 🎨")  # says whose job it is, without a ping
    assert fake.button(status, label="Cancel")
    result = await fake.wait_for_message(is_result, channel_id=world.general.id, timeout=time_budget(epochs, weights_file))
    assert result.ephemeral_to is None and result.interaction_id is None  # an ordinary channel message
    assert result.content.startswith(f"<@{world.alice.id}> {epochs} epochs") and "seed 11" in result.content
    assert f"`--epochs {epochs}`" in result.content  # options that differ from the defaults
    assert [b["label"] for b in fake.buttons(result)] == ["Again", "Vary", "Details", "Upscale ×2", "Delete"]
    assert not ix.errors  # nothing was attempted with the expired token


async def test_refusals_are_private_and_nothing_is_queued(fake, world, tmp_path, weights_file):
    async with running_bot(fake, make_config(tmp_path, weights_file, caps={"max_pixels": 5000})) as bot:
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "stylize", options={"content": CONTENT, "style_image": STYLE})
        answer = await private_answer(ix)
        assert answer.startswith("⚠️ the content image is 96×72") and "the limit is 5000 pixels" in answer
        ix = await fake.slash(world.alice, world.general, "stylize",
                              options={"content": SMALL, "style_image": ("notes.txt", b"words", "text/plain")})
        assert "is not an image (text/plain)" in await private_answer(ix)
        assert bot.executor.jobs() == []
    assert not fake.public_messages(world.general)


async def the_message_menu_uses_the_users_defaults_or_a_form(fake, world, bot):
    """Last: it saves alice's default epochs."""
    await reply_to(fake, await command(fake, world.general, world.alice, "!settings set epochs 6"))
    posted = await command(fake, world.general, world.bob, "two pictures", IMAGES)
    ix = await fake.context_menu(world.alice, posted, "Stylize")
    assert "Queued" in await private_answer(ix)
    result = await reply_to(fake, posted, is_result, timeout=120)  # replies to the images' message
    assert result.content.startswith(f"<@{world.alice.id}> 6 epochs")
    # the form: pre-filled with alice's defaults, her changes win
    ix = await fake.context_menu(world.alice, posted, "Stylize with options")
    await ix.wait_acknowledged()
    assert ix.modal is not None
    fields = {c["components"][0]["custom_id"]: c["components"][0] for c in ix.modal["components"]}
    text_field = next(f for f in fields.values() if "--epochs 6" in (f.get("value") or ""))
    submitted = await fake.submit_modal(world.alice, ix, {text_field["custom_id"]: "--epochs 3 --size 32"})
    assert "Queued" in await private_answer(submitted)
    second = await fake.wait_for_message(lambda m: is_result(m) and m.id > result.id, channel_id=world.general.id, timeout=120)
    assert second.content.startswith(f"<@{world.alice.id}> 3 epochs · 32×24")
    # a message without two images
    lonely = await command(fake, world.general, world.bob, "just one", [CONTENT])
    ix = await fake.context_menu(world.carol, lonely, "Stylize")
    assert "(I found 1)" in await private_answer(ix)


async def test_settings_and_limits_mirror_the_prefix_commands(fake, world, tmp_path, weights_file):
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        fake.register_tree(bot)
        assert "limits" not in fake.visible_commands(world.alice, world.general)  # default_permissions
        assert "limits" in fake.visible_commands(world.boss, world.general)
        ix = await fake.slash(world.alice, world.general, "settings set", options={"name": "epochs", "value": "12"})
        assert "Saved: epochs = 12" in await private_answer(ix)
        ix = await fake.slash(world.alice, world.general, "settings show")
        assert "12  (your default)" in await private_answer(ix)
        assert (await bot.store.user_settings(world.alice.id)) == {"epochs": 12}
        ix = await fake.slash(world.boss, world.general, "limits set", options={"name": "max_epochs", "value": "10"})
        assert "max_epochs is now 10" in await private_answer(ix)
        ix = await fake.slash(world.boss, world.general, "limits show")
        assert "**max_epochs**: 10" in await private_answer(ix)
        assert await bot.store.guild_limits(world.guild.id) == {"max_epochs": 10}


async def test_commands_are_synced_by_the_owner_only_and_never_at_start(fake, world, tmp_path, weights_file):
    async with running_bot(fake, make_config(tmp_path, weights_file)):
        await asyncio.sleep(0.5)
        assert fake.command_syncs == []  # Discord limits daily command creates: no sync at start
        refused = await command(fake, world.general, world.alice, "!sync")
        assert "You do not own this bot" in (await reply_to(fake, refused)).content
        assert fake.command_syncs == []
        synced = await command(fake, world.general, world.operator, "!sync")
        assert "Synced" in (await reply_to(fake, synced, timeout=30)).content
        names = {c["name"] for c in fake.commands()}
        assert {"stylize", "Stylize", "Stylize with options", "settings", "limits", "sync"} <= names
        ix = await fake.slash(world.alice, world.general, "sync", options={"scope": "here"})
        assert "only the bot's owner" in await private_answer(ix)
        ix = await fake.slash(world.operator, world.general, "sync", options={"scope": "here"})
        assert "to this server" in await private_answer(ix, timeout=30)
        assert {c["name"] for c in fake.commands(world.guild.id)} >= {"stylize", "settings"}
        assert [s.guild_id for s in fake.command_syncs] == [None, world.guild.id]


async def blending_in_a_dm_and_autocomplete(fake, world, bot):
    second = ("stripes.png", png(make_style(48).rotate(90)), "image/png")
    dm = fake.open_dm(world.alice.id)
    with submitted_jobs(bot) as submitted:
        ix = await fake.slash(world.alice, dm, "stylize",
                              options={"content": CONTENT, "style_image": STYLE, "style_image2": second, "style_blend": "0.7,0.3"})
        assert "Queued" in await private_answer(ix)
        result = await fake.wait_for_message(is_result, channel_id=dm.id, timeout=120)
        assert "`--style-blend 0.7,0.3`" in result.content
        assert len(submitted[0].styles) == 2 and submitted[0].max_result_bytes == ix.payload["attachment_size_limit"] - 64 * 1024
        ix = await fake.autocomplete(world.alice, world.general, "settings set", options={"name": "weig"}, focused="name")
        await ix.wait_acknowledged()
        assert [c["value"] for c in ix.choices] == ["content_weight", "style_weight", "tv_weight"]
