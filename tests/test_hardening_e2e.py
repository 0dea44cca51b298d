"""Issue 18's defects, each through the path users take (the real client against the fake Discord):
numbers typed in other scripts' digits, the queue in direct messages, Delete after the job's record
was pruned, every interaction acknowledged while the database is locked by another process, and
options forms opened before a restart and submitted after it. One bot serves the scenarios; the forms
scenario restarts it."""

from __future__ import annotations

import math
import sqlite3
import time

from bot_harness import IMAGES, command, make_config, reply_to, running_bot, step_seconds


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


async def answer(fake, channel, user, text: str, attachments=()) -> str:
    return (await reply_to(fake, await command(fake, channel, user, text, attachments))).content


async def private_answer(ix, timeout: float = 60) -> str:
    await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=timeout)
    message = ix.followups[-1] if ix.followups else ix.original
    assert message.ephemeral_to == ix.user_id, "the answer should be private"
    return message.content


async def press(fake, user, message, label: str):
    return await fake.press_button(user, message, fake.button(message, label=label)["custom_id"])


async def a_result(fake, channel, user, options: str = "--epochs 2"):
    """(the command, its result) of a small job, once recorded as done (its status message is removed then)."""
    request = await command(fake, channel, user, f"!stylize {options}", IMAGES)
    result = await reply_to(fake, request, is_result, timeout=120)
    await reply_to(fake, request, lambda m: m.deleted and not is_result(m), timeout=30)
    return request, result


async def test_hardening_scenarios(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps={"max_epochs": 100_000})
    async with running_bot(fake, config) as bot:
        fake.register_tree(bot)
        await digits_other_than_0_to_9_are_refused_by_name(fake, world)
        await a_direct_message_job_is_named_to_its_owner_only(fake, world, bot, weights_file)
        await delete_works_after_the_record_is_pruned(fake, world, bot)
        await interactions_are_acknowledged_while_the_database_is_locked(fake, world, bot)
        forms = await forms_opened_before_a_restart(fake, world)
    async with running_bot(fake, config):
        await are_answered_after_it(fake, world, *forms)


async def digits_other_than_0_to_9_are_refused_by_name(fake, world):
    g = world.general
    for text, shown in (("!style list ²", "`²` (superscript two)"), ("!style ①", "`①` (circled digit one)"),
                        ("!stylize --epochs ３", "`３` (fullwidth digit three)")):
        reply = await answer(fake, g, world.alice, text, IMAGES if "stylize" in text else ())
        assert shown in reply and "is not one of the digits 0-9" in reply, reply
    reply = await answer(fake, g, world.boss, "!limits set max_epochs ٣")
    assert "`٣` (arabic-indic digit three) is not one of the digits 0-9" in reply
    assert "Saved" in await answer(fake, g, world.alice, "!settings set epochs 12")
    assert "is not one of the digits 0-9" in await answer(fake, g, world.alice, "!settings set epochs １２")
    assert "Removed" in await answer(fake, g, world.alice, "!settings unset epochs")


async def a_direct_message_job_is_named_to_its_owner_only(fake, world, bot, weights_file):
    alice_dm, bob_dm = fake.open_dm(world.alice.id), fake.open_dm(world.bob.id)
    epochs = min(100_000, math.ceil(120 / step_seconds(weights_file)))  # far longer than the checks: cancelled after them
    request = await command(fake, alice_dm, world.alice, f"!stylize --epochs {epochs}", IMAGES)
    await reply_to(fake, request, lambda m: "Started" in m.content or "%" in m.content, timeout=60)
    alice = f"<@{world.alice.id}>"
    seen_by_bob = await answer(fake, bob_dm, world.bob, "!queue")
    assert alice not in seen_by_bob and "someone elsewhere" in seen_by_bob
    assert alice not in await private_answer(await fake.slash(world.bob, bob_dm, "queue"))
    assert alice not in await answer(fake, world.general, world.carol, "!queue")  # nor in a server
    assert alice in await answer(fake, alice_dm, world.alice, "!queue")
    assert alice in await private_answer(await fake.slash(world.alice, alice_dm, "queue"))
    assert "Cancelling" in await answer(fake, alice_dm, world.alice, "!cancel")
    await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=60, what="the DM job cancelled")


async def delete_works_after_the_record_is_pruned(fake, world, bot):
    _, first = await a_result(fake, world.general, world.alice)
    _, second = await a_result(fake, world.general, world.alice)
    assert await bot.store.prune_jobs(time.time() + 1) >= 2  # bot.job_history_days has passed for both
    assert "no record" in await private_answer(await press(fake, world.alice, first, "Details"))
    refused = await private_answer(await press(fake, world.carol, first, "Delete"))
    assert f"only <@{world.alice.id}> or a server admin" in refused and not fake.get_message(first.id).deleted
    assert "Deleted" in await private_answer(await press(fake, world.alice, first, "Delete"))  # the owner
    assert "Deleted" in await private_answer(await press(fake, world.boss, second, "Delete"))  # an admin
    assert fake.get_message(first.id).deleted and fake.get_message(second.id).deleted


async def interactions_are_acknowledged_while_the_database_is_locked(fake, world, bot):
    """Another process (a backup, say) holds the database's write lock: every interaction is acknowledged
    within Discord's 3 s at once, reads answer meanwhile, and the writes land once the lock is free."""
    _, result = await a_result(fake, world.general, world.alice)
    other = sqlite3.connect(bot.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        writes = [
            await fake.slash(world.alice, world.general, "settings set", {"name": "epochs", "value": "12"}),
            await fake.slash(world.alice, world.general, "preset save", {"name": "quick", "options": "--epochs 5"}),
            await fake.slash(world.boss, world.general, "limits set", {"name": "max_epochs", "value": "300"}),
        ]
        for ix in writes:
            await ix.wait_acknowledged(timeout=5)  # the store waits up to its busy timeout (10 s)
            assert ix.deferred and ix.response_delay < 3
        details = await press(fake, world.alice, result, "Details")
        assert "**Job**" in await private_answer(details, timeout=5)  # a read: not behind the writes
        assert not any(ix.followups for ix in writes)  # still waiting for the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    answers = [await private_answer(ix) for ix in writes]
    assert "Saved: epochs = 12" in answers[0] and "preset `quick`" in answers[1] and "max_epochs is now 300" in answers[2]
    assert "Removed" in await answer(fake, world.general, world.alice, "!settings unset epochs")
    assert "Removed" in await answer(fake, world.general, world.boss, "!limits unset max_epochs")


async def forms_opened_before_a_restart(fake, world):
    """Vary under a result and "Stylize with options" on a message, opened; the bot then restarts."""
    source, result = await a_result(fake, world.general, world.alice)
    vary = await press(fake, world.alice, result, "Vary")
    menu = await fake.context_menu(world.alice, source.id, "Stylize with options")
    for ix in (vary, menu):
        await ix.wait_until(lambda i: i.modal is not None, timeout=30)
    return vary, menu


async def are_answered_after_it(fake, world, vary, menu):
    for opened in (vary, menu):
        form = await fake.submit_modal(world.alice, opened, {"Options (one per line, as in !stylize)": "--epochs 2"})
        assert "Queued" in await private_answer(form), opened.data
        await fake.wait_for_message(lambda m: is_result(m) and m.id > form.id and "2 epochs" in m.content,
                                    channel_id=world.general.id, timeout=120)
