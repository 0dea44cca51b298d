"""``FakeDiscord``: the object tests use.  See the package docstring for a tour."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from aiohttp import web

from .gateway import Gateway, GatewaySession
from .interactions import InteractionsMixin
from .messaging import MessageRef, MessagingMixin
from .models import FakeAttachment, FakeMessage, SnowflakeGenerator
from .ratelimits import RateLimiter
from .server import RestApi
from .state import FakeState
from .world import WorldMixin, _id

SITE_DIR = Path(__file__).resolve().parent / "site"


class RequestRecord(NamedTuple):
    """One HTTP request served.  ``path`` is relative to ``api_base`` for API
    calls (``/channels/1/messages``) and absolute otherwise (``/attachments/...``)."""

    method: str
    path: str
    status: int


class FakeDiscord(WorldMixin, MessagingMixin, InteractionsMixin):
    """A fake Discord (REST + gateway) on 127.0.0.1 for end-to-end bot tests.

    Build the world with the ``add_*`` methods (before or after clients
    connect: changes made while connected are dispatched as gateway events),
    act as users with ``user_sends``/``user_edits``/``user_deletes``/
    ``user_reacts``, observe the bot with ``bot_messages``/``wait_for_message``/
    ``requests``/``typing``, and check ``unhandled``/``server_errors`` (or call
    ``assert_clean()``) at the end of each test.

    World building lives in :class:`.world.WorldMixin` (``add_bot``, ``add_user``,
    ``add_guild``, ``add_text_channel``, ``add_role``, ``update_role``, ``add_member``,
    ``update_member``, ``set_overwrite``, ``open_dm``); users acting in
    :class:`.messaging.MessagingMixin` (``user_sends``, ``user_edits``,
    ``user_deletes``, ``user_reacts``); interactions in :class:`.interactions.InteractionsMixin`
    (``slash``, ``autocomplete``, ``context_menu``, ``user_menu``, ``press_button``, ``select``,
    ``submit_modal``, ``register_commands``/``register_tree``, ``expire_interaction``, ``visible_to``).
    """

    def __init__(self, *, heartbeat_interval: int = 41250) -> None:
        #: Milliseconds, sent in HELLO.  discord.py heartbeats once right away, then at this interval.
        self.heartbeat_interval = heartbeat_interval
        self.state = FakeState()
        self.ids = SnowflakeGenerator()
        self.gateway = Gateway(self)
        #: Every HTTP request served, in order.
        self.requests: List[RequestRecord] = []
        #: ``(method, path)`` of requests to routes the fake does not implement (answered 404).
        self.unhandled: List[Tuple[str, str]] = []
        #: Tracebacks of exceptions inside the fake (answered 400).  Should stay empty.
        self.server_errors: List[str] = []
        #: ``(channel_id, bot_id, time.monotonic())`` of every typing indicator the bot triggered.
        self.typing: List[Tuple[int, int, float]] = []
        #: Every stored file, by attachment id.
        self.attachments: Dict[int, FakeAttachment] = {}
        self.port: Optional[int] = None
        #: ``(channel_id, message_id, time.monotonic())`` of every message edit, in order.
        self.edit_log: List[Tuple[int, int, float]] = []
        #: Optional per-channel rate limits (see :mod:`.ratelimits`); ``rate_limits.limited`` lists 429s.
        self.rate_limits = RateLimiter()
        self._init_interactions()
        self._nonces: Dict[Tuple[int, int, str], int] = {}
        self._changed = asyncio.Event()
        self._runner: Optional[web.AppRunner] = None
        self._site: Optional[web.TCPSite] = None
        self._stopped = False

    # ================================================================ lifecycle

    async def start(self) -> "FakeDiscord":
        """Listen on 127.0.0.1 on a free port (``self.port``)."""
        if self._runner is not None or self._stopped:
            raise RuntimeError("FakeDiscord can be started only once")
        runner = web.AppRunner(RestApi(self).build_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        self.port = runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Close every websocket (code 1001) and the HTTP server.  Idempotent."""
        self._stopped = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.gateway.closing = True
        await self._site.stop()  # stop listening first, so reconnecting clients cannot sneak in
        await self.gateway.close_all()
        await runner.cleanup()
        self._notify()

    async def __aenter__(self) -> "FakeDiscord":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def _require_started(self) -> None:
        if self.port is None:
            raise RuntimeError("call `await fake.start()` first")

    @property
    def base_url(self) -> str:
        self._require_started()
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/api/v10`` - the value for ``discord.http.Route.BASE``."""
        return self.base_url + "/api/v10"

    @property
    def gateway_url(self) -> str:
        """``ws://127.0.0.1:PORT/gateway`` - also sent as READY's ``resume_gateway_url``."""
        return f"ws://127.0.0.1:{self.port}/gateway" if self.port else ""

    @property
    def cdn_base(self) -> str:
        """Where ``discord.Asset.BASE`` is pointed (serves a placeholder PNG for any path)."""
        return self.base_url + "/cdn"

    # =========================================================== client patching

    @contextlib.contextmanager
    def patch_client(self) -> Iterator["FakeDiscord"]:
        """Point discord.py in THIS process at the fake; restores the old values on exit.

        Sets ``discord.http.Route.BASE``, ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``
        and ``discord.asset.Asset.BASE`` (so avatar downloads never leave the machine).
        """
        self._require_started()
        import yarl
        from discord.asset import Asset
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE)
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        Asset.BASE = self.cdn_base
        try:
            yield self
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, Asset.BASE = saved

    def env(self) -> Dict[str, str]:
        """Environment for a SUBPROCESS bot: merge into ``os.environ`` and start ``python ...``.

        ``FAKE_DISCORD_API``, ``FAKE_DISCORD_GATEWAY`` and ``PYTHONPATH`` with
        ``tests/fake_discord/site`` (holding ``sitecustomize.py``) prepended to
        the current ``PYTHONPATH``.  Does not work with ``python -I``/``-E``/``-S``.
        """
        self._require_started()
        old = os.environ.get("PYTHONPATH")
        return {
            "FAKE_DISCORD_API": self.api_base,
            "FAKE_DISCORD_GATEWAY": self.gateway_url,
            "PYTHONPATH": str(SITE_DIR) + (os.pathsep + old if old else ""),
        }

    # ================================================================= inspection

    def bot_messages(self, channel_id: Optional[Any] = None, *, bot_id: Optional[int] = None) -> List[FakeMessage]:
        """Messages posted by bots (deleted ones included, see ``.deleted``), oldest first."""
        cid = _id(channel_id) if channel_id is not None else None
        return sorted(
            (
                m
                for m in self.state.messages.values()
                if m.author_id in self.state.bots
                and (bot_id is None or m.author_id == bot_id)
                and (cid is None or m.channel_id == cid)
            ),
            key=lambda m: m.id,
        )

    def messages(self, channel_id: Any, *, include_deleted: bool = False) -> List[FakeMessage]:
        """Every message of a channel (users' and bots'), oldest first."""
        return self.state.channel_messages(_id(channel_id), include_deleted)

    def get_message(self, message: MessageRef) -> FakeMessage:
        try:
            return self.state.messages[_id(message)]
        except KeyError:
            raise ValueError(f"unknown message {message}") from None

    def permissions_for(self, channel_id: Any, user_id: Any) -> int:
        """The permission bits Discord would compute for a user in a channel."""
        return self.state.channel_permissions(self._channel(channel_id), _id(user_id))

    @property
    def sessions(self) -> List[GatewaySession]:
        """Live (not invalidated) gateway sessions, connected or waiting for a RESUME."""
        return self.gateway.live_sessions()

    def set_rate_limit(self, kind: str, limit: Optional[int], per: float = 5.0) -> None:
        """Limit ``"send"`` or ``"edit"`` requests per channel to ``limit`` per ``per`` seconds
        (``None`` removes the limit); over it the fake answers 429 like Discord."""
        self.rate_limits.set(kind, limit, per)

    def edits_in(self, channel_id: Any) -> List[float]:
        """``time.monotonic()`` of every edit of a message in the channel, oldest first."""
        cid = _id(channel_id)
        return [t for c, _, t in self.edit_log if c == cid]

    def assert_clean(self) -> None:
        """Fail if the bot called a route the fake does not implement or the fake crashed."""
        assert not self.unhandled, f"unhandled routes called: {self.unhandled}"
        assert not self.server_errors, "fake server errors:\n" + "\n".join(self.server_errors)

    # ==================================================================== waiting

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, *, what: str = "",
                         poll: Optional[float] = None) -> Any:
        """Wait until ``predicate()`` is truthy and return its value.

        The predicate is re-checked whenever the fake's state changes (request
        served, message stored/edited/deleted, reaction, session ready/resumed/
        closed, world changed) - no polling.  For conditions on CLIENT state
        (which the fake cannot observe) use discord.py's ``bot.wait_for(...)``
        or an ``asyncio.Event``, or pass ``poll=`` seconds to also re-check
        periodically.  Raises ``asyncio.TimeoutError`` with a summary of what
        the bots posted.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}; "
                                           + self._debug_summary())
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, poll) if poll else remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_ready(self, timeout: float = 10.0, *, bot_id: Optional[int] = None) -> GatewaySession:
        """Wait until a client has IDENTIFIED and READY + its GUILD_CREATEs were written.

        Server-side only: discord.py fires ``on_ready`` ``guild_ready_timeout``
        (default 2 s) after the last GUILD_CREATE; use ``bot.wait_until_ready()``
        for that.  Returns the (first) ready, connected session.
        """
        def ready() -> Optional[GatewaySession]:
            for s in self.gateway.live_sessions():
                if s.ready and s.connected and (bot_id is None or s.bot.id == bot_id):
                    return s
            return None

        return await self.wait_until(ready, timeout, what="a READY gateway session")

    async def wait_for_message(
        self,
        predicate: Optional[Callable[[FakeMessage], Any]] = None,
        *,
        channel_id: Optional[Any] = None,
        after: Optional[MessageRef] = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """Wait until a message sent or edited by a bot satisfies ``predicate``; return it.

        Messages already present count too (the predicate sees each message's
        current version, deleted ones included - check ``m.deleted`` if needed);
        the oldest match wins.  ``after`` restricts to messages newer than the
        given message/id.
        """
        after_id = _id(after) if after is not None else 0

        def find() -> Optional[FakeMessage]:
            for m in self.bot_messages(channel_id):
                if m.id > after_id and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.wait_until(find, timeout, what="a bot message matching the predicate")

    def _debug_summary(self) -> str:
        posted = [(m.channel_id, m.content[:80], m.attachment_names, "deleted" if m.deleted else "")
                  for m in self.bot_messages()]
        return (f"bot messages so far: {posted}; sessions: "
                f"{[(s.bot.name, s.ready, s.connected) for s in self.sessions]}; "
                f"unhandled: {self.unhandled}; server errors: {len(self.server_errors)}")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ============================================================ gateway control

    async def disconnect_gateway(self, close_code: int = 4000, *, bot_id: Optional[int] = None,
                                 invalidate: bool = False) -> int:
        """Close gateway websockets with ``close_code``; returns how many.

        Sessions stay resumable unless ``invalidate`` (then the client's RESUME
        gets INVALID_SESSION and discord.py re-IDENTIFIES - after a 5 s sleep of
        its own).  discord.py resumes on 4000; 4004/4010-4014 are fatal for it.
        """
        return await self.gateway.disconnect(close_code, bot_id=bot_id, invalidate=invalidate)

    def request_reconnect(self, *, bot_id: Optional[int] = None) -> int:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        return self.gateway.send_op(7, None, bot_id=bot_id)

    def invalidate_sessions(self, *, resumable: bool = False, bot_id: Optional[int] = None) -> int:
        """Send op 9 INVALID_SESSION (``d`` = ``resumable``)."""
        return self.gateway.send_op(9, resumable, bot_id=bot_id)

    # ======================================================= internals (used by REST)

    def _record_request(self, method: str, path: str, status: int) -> None:
        self.requests.append(RequestRecord(method, path, status))
        self._notify()

    def _record_error(self, text: str) -> None:
        self.server_errors.append(text)
        self._notify()
