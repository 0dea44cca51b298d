"""Interactions for :class:`FakeDiscord`: users invoking slash commands, message/user context menus,
autocomplete, pressing buttons, picking from selects and submitting modals (INTERACTION_CREATE over the
gateway), and the record of what the bot answered.  The command registry is in :mod:`.commands`.

Payloads follow discord-api-docs "Receiving and Responding" / "Application Commands" / "Component
Reference" (API v10) and what discord.py 2.7 reads (``Interaction._from_data`` needs
``attachment_size_limit``; ``CommandTree._call`` finds commands by ``data.name``/``data.guild_id``;
``Modal._refresh`` walks action rows (1) and labels (18)).  The HTTP side (callback and webhook routes)
is in :mod:`.interaction_routes`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from . import components as C
from .commands import CommandsMixin
from .models import (
    CHANNEL_DM,
    MESSAGE_CHAT_INPUT_COMMAND,
    MESSAGE_CONTEXT_MENU_COMMAND,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_REPLY,
    FakeAttachment,
    FakeBot,
    FakeChannel,
    FakeMessage,
    P,
)
from .world import _id

if TYPE_CHECKING:  # pragma: no cover
    from .gateway import Gateway
    from .models import FakeGuild, SnowflakeGenerator
    from .state import FakeState

# Interaction types and callback types (receiving-and-responding).
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9

#: What ``app_permissions`` adds in a DM with the app's bot user (docs, Interaction Structure note).
DM_APP_EXTRA = P.ATTACH_FILES | P.EMBED_LINKS | P.MENTION_EVERYONE | P.USE_EXTERNAL_EMOJIS

AttachmentLike = Union[FakeAttachment, Tuple[str, bytes], Tuple[str, bytes, Optional[str]]]


class ManualClock:
    """A clock for ``fake.clock`` that moves only when told: with it, the 3 s deadline and the 15 min
    token lifetime never depend on the machine's speed; ``advance(900)`` ages every token at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Callback:
    """One accepted ``POST /interactions/{id}/{token}/callback``."""

    type: int
    data: Dict[str, Any]
    time: float

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)


@dataclass(eq=False)
class FakeInteraction:
    """An interaction a user triggered, and everything the bot did with it."""

    id: int
    token: str
    type: int
    application_id: int
    user_id: int
    channel_id: int
    guild_id: Optional[int]
    #: The ``data`` object sent to the bot.
    data: Dict[str, Any]
    #: The whole INTERACTION_CREATE ``d``.
    payload: Dict[str, Any]
    created_at: float
    #: The message a component (or a modal opened from one) belongs to.
    message_id: Optional[int] = None
    #: For MODAL_SUBMIT: the interaction whose MODAL response this submits.
    source: Optional["FakeInteraction"] = None
    callbacks: List[Callback] = field(default_factory=list)
    original_id: Optional[int] = None
    followup_ids: List[int] = field(default_factory=list)
    #: The modal the bot opened (type 9 ``data``), or None.
    modal: Optional[Dict[str, Any]] = None
    modal_submitted: bool = False
    #: Autocomplete choices (type 8), or None.
    choices: Optional[List[Dict[str, Any]]] = None
    #: ``(method, route, status, code)`` of refused calls made for this interaction.
    errors: List[Tuple[str, str, int, int]] = field(default_factory=list)
    #: Token ended early (``fake.expire_interaction`` or missed 3 s deadline).
    expired: bool = False
    #: Option type of the focused option (autocomplete only).
    focused_type: Optional[int] = None
    _fake: Any = field(default=None, repr=False)

    # ------------------------------------------------------------ answers
    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response_type(self) -> Optional[int]:
        return self.callbacks[0].type if self.callbacks else None

    @property
    def response_delay(self) -> Optional[float]:
        """Seconds (on ``fake.clock``) from the event to the first accepted response."""
        return self.callbacks[0].time - self.created_at if self.callbacks else None

    @property
    def deferred(self) -> bool:
        return self.response_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE)

    @property
    def ephemeral(self) -> bool:
        return bool(self.callbacks and self.callbacks[0].flags & MESSAGE_FLAG_EPHEMERAL)

    @property
    def original(self) -> Optional[FakeMessage]:
        return self._fake.state.messages.get(self.original_id) if self.original_id else None

    @property
    def followups(self) -> List[FakeMessage]:
        return [self._fake.state.messages[m] for m in self.followup_ids]

    @property
    def root(self) -> "FakeInteraction":
        ix = self
        while ix.source is not None:
            ix = ix.source
        return ix

    async def wait_acknowledged(self, timeout: float = 5.0) -> Callback:
        await self._fake.wait_until(lambda: self.acknowledged, timeout,
                                    what=f"the bot to acknowledge interaction {self.id}")
        return self.callbacks[0]

    async def wait_until(self, predicate: Callable[["FakeInteraction"], Any], timeout: float = 10.0) -> Any:
        return await self._fake.wait_until(lambda: predicate(self), timeout, what=f"interaction {self.id} predicate")


