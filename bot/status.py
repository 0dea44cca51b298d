"""A job's status message: posted at once, then edited at most once per interval (Discord rate limits)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import discord

log = logging.getLogger(__name__)


class StatusMessage:
    """Replies to ``request`` with a status line, then edits it; the latest text always wins.

    Edits closer together than ``interval`` are coalesced into one delayed edit. A status message
    that a moderator deleted, or that can no longer be edited, is not an error for the job.
    """

    def __init__(
        self,
        request: discord.Message | discord.PartialMessage,
        interval: float,
        *,
        existing: discord.PartialMessage | None = None,
        on_created: Callable[[discord.Message], Awaitable[None]] | None = None,
    ):
        self._request = request
        self._interval = interval
        self._on_created = on_created
        self.message: discord.Message | discord.PartialMessage | None = existing  # after a restart
        self._text = ""
        self._shown = ""
        self._last_edit = 0.0
        self._pending: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def show(self, text: str, *, now: bool = False) -> None:
        self._text = text
        if self.message is None or now or time.monotonic() - self._last_edit >= self._interval:
            await self._flush()
        elif self._pending is None:
            self._pending = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(max(0.0, self._last_edit + self._interval - time.monotonic()))
        self._pending = None
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            if self._text == self._shown:
                return
            text = self._text
            try:
                if self.message is None:
                    self.message = await self._request.channel.send(
                        text,
                        reference=self._request.to_reference(fail_if_not_exists=False),
                        mention_author=False,
                    )
                    if self._on_created is not None:
                        await self._on_created(self.message)
                else:
                    await self.message.edit(content=text)
            except discord.HTTPException as error:
                log.warning("status message update failed: %s", error)
                return
            self._shown, self._last_edit = text, time.monotonic()

    async def finish(self, text: str | None = None) -> None:
        """Stop pending edits; show ``text`` now, or delete the message when text is None."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if text is not None:
            await self.show(text, now=True)
        elif self.message is not None:
            try:
                await self.message.delete()
            except discord.HTTPException as error:
                log.warning("status message delete failed: %s", error)
