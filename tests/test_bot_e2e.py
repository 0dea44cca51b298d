"""End to end: the real discord.py client, real SQLite and a real worker process against the fake Discord.

Each test starts the bot as `python -m bot` would (its real setup_hook), types commands as users,
and checks what reaches the channel. Jobs are tiny (48-64 px, random weights from a file).
"""

from __future__ import annotations

import io
import os
import signal

from PIL import Image

from bot_harness import IMAGES, command, make_config, png, reply_to, run_scenarios, running_bot, submitted_jobs
from conftest import make_content, make_style


LONG = "--epochs 400 --size 64"  # a job that runs for several seconds on the test worker


def versions(message) -> list[str]:
    return [v.content for v in message.edits] + [message.content]


async def status_of(fake, request, words: str, timeout: float = 30):
    """The bot's status message for ``request`` once its text contains ``words``."""
    return await reply_to(fake, request, lambda m: words in m.content, timeout=timeout)


async def result_of(fake, request, timeout: float = 60):
    return await reply_to(fake, request, lambda m: m.attachments and m.attachments[0].filename.startswith("stylized"),
                          timeout=timeout)


async def test_stylize_end_to_end(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, defaults={"epochs": 40}, bot={"status_interval": 0.3})
    async with running_bot(fake, config):
        request = await command(fake, world.general, world.alice, "!stylize --size 64 --seed 7", IMAGES)
        result = await result_of(fake, request)
        image = Image.open(io.BytesIO(result.attachments[0].data))
        assert image.size == (64, 48) and result.attachments[0].content_type.startswith("image/")
        assert f"<@{world.alice.id}> 40 epochs · 64×48 ·" in result.content and " s on cpu" in result.content
        # one status message: posted at once, edited with progress, removed when the result arrived
        status = [m for m in fake.bot_messages(world.general.id) if m is not result and m.message_reference == request.id]
        assert len(status) == 1
        await fake.wait_until(lambda: status[0].deleted, timeout=10, what="status message deleted")
        shown = versions(status[0])
        assert shown[0].startswith("🎨 Started on cpu")
        assert any("%" in text and "step" in text and "left" in text for text in shown)
        stamps = [v.monotonic for v in status[0].edits] + [status[0].edited_at]
        assert all(b - a >= 0.25 for a, b in zip(stamps, stamps[1:])), "edits closer than the status interval"


async def test_refusals_are_specific_and_nothing_is_queued(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps={"max_attachment_bytes": 40_000, "max_pixels": 7000})
    noisy = Image.frombytes("RGB", (120, 120), os.urandom(120 * 120 * 3))
    cases = [
        ([IMAGES[0]], "the content first, then one to 3 styles to blend (I found 1)"),
        ([IMAGES[0], ("notes.txt", b"just words", "text/plain")], "the style image (notes.txt) is not an image (text/plain)"),
        ([("big.png", png(noisy), "image/png"), IMAGES[1]], "the content image (big.png) is 42 KB; the limit is 39 KB"),
        ([("wide.png", png(make_content(100, 80)), "image/png"), IMAGES[1]], "the content image is 100×80 = 8000 pixels; the limit is 7000 pixels"),
        ([IMAGES[0], ("broken.png", IMAGES[1][1][:60], "image/png")], "the style image is"),
    ]
    async with running_bot(fake, config) as bot:
        for files, expected in cases:
            request = await command(fake, world.general, world.alice, "!stylize", files)
            reply = await reply_to(fake, request)
            assert reply.content.startswith("⚠️ ") and expected in reply.content, reply.content
        for text, expected in [
            ("!stylize --epochs 0", "`--epochs`: must be an integer from 1 to 100000, got 0"),
            ("!stylize --style-weight lots", "`--style-weight`: must be a number from 0 to 1e15, got 'lots'"),
            ("!stylize --colour blue", "unknown option `--colour`"),
            ("!stylize --seed", "`--seed` needs a value"),
            ("!stylize --epochs 5 --epochs 6", "give `--epochs` only once"),
            ("!stylize please", "unexpected text 'please'"),
        ]:
            request = await command(fake, world.general, world.alice, text, IMAGES)
            reply = await reply_to(fake, request)
            assert expected in reply.content, reply.content
        assert bot.executor.jobs() == []
    assert not any(m.attachments for m in fake.bot_messages())


