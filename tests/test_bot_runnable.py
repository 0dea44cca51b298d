"""Images VGG-19 cannot process are refused before queueing, through the real bot against the fake
Discord, with nst's one rule and a message that names the image, its size and the minimum
(issue 11, defect 1). Nothing reaches a worker, so no traceback and no generic internal error."""

from __future__ import annotations

from bot.core.store import Store
from bot_harness import IMAGES, command, make_config, png, reply_to, running_bot
from conftest import make_content


def refused_before_queueing(fake, request) -> None:
    texts = [v.content for m in fake.bot_messages() if m.message_reference == request.id for v in [*m.edits, m]]
    assert not any("Queued" in text or "Started" in text or "%" in text for text in texts), texts
    assert not any("internal error" in text for text in texts), texts


async def test_unrunnable_images_and_sizes_on_one_bot(fake, world, tmp_path, weights_file):
    """Both scenarios on one bot (a start loads a worker: seconds): bob's saved size of 16 is written
    before the start, as an older bot would have; the first scenario leaves bob out."""
    config = make_config(tmp_path, weights_file)
    store = await Store.open(config.database_path)  # saved by an older bot, when 16 was allowed
    await store.set_user_setting(world.bob.id, "size", 16)
    await store.close()
    async with running_bot(fake, config) as bot:
        await images_too_small_or_too_elongated_are_refused_before_queueing(fake, world)
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=10, what="the first scenario's job is finished")
        await a_saved_size_that_could_never_run_is_refused_and_an_old_one_ignored(fake, world)


async def images_too_small_or_too_elongated_are_refused_before_queueing(fake, world):
    tiny = png(make_content(12, 12))
    banner = png(make_content(1200, 40))  # 30:1, at the test default size 48 the short side is 2 px
    small = await command(fake, world.general, world.alice, "!stylize", [("tiny.png", tiny, "image/png"), IMAGES[1]])
    answer = (await reply_to(fake, small)).content
    assert "the content image (12×12) is too small: VGG-19 needs at least 16 px on its shorter side" in answer
    refused_before_queueing(fake, small)

    wide = await command(fake, world.general, world.boss, "!stylize", [("banner.png", banner, "image/png"), IMAGES[1]])
    answer = (await reply_to(fake, wide)).content
    assert "the content image (1200×40) would be scaled to 48×2 px at size 48" in answer
    assert "use a size of at least 480" in answer
    refused_before_queueing(fake, wide)

    style = await command(fake, world.general, world.carol, "!stylize --style-scale 0.1", IMAGES)
    answer = (await reply_to(fake, style)).content
    assert "`--style-scale`: the style image (64×64) would be scaled to" in answer and "at least 16 px" in answer
    refused_before_queueing(fake, style)

    small_size = await command(fake, world.general, world.dave, "!stylize --size 20", IMAGES)
    answer = (await reply_to(fake, small_size)).content
    assert "`--size`: must be an integer from 32 to 4096, got 20" in answer
    refused_before_queueing(fake, small_size)

    fine = await command(fake, world.general, world.alice, "!stylize", IMAGES)  # the next job still runs
    assert (await reply_to(fake, fine, lambda m: m.attachments, timeout=120)).attachments


async def a_saved_size_that_could_never_run_is_refused_and_an_old_one_ignored(fake, world):
    setting = await command(fake, world.general, world.alice, "!settings set size 16")
    assert "must be an integer from 32 to 4096, got 16" in (await reply_to(fake, setting)).content
    later = await command(fake, world.general, world.alice, "!stylize", IMAGES)
    assert (await reply_to(fake, later, lambda m: m.attachments, timeout=120)).attachments

    old = await command(fake, world.general, world.bob, "!stylize", IMAGES)
    result = await reply_to(fake, old, lambda m: m.attachments, timeout=120)
    assert "your saved size is no longer valid" in result.content
    assert "48×36" in result.content  # the bot's default size, not 16


async def test_an_upscale_is_checked_at_the_size_it_will_run():
    """An upscale continues from its picture at ``size``, its content enlarged (a new job never
    enlarges): the operator's memory budget is checked at that size, before anything is queued."""
    import pytest

    from bot.core.errors import UserError
    from bot.core.inputs import check_runnable
    from nst.params import StyleParams

    content, style = png(make_content(64, 48)), png(make_content(64, 48))
    params = StyleParams(size=4096)
    await check_runnable(content, [style], params, max_pixels=10**8, max_memory="300MiB")  # runs at 64×48
    picture = png(make_content(2048, 1536))
    with pytest.raises(UserError, match="does not fit this bot's memory: .*4096×3072"):
        await check_runnable(content, [style], params, max_pixels=10**8, max_memory="300MiB", init_image=picture)
    await check_runnable(content, [style], params, max_pixels=10**8, max_memory="16GiB", init_image=picture)
