"""HTTP side of interactions: ``POST /interactions/{id}/{token}/callback`` and the interaction
webhook (``/webhooks/{application_id}/{token}[/messages/{@original|id}]``).

These routes take no ``Authorization`` header (the token in the path is the credential), and are
not bound to the bot's channel permissions, as on Discord.  Behaviour (receiving-and-responding):

* the first response must come within ``fake.interaction_deadline`` (3 s) of the event, else the
  callback answers 404/10062 "Unknown interaction" and the token is invalidated;
* a second response answers 400/40060 "Interaction has already been acknowledged.";
* the token works for ``fake.interaction_token_lifetime`` (15 min); after that (or after
  ``fake.expire_interaction``) the webhook routes answer 404/10015 "Unknown Webhook" and the
  callback 10062; the webhook is unknown (10015) before the first response too;
* ``?with_response=true`` gets 200 + the interaction callback response object, else 204;
* the first follow-up after a DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE edits the loading message (the
  documented, deprecated behaviour) instead of creating a message; its ephemeral flag is ignored.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from aiohttp import web

from . import components as C
from .errors import (
    ALREADY_ACKNOWLEDGED,
    EMPTY_MESSAGE,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    ApiError,
    FormErrors,
    json_response,
    no_content,
)
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    MESSAGE_COMPONENT,
    MODAL,
    MODAL_SUBMIT,
    UPDATE_MESSAGE,
    Callback,
    FakeInteraction,
)
from .models import MESSAGE_DEFAULT, MESSAGE_FLAG_EPHEMERAL, MESSAGE_FLAG_LOADING, MESSAGE_REPLY, FakeMessage

if TYPE_CHECKING:  # pragma: no cover
    from .server import RestApi

#: Flags a bot may set on an interaction message (SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS,
#: IS_VOICE_MESSAGE, IS_COMPONENTS_V2); others are dropped.
SETTABLE_FLAGS = (1 << 2) | MESSAGE_FLAG_EPHEMERAL | (1 << 12) | (1 << 13) | (1 << 15)

ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE},
}


def _true(value: Optional[str]) -> bool:
    """Discord's boolean query strings: ``true``/``1``/``True``."""
    return value in ("true", "1", "True")


