"""Running without the privileged Message Content intent: switched off in the config, or refused by
Discord at IDENTIFY (close code 4014), after which the bot reconnects without it and keeps serving
slash commands, the message menu, mentions and DMs. In-process and as `python -m bot`."""

from __future__ import annotations

import logging
import signal

from bot_harness import IMAGES, command, make_config, make_world, reply_to, running_bot
from test_bot_process import SECRET, finish, launched, write_config

try:
    from fake_discord import Intent
except ImportError:  # tests/ as a package
    from tests.fake_discord import Intent


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


def portal_without_message_content(world) -> None:
    world.bot_user.privileged_intents = Intent.PRIVILEGED & ~Intent.MESSAGE_CONTENT


async def test_a_refused_intent_falls_back_and_the_bot_still_serves(fake, world, tmp_path, weights_file, caplog):
    portal_without_message_content(world)
    with caplog.at_level(logging.WARNING, logger="bot"):
        async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
            assert "Discord refused the Message Content intent: running without it" in caplog.text
            assert bot.message_content is False
            assert not fake.sessions[-1].intents & Intent.MESSAGE_CONTENT
            fake.register_tree(bot)
            # slash command
            ix = await fake.slash(world.alice, world.general, "stylize", options={"content": IMAGES[0], "style_image": IMAGES[1]})
            await fake.wait_for_message(lambda m: is_result(m) and f"<@{world.alice.id}>" in m.content,
                                        channel_id=world.general.id, timeout=120)
            # the message menu reads the target message's images, which Discord sends with the interaction
            posted = await command(fake, world.general, world.bob, "", IMAGES)
            ix = await fake.context_menu(world.bob, posted, "Stylize")
            await ix.wait_acknowledged()
            assert (await reply_to(fake, posted, is_result, timeout=120)).attachments
            # a plain prefix command reaches the bot without its text; a mention carries it
            plain = await command(fake, world.general, world.carol, "!stylize --epochs 3", IMAGES)
            mention = await command(fake, world.general, world.carol, f"<@{world.bot_user.id}> stylize --epochs 3", IMAGES)
            result = await reply_to(fake, mention, is_result, timeout=120)
            assert "3 epochs" in result.content
            assert not [m for m in fake.bot_messages(world.general.id) if m.message_reference == plain.id]
            # direct messages carry their text
            dm = fake.open_dm(world.dave.id)
            request = await fake.user_sends(dm.id, world.dave.id, "!stylize --epochs 2", attachments=IMAGES)
            assert "2 epochs" in (await reply_to(fake, request, is_result, timeout=120)).content


async def test_message_content_off_in_the_config_never_asks_for_it(fake, world, tmp_path, weights_file, caplog):
    with caplog.at_level(logging.WARNING, logger="bot"):
        async with running_bot(fake, make_config(tmp_path, weights_file, bot={"message_content": False})) as bot:
            assert bot.message_content is False
            assert len(fake.sessions) == 1 and not fake.sessions[0].intents & Intent.MESSAGE_CONTENT
            request = await command(fake, world.general, world.alice, f"<@{world.bot_user.id}> queue")
            assert "queue is empty" in (await reply_to(fake, request)).content
    assert "refused the Message Content intent" not in caplog.text


async def test_the_bot_process_starts_with_the_intent_refused(fake, tmp_path, weights_file):
    world = make_world(fake, token=SECRET)
    portal_without_message_content(world)
    async with launched(fake, write_config(tmp_path, weights_file)) as proc:
        await fake.wait_ready(timeout=60)
        dm = fake.open_dm(world.alice.id)
        probe = await fake.user_sends(dm.id, world.alice.id, "!queue")
        assert "queue is empty" in (await reply_to(fake, probe, timeout=60)).content
        proc.send_signal(signal.SIGTERM)
        code, err = await finish(proc)
    assert code == 0, err
    assert "Discord refused the Message Content intent: running without it" in err and "Traceback" not in err
