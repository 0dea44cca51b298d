"""Housekeeping through the real bot: old job records are pruned on a schedule (issue 11, simplifications)."""

from __future__ import annotations

import asyncio
import time

from bot.core.store import JobRecord, Store
from bot_harness import make_config, running_bot

DAY = 86400.0


def record(job_id: str, finished_days_ago: float | None, state: str = "done") -> JobRecord:
    now = time.time()
    finished = None if finished_days_ago is None else now - finished_days_ago * DAY
    return JobRecord(job_id=job_id, user_id=1, guild_id=None, channel_id=2, message_id=3, status_message_id=None,
                     params={}, state=state, outcome="ok", attempts=1, created_at=(finished or now) - 60,
                     updated_at=finished or now, finished_at=finished)


async def test_finished_job_records_older_than_the_history_are_pruned_at_start(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, bot={"job_history_days": 30})
    store = await Store.open(config.database_path)
    for job in (record("ancient", 45), record("recent", 3), record("old-but-failed", 31, "failed")):
        await store.add_job(job)
    await store.close()
    async with running_bot(fake, config) as bot:
        deadline = time.monotonic() + 10
        while await bot.store.get_job("ancient") is not None:
            assert time.monotonic() < deadline, "the old record was never pruned"
            await asyncio.sleep(0.05)
        assert await bot.store.get_job("old-but-failed") is None
        assert await bot.store.get_job("recent") is not None