class InteractionRoutes:
    def __init__(self, api: "RestApi") -> None:
        self.api = api
        self.fake = api.fake
        self.state = api.state

    def add_routes(self, add) -> List[Any]:
        """Register the routes; returns the handlers (the middleware skips bot auth for them)."""
        msg = r"/webhooks/{app_id:\d+}/{token}/messages/{message_id}"
        routes = [
            ("POST", r"/interactions/{interaction_id:\d+}/{token}/callback", self.callback),
            ("POST", r"/webhooks/{app_id:\d+}/{token}", self.create_followup),
            ("GET", msg, self.get_message),
            ("PATCH", msg, self.edit_message),
            ("DELETE", msg, self.delete_message),
        ]
        for method, path, handler in routes:
            add(method, path, handler)
        return [handler for _, _, handler in routes]

    # ------------------------------------------------------------ helpers

    def _refuse(self, ix: Optional[FakeInteraction], request: web.Request, error: Tuple) -> ApiError:
        exc = error if isinstance(error, ApiError) else ApiError(*error)
        if ix is not None:
            ix.errors.append((request.method, request.match_info.route.resource.canonical, exc.status, exc.code))
            self.fake._notify()
        return exc

    def _webhook_ix(self, request: web.Request) -> FakeInteraction:
        ix = self.fake._ix_by_token.get(request.match_info["token"])
        if ix is None or ix.application_id != int(request.match_info["app_id"]):
            raise ApiError(*UNKNOWN_WEBHOOK)
        if not self.fake._ix_alive(ix) or not ix.acknowledged:
            raise self._refuse(ix, request, UNKNOWN_WEBHOOK)
        return ix

    def _target(self, ix: FakeInteraction, request: web.Request) -> FakeMessage:
        mid = request.match_info["message_id"]
        if mid == "@original":
            msg = ix.original
        else:
            wanted = int(mid) if mid.isdigit() else -1
            ok = wanted == ix.original_id or wanted in ix.followup_ids
            msg = self.state.messages.get(wanted) if ok else None
        if msg is None or msg.deleted:
            raise self._refuse(ix, request, UNKNOWN_MESSAGE)
        return msg

    def _json(self, msg: FakeMessage, ix: FakeInteraction) -> Dict[str, Any]:
        return self.state.message_payload(msg, viewer_id=ix.application_id)

    def _check_message(self, channel, data: Dict[str, Any], files, flags: int) -> None:
        self.api._check_content(data)
        errors = FormErrors()
        C.check_message_components(data.get("components"), flags, errors)
        errors.raise_if_any()
        self.api._check_files(channel, files)

    def _create(self, ix: FakeInteraction, data: Dict[str, Any], files, *, followup: bool,
                flags: Optional[int] = None) -> FakeMessage:
        channel = self.state.channels[ix.channel_id]
        flags = int(data.get("flags") or 0) & SETTABLE_FLAGS if flags is None else flags
        if not flags & MESSAGE_FLAG_LOADING:
            self._check_message(channel, data, files, flags)
        attachments = self.api._uploads(channel, data.get("attachments"), files, [])
        components = copy.deepcopy(data.get("components") or [])
        C.assign_ids(components)
        content = data.get("content") or ""
        embeds = data.get("embeds") or []
        if not flags & MESSAGE_FLAG_LOADING and not (content or embeds or attachments or components or data.get("poll")):
            raise ApiError(*EMPTY_MESSAGE)
        kind, reply_to = self.fake._response_message_type(ix)
        if followup:
            original = ix.original
            reply_to = original if original is not None and not original.deleted and not original.ephemeral else None
            kind = MESSAGE_REPLY if reply_to is not None else MESSAGE_DEFAULT
        meta = self.fake._interaction_metadata(ix, followup_of=ix.original_id if followup else None)
        legacy = self.fake._legacy_interaction(ix) if kind != MESSAGE_REPLY and not followup else None
        msg = self.fake._create_message(
            channel, ix.application_id, content, embeds=embeds, attachments=attachments,
            tts=bool(data.get("tts")), flags=flags, components=components,
            allowed_mentions=data.get("allowed_mentions"), message_type=kind, reply_to=reply_to,
            interaction_id=ix.id, webhook_id=ix.application_id,
            ephemeral_to=ix.user_id if flags & MESSAGE_FLAG_EPHEMERAL else None,
            interaction_metadata=meta, interaction_legacy=legacy,
        )
        return msg

    def _edit(self, ix: FakeInteraction, msg: FakeMessage, data: Dict[str, Any], files) -> FakeMessage:
        channel = self.state.channels[msg.channel_id]
        flags = msg.flags & ~MESSAGE_FLAG_LOADING
        if data.get("flags") is not None:  # ephemeral state cannot change; others may
            flags = (int(data["flags"]) & SETTABLE_FLAGS & ~MESSAGE_FLAG_EPHEMERAL) | (flags & MESSAGE_FLAG_EPHEMERAL)
        self._check_message(channel, data, files, flags)
        changes: Dict[str, Any] = {"flags": flags}
        for key in ("content", "embeds"):
            if key in data:
                changes[key] = data[key] or ("" if key == "content" else [])
        if "components" in data:
            components = copy.deepcopy(data["components"] or [])
            C.assign_ids(components)
            changes["components"] = components
        if "allowed_mentions" in data:
            changes["allowed_mentions"] = data["allowed_mentions"]
        if "attachments" in data or files:
            changes["attachments"] = self.api._uploads(channel, data.get("attachments"), files, msg.attachments)
        after = {k: changes.get(k, getattr(msg, k)) for k in ("content", "embeds", "attachments", "components")}
        if not any(after.values()):
            raise ApiError(*EMPTY_MESSAGE)
        self.api._rate_limit("interaction-edit", ix.id)  # its own bucket: see ratelimits.py
        self.fake._edit_message(msg, **changes)
        return msg

    # ------------------------------------------------------------ callback

    async def callback(self, request: web.Request) -> web.Response:
        ix = self.fake._ix_by_id.get(int(request.match_info["interaction_id"]))
        if ix is None or ix.token != request.match_info["token"]:
            raise ApiError(*UNKNOWN_INTERACTION)
        if not self.fake._ix_alive(ix):
            raise self._refuse(ix, request, UNKNOWN_INTERACTION)
        if ix.acknowledged:
            raise self._refuse(ix, request, ALREADY_ACKNOWLEDGED)
        payload, files = await self.api._read_body(request)
        kind = payload.get("type")
        data = payload.get("data") or {}
        allowed = set(ALLOWED_CALLBACKS.get(ix.type, ()))
        if ix.type == MODAL_SUBMIT and ix.message_id is None:
            allowed -= {DEFERRED_UPDATE, UPDATE_MESSAGE}  # only for modals opened from a component
        if kind not in allowed:
            errors = FormErrors()
            errors.add("type", "INTERACTION_CALLBACK_TYPE_INVALID",
                       f"Interaction callback type {kind} is not valid for interaction type {ix.type}")
            raise self._refuse(ix, request, errors.error())
        try:
            message = self._respond(ix, kind, data, files)
        except ApiError as exc:
            if exc.errors and kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
                exc.errors = {"data": exc.errors}  # message fields sit under `data` in a callback body
            raise self._refuse(ix, request, exc) from None
        ix.callbacks.append(Callback(kind, data, self.fake.clock()))
        self.fake._notify()
        if not _true(request.query.get("with_response")):
            return no_content()
        original = ix.original
        body: Dict[str, Any] = {
            "interaction": {"id": str(ix.id), "type": ix.type},
            "resource": {"type": kind},
        }
        if original is not None and kind in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            body["interaction"].update(response_message_id=str(original.id),
                                       response_message_loading=original.loading,
                                       response_message_ephemeral=original.ephemeral)
        if message is not None and kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            body["resource"]["message"] = self._json(message, ix)
        return json_response(body)

    def _respond(self, ix: FakeInteraction, kind: int, data: Dict[str, Any], files) -> Optional[FakeMessage]:
        if kind == CHANNEL_MESSAGE:
            msg = self._create(ix, data, files, followup=False)
            ix.original_id = msg.id
            return msg
        if kind == DEFERRED_CHANNEL_MESSAGE:
            flags = MESSAGE_FLAG_LOADING | (int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            msg = self._create(ix, {}, [], followup=False, flags=flags)
            ix.original_id = msg.id
            return msg
        if kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            target = self.state.messages.get(ix.message_id)
            if target is None or target.deleted:
                raise ApiError(*UNKNOWN_MESSAGE)
            ix.original_id = target.id
            if kind == UPDATE_MESSAGE:
                self._edit(ix, target, data, files)
            return target
        if kind == AUTOCOMPLETE_RESULT:
            errors = FormErrors()
            C.check_choices(data, ix.focused_type or C.STRING, errors)
            errors.raise_if_any()
            ix.choices = list(data["choices"])
            return None
        # MODAL
        errors = FormErrors()
        C.check_modal(data, errors)
        errors.raise_if_any()
        modal = copy.deepcopy(data)
        C.assign_ids(modal["components"])
        ix.modal = modal
        return None

    # ------------------------------------------------------------ webhook

    async def create_followup(self, request: web.Request) -> web.Response:
        ix = self._webhook_ix(request)
        payload, files = await self.api._read_body(request)
        original = ix.original
        try:
            if ix.response_type == DEFERRED_CHANNEL_MESSAGE and original is not None and original.loading \
                    and not ix.followup_ids:
                return json_response(self._json(self._edit(ix, original, payload, files), ix))
            msg = self._create(ix, payload, files, followup=True)
        except ApiError as exc:
            raise self._refuse(ix, request, exc) from None
        ix.followup_ids.append(msg.id)
        self.fake._notify()
        return json_response(self._json(msg, ix))

    async def get_message(self, request: web.Request) -> web.Response:
        ix = self._webhook_ix(request)
        return json_response(self._json(self._target(ix, request), ix))

    async def edit_message(self, request: web.Request) -> web.Response:
        ix = self._webhook_ix(request)
        msg = self._target(ix, request)
        payload, files = await self.api._read_body(request)
        try:
            self._edit(ix, msg, payload, files)
        except ApiError as exc:
            raise self._refuse(ix, request, exc) from None
        return json_response(self._json(msg, ix))

    async def delete_message(self, request: web.Request) -> web.Response:
        ix = self._webhook_ix(request)
        self.fake._delete_message(self._target(ix, request))
        return no_content()