async def test_scenarios_sharing_one_bot(fake, world, tmp_path, weights_file):
    """Scenarios run one after the other on one bot (a start loads a worker: seconds), each ending with
    nothing queued or running; the config is the test default with one job per user and two in all
    (what the fair-use scenario checks). The killed worker comes last: it counts the restarts. Checks
    that must see the bot closed (no late message) run after it is."""
    boosted = fake.add_guild(name="Boosted", premium_tier=2)  # known to the bot from its start
    world.boosted_art = fake.add_text_channel(boosted.id, "art")
    fake.add_member(boosted.id, world.alice.id)
    config = make_config(tmp_path, weights_file, caps={"max_jobs_per_user": 1, "max_queue": 2})
    async with running_bot(fake, config) as bot:
        after_close = await run_scenarios(fake, world, bot, (
            help_shows_the_options_with_an_example, replying_to_images_and_mention_prefix,
            three_images_blend_two_styles, the_result_is_sized_for_the_servers_upload_limit,
            queue_fair_use_and_positions, cancel_running_and_queued_jobs,
            a_killed_worker_is_reported_and_replaced,
        ))
    for check in after_close:
        check()


async def replying_to_images_and_mention_prefix(fake, world, bot):
    posted = await command(fake, world.general, world.bob, "look at these", IMAGES)
    request = await command(fake, world.general, world.alice, "!stylize", reply_to=posted)
    assert (await result_of(fake, request)).attachments
    request = await command(fake, world.general, world.carol, f"<@{world.bot_user.id}> stylize --size 32", IMAGES)
    result = await result_of(fake, request)
    assert Image.open(io.BytesIO(result.attachments[0].data)).size == (32, 24)


async def test_values_above_the_bots_caps_are_lowered_and_said_in_a_server_and_a_dm(fake, world, tmp_path, weights_file):
    """One bot (a start loads a worker: seconds) for both places where the operator's caps apply."""
    dm = fake.open_dm(world.alice.id)
    async with running_bot(fake, make_config(tmp_path, weights_file, caps={"max_epochs": 10})):
        request = await command(fake, world.general, world.alice, "!stylize --epochs 5000", IMAGES)
        result = await result_of(fake, request)
        assert "10 epochs" in result.content and "epochs 5000 → 10: the bot's limit" in result.content
        # direct messages use the bot's caps
        request = await fake.user_sends(dm.id, world.alice.id, "!stylize --epochs 50", attachments=IMAGES)
        result = await result_of(fake, request)
        assert "10 epochs" in result.content and "the bot's limit" in result.content
        limits = await fake.user_sends(dm.id, world.alice.id, "!limits")
        assert "Limits are per server" in (await reply_to(fake, limits)).content


async def cancel_running_and_queued_jobs(fake, world, bot):
    running = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
    await status_of(fake, running, "%")  # each message is its own task: a second sent now could start first
    waiting = await command(fake, world.general, world.bob, f"!stylize {LONG}", IMAGES)
    await status_of(fake, waiting, "Queued, position 1")
    cancel = await command(fake, world.general, world.bob, "!cancel")
    assert "Cancelling" in (await reply_to(fake, cancel)).content
    assert "cancelled before it started" in (await status_of(fake, waiting, "did not finish")).content
    await command(fake, world.general, world.alice, "!cancel")
    stopped = await status_of(fake, running, "did not finish")
    assert stopped.content == "🛑 Your job did not finish: cancelled"
    nothing = await command(fake, world.general, world.alice, "!cancel")
    assert "you have no job queued or running" in (await reply_to(fake, nothing)).content
    assert bot.executor.jobs() == []
    # the worker is free again at once
    again = await command(fake, world.general, world.alice, "!stylize", IMAGES)
    assert (await result_of(fake, again)).attachments

    def no_result_for_the_cancelled_jobs():  # once the bot is closed: nothing came late either
        assert not any(m.attachments for m in fake.bot_messages() if m.message_reference in (running.id, waiting.id))
    return no_result_for_the_cancelled_jobs


