"""The per-channel pacer behind every status-message edit: a gap between edits in one channel (also
across bursts), the newest request for a message replacing an older one, channels independent."""

from __future__ import annotations

import asyncio
import time

from bot.frontend.status import ChannelPacer


async def test_edits_in_one_channel_keep_the_gap_and_coalesce():
    pacer = ChannelPacer(gap=0.2)
    runs: list[tuple[str, float]] = []

    def edit(label: str):
        async def run() -> None:
            runs.append((label, time.monotonic()))
        return run

    first = pacer.request(1, "a", time.monotonic(), edit("a1"))
    pacer.request(1, "b", time.monotonic(), edit("b1"))
    pacer.request(1, "b", time.monotonic(), edit("b2"))  # replaces b1 before it ran
    await first
    await asyncio.sleep(0.5)
    assert [label for label, _ in runs] == ["a1", "b2"]
    later = pacer.request(1, "a", time.monotonic(), edit("a2"))  # a new burst: the gap still holds
    await later
    stamps = [stamp for _, stamp in runs]
    assert all(b - a >= 0.19 for a, b in zip(stamps, stamps[1:])), stamps


async def test_channels_do_not_wait_for_each_other_and_due_times_are_kept():
    pacer = ChannelPacer(gap=5.0)
    runs: list[str] = []

    def edit(label: str):
        async def run() -> None:
            runs.append(label)
        return run

    now = time.monotonic()
    await asyncio.gather(pacer.request(1, "x", now, edit("one")), pacer.request(2, "y", now, edit("two")))
    assert sorted(runs) == ["one", "two"]  # different channels: no 5 s wait between them
    started = time.monotonic()
    await pacer.request(3, "z", started + 0.2, edit("three"))
    assert time.monotonic() - started >= 0.19 and runs[-1] == "three"


async def test_a_forgotten_edit_never_runs():
    pacer = ChannelPacer(gap=0.1)
    runs: list[str] = []

    async def run() -> None:
        runs.append("late")

    done = pacer.request(1, "m", time.monotonic() + 0.3, run)
    pacer.forget(1, "m")
    await asyncio.wait_for(done, 1)
    await asyncio.sleep(0.4)
    assert runs == []
