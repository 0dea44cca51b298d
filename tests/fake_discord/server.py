"""The aiohttp application: REST API under ``/api/v10``, the gateway websocket
at ``/gateway``, attachment hosting at ``/attachments/...`` and a placeholder
CDN at ``/cdn/...``.

Every JSON response carries ``Content-Type: application/json`` exactly
(discord.py's ``json_or_text`` only parses that exact string; aiohttp's
``json_response`` and ``Response(text=...)`` add ``; charset=utf-8``, so we
send ``body=bytes``).  Errors use Discord's ``{"code", "message"[, "errors"]}``
shape.  The server never answers 5xx on purpose: discord.py retries those with
sleeps of 1-9 s; an exception inside a handler becomes a 400 and is recorded
in ``fake.server_errors``.  Any route not implemented answers 404
``{"message": "Unknown route (fake)", "code": 0}`` and is recorded in
``fake.unhandled``.

Interaction routes (``/interactions/{id}/{token}/callback`` and ``/webhooks/{app}/{token}...``)
live in :mod:`.interaction_routes` and authenticate by the token in the path, not a bot token.
"""

from __future__ import annotations

import copy
import io
import json
import re
import time
import traceback
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

from aiohttp import web

from . import components as C
from .interaction_routes import InteractionRoutes
from .models import CHANNEL_DM, FakeBot, FakeChannel, FakeMessage, Intent, P
from .payloads import MAX_CONTENT, check_message_body  # noqa: F401  (MAX_CONTENT: re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from .fake import FakeDiscord

API = "/api/v10"
#: Where the middleware stores the authenticated FakeBot on the request.
BOT = web.RequestKey("bot", FakeBot) if hasattr(web, "RequestKey") else "bot"
#: Where ``_rate_limit`` leaves the X-RateLimit headers for the middleware.
RATE_HEADERS = web.RequestKey("rate_headers", dict) if hasattr(web, "RequestKey") else "rate_headers"


from .errors import (  # noqa: E402  (re-exported: handlers and tests use them from here)
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    ApiError,
    FormErrors,
    _form_error,
    json_response,
    no_content,
    unknown,
)


