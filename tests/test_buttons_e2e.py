"""The buttons under status messages and results, end to end: who may press them, re-runs through the
same queue, limits and cooldown, the image cache's lifetime, and a full restart in between."""

from __future__ import annotations

import re
import signal
import time

from bot_harness import IMAGES, command, make_config, make_world, reply_to, run_scenarios, running_bot
from test_bot_process import SECRET, finish, launched, serving, write_config

LONG = "--epochs 400 --size 64"  # runs for seconds: long enough to press buttons while it runs


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


def custom_id(fake, message, label: str) -> str:
    return fake.button(message, label=label)["custom_id"]


async def press(fake, user, message, label: str):
    return await fake.press_button(user, message, custom_id(fake, message, label))


async def private_answer(ix, timeout: float = 60) -> str:
    await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=timeout)
    message = ix.followups[-1] if ix.followups else ix.original
    assert message.ephemeral_to == ix.user_id, "the answer should be private"
    return message.content


async def result_for(fake, request, timeout: float = 120):
    return await reply_to(fake, request, is_result, timeout=timeout)


def seed_of(message) -> int:
    return int(re.search(r"seed (\d+)", message.content).group(1))


async def test_scenarios_sharing_one_bot(fake, world, tmp_path, weights_file):
    """Scenarios one after the other on one bot (a start loads a worker: seconds), each ending with
    nothing queued or running; the cache keeps images for an hour (what the expiry scenario says).
    Checks that must see the bot closed run after it is."""
    config = make_config(tmp_path, weights_file, caps={"max_jobs_per_user": 1}, cache={"ttl": 3600})
    async with running_bot(fake, config) as bot:
        after_close = await run_scenarios(fake, world, bot, (
            an_expired_image_cache_is_said_plainly, again_and_vary_respect_the_per_user_cap_and_the_cooldown,
            cancel_is_refused_to_others_and_works_for_an_admin,
        ))
    for check in after_close:
        check()


async def cancel_is_refused_to_others_and_works_for_an_admin(fake, world, bot):
    """By carol, whom the earlier scenarios' cooldown does not concern."""
    request = await command(fake, world.general, world.carol, f"!stylize {LONG}", IMAGES)
    status = await reply_to(fake, request, lambda m: "%" in m.content, timeout=60)
    ix = await press(fake, world.bob, status, "Cancel")
    assert f"only <@{world.carol.id}> or a server admin can cancel this job" in await private_answer(ix)
    assert bot.executor.jobs() and bot.executor.jobs()[0].user_id == world.carol.id  # still running
    ix = await press(fake, world.boss, status, "Cancel")  # Manage Server
    assert "Cancelling" in await private_answer(ix)
    stopped = await reply_to(fake, request, lambda m: "did not finish" in m.content, timeout=60)
    assert stopped.id == status.id and stopped.content == "🛑 Your job did not finish: cancelled"
    assert not stopped.components  # no Cancel button on a finished job

    def the_job_is_recorded_cancelled():  # once the bot is closed
        assert await_store_state(bot.config) == "cancelled"
    return the_job_is_recorded_cancelled


def await_store_state(config) -> str:
    """The state of the latest job in the bot's database."""
    import sqlite3

    with sqlite3.connect(config.database_path) as db:
        return db.execute("SELECT state FROM jobs ORDER BY created_at DESC LIMIT 1").fetchone()[0]


async def test_buttons_work_after_a_full_restart(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file)
    async with running_bot(fake, config):
        request = await command(fake, world.general, world.alice, "!stylize --epochs 6 --style-weight 1e9 --seed 5", IMAGES)
        result = await result_for(fake, request)
        assert "seed 5" in result.content and "`--epochs 6` `--style-weight 1e9`" in result.content
    async with running_bot(fake, config):  # a new process state: only the custom ids and the disk remain
        ix = await press(fake, world.bob, result, "Details")
        details = await private_answer(ix)
        for words in ("`seed` 5", "`epochs` 6", "`style_weight` 1e9", "**Final losses** content loss", "on cpu (",
                      "!stylize --epochs 6 --style-weight 1e9 --seed 5", "/stylize content:<image> style_image:<image> epochs:6"):
            assert words in details, (words, details)
        ix = await press(fake, world.alice, result, "Again")
        assert "Queued (seed" in await private_answer(ix)
        again = await result_for(fake, result)  # replies to the result it came from
        assert "6 epochs" in again.content and "`--style-weight 1e9`" in again.content and seed_of(again) != 5
        ix = await press(fake, world.alice, again, "Vary")
        await ix.wait_acknowledged()
        box = next(row["components"][0] for row in ix.modal["components"] if "--epochs 6" in (row["components"][0].get("value") or ""))
        assert "--style-weight 1e9" in box["value"]  # pre-filled with the job's options
        submitted = await fake.submit_modal(world.alice, ix, {box["custom_id"]: box["value"].replace("--epochs 6", "--epochs 3")})
        assert "Queued" in await private_answer(submitted)
        varied = await result_for(fake, again)
        assert varied.content.startswith(f"<@{world.alice.id}> 3 epochs") and "`--style-weight 1e9`" in varied.content
        ix = await press(fake, world.bob, varied, "Delete")
        assert "only <@" in await private_answer(ix) and not fake.get_message(varied.id).deleted
        ix = await press(fake, world.alice, varied, "Delete")
        assert "Deleted" in await private_answer(ix)
        assert fake.get_message(varied.id).deleted