async def a_killed_worker_is_reported_and_replaced(fake, world, bot):
    assert bot.executor.restarts == 0
    doomed = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
    await status_of(fake, doomed, "%")
    queued = await command(fake, world.general, world.bob, "!stylize", IMAGES)
    await status_of(fake, queued, "Queued, position 1")
    os.kill(bot.executor._workers[0].process.pid, signal.SIGKILL)
    failed = await status_of(fake, doomed, "did not finish")
    assert "stopped unexpectedly (killed by SIGKILL" in failed.content and "try again" in failed.content
    assert (await result_of(fake, queued)).attachments  # the queue goes on with the replacement
    retry = await command(fake, world.general, world.alice, "!stylize", IMAGES)
    assert (await result_of(fake, retry)).attachments
    assert bot.executor.restarts == 1 and bot.executor.health()[0]


async def queue_fair_use_and_positions(fake, world, bot):
    first = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
    await status_of(fake, first, "Started")
    second = await command(fake, world.general, world.bob, f"!stylize {LONG}", IMAGES)
    await status_of(fake, second, "Queued, position 1")
    again = await command(fake, world.general, world.alice, "!stylize", IMAGES)
    assert "you already have 1 job queued or running (the limit is 1)" in (await reply_to(fake, again)).content
    full = await command(fake, world.general, world.carol, "!stylize", IMAGES)
    assert "the queue is full (2 jobs)" in (await reply_to(fake, full)).content
    listing = await command(fake, world.general, world.dave, "!queue")
    text = (await reply_to(fake, listing)).content
    assert f"🎨 <@{world.alice.id}>:" in text and f"1. <@{world.bob.id}>: waiting" in text
    for user in (world.alice, world.bob):
        await command(fake, world.general, user, "!cancel")
    await status_of(fake, first, "did not finish")
    await status_of(fake, second, "did not finish")


async def test_a_job_past_the_timeout_is_stopped(fake, world, tmp_path, weights_file):
    async with running_bot(fake, make_config(tmp_path, weights_file, caps={"job_timeout": 2})):
        request = await command(fake, world.general, world.alice, f"!stylize {LONG}", IMAGES)
        stopped = await status_of(fake, request, "did not finish")
        assert "stopped: it ran past the time limit of 2 s" in stopped.content


async def help_shows_the_options_with_an_example(fake, world, bot):
    asked = await command(fake, world.general, world.alice, "!help stylize")
    await fake.wait_for_message(lambda m: m.id > asked.id and "Example:" in m.content, channel_id=world.general.id, timeout=10)
    text = "\n".join(m.content for m in fake.bot_messages(world.general.id) if m.id > asked.id)  # may be paged
    for words in ("--epochs", "--content-weight", "--seed", "default 8", "Example: stylize --epochs 300"):
        assert words in text, words


async def the_result_is_sized_for_the_servers_upload_limit(fake, world, bot):
    with submitted_jobs(bot) as submitted:
        for where in (world.general, world.boosted_art):
            request = await command(fake, where, world.alice, "!stylize", IMAGES)
            await result_of(fake, request)
    assert [job.max_result_bytes for job in submitted] == [10 * 2**20 - 64 * 1024, 50 * 2**20 - 64 * 1024]


async def three_images_blend_two_styles(fake, world, bot):
    second_style = ("stripes.png", png(make_style(48).rotate(90)), "image/png")
    with submitted_jobs(bot) as submitted:
        request = await command(fake, world.general, world.alice, "!stylize --style-blend 0.7,0.3", [*IMAGES, second_style])
        result = await result_of(fake, request)
        assert "`--style-blend 0.7,0.3`" in result.content  # an option that differs from the defaults
        assert len(submitted[0].styles) == 2 and submitted[0].styles[1] == second_style[1]
        wrong = await command(fake, world.general, world.alice, "!stylize --style-blend 1,2,3", [*IMAGES, second_style])
        assert "gives 3 weights for 2 style images" in (await reply_to(fake, wrong)).content