def _snowflake(value: str, what: str, code: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise unknown(what, code) from None


class RestApi:
    """Route handlers.  ``request[BOT]`` is the authenticated :class:`FakeBot`."""

    def __init__(self, fake: "FakeDiscord") -> None:
        self.fake = fake
        self.state = fake.state
        self.interaction_routes = InteractionRoutes(self)
        self._public: set = set()

    # ------------------------------------------------------------ app setup

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[self._middleware])
        r = app.router
        add = lambda method, path, handler: r.add_route(method, API + path, handler)  # noqa: E731
        add("GET", "/gateway", self.get_gateway)
        add("GET", "/gateway/bot", self.get_gateway_bot)
        add("GET", "/users/@me", self.get_me)
        add("POST", "/users/@me/channels", self.create_dm)
        add("GET", r"/users/{user_id:\d+}", self.get_user)
        add("GET", "/oauth2/applications/@me", self.get_application)
        add("GET", "/applications/@me", self.get_application)
        add("GET", r"/channels/{channel_id:\d+}", self.get_channel)
        add("GET", r"/channels/{channel_id:\d+}/messages", self.list_messages)
        add("POST", r"/channels/{channel_id:\d+}/messages", self.create_message)
        add("GET", r"/channels/{channel_id:\d+}/messages/{message_id:\d+}", self.get_message)
        add("PATCH", r"/channels/{channel_id:\d+}/messages/{message_id:\d+}", self.edit_message)
        add("DELETE", r"/channels/{channel_id:\d+}/messages/{message_id:\d+}", self.delete_message)
        add("POST", r"/channels/{channel_id:\d+}/typing", self.typing)
        reactions = r"/channels/{channel_id:\d+}/messages/{message_id:\d+}/reactions/{emoji}"
        add("PUT", reactions + "/@me", self.add_reaction)
        add("DELETE", reactions + "/@me", self.remove_own_reaction)
        add("DELETE", reactions + r"/{user_id:\d+}", self.remove_user_reaction)
        add("GET", reactions, self.get_reactions)
        add("GET", r"/guilds/{guild_id:\d+}", self.get_guild)
        add("GET", r"/guilds/{guild_id:\d+}/channels", self.get_guild_channels)
        add("GET", r"/guilds/{guild_id:\d+}/roles", self.get_guild_roles)
        add("GET", r"/guilds/{guild_id:\d+}/members", self.list_members)
        add("GET", r"/guilds/{guild_id:\d+}/members/{user_id:\d+}", self.get_member)
        for prefix in (r"/applications/{app_id:\d+}", r"/applications/{app_id:\d+}/guilds/{guild_id:\d+}"):
            add("GET", prefix + "/commands", self.list_commands)
            add("PUT", prefix + "/commands", self.put_commands)
            add("POST", prefix + "/commands", self.upsert_command)
            add("GET", prefix + r"/commands/{command_id:\d+}", self.get_command)
            add("PATCH", prefix + r"/commands/{command_id:\d+}", self.edit_command)
            add("DELETE", prefix + r"/commands/{command_id:\d+}", self.delete_command)
        self._public = set(self.interaction_routes.add_routes(add))
        r.add_route("GET", "/gateway", self.fake.gateway.handle)
        r.add_route("GET", r"/attachments/{channel_id:\d+}/{attachment_id:\d+}/{filename}", self.get_attachment)
        r.add_route("GET", "/cdn/{tail:.*}", self.get_cdn)
        r.add_route("*", "/{tail:.*}", self.unknown_route)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        path = request.path
        rel = path[len(API):] if path.startswith(API + "/") else path
        needs_auth = path.startswith(API + "/") and handler not in (
            self.get_gateway, self.unknown_route
        ) and handler not in self._public  # interaction routes: the token in the path authenticates
        try:
            if needs_auth:
                bot = self._authenticate(request)
                if bot is None:
                    raise ApiError(401, 0, "401: Unauthorized")
                request[BOT] = bot
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:
            self.fake._record_request(request.method, rel, exc.status)
            raise
        except Exception as exc:
            self.fake._record_error(f"{request.method} {path}: {traceback.format_exc()}")
            response = json_response({"message": f"fake server error: {exc!r}", "code": 0}, 400)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(request.get(RATE_HEADERS, {}))
            self.fake._record_request(request.method, rel, response.status)
        return response

    def _authenticate(self, request: web.Request) -> Optional[FakeBot]:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bot "):
            return None
        return self.state.bot_by_token(auth[4:])

    async def unknown_route(self, request: web.Request) -> web.Response:
        path = request.path
        self.fake.unhandled.append((request.method, path[len(API):] if path.startswith(API + "/") else path))
        return json_response({"message": "Unknown route (fake)", "code": 0}, 404)

    # ---------------------------------------------------------- lookups

    def _channel(self, request: web.Request, bot: FakeBot, *, need: int = P.VIEW_CHANNEL) -> FakeChannel:
        """The channel in the URL, checked for existence and the bot's permissions."""
        channel_id = _snowflake(request.match_info["channel_id"], "Channel", 10003)
        channel = self.state.channels.get(channel_id)
        if channel is None:
            raise unknown("Channel", 10003)
        perms = self.state.channel_permissions(channel, bot.id)
        if not perms & P.VIEW_CHANNEL:
            raise ApiError(*MISSING_ACCESS)
        if perms & need != need:
            raise ApiError(*MISSING_PERMISSIONS)
        return channel

    def _message(self, request: web.Request, channel: FakeChannel) -> FakeMessage:
        message_id = _snowflake(request.match_info["message_id"], "Message", 10008)
        msg = self.state.messages.get(message_id)
        if msg is None or msg.deleted or msg.channel_id != channel.id or msg.ephemeral:
            raise unknown("Message", 10008)  # ephemeral messages exist only behind their interaction token
        return msg

    def _guild(self, request: web.Request, bot: FakeBot):
        guild_id = _snowflake(request.match_info["guild_id"], "Guild", 10004)
        guild = self.state.guilds.get(guild_id)
        if guild is None:
            raise unknown("Guild", 10004)
        if bot.id not in guild.members:
            raise ApiError(*MISSING_ACCESS)
        return guild

    def _msg_json(self, msg: FakeMessage, bot: FakeBot) -> Dict[str, Any]:
        return self.state.message_payload(msg, viewer_id=bot.id)

    # ------------------------------------------------------ users / login

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """Docs: Gateway → Get Gateway Bot (``url``, the recommended ``shards``, ``session_start_limit``)."""
        bot = request[BOT]
        gateway = self.fake.gateway
        return json_response(
            {"url": self.fake.gateway_url, "shards": gateway.shard_count_for(bot),
             "session_start_limit": gateway.session_start_limit(bot)}
        )

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response(self.state.me_payload(request[BOT]))

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.state.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise unknown("User", 10013)
        return json_response(self.state.user_payload(user))

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(self.state.application_payload(request[BOT]))

    async def create_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        user_id = _snowflake(body.get("recipient_id"), "User", 10013)
        if user_id not in self.state.users:
            raise unknown("User", 10013)
        channel = self.fake.open_dm(user_id, bot_id=request[BOT].id)
        return json_response(self.state.channel_payload(channel))

    # ----------------------------------------------------------- channels

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = self._channel(request, request[BOT])
        return json_response(self.state.channel_payload(channel))

    async def typing(self, request: web.Request) -> web.Response:
        bot = request[BOT]
        channel = self._channel(request, bot, need=P.SEND_MESSAGES)
        self.fake.typing.append((channel.id, bot.id, time.monotonic()))
        return no_content()

    async def list_messages(self, request: web.Request) -> web.Response:
        bot = request[BOT]
        channel = self._channel(request, bot, need=P.READ_MESSAGE_HISTORY)
        q = request.query
        try:
            limit = max(1, min(100, int(q.get("limit", 50))))
        except ValueError:
            raise _form_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        msgs = [m for m in self.state.channel_messages(channel.id) if not m.ephemeral]  # oldest first
        if "before" in q:
            chosen = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            chosen = [m for m in msgs if m.id > int(q["after"])][:limit]
        elif "around" in q:
            around = int(q["around"])
            older = [m for m in msgs if m.id < around][-(limit // 2):] if limit > 1 else []
            newer = [m for m in msgs if m.id >= around][: limit - len(older)]
            chosen = older + newer
        else:
            chosen = msgs[-limit:]
        return json_response([self._msg_json(m, bot) for m in reversed(chosen)])  # newest first, like Discord

    async def get_message(self, request: web.Request) -> web.Response:
        bot = request[BOT]
        channel = self._channel(request, bot, need=P.READ_MESSAGE_HISTORY)
        return json_response(self._msg_json(self._message(request, channel), bot))

    async def _read_body(self, request: web.Request) -> Tuple[Dict[str, Any], List[Tuple[int, str, bytes]]]:
        """JSON body, or multipart with ``payload_json`` + ``files[n]`` parts (as discord.py sends files)."""
        files: List[Tuple[int, str, bytes]] = []
        if request.content_type.startswith("multipart/"):
            payload: Dict[str, Any] = {}
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name or ""
                m = re.fullmatch(r"files\[(\d+)\]", name)
                if name == "payload_json":
                    payload = json.loads(await part.text())
                elif m or part.filename:
                    index = int(m.group(1)) if m else len(files)
                    files.append((index, part.filename or f"file{index}", bytes(await part.read())))
                else:
                    payload[name] = await part.text()
            return payload, files
        if request.body_exists:
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            return (body if isinstance(body, dict) else {}), files
        return {}, files

    def _check_files(self, channel: FakeChannel, files: List[Tuple[int, str, bytes]]) -> None:
        if len(files) > 10:
            raise _form_error("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        limit = self.state.upload_limit(channel)
        if any(len(data) > limit for _, _, data in files):
            raise ApiError(413, 40005, "Request entity too large")

    def _rate_limit(self, kind: str, channel_id: int, request: Optional[web.Request] = None) -> None:
        headers = self.fake.rate_limits.hit(kind, channel_id)
        if request is not None and headers:
            request[RATE_HEADERS] = headers

    def _check_components(self, payload: Dict[str, Any], flags: int) -> None:
        errors = FormErrors()
        C.check_message_components(payload.get("components"), flags, errors)
        errors.raise_if_any()

    def _check_content(self, payload: Dict[str, Any]) -> None:
        """Content, nonce, embeds, allowed_mentions, attachment descriptions: see :mod:`.payloads`."""
        errors = FormErrors()
        check_message_body(payload, errors)
        errors.raise_if_any()

    async def create_message(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot, need=P.SEND_MESSAGES)
        payload, files = await self._read_body(request)
        if channel.type == CHANNEL_DM:
            recipient = self.state.users[channel.recipient_id]
            if channel.bot_id != bot.id:
                raise ApiError(*MISSING_ACCESS)
            if not recipient.accepts_dms or recipient.bot:
                raise ApiError(403, 50007, "Cannot send messages to this user")
        perms = self.state.channel_permissions(channel, bot.id)
        if files and not perms & P.ATTACH_FILES:
            raise ApiError(*MISSING_PERMISSIONS)
        self._check_content(payload)
        self._check_components(payload, int(payload.get("flags") or 0))
        self._check_files(channel, files)
        self._rate_limit("send", channel.id, request)

        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            existing = self.fake._nonces.get((channel.id, bot.id, str(nonce)))
            if existing is not None:
                return json_response(self._msg_json(self.state.messages[existing], bot))

        reference = None
        ref = payload.get("message_reference")
        if ref:
            if ref.get("type", 0) != 0:
                self.fake.unhandled.append(("POST", f"/channels/{channel.id}/messages (forward)"))
                raise ApiError(400, 0, "Message forwarding is not supported by the fake")
            if not perms & P.READ_MESSAGE_HISTORY:
                raise ApiError(*MISSING_PERMISSIONS)
            target = self.state.messages.get(int(ref.get("message_id") or 0))
            ref_channel = int(ref.get("channel_id") or channel.id)
            if target is None or target.deleted or target.channel_id != ref_channel:
                if ref.get("fail_if_not_exists", True):
                    raise _form_error("message_reference", "REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            else:
                reference = target

        attachments = self._uploads(channel, payload.get("attachments"), files, [])
        content = payload.get("content") or ""
        embeds = payload.get("embeds") or []
        components = copy.deepcopy(payload.get("components") or [])
        C.assign_ids(components)
        if not (content or embeds or attachments or components or payload.get("sticker_ids") or payload.get("poll")):
            raise ApiError(400, 50006, "Cannot send an empty message")
        msg = self.fake._create_message(
            channel,
            bot.id,
            content,
            embeds=embeds,
            attachments=attachments,
            reply_to=reference,
            tts=bool(payload.get("tts")),
            flags=int(payload.get("flags") or 0),
            nonce=str(nonce) if nonce is not None else None,
            components=components,
            allowed_mentions=payload.get("allowed_mentions"),
        )
        if nonce is not None:
            self.fake._nonces[(channel.id, bot.id, str(nonce))] = msg.id
        return json_response(self._msg_json(msg, bot))

    def _uploads(self, channel: FakeChannel, spec: Any, files, existing) -> list:
        """Resolve an ``attachments`` array against uploaded ``files[n]`` and existing attachments.

        Without an ``attachments`` array every uploaded file becomes an attachment
        (appended to ``existing``).  With one, the result is exactly the listed
        attachments: an existing attachment's id keeps it, a small integer id
        refers to ``files[id]`` (discord.py's ``File.to_dict(index)``).
        """
        by_index = {index: (name, data) for index, name, data in files}
        if spec is None:
            return list(existing) + [
                self.fake._make_attachment(channel.id, name, data) for _, name, data in sorted(files)
            ]
        result = []
        old = {a.id: a for a in existing}
        used = set()
        for i, item in enumerate(spec):
            try:
                att_id = int(item.get("id"))
            except (TypeError, ValueError, AttributeError):
                raise _form_error(f"attachments.{i}.id", "BASE_TYPE_REQUIRED", "This field is required") from None
            if att_id in old:
                result.append(old[att_id])
            elif att_id in by_index:
                name, data = by_index[att_id]
                used.add(att_id)
                result.append(
                    self.fake._make_attachment(
                        channel.id, item.get("filename") or name, data, description=item.get("description")
                    )
                )
            else:
                raise _form_error(f"attachments.{i}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        for index in sorted(set(by_index) - used):
            name, data = by_index[index]
            result.append(self.fake._make_attachment(channel.id, name, data))
        return result

    async def edit_message(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot)
        msg = self._message(request, channel)
        if msg.author_id != bot.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload, files = await self._read_body(request)
        if files and not self.state.channel_permissions(channel, bot.id) & P.ATTACH_FILES:
            raise ApiError(*MISSING_PERMISSIONS)
        self._check_content(payload)
        flags = int(payload["flags"]) if payload.get("flags") is not None else msg.flags
        self._check_components(payload, flags)
        self._check_files(channel, files)
        changes: Dict[str, Any] = {}
        if "content" in payload:
            changes["content"] = payload["content"] or ""
        if "embeds" in payload:
            changes["embeds"] = payload["embeds"] or []
        if "components" in payload:
            changes["components"] = copy.deepcopy(payload["components"] or [])
            C.assign_ids(changes["components"])
        if "flags" in payload and payload["flags"] is not None:
            changes["flags"] = int(payload["flags"])
        if "allowed_mentions" in payload:
            changes["allowed_mentions"] = payload["allowed_mentions"]
        if "attachments" in payload or files:
            changes["attachments"] = self._uploads(channel, payload.get("attachments"), files, msg.attachments)
        after = {k: changes.get(k, getattr(msg, k)) for k in ("content", "embeds", "attachments", "components")}
        if not any(after.values()):
            raise ApiError(400, 50006, "Cannot send an empty message")
        self._rate_limit("edit", channel.id, request)
        self.fake._edit_message(msg, **changes)
        return json_response(self._msg_json(msg, bot))

    async def delete_message(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot)
        msg = self._message(request, channel)
        if msg.author_id != bot.id:
            if channel.type == CHANNEL_DM:
                raise ApiError(403, 50003, "Cannot execute action on a DM channel")
            if not self.state.channel_permissions(channel, bot.id) & P.MANAGE_MESSAGES:
                raise ApiError(*MISSING_PERMISSIONS)
        self.fake._delete_message(msg)
        return no_content()

    # ---------------------------------------------------------- reactions

    def _emoji(self, request: web.Request) -> str:
        return unquote(request.match_info["emoji"])

    async def add_reaction(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot, need=P.READ_MESSAGE_HISTORY)
        msg = self._message(request, channel)
        emoji = self._emoji(request)
        if not msg.reactions.get(emoji) and not self.state.channel_permissions(channel, bot.id) & P.ADD_REACTIONS:
            raise ApiError(*MISSING_PERMISSIONS)
        self.fake._react(msg, bot.id, emoji, add=True)
        return no_content()

    async def remove_own_reaction(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot)
        msg = self._message(request, channel)
        self.fake._react(msg, bot.id, self._emoji(request), add=False)
        return no_content()

    async def remove_user_reaction(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot)
        msg = self._message(request, channel)
        user_id = int(request.match_info["user_id"])
        if user_id != bot.id and not self.state.channel_permissions(channel, bot.id) & P.MANAGE_MESSAGES:
            raise ApiError(*MISSING_PERMISSIONS)
        self.fake._react(msg, user_id, self._emoji(request), add=False)
        return no_content()

    async def get_reactions(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        channel = self._channel(request, bot, need=P.READ_MESSAGE_HISTORY)
        msg = self._message(request, channel)
        users = sorted(msg.reactions.get(self._emoji(request), ()))
        return json_response([self.state.user_payload(self.state.users[u]) for u in users])

    # ------------------------------------------------------------- guilds

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self._guild(request, request[BOT])
        with_counts = request.query.get("with_counts", "false").lower() in ("true", "1")
        return json_response(self.state.guild_payload(guild, with_counts=with_counts))

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request, request[BOT])
        return json_response([self.state.channel_payload(self.state.channels[c]) for c in guild.channel_ids])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        guild = self._guild(request, request[BOT])
        return json_response([self.state.role_payload(r) for r in guild.roles.values()])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self._guild(request, request[BOT])
        member = guild.members.get(int(request.match_info["user_id"]))
        if member is None:
            raise unknown("Member", 10007)
        return json_response(self.state.member_payload(member))

    async def list_members(self, request: web.Request) -> web.Response:
        bot: FakeBot = request[BOT]
        guild = self._guild(request, bot)
        if not bot.privileged_intents & Intent.GUILD_MEMBERS:
            raise ApiError(*MISSING_ACCESS)
        limit = max(1, min(1000, int(request.query.get("limit", 1))))
        after = int(request.query.get("after", 0))
        members = sorted((m for m in guild.members.values() if m.user_id > after), key=lambda m: m.user_id)
        return json_response([self.state.member_payload(m) for m in members[:limit]])

    # -------------------------------------------------- application commands

    def _commands(self, request: web.Request) -> Tuple[Tuple[int, Optional[int]], List[Dict[str, Any]]]:
        bot: FakeBot = request[BOT]
        app_id = int(request.match_info["app_id"])
        if app_id != bot.application_id:
            raise ApiError(403, 20012, "You are not authorized to perform this action on this application")
        guild_id = request.match_info.get("guild_id")
        if guild_id is not None:
            self._guild(request, bot)
        key = (app_id, int(guild_id) if guild_id else None)
        return key, self.state.app_commands.setdefault(key, [])

    @staticmethod
    def _same(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
        return a["name"] == b.get("name") and a.get("type", 1) == b.get("type", 1)

    @staticmethod
    def _validated(body: Any, *, many: bool) -> Any:
        errors = FormErrors()
        (C.check_commands if many else C.check_command)(body, errors)
        errors.raise_if_any()
        return body

    async def list_commands(self, request: web.Request) -> web.Response:
        _, commands = self._commands(request)
        return json_response(commands)

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite: the scope's commands become exactly the body (ids kept for same name + type)."""
        key, _ = self._commands(request)
        body = self._validated(await request.json(), many=True)
        return json_response(self.fake._overwrite_commands(key[0], key[1], body, record="PUT"))

    async def upsert_command(self, request: web.Request) -> web.Response:
        key, commands = self._commands(request)
        data = self._validated(await request.json(), many=False)
        old = next((c for c in commands if self._same(c, data)), None)
        if old is None and sum(1 for c in commands if c.get("type", 1) == data.get("type", 1)) >= \
                C.MAX_COMMANDS.get(data.get("type", 1), 0):
            raise ApiError(400, 30032, "Maximum number of application commands reached")
        cmd = self.fake._command_object(key, data, old)
        if old:
            commands[commands.index(old)] = cmd
        else:
            commands.append(cmd)
            self.fake.command_creates += 1
        self.fake._record_sync("POST", key[0], key[1], [cmd["name"]])
        return json_response(cmd, 200 if old else 201)

    def _find_command(self, request, commands) -> Dict[str, Any]:
        cid = request.match_info["command_id"]
        for cmd in commands:
            if cmd["id"] == cid:
                return cmd
        raise unknown("application command", 10063)

    async def get_command(self, request: web.Request) -> web.Response:
        _, commands = self._commands(request)
        return json_response(self._find_command(request, commands))

    async def edit_command(self, request: web.Request) -> web.Response:
        key, commands = self._commands(request)
        old = self._find_command(request, commands)
        merged = {k: v for k, v in {**old, **(await request.json())}.items()
                  if k not in ("id", "application_id", "version", "guild_id")}
        cmd = self.fake._command_object(key, self._validated(merged, many=False), old)
        commands[commands.index(old)] = cmd
        self.fake._record_sync("PATCH", key[0], key[1], [cmd["name"]])
        return json_response(cmd)

    async def delete_command(self, request: web.Request) -> web.Response:
        key, commands = self._commands(request)
        cmd = self._find_command(request, commands)
        commands.remove(cmd)
        self.fake._record_sync("DELETE", key[0], key[1], [cmd["name"]])
        return no_content()

    # -------------------------------------------------------- files / cdn

    async def get_attachment(self, request: web.Request) -> web.Response:
        att = self.fake.attachments.get(int(request.match_info["attachment_id"]))
        if att is None:
            return web.Response(status=404, text="Not found")
        return web.Response(body=att.data, headers={"Content-Type": att.content_type or "application/octet-stream"})

    async def get_cdn(self, request: web.Request) -> web.Response:
        """Avatars/icons: discord.py's ``Asset`` URLs are pointed here; always a small PNG."""
        return web.Response(body=_placeholder_png(), content_type="image/png")


_PNG_CACHE: Dict[str, bytes] = {}


def _placeholder_png() -> bytes:
    if "png" not in _PNG_CACHE:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (128, 128), (88, 101, 242)).save(buf, format="PNG")
        _PNG_CACHE["png"] = buf.getvalue()
    return _PNG_CACHE["png"]
