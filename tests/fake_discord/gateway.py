"""The gateway websocket (``/gateway``) of the fake Discord server.

Protocol, as implemented by Discord and consumed by ``discord.gateway``:

* on connect: HELLO (op 10, ``heartbeat_interval``);
* HEARTBEAT (op 1) -> HEARTBEAT_ACK (op 11);
* IDENTIFY (op 2) -> READY (guilds as unavailable stubs, ``session_id``,
  ``resume_gateway_url``, ``application``, and ``shard`` when one was sent)
  then one GUILD_CREATE per guild the session handles; unknown token -> close
  4004, bad/disallowed intents -> 4013/4014, a bad ``shard`` -> 4010, a session
  that would handle over 2,500 guilds -> 4011;
* sharding (``shard: [shard_id, num_shards]`` in IDENTIFY): a session gets the
  events of the guilds with ``(guild_id >> 22) % num_shards == shard_id``, and
  events without a guild (DMs) only on shard 0 (GatewaySession.routes);
* RESUME (op 6) -> replay of the dispatches the client missed, then RESUMED;
  unknown/invalidated session -> INVALID_SESSION (op 9, ``d: false``);
* REQUEST_GUILD_MEMBERS (op 8) -> GUILD_MEMBERS_CHUNK;
* PRESENCE_UPDATE (op 3) is stored on the session.

``?compress=zlib-stream`` (what discord.py asks for) is honoured with one
zlib compressor per connection, every payload flushed with Z_SYNC_FLUSH;
without it, payloads go out as text frames.  Each session numbers its
dispatches (``s``) and keeps them in a buffer so a RESUME can replay them;
events dispatched while a session is disconnected are buffered too.  A
client closing with 1000/1001 ends its session (as on Discord); other closes
leave it resumable.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Set

from aiohttp import WSMsgType, web

from .models import FakeBot, Intent

if TYPE_CHECKING:  # pragma: no cover
    from .fake import FakeDiscord

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION = 6, 7, 8, 9
OP_HELLO, OP_HEARTBEAT_ACK = 10, 11

REPLAY_BUFFER = 5000

# "Each shard can only support a maximum of 2500 guilds, and apps that are in 2500+ guilds *must*
# enable sharding" (docs: Gateway → Sharding); over it IDENTIFY is closed with 4011 "Sharding
# required" (docs: Opcodes and Status Codes → Gateway Close Event Codes).
MAX_GUILDS_PER_SHARD = 2500
# GET /gateway/bot's recommended ``shards``: Discord does not document its rule; the fake asks for
# one shard per GUILDS_PER_RECOMMENDED_SHARD guilds (Gateway.recommended_shards overrides it).
GUILDS_PER_RECOMMENDED_SHARD = 1000
# "Clients are limited to 1000 IDENTIFY calls to the websocket in a 24-hour period" (docs: Gateway →
# Identifying); GET /gateway/bot reports what is left as ``session_start_limit``.
SESSION_STARTS_PER_DAY = 1000
SESSION_START_WINDOW = 24 * 3600.0
# Events that belong to the session itself (its handshake), not routed by guild.
SESSION_EVENTS = frozenset({"READY", "RESUMED"})
# Events whose object is the guild itself: its ``id`` is their guild.
GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


class _Callback:
    """A queue item run by the writer once everything queued before it is sent."""

    def __init__(self, fn: Callable[[], None], on_drop: Optional[Callable[[], None]] = None) -> None:
        self.fn = fn
        self.on_drop = on_drop


class GatewaySession:
    """An identified session: survives disconnects until invalidated."""

    def __init__(self, session_id: str, bot: FakeBot, intents: int, shard: Optional[List[int]], identify: dict):
        self.session_id = session_id
        self.bot = bot
        self.intents = intents
        self.shard = shard
        self.identify = identify  #: the IDENTIFY ``d`` payload as received
        self.seq = 0
        self.buffer: Deque[Dict[str, Any]] = deque(maxlen=REPLAY_BUFFER)
        self.connection: Optional[GatewayConnection] = None
        self.ready = False  #: READY + GUILD_CREATEs have been written to the socket
        self.resumes = 0  #: successful RESUMEs
        self.invalidated = False
        self.presence: Optional[Dict[str, Any]] = None  #: last PRESENCE_UPDATE ``d``

    @property
    def connected(self) -> bool:
        return self.connection is not None

    def has_intent(self, bits: int) -> bool:
        return bool(self.intents & bits)

    def handles_guild(self, guild_id: Optional[int]) -> bool:
        """Whether this session's shard gets the guild's events (docs: Gateway → Sharding, "Sharding
        Formula"). No guild (None or 0: a DM) goes to shard 0 only: "Gateway events that do not
        contain a guild_id will only be sent to the first shard (shard_id: 0)"."""
        if not self.shard:
            return True
        shard_id, count = self.shard
        return ((guild_id or 0) >> 22) % count == shard_id

    def routes(self, event: str, data: Dict[str, Any]) -> bool:
        """Whether Discord would send this dispatch on this session's shard: by its guild (the
        ``guild_id`` field, or ``id`` for the GUILD_* events whose object is the guild)."""
        if event in SESSION_EVENTS or not self.shard:
            return True
        guild_id = data.get("id") if event in GUILD_OBJECT_EVENTS else data.get("guild_id")
        return self.handles_guild(int(guild_id) if guild_id else None)

    def dispatch(self, event: str, data: Dict[str, Any]) -> None:
        """Number the event, remember it for RESUME, and send it if connected; an event of another
        shard is not this session's (every caller goes through here: the routing rule is in one place)."""
        if not self.routes(event, data):
            return
        self.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
        self.buffer.append(payload)
        if self.connection is not None:
            self.connection.send(payload)


class GatewayConnection:
    """One websocket.  Everything it sends goes through one ordered queue."""

    def __init__(self, ws: web.WebSocketResponse, query: Dict[str, str], log: list) -> None:
        self.ws = ws
        self.query = dict(query)
        self.compress = query.get("compress")
        self._zlib = zlib.compressobj() if self.compress == "zlib-stream" else None
        self.queue: asyncio.Queue = asyncio.Queue()
        self.session: Optional[GatewaySession] = None
        self.server_close_code: Optional[int] = None
        self.heartbeats = 0
        self.writer_done = False
        self._log = log

    def send(self, payload: Dict[str, Any]) -> None:
        self.queue.put_nowait(payload)

    def after_sent(self, fn: Callable[[], None], on_drop: Optional[Callable[[], None]] = None) -> None:
        self.queue.put_nowait(_Callback(fn, on_drop))

    def flushed(self) -> "asyncio.Future[bool]":
        """A future resolved (True) once everything queued so far is written, False if the socket dies."""
        fut = asyncio.get_running_loop().create_future()
        if self.writer_done:
            fut.set_result(False)
            return fut

        def done(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        self.after_sent(lambda: done(True), lambda: done(False))
        return fut

    async def run_writer(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, _Callback):
                    item.fn()
                    continue
                self._log.append(("send", item.get("op"), item.get("t"), item.get("s")))
                raw = json.dumps(item, separators=(",", ":"))
                if self._zlib is not None:
                    data = self._zlib.compress(raw.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(raw)
        except (ConnectionError, RuntimeError):
            pass  # socket went away; the reader side cleans up
        finally:
            self.writer_done = True
            while not self.queue.empty():
                item = self.queue.get_nowait()
                if isinstance(item, _Callback) and item.on_drop is not None:
                    item.on_drop()

    async def close(self, code: int, message: str = "") -> None:
        if self.server_close_code is None:
            self.server_close_code = code
        if not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), 5)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass


class Gateway:
    """Owns the sessions and connections; ``handle`` is the aiohttp websocket handler."""

    def __init__(self, fake: "FakeDiscord") -> None:
        self.fake = fake
        self.sessions: Dict[str, GatewaySession] = {}
        self.connections: Set[GatewayConnection] = set()
        self.log: List[tuple] = []  #: ("recv", op, t, None) / ("send", op, t, s) in order
        self.connects: List[Dict[str, str]] = []  #: query string of every websocket connect
        self.closing = False  #: set by FakeDiscord.stop(): new websockets are closed at once
        self.recommended_shards: Optional[int] = None  #: GET /gateway/bot's ``shards``; None: from the guild count
        self.identifies: Dict[int, List[float]] = {}  #: bot id -> time.monotonic() of each accepted IDENTIFY

    # ------------------------------------------------------ GET /gateway/bot

    def shard_count_for(self, bot: FakeBot) -> int:
        """The ``shards`` GET /gateway/bot recommends to ``bot``."""
        if self.recommended_shards is not None:
            return self.recommended_shards
        guilds = len(self.fake.state.guilds_of(bot.id))
        return max(1, -(-guilds // GUILDS_PER_RECOMMENDED_SHARD))

    def session_start_limit(self, bot: FakeBot) -> Dict[str, int]:
        """The session start limit object (docs: Gateway → Session Start Limit Object): every field an
        integer; ``reset_after`` in milliseconds; ``max_concurrency`` IDENTIFYs per 5 seconds."""
        now = time.monotonic()
        recent = [t for t in self.identifies.get(bot.id, []) if now - t < SESSION_START_WINDOW]
        reset_after = int((recent[0] + SESSION_START_WINDOW - now) * 1000) if recent else 0
        return {"total": SESSION_STARTS_PER_DAY, "remaining": max(0, SESSION_STARTS_PER_DAY - len(recent)),
                "reset_after": reset_after, "max_concurrency": 1}

    # ----------------------------------------------------------- sessions

    def live_sessions(self) -> List[GatewaySession]:
        return [s for s in self.sessions.values() if not s.invalidated]

    def _invalidate(self, session: GatewaySession) -> None:
        session.invalidated = True
        self.sessions.pop(session.session_id, None)

    async def disconnect(self, close_code: int, *, bot_id: Optional[int] = None, invalidate: bool = False,
                         shard_id: Optional[int] = None) -> int:
        """Close the websockets (of one bot, of one shard: ``shard_id``) with ``close_code``; how many."""
        conns = [c for c in self.connections if bot_id is None or (c.session and c.session.bot.id == bot_id)]
        if shard_id is not None:
            conns = [c for c in conns if c.session and (c.session.shard or [0, 1])[0] == shard_id]
        for conn in conns:
            if invalidate and conn.session is not None:
                self._invalidate(conn.session)
        await asyncio.gather(*(c.close(close_code) for c in conns))
        return len(conns)

    def send_op(self, op: int, data: Any, *, bot_id: Optional[int] = None) -> int:
        """Send a non-dispatch op (e.g. 7 RECONNECT, 9 INVALID_SESSION) to identified connections."""
        n = 0
        for conn in list(self.connections):
            if conn.session is not None and (bot_id is None or conn.session.bot.id == bot_id):
                if op == OP_INVALID_SESSION and not data:
                    self._invalidate(conn.session)
                conn.send({"op": op, "d": data, "s": None, "t": None})
                n += 1
        return n

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close(1001, "fake server stopping") for c in list(self.connections)))
        self.sessions.clear()

    # ---------------------------------------------------------- websocket

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = GatewayConnection(ws, request.query, self.log)
        self.connections.add(conn)
        self.connects.append(dict(request.query))
        writer = asyncio.create_task(conn.run_writer())
        try:
            if self.closing:
                await conn.close(1001, "fake server stopping")
                return ws
            if request.query.get("encoding", "json") != "json":
                await conn.close(4002, "Only encoding=json is supported by the fake.")
                return ws
            conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.fake.heartbeat_interval}, "s": None, "t": None})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    text = msg.data
                elif msg.type == WSMsgType.BINARY:
                    text = msg.data.decode("utf-8", "replace")
                else:
                    break
                await self._on_payload(conn, text)
                if conn.server_close_code is not None:
                    break
        except Exception as exc:  # pragma: no cover - surfaced through fake.server_errors
            self.fake._record_error(f"gateway: {exc!r}")
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self.connections.discard(conn)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
                if conn.server_close_code is None and ws.close_code in (1000, 1001):
                    self._invalidate(session)  # a clean client close ends the session
            self.fake._notify()
        return ws

    async def _on_payload(self, conn: GatewayConnection, text: str) -> None:
        try:
            payload = json.loads(text)
            op, data = payload["op"], payload.get("d")
        except (ValueError, KeyError, TypeError):
            await conn.close(4002, "Error while decoding payload.")
            return
        self.log.append(("recv", op, None, None))
        if op == OP_HEARTBEAT:
            conn.heartbeats += 1
            conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._identify(conn, data or {})
        elif op == OP_RESUME:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == OP_PRESENCE:
            conn.session.presence = data
        elif op == OP_VOICE_STATE:
            pass
        elif op == OP_REQUEST_MEMBERS:
            self._request_members(conn.session, data or {})
        else:
            await conn.close(4001, "Unknown opcode.")

    async def _identify(self, conn: GatewayConnection, data: Dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        bot = self.fake.state.bot_by_token(data.get("token"))
        if bot is None:
            await conn.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0:
            await conn.close(4013, "Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~bot.privileged_intents:
            await conn.close(4014, "Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            await conn.close(4010, "Invalid shard.")  # docs: Gateway Close Event Codes, 4010
            return
        session = GatewaySession(secrets.token_hex(16), bot, intents, shard, data)
        state = self.fake.state
        guilds = [g for g in state.guilds_of(bot.id) if session.handles_guild(g.id)]
        if len(guilds) > MAX_GUILDS_PER_SHARD:
            await conn.close(4011, "Sharding required.")
            return
        self.identifies.setdefault(bot.id, []).append(time.monotonic())
        self.sessions[session.session_id] = session
        session.connection, conn.session = conn, session
        ready = {
            "v": 10,
            "user": state.me_payload(bot),
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.fake.gateway_url,
            "application": {"id": str(bot.application_id), "flags": state.application_flags(bot)},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }
        if shard is not None:
            ready["shard"] = shard
        session.dispatch("READY", ready)
        for guild in guilds:
            session.dispatch("GUILD_CREATE", state.guild_create_payload(guild, bot.id, intents))

        def mark_ready() -> None:
            session.ready = True
            self.fake._notify()

        conn.after_sent(mark_ready)

    async def _resume(self, conn: GatewayConnection, data: Dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalidated or session.bot.token != data.get("token"):
            conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        seq = data.get("seq") or 0
        if not isinstance(seq, int) or seq > session.seq:
            await conn.close(4007, "Invalid seq.")
            return
        missed = [p for p in session.buffer if p["s"] > seq]
        if missed and missed[0]["s"] != seq + 1:  # the replay buffer no longer reaches back that far
            self._invalidate(session)
            conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.connection
        session.connection, conn.session = conn, session
        if old is not None and old is not conn:
            old.session = None
            asyncio.ensure_future(old.close(4000, "Session resumed elsewhere."))
        for payload in missed:
            conn.send(payload)
        session.resumes += 1
        session.dispatch("RESUMED", {"_trace": ['["fake-discord-gateway",{"micros":0}]']})
        conn.after_sent(self.fake._notify)

    def _request_members(self, session: GatewaySession, data: Dict[str, Any]) -> None:
        ids = data.get("guild_id")
        for gid in ids if isinstance(ids, list) else [ids]:
            guild = self.fake.state.guilds.get(int(gid)) if gid is not None else None
            if guild is None or session.bot.id not in guild.members:
                continue
            members = self.fake.state.members_chunk(
                guild, data.get("user_ids"), data.get("query") or "", int(data.get("limit") or 0)
            )
            chunk: Dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("presences"):
                chunk["presences"] = []
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            session.dispatch("GUILD_MEMBERS_CHUNK", chunk)


def _valid_shard(shard: Any) -> bool:
    """``[shard_id, num_shards]``: two integers, 0 <= shard_id < num_shards (docs: Gateway Events →
    Identify, ``shard``; Gateway → Sharding)."""
    return (isinstance(shard, list) and len(shard) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
            and 0 <= shard[0] < shard[1])