async def again_and_vary_respect_the_per_user_cap_and_the_cooldown(fake, world, bot):
    """Sets a cooldown of 600 s for the rest of the session."""
    first = await result_for(fake, await command(fake, world.general, world.alice, "!stylize", IMAGES))
    busy = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
    await reply_to(fake, busy, lambda m: "Started" in m.content or "%" in m.content, timeout=60)
    ix = await press(fake, world.alice, first, "Again")
    assert "you already have 1 job queued or running (the limit is 1)" in await private_answer(ix)
    ix = await press(fake, world.alice, first, "Vary")
    await ix.wait_acknowledged()
    submitted = await fake.submit_modal(world.alice, ix, {})
    assert "you already have 1 job queued or running" in await private_answer(submitted)
    await command(fake, world.general, world.alice, "!cancel")
    await reply_to(fake, busy, lambda m: "did not finish" in m.content, timeout=60)
    await reply_to(fake, await command(fake, world.general, world.boss, "!limits set cooldown 600"))
    ix = await press(fake, world.alice, first, "Again")
    assert "please wait" in await private_answer(ix) and "the cooldown here is 600 s" in await private_answer(ix)
    ix = await press(fake, world.alice, first, "Vary")
    await ix.wait_acknowledged()
    assert "please wait" in await private_answer(await fake.submit_modal(world.alice, ix, {}))
    assert bot.executor.jobs() == []


async def an_expired_image_cache_is_said_plainly(fake, world, bot):
    result = await result_for(fake, await command(fake, world.general, world.alice, "!stylize --seed 9", IMAGES))
    bot.jobs.cache.clock = lambda: time.time() + 3601  # an hour later
    try:
        ix = await press(fake, world.alice, result, "Again")
        answer = await private_answer(ix)
        assert "the images of that job are no longer kept (the bot keeps them for 1 h)" in answer
        ix = await press(fake, world.alice, result, "Vary")
        assert "no longer kept" in await private_answer(ix) and ix.modal is None  # no form that cannot work
        ix = await press(fake, world.alice, result, "Details")  # the parameters live in the database
        details = await private_answer(ix)
        assert "`seed` 9" in details and "statistics are no longer kept" in details
        assert bot.executor.jobs() == []
    finally:
        bot.jobs.cache.clock = time.time


async def test_a_job_lost_in_a_crash_offers_again(fake, tmp_path, weights_file):
    """`python -m bot` killed mid-job: after the restart the status says the job was lost, with an Again
    button that re-runs it from the cached images (a button of the earlier process's job id)."""
    world = make_world(fake, token=SECRET)
    config = write_config(tmp_path, weights_file, grace=0.5)
    async with launched(fake, config) as proc:
        await serving(fake, world, proc)
        request = await command(fake, world.general, world.alice, "!stylize --epochs 5000 --size 48", IMAGES)
        await reply_to(fake, request, lambda m: "%" in m.content, timeout=60)
        proc.kill()
        await proc.wait()
    async with launched(fake, config) as again:
        told = await reply_to(fake, request, lambda m: "lost" in m.content, timeout=90)
        assert told.content.endswith("please send it again (or press Again)")
        assert [b["label"] for b in fake.buttons(told)] == ["Again"]
        ix = await press(fake, world.alice, told, "Again")
        assert "Queued (seed" in await private_answer(ix)
        await reply_to(fake, told, lambda m: "%" in m.content, timeout=60)  # the re-run runs, replying to it
        again.send_signal(signal.SIGTERM)
        code, err = await finish(again)
    assert code == 0, err
