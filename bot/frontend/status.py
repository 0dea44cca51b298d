"""A job's messages in its channel: the status message (text, live preview, Cancel button), edited
within Discord's rate limits, and the result with its buttons.

Discord limits message edits per channel (about five per five seconds), and several jobs may share a
channel, so every edit goes through one ``ChannelPacer`` per channel: edits of one message are at
least ``interval`` apart, edits in one channel at least ``channel_gap`` apart, and an edit waiting
for its turn is replaced by a newer one (the latest text always wins, nothing queues up). A status
message that a moderator deleted, or that can no longer be edited, is not an error for the job.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import discord

from bot.frontend.replies import fit

log = logging.getLogger(__name__)

CHANNEL_EDIT_GAP = 1.0  # seconds between two edits in one channel: five per five seconds at most
PREVIEW_NAME = "preview.jpg"


class ChannelPacer:
    """One queue of pending edits per channel, run one at a time with a gap between them.

    ``request(key, due, run)`` asks for ``run()`` no earlier than ``due`` (monotonic time); a second
    request for the same key before the first ran replaces it. ``run`` reads the current state when it
    is finally called, so a coalesced edit shows the newest text.
    """

    def __init__(self, gap: float):
        self.gap = gap
        self._channels: dict[int, _Channel] = {}

    def request(self, channel_id: int, key: object, due: float, run: Callable[[], Awaitable[None]]) -> asyncio.Future:
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = _Channel()
        pending = channel.pending.get(key)
        if pending is not None:
            pending.due = min(pending.due, due)
            pending.run = run
            future = pending.done
        else:
            future = asyncio.get_running_loop().create_future()
            channel.pending[key] = _Pending(due, run, future)
        channel.wake.set()
        if channel.task is None or channel.task.done():
            channel.task = asyncio.create_task(self._drive(channel_id, channel))
        return future

    def forget(self, channel_id: int, key: object) -> None:
        """Drop a pending edit (its message is finished or gone)."""
        channel = self._channels.get(channel_id)
        if channel is not None:
            pending = channel.pending.pop(key, None)
            if pending is not None and not pending.done.done():
                pending.done.set_result(None)

    async def _drive(self, channel_id: int, channel: "_Channel") -> None:
        while channel.pending:
            now = time.monotonic()
            key, pending = min(channel.pending.items(), key=lambda item: item[1].due)
            start = max(pending.due, channel.last + self.gap)
            if start > now:
                channel.wake.clear()
                try:  # a new, earlier request may arrive meanwhile
                    await asyncio.wait_for(channel.wake.wait(), start - now)
                except asyncio.TimeoutError:
                    pass
                continue
            del channel.pending[key]
            try:
                await pending.run()
            except Exception:  # noqa: BLE001 - one message's failure must not stop the channel
                log.exception("status edit failed")
            finally:
                channel.last = time.monotonic()
                if not pending.done.done():
                    pending.done.set_result(None)
        # The channel's state (when it was last edited) stays: the next edit must still keep the gap.
        if len(self._channels) > 1000:  # forget channels idle for longer than the gap
            now = time.monotonic()
            for key in [k for k, c in self._channels.items() if not c.pending and now - c.last > self.gap]:
                del self._channels[key]


@dataclass
class _Pending:
    due: float
    run: Callable[[], Awaitable[None]]
    done: asyncio.Future


@dataclass
class _Channel:
    pending: dict = field(default_factory=dict)
    last: float = -1e9
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class StatusMessage:
    """Posts a status line (as a reply to ``reply_to`` when given), then edits it through the pacer.

    ``preview`` (image bytes) is attached to the message, replaced at most every ``preview_interval``.
    ``view`` is the row of buttons (Cancel) shown while the job is unfinished.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        pacer: ChannelPacer,
        interval: float,
        *,
        reply_to: discord.Message | discord.PartialMessage | None = None,
        existing: discord.Message | discord.PartialMessage | None = None,
        on_created: Callable[[discord.Message], Awaitable[None]] | None = None,
        view: discord.ui.View | None = None,
        preview_interval: float = 0.0,
    ):
        self._channel = channel
        self._pacer = pacer
        self._interval = interval
        self._reply_to = reply_to
        self._on_created = on_created
        self._view = view
        self._preview_interval = preview_interval
        self.message: discord.Message | discord.PartialMessage | None = existing  # after a restart
        self._text = ""
        self._shown = ""
        self._preview: bytes | None = None
        self._preview_name = PREVIEW_NAME
        self._preview_shown: bytes | None = None
        self._preview_at = -1e9
        self._last_edit = -1e9
        self._finished = False
        self._creating = False
        self._final_view: discord.ui.View | None = None
        self._lock = asyncio.Lock()

    async def show(self, text: str, *, now: bool = False) -> None:
        """Change the text; posted at once the first time, otherwise edited when the pacer allows."""
        if self._finished:
            return
        self._text = fit(text)
        if self.message is None:
            if not self._creating:  # while the first post is on its way, the newest text waits for it
                await self._create()
            return
        self._request(now=now)

    def preview(self, image: bytes, filename: str = PREVIEW_NAME) -> None:
        """Offer a new preview; it goes out with the next edit that is due for a preview."""
        if self._finished or self._preview_interval <= 0:
            return
        self._preview, self._preview_name = image, filename
        if self.message is not None:
            self._request(preview=True)

    def _request(self, *, now: bool = False, preview: bool = False) -> None:
        due = time.monotonic() if now else self._last_edit + self._interval
        if preview:
            due = max(due, self._preview_at + self._preview_interval)
        self._pacer.request(self._channel.id, self, due, self._flush)

    async def _create(self) -> None:
        self._creating = True
        try:
            async with self._lock:
                text = self._text
                try:
                    self.message = await self._channel.send(
                        text,
                        reference=self._reply_to.to_reference(fail_if_not_exists=False) if self._reply_to else None,
                        mention_author=False,
                        allowed_mentions=discord.AllowedMentions.none(),
                        view=self._final_view if self._finished else self._view,
                    )
                except discord.HTTPException as error:
                    log.warning("status message post failed: %s", error)
                    return
                finally:
                    self._last_edit = time.monotonic()
                self._shown = text
            if self._on_created is not None:
                await self._on_created(self.message)
        finally:
            self._creating = False
        if not self._finished and (self._text != self._shown or self._preview is not None):
            self._request(preview=self._preview is not None)

    async def _flush(self) -> None:
        """One edit: the newest text, with the newest preview if one is due. Run by the pacer only."""
        async with self._lock:
            if self._finished or self.message is None:
                return
            preview = self._preview if time.monotonic() - self._preview_at >= self._preview_interval else None
            new_preview = preview is not None and preview is not self._preview_shown
            if self._text == self._shown and not new_preview:
                return
            text = self._text
            try:
                if new_preview:
                    file = discord.File(io.BytesIO(preview), filename=self._preview_name)
                    await self.message.edit(content=text, attachments=[file])
                    self._preview_shown, self._preview_at = preview, time.monotonic()
                else:
                    await self.message.edit(content=text)
            except discord.HTTPException as error:
                log.warning("status message update failed: %s", error)
                return
            finally:
                self._last_edit = time.monotonic()
            self._shown = text
        if self._preview is not self._preview_shown and not self._finished:
            self._request(preview=True)  # a preview came while this edit could not carry it yet

    async def finish(self, text: str | None = None, *, view: discord.ui.View | None = None) -> None:
        """The job ended: show ``text`` without preview, with ``view``'s buttons only, or delete the
        message when text is None. The final edit waits for its turn in the channel like any other,
        ahead of the routine ones."""
        self._finished = True
        text = fit(text) if text is not None else None
        self._pacer.forget(self._channel.id, self)
        async with self._lock:  # a first post still on its way lands first
            pass
        if self.message is None:
            if text is not None:
                self._text, self._final_view = text, view
                await self._create()
            return

        async def final() -> None:
            async with self._lock:
                try:
                    if text is None:
                        await self.message.delete()
                    else:
                        await self.message.edit(content=text, attachments=[], view=view)
                except discord.HTTPException as error:
                    log.warning("status message %s failed: %s", "delete" if text is None else "edit", error)

        await self._pacer.request(self._channel.id, self, time.monotonic() - 1e6, final)