class InteractionsMixin(CommandsMixin):
    if TYPE_CHECKING:
        state: FakeState
        ids: SnowflakeGenerator
        gateway: Gateway

        def _notify(self) -> None: ...
        def _guild(self, guild_id: Any) -> FakeGuild: ...
        def _channel(self, channel_id: Any) -> FakeChannel: ...
        def get_message(self, message: Any) -> FakeMessage: ...
        def _make_attachment(self, channel_id: int, filename: str, data: bytes, content_type: Optional[str] = None,
                             description: Optional[str] = None) -> FakeAttachment: ...
        async def _flush(self, timeout: float = 5.0) -> None: ...
        async def wait_until(self, predicate, timeout: float = 10.0, *, what: str = "", poll=None) -> Any: ...

    def _init_interactions(self) -> None:
        #: Every interaction, in order.
        self.interactions: List[FakeInteraction] = []
        self._ix_by_id: Dict[int, FakeInteraction] = {}
        self._ix_by_token: Dict[str, FakeInteraction] = {}
        #: Clock for the 3 s deadline and the 15 min token lifetime; tests may replace it.
        self.clock: Callable[[], float] = time.monotonic
        #: Seconds to send the first response; ``None`` disables the deadline.
        self.interaction_deadline: Optional[float] = 3.0
        #: Seconds an interaction token works (follow-ups, @original edits).
        self.interaction_token_lifetime: float = 15 * 60.0
        self._init_commands()

    # ================================================================ acting

    async def slash(self, user: Any, channel: Any, command: str, options: Optional[Dict[str, Any]] = None, *,
                    bot: Any = None, locale: str = "en-US") -> FakeInteraction:
        """A user runs ``/command`` (``"group sub"`` for subcommands) with typed ``options``."""
        return await self._command_interaction(user, channel, command, options or {}, bot=bot, locale=locale)

    async def autocomplete(self, user: Any, channel: Any, command: str, options: Optional[Dict[str, Any]] = None, *,
                           focused: str, bot: Any = None, locale: str = "en-US") -> FakeInteraction:
        """A user types into option ``focused`` (its value in ``options`` is the text typed so far)."""
        return await self._command_interaction(user, channel, command, options or {}, bot=bot, locale=locale,
                                               focused=focused)

    async def _command_interaction(self, user: Any, channel: Any, command: str, options: Dict[str, Any], *,
                                   bot: Any, locale: str, focused: Optional[str] = None) -> FakeInteraction:
        app = self._bot(bot)
        ch = self._channel(channel)
        uid = self._acting_user(user, ch)
        path = command.strip().lstrip("/").split()
        cmd = self._find_command(app, ch, uid, path[0], C.CHAT_INPUT)
        resolved: Dict[str, Dict[str, Any]] = {}
        defs = cmd.get("options") or []
        nested: List[Dict[str, Any]] = []
        top = nested
        for part in path[1:]:
            sub = C.find_option(defs, part)
            if sub is None or sub.get("type") not in (C.SUB_COMMAND, C.SUB_COMMAND_GROUP):
                raise ValueError(f"/{cmd['name']} has no subcommand {part!r}")
            entry = {"name": part, "type": sub["type"], "options": []}
            nested.append(entry)
            nested, defs = entry["options"], sub.get("options") or []
        if any(d.get("type") in (C.SUB_COMMAND, C.SUB_COMMAND_GROUP) for d in defs):
            raise ValueError(f"/{command} needs a subcommand: one of {[d['name'] for d in defs]}")
        focused_type = None
        if focused is not None:
            target = C.find_option(defs, focused)
            if target is None or not target.get("autocomplete"):
                raise ValueError(f"option {focused!r} of /{command} has no autocomplete")
            focused_type = target["type"]
        nested.extend(self._option_values(defs, options, ch, uid, resolved, focused=focused, command=command))
        data: Dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": C.CHAT_INPUT}
        if top:
            data["options"] = top
        elif nested:
            data["options"] = nested
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        kind = AUTOCOMPLETE if focused is not None else APPLICATION_COMMAND
        ix = self._new_interaction(app, uid, ch, kind, data, locale=locale)
        ix.focused_type = focused_type
        return await self._deliver(ix)

    def _option_values(self, defs: List[Dict[str, Any]], given: Dict[str, Any], channel: FakeChannel, uid: int,
                       resolved: Dict[str, Dict[str, Any]], *, focused: Optional[str], command: str) -> List[Dict]:
        """Check typed values as the Discord client does before sending, and build the option list."""
        unknown = set(given) - {d["name"] for d in defs}
        if unknown:
            raise ValueError(f"/{command} has no option(s) {sorted(unknown)}; it has {[d['name'] for d in defs]}")
        out = []
        for d in defs:
            name, kind = d["name"], d["type"]
            if name not in given:
                if d.get("required") and focused is None:
                    raise ValueError(f"/{command}: option {name!r} is required")
                continue
            value = given[name]
            if name == focused:
                out.append({"name": name, "type": kind, "value": str(value), "focused": True})
                continue
            out.append({"name": name, "type": kind, "value": self._option_value(d, value, channel, uid, resolved,
                                                                                      command)})
        return out

    def _option_value(self, d: Dict[str, Any], value: Any, channel: FakeChannel, uid: int,
                      resolved: Dict[str, Dict[str, Any]], command: str) -> Any:
        name, kind = d["name"], d["type"]
        where = f"/{command} {name}"
        if kind == C.STRING:
            if not isinstance(value, str):
                raise ValueError(f"{where}: expects text, got {value!r}")
            lo, hi = d.get("min_length"), d.get("max_length")
            if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi) or len(value) > 6000:
                raise ValueError(f"{where}: length {len(value)} outside [{lo}, {hi}]")
        elif kind == C.INTEGER:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{where}: expects an integer, got {value!r}")
        elif kind == C.NUMBER:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{where}: expects a number, got {value!r}")
        elif kind == C.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: expects True/False, got {value!r}")
        elif kind == C.ATTACHMENT:
            att = self._option_attachment(d, value, channel, where)
            resolved.setdefault("attachments", {})[str(att.id)] = {**self.state.attachment_payload(att),
                                                                    "ephemeral": True}
            return str(att.id)
        elif kind in (C.USER, C.MENTIONABLE) and _id(value) in self.state.users:
            target_id = _id(value)
            resolved.setdefault("users", {})[str(target_id)] = self.state.user_payload(self.state.users[target_id])
            guild = self.state.guilds.get(channel.guild_id) if channel.guild_id else None
            if guild is not None and target_id in guild.members:
                member = self.state.member_payload(guild.members[target_id], with_user=False)
                member.pop("deaf", None), member.pop("mute", None)
                member["permissions"] = str(self.state.channel_permissions(channel, target_id))
                resolved.setdefault("members", {})[str(target_id)] = member
            return str(target_id)
        elif kind in (C.ROLE, C.MENTIONABLE):
            guild = self.state.guilds.get(channel.guild_id) if channel.guild_id else None
            role = guild.roles.get(_id(value)) if guild else None
            if role is None:
                raise ValueError(f"{where}: {value!r} is not a role of this server")
            resolved.setdefault("roles", {})[str(role.id)] = self.state.role_payload(role)
            return str(role.id)
        elif kind == C.CHANNEL:
            target = self._channel(value)
            if target.guild_id != channel.guild_id:
                raise ValueError(f"{where}: channel {target.id} is not in this server")
            if d.get("channel_types") and target.type not in d["channel_types"]:
                raise ValueError(f"{where}: channel type {target.type} not in {d['channel_types']}")
            payload = self.state.channel_payload(target)
            payload["permissions"] = str(self.state.channel_permissions(target, uid))
            resolved.setdefault("channels", {})[str(target.id)] = payload
            return str(target.id)
        else:
            raise ValueError(f"{where}: unsupported value {value!r} for option type {kind}")
        if kind in (C.INTEGER, C.NUMBER):
            lo, hi = d.get("min_value"), d.get("max_value")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ValueError(f"{where}: {value} outside [{lo}, {hi}]")
        choices = d.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}")
        return value

    def _option_attachment(self, d: Dict[str, Any], value: AttachmentLike, channel: FakeChannel,
                           where: str) -> FakeAttachment:
        if isinstance(value, FakeAttachment):
            return value
        if not (isinstance(value, tuple) and len(value) in (2, 3)):
            raise ValueError(f"{where}: expects (filename, bytes[, content_type]) or a FakeAttachment")
        att = self._make_attachment(channel.id, value[0], value[1], value[2] if len(value) > 2 else None)
        types = d.get("file_types")
        if types:  # Discord filters by extension, or by family for "image"/"video"/"audio"
            ext = "." + att.filename.rsplit(".", 1)[-1].lower() if "." in att.filename else ""
            if ext not in types and (att.content_type or "").split("/")[0] not in types:
                raise ValueError(f"{where}: {att.filename} does not match file_types {types}")
        return att

    async def context_menu(self, user: Any, message: Any, name: str, *, bot: Any = None,
                           locale: str = "en-US") -> FakeInteraction:
        """A user picks Apps > ``name`` on a message (MESSAGE command, type 3)."""
        app = self._bot(bot)
        msg = self.get_message(message)
        ch = self._channel(msg.channel_id)
        uid = self._acting_user(user, ch)
        if msg.deleted or (msg.ephemeral_to is not None and msg.ephemeral_to != uid):
            raise ValueError(f"user {uid} cannot see message {msg.id}")
        cmd = self._find_command(app, ch, uid, name, C.MESSAGE_COMMAND)
        # The target's content is delivered even without the MESSAGE_CONTENT intent (documented exception).
        target = self.state.message_payload(msg, viewer_id=app.id)
        if msg.guild_id:
            target["guild_id"] = str(msg.guild_id)
        data: Dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": C.MESSAGE_COMMAND,
                                "target_id": str(msg.id), "resolved": {"messages": {str(msg.id): target}}}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._deliver(self._new_interaction(app, uid, ch, APPLICATION_COMMAND, data, locale=locale))

    async def user_menu(self, user: Any, target: Any, channel: Any, name: str, *, bot: Any = None,
                        locale: str = "en-US") -> FakeInteraction:
        """A user picks Apps > ``name`` on another user (USER command, type 2)."""
        app = self._bot(bot)
        ch = self._channel(channel)
        uid = self._acting_user(user, ch)
        cmd = self._find_command(app, ch, uid, name, C.USER_COMMAND)
        resolved: Dict[str, Dict[str, Any]] = {}
        tid = self._option_value({"name": "target", "type": C.USER}, target, ch, uid, resolved, name)
        data: Dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": C.USER_COMMAND,
                                "target_id": tid, "resolved": resolved}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return await self._deliver(self._new_interaction(app, uid, ch, APPLICATION_COMMAND, data, locale=locale))

    def _component_target(self, user: Any, message: Any, custom_id: str, kinds: Tuple[int, ...]):
        msg = self.get_message(message)
        ch = self._channel(msg.channel_id)
        uid = self._acting_user(user, ch)
        if msg.deleted:
            raise ValueError(f"message {msg.id} was deleted")
        if msg.ephemeral_to is not None and msg.ephemeral_to != uid:
            raise ValueError(f"message {msg.id} is ephemeral to user {msg.ephemeral_to}")
        app = self.state.bots.get(msg.webhook_id or msg.author_id)
        if app is None:
            raise ValueError(f"message {msg.id} was not sent by an application")
        comp = next((c for c in C.walk(msg.components) if c.get("custom_id") == custom_id), None)
        if comp is None or comp.get("type") not in kinds:
            have = [c.get("custom_id") for c in C.walk(msg.components) if c.get("custom_id")]
            raise ValueError(f"message {msg.id} has no such component {custom_id!r}; it has {have}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} of message {msg.id} is disabled")
        return app, msg, ch, uid, comp

    async def press_button(self, user: Any, message: Any, custom_id: str, *, locale: str = "en-US") -> FakeInteraction:
        """A user clicks the button ``custom_id`` on a message the bot posted."""
        app, msg, ch, uid, comp = self._component_target(user, message, custom_id, (C.BUTTON,))
        if comp.get("style") in (C.LINK_STYLE, C.PREMIUM_STYLE):
            raise ValueError("link and premium buttons send no interaction")
        data = {"custom_id": custom_id, "component_type": C.BUTTON, "id": comp.get("id")}
        return await self._deliver(self._new_interaction(app, uid, ch, MESSAGE_COMPONENT, data, message=msg,
                                                         locale=locale))

    async def select(self, user: Any, message: Any, custom_id: str, values: List[str], *,
                     locale: str = "en-US") -> FakeInteraction:
        """A user picks ``values`` in the string select ``custom_id``."""
        app, msg, ch, uid, comp = self._component_target(user, message, custom_id, (C.STRING_SELECT,))
        allowed = [o["value"] for o in comp.get("options") or []]
        lo, hi = comp.get("min_values", 1), comp.get("max_values", 1)
        if any(v not in allowed for v in values) or not lo <= len(values) <= hi:
            raise ValueError(f"select {custom_id!r}: pick {lo}..{hi} of {allowed}, got {values}")
        data = {"custom_id": custom_id, "component_type": C.STRING_SELECT, "id": comp.get("id"),
                "values": list(values)}
        return await self._deliver(self._new_interaction(app, uid, ch, MESSAGE_COMPONENT, data, message=msg,
                                                         locale=locale))

    async def submit_modal(self, user: Any, opened: FakeInteraction, values: Optional[Dict[str, Any]] = None, *,
                           locale: str = "en-US") -> FakeInteraction:
        """The user fills in and submits the modal the bot opened in answer to ``opened``.

        ``values``: text-input custom_id (or its label text) -> text (fields left out keep their
        pre-filled ``value`` or stay empty), string-select custom_id (or label) -> list of values.  Checked like the client does
        (required, min/max length) -> ``ValueError``.  A modal can be submitted once.
        """
        uid = _id(user)
        if opened.modal is None:
            raise ValueError(f"the bot did not open a modal for interaction {opened.id}")
        if uid != opened.user_id:
            raise ValueError("only the user who opened a modal can submit it")
        if opened.modal_submitted:
            raise ValueError("this modal was already submitted (it closed)")
        values = dict(values or {})
        rows = [self._submitted(comp, values) for comp in opened.modal["components"]]
        if values:
            raise ValueError(f"the modal has no field(s) {sorted(values)}")
        opened.modal_submitted = True
        app = self.state.bots[opened.application_id]
        ch = self._channel(opened.channel_id)
        msg = self.state.messages.get(opened.message_id) if opened.message_id else None
        data = {"custom_id": opened.modal["custom_id"], "components": rows}
        ix = self._new_interaction(app, uid, ch, MODAL_SUBMIT, data, message=msg, locale=locale)
        ix.source = opened
        return await self._deliver(ix)

    def _submitted(self, comp: Dict[str, Any], values: Dict[str, Any],
                   label: Optional[str] = None) -> Dict[str, Any]:
        kind = comp["type"]
        if kind == C.ACTION_ROW:
            return {"type": kind, "id": comp.get("id"), "components": [self._submitted(c, values)
                                                                        for c in comp["components"]]}
        if kind == C.LABEL:
            return {"type": kind, "id": comp.get("id"),
                    "component": self._submitted(comp["component"], values, comp.get("label"))}
        if kind == C.TEXT_DISPLAY:
            return {"type": kind, "id": comp.get("id")}
        cid = comp.get("custom_id")
        label = label or comp.get("label")
        key = cid if cid in values else label if label in values else cid  # by custom_id, else by label
        if kind == C.TEXT_INPUT:
            text = values.pop(key, comp.get("value") or "")
            if not isinstance(text, str):
                raise ValueError(f"field {cid!r} takes text, got {text!r}")
            required = comp.get("required", True)
            lo, hi = comp.get("min_length") or 0, comp.get("max_length") or 4000
            if required and not text:
                raise ValueError(f"field {cid!r} is required")
            if text and not lo <= len(text) <= hi:
                raise ValueError(f"field {cid!r}: length {len(text)} outside [{lo}, {hi}]")
            return {"type": kind, "id": comp.get("id"), "custom_id": cid, "value": text}
        if kind == C.STRING_SELECT:
            picked = values.pop(key, [])
            allowed = [o["value"] for o in comp.get("options") or []]
            lo, hi = comp.get("min_values", 1), comp.get("max_values", 1)
            if comp.get("required", True) is False and not picked:
                lo = 0
            if any(v not in allowed for v in picked) or not lo <= len(picked) <= hi:
                raise ValueError(f"select {cid!r}: pick {lo}..{hi} of {allowed}, got {picked}")
            return {"type": kind, "id": comp.get("id"), "custom_id": cid, "values": list(picked)}
        raise ValueError(f"modal component type {kind} is not supported by the fake's submit_modal")

    # ======================================================== building / sending

    def _acting_user(self, user: Any, channel: FakeChannel) -> int:
        uid = _id(user)
        if uid not in self.state.users:
            raise ValueError(f"unknown user {uid}")
        if channel.type == CHANNEL_DM:
            if uid != channel.recipient_id:
                raise ValueError(f"user {uid} is not the user side of DM {channel.id}")
        elif uid not in self.state.guilds[channel.guild_id].members:
            raise ValueError(f"user {uid} is not a member of guild {channel.guild_id}")
        elif not self.state.channel_permissions(channel, uid) & P.VIEW_CHANNEL:
            raise ValueError(f"user {uid} cannot see channel {channel.id}")
        return uid

    def _new_interaction(self, app: FakeBot, uid: int, channel: FakeChannel, kind: int, data: Dict[str, Any], *,
                         message: Optional[FakeMessage] = None, locale: str = "en-US") -> FakeInteraction:
        state = self.state
        iid = self.ids.next()
        token = "fake-ix-" + secrets.token_urlsafe(48)
        channel_payload = state.channel_payload(channel)
        channel_payload["permissions"] = str(state.channel_permissions(channel, uid))
        app_perms = state.channel_permissions(channel, app.id)
        payload: Dict[str, Any] = {
            "id": str(iid),
            "application_id": str(app.application_id),
            "type": kind,
            "data": data,
            "channel": channel_payload,
            "channel_id": str(channel.id),
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": state.upload_limit(channel),
        }
        if channel.guild_id:
            guild = state.guilds[channel.guild_id]
            member = state.member_payload(guild.members[uid])
            member["permissions"] = channel_payload["permissions"]
            payload.update(guild_id=str(guild.id), member=member, guild_locale="en-US", context=0,
                           guild={"id": str(guild.id), "locale": "en-US", "features": list(guild.features)},
                           authorizing_integration_owners={"0": str(guild.id)})
        else:
            app_perms |= DM_APP_EXTRA
            payload.update(user=state.user_payload(state.users[uid]), context=1,
                           authorizing_integration_owners={"0": "0"})
        payload["app_permissions"] = str(app_perms)
        if message is not None:
            payload["message"] = state.message_payload(message, viewer_id=app.id)
        ix = FakeInteraction(id=iid, token=token, type=kind, application_id=app.application_id, user_id=uid,
                             channel_id=channel.id, guild_id=channel.guild_id, data=data, payload=payload,
                             created_at=self.clock(), message_id=message.id if message else None, _fake=self)
        return ix

    async def _deliver(self, ix: FakeInteraction) -> FakeInteraction:
        shard_key = ix.guild_id or 0
        sessions = [s for s in self.gateway.live_sessions()
                    if s.bot.application_id == ix.application_id and s.connected and s.handles_guild(shard_key)]
        if not sessions:
            raise RuntimeError(f"no connected gateway session of application {ix.application_id}: "
                               "the user would see 'This interaction failed'")
        ix.created_at = self.clock()
        self.interactions.append(ix)
        self._ix_by_id[ix.id] = ix
        self._ix_by_token[ix.token] = ix
        sessions[0].dispatch("INTERACTION_CREATE", ix.payload)
        self._notify()
        await self._flush()
        return ix

    # ================================================================ control

    def expire_interaction(self, ix: FakeInteraction) -> None:
        """End the interaction's token now (as 15 minutes passing would): callbacks answer 10062,
        follow-ups and @original edits 10015."""
        ix.expired = True
        self._notify()

    @property
    def unanswered_interactions(self) -> List[FakeInteraction]:
        """Interactions the bot never acknowledged (the user saw "This interaction failed")."""
        return [ix for ix in self.interactions if not ix.acknowledged]

    def interaction(self, interaction_id: Any) -> FakeInteraction:
        return self._ix_by_id[_id(interaction_id)]

    def _ix_alive(self, ix: FakeInteraction) -> bool:
        """Token still usable: not expired, within 15 min, and answered within the deadline."""
        age = self.clock() - ix.created_at
        if ix.expired or age > self.interaction_token_lifetime:
            return False
        if not ix.acknowledged and self.interaction_deadline is not None and age > self.interaction_deadline:
            ix.expired = True  # "If the 3 second deadline is exceeded, the token will be invalidated."
            return False
        return True

    # ============================================================= inspection

    def visible_to(self, user: Any, channel: Any) -> List[FakeMessage]:
        """Messages of a channel as that user sees them: public ones plus their own ephemeral ones."""
        uid = _id(user)
        return [m for m in self.state.channel_messages(self._channel(channel).id)
                if m.ephemeral_to is None or m.ephemeral_to == uid]

    def public_messages(self, channel: Any) -> List[FakeMessage]:
        """Messages of a channel everyone sees (no ephemeral ones, no deleted ones)."""
        return [m for m in self.state.channel_messages(self._channel(channel).id) if m.ephemeral_to is None]

    @staticmethod
    def buttons(message: FakeMessage) -> List[Dict[str, Any]]:
        """Every button of a message (current version), in order."""
        return [c for c in C.walk(message.components) if c.get("type") == C.BUTTON]

    def button(self, message: FakeMessage, *, label: Optional[str] = None,
               custom_id: Optional[str] = None) -> Dict[str, Any]:
        for b in self.buttons(message):
            if (label is None or b.get("label") == label) and (custom_id is None or b.get("custom_id") == custom_id):
                return b
        raise ValueError(f"no button label={label!r} custom_id={custom_id!r} on message {message.id}: "
                         f"{[(b.get('label'), b.get('custom_id')) for b in self.buttons(message)]}")

    # ====================================================== used by the routes

    def _response_message_type(self, ix: FakeInteraction) -> Tuple[int, Optional[FakeMessage]]:
        """Message type (and replied-to message) of a response: 20/23 for commands, 19 for components."""
        root = ix.root
        if root.type == APPLICATION_COMMAND:
            kind = MESSAGE_CHAT_INPUT_COMMAND if root.data.get("type", 1) == C.CHAT_INPUT else MESSAGE_CONTEXT_MENU_COMMAND
            return kind, None
        msg = self.state.messages.get(root.message_id) if root.message_id else None
        return MESSAGE_REPLY, msg if msg is not None and not msg.deleted else None

    def _interaction_metadata(self, ix: FakeInteraction, *, followup_of: Optional[int] = None) -> Dict[str, Any]:
        meta: Dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "user": self.state.user_payload(self.state.users[ix.user_id]),
            "authorizing_integration_owners": dict(ix.payload.get("authorizing_integration_owners", {})),
        }
        if ix.type == APPLICATION_COMMAND:
            meta["name"] = ix.data.get("name")
            meta["command_type"] = ix.data.get("type", 1)
            target = ix.data.get("target_id")
            if ix.data.get("type") == C.USER_COMMAND and target:
                meta["target_user"] = self.state.user_payload(self.state.users[int(target)])
            elif ix.data.get("type") == C.MESSAGE_COMMAND and target:
                meta["target_message_id"] = target
        if ix.message_id and ix.type == MESSAGE_COMPONENT:
            meta["interacted_message_id"] = str(ix.message_id)
        if ix.type == MODAL_SUBMIT and ix.source is not None:
            meta["triggering_interaction_metadata"] = self._interaction_metadata(ix.source)
        if followup_of:
            meta["original_response_message_id"] = str(followup_of)
        return meta

    def _legacy_interaction(self, ix: FakeInteraction) -> Dict[str, Any]:
        data: Dict[str, Any] = {"id": str(ix.id), "type": ix.type, "name": ix.data.get("name", ""),
                                "user": self.state.user_payload(self.state.users[ix.user_id])}
        if ix.guild_id:
            data["member"] = self.state.member_payload(self.state.guilds[ix.guild_id].members[ix.user_id],
                                                       with_user=False)
        return data
