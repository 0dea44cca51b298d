"""Live previews on the status message, end to end: three jobs at once in one channel, each status
message showing a preview of its picture, with every edit in the channel paced to Discord's limit."""

from __future__ import annotations

from bot.frontend.status import CHANNEL_EDIT_GAP
from bot_harness import IMAGES, command, make_config, reply_to, running_bot

LONG = "--epochs 50000 --size 64"  # stopped by the test once it has seen enough
PREVIEW_INTERVAL = 2.0
SLACK = 0.1  # the fake stamps edits when it receives them: allow for the trip through the socket


def preview_versions(message) -> list:
    """(time, attachment id) of each version whose preview differs from the version before."""
    shown, last = [], None
    for version in [*message.edits, message]:
        stamp = version.monotonic if hasattr(version, "monotonic") else message.edited_at
        ids = tuple(a.id for a in version.attachments if a.filename.startswith("preview"))
        if ids and ids != last:
            shown.append((stamp, ids))
        last = ids or last
    return shown


async def test_previews_with_three_jobs_in_one_channel_are_throttled(fake, world, tmp_path, weights_file):
    config = make_config(
        tmp_path, weights_file,
        bot={"status_interval": 1.0, "preview_interval": PREVIEW_INTERVAL},
        engine={"devices": ["cpu", "cpu", "cpu"]},
        caps={"max_epochs": 100_000},
    )
    fake.set_rate_limit("edit", 5, per=5.0)  # Discord's edits per channel (undocumented, commonly 5 / 5 s)
    users = (world.alice, world.bob, world.carol)
    async with running_bot(fake, config) as bot:
        assert bot.pacer.gap == CHANNEL_EDIT_GAP
        requests = [await command(fake, world.general, user, f"!stylize {LONG}", IMAGES) for user in users]
        statuses = [await reply_to(fake, request, lambda m: "%" in m.content, timeout=120) for request in requests]
        await fake.wait_until(lambda: all(len(preview_versions(fake.get_message(s.id))) >= 2 for s in statuses),
                              timeout=300, what="two previews on every status message")
        cancel = fake.button(fake.get_message(statuses[0].id), label="Cancel")["custom_id"]
        await fake.press_button(world.alice, statuses[0], cancel)  # the job's owner, by its button
        for user in users[1:]:
            await command(fake, world.general, user, "!cancel")
        for request in requests:
            await reply_to(fake, request, lambda m: "did not finish" in m.content, timeout=60)
    edits = fake.edits_in(world.general.id)
    gaps = [b - a for a, b in zip(edits, edits[1:])]
    assert len(edits) >= 6 and min(gaps) >= CHANNEL_EDIT_GAP - SLACK, gaps
    assert fake.rate_limits.limited == []
    for status in statuses:
        message = fake.get_message(status.id)
        shown = preview_versions(message)
        assert all(b[0] - a[0] >= PREVIEW_INTERVAL - SLACK for a, b in zip(shown, shown[1:])), shown
        assert message.attachments == [] and not message.components  # finished: no preview, no Cancel
        assert "did not finish: cancelled" in message.content
