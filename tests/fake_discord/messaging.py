"""Messages for :class:`FakeDiscord`: users acting (``user_sends`` ...), and the
storage + gateway dispatch shared with the REST handlers."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import quote

from .gateway import GatewaySession
from .models import (
    CHANNEL_DM,
    MESSAGE_DEFAULT,
    MESSAGE_REPLY,
    FakeAttachment,
    FakeChannel,
    FakeMessage,
    Intent,
    MessageVersion,
    P,
    describe_file,
    iso,
    snowflake_datetime,
)
from .world import _id

if TYPE_CHECKING:  # pragma: no cover
    from .gateway import Gateway
    from .models import FakeGuild, SnowflakeGenerator
    from .state import FakeState

MessageRef = Union[int, FakeMessage]
AttachmentSpec = Union[Tuple[str, bytes], Tuple[str, bytes, Optional[str]]]


class MessagingMixin:
    if TYPE_CHECKING:
        state: FakeState
        ids: SnowflakeGenerator
        gateway: Gateway
        attachments: Dict[int, FakeAttachment]
        base_url: str
        edit_log: List[Tuple[int, int, float]]

        def _notify(self) -> None: ...
        def _guild(self, guild_id: Any) -> FakeGuild: ...
        def get_message(self, message: MessageRef) -> FakeMessage: ...

    async def user_sends(
        self,
        channel_id: Any,
        author_id: Any,
        content: str = "",
        *,
        attachments: Iterable[AttachmentSpec] = (),
        reply_to: Optional[MessageRef] = None,
        embeds: Optional[List[Dict[str, Any]]] = None,
    ) -> FakeMessage:
        """Post a message as a user and dispatch MESSAGE_CREATE to the bots that can see it.

        ``attachments``: ``(filename, data)`` or ``(filename, data, content_type)``;
        the files are hosted at ``attachment.url``.  ``reply_to``: a message
        (id or ``FakeMessage``) in the same channel; the dispatched message
        then has ``message_reference`` + ``referenced_message`` and type 19.
        ``<@id>``/``<@&id>`` in ``content`` fill ``mentions``/``mention_roles``.
        Returns once the event is written to every connected session's socket.
        """
        channel = self._channel(channel_id)
        uid = _id(author_id)
        if uid not in self.state.users:
            raise ValueError(f"unknown user {uid}")
        if channel.type == CHANNEL_DM:
            if uid != channel.recipient_id:
                raise ValueError(f"user {uid} is not the user side of DM {channel.id}")
        elif uid not in self._guild(channel.guild_id).members:
            raise ValueError(f"user {uid} is not a member of guild {channel.guild_id}")
        reply = None
        if reply_to is not None:
            reply = self.get_message(reply_to)
            if reply.channel_id != channel.id or reply.deleted:
                raise ValueError(f"message {reply.id} is not a live message of channel {channel.id}")
        files = [self._make_attachment(channel.id, spec[0], spec[1], spec[2] if len(spec) > 2 else None)
                 for spec in attachments]
        msg = self._create_message(channel, uid, content, embeds=embeds or [], attachments=files, reply_to=reply)
        await self._flush()
        return msg

    async def user_edits(self, message: MessageRef, content: Optional[str] = None, *,
                         embeds: Optional[List[Dict[str, Any]]] = None) -> FakeMessage:
        """Edit a user's message (dispatches MESSAGE_UPDATE)."""
        msg = self.get_message(message)
        changes: Dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if embeds is not None:
            changes["embeds"] = embeds
        self._edit_message(msg, **changes)
        await self._flush()
        return msg

    async def user_deletes(self, message: MessageRef) -> FakeMessage:
        """Delete a message (dispatches MESSAGE_DELETE)."""
        msg = self.get_message(message)
        self._delete_message(msg)
        await self._flush()
        return msg

    async def user_reacts(self, message: MessageRef, user_id: Any, emoji: str, *, remove: bool = False) -> FakeMessage:
        """Add (or remove) a user's reaction (MESSAGE_REACTION_ADD/REMOVE; reaction intents needed)."""
        msg = self.get_message(message)
        self._react(msg, _id(user_id), emoji, add=not remove)
        await self._flush()
        return msg

    async def _flush(self, timeout: float = 5.0) -> None:
        futures = [c.flushed() for c in list(self.gateway.connections)]
        if futures:
            await asyncio.wait(futures, timeout=timeout)

    # ------------------------------------------- storage (shared with the REST handlers)

    def _channel(self, channel_id: Any) -> FakeChannel:
        try:
            return self.state.channels[_id(channel_id)]
        except KeyError:
            raise ValueError(f"unknown channel {channel_id}") from None

    def _make_attachment(self, channel_id: int, filename: str, data: bytes, content_type: Optional[str] = None,
                         description: Optional[str] = None) -> FakeAttachment:
        att_id = self.ids.next()
        ctype, width, height = describe_file(filename, data, content_type)
        url = f"{self.base_url}/attachments/{channel_id}/{att_id}/{quote(filename)}"
        att = FakeAttachment(id=att_id, filename=filename, data=bytes(data), content_type=ctype, url=url,
                             width=width, height=height, description=description)
        self.attachments[att_id] = att
        return att

    def _create_message(self, channel: FakeChannel, author_id: int, content: str, *,
                        embeds: List[Dict[str, Any]], attachments: List[FakeAttachment],
                        reply_to: Optional[FakeMessage] = None, tts: bool = False, flags: int = 0,
                        nonce: Optional[str] = None, components: Optional[List[Dict[str, Any]]] = None,
                        allowed_mentions: Optional[Dict[str, Any]] = None, message_type: Optional[int] = None,
                        **interaction_fields: Any) -> FakeMessage:
        """Store a message and dispatch MESSAGE_CREATE (never for ephemeral ones, as on Discord).

        ``interaction_fields``: ``interaction_id``, ``webhook_id``, ``ephemeral_to``,
        ``interaction_metadata``, ``interaction_legacy`` (see :class:`FakeMessage`).
        """
        mid = self.ids.next()
        guild = self.state.guilds.get(channel.guild_id) if channel.guild_id else None
        msg = FakeMessage(id=mid, channel_id=channel.id, guild_id=guild.id if guild else None, author_id=author_id,
                          content=content or "", embeds=list(embeds), attachments=list(attachments), tts=tts,
                          flags=flags, nonce=nonce, components=list(components or []),
                          allowed_mentions=allowed_mentions, timestamp=iso(snowflake_datetime(mid)),
                          **interaction_fields)
        if message_type is not None:
            msg.type = message_type
            if reply_to is not None:
                msg.message_reference = reply_to.id
                msg.reference = {"type": 0, "message_id": str(reply_to.id), "channel_id": str(reply_to.channel_id)}
                if reply_to.guild_id:
                    msg.reference["guild_id"] = str(reply_to.guild_id)
        elif reply_to is not None:
            msg.type = MESSAGE_REPLY
            msg.message_reference = reply_to.id
            msg.reference = {"type": 0, "message_id": str(reply_to.id), "channel_id": str(reply_to.channel_id)}
            if reply_to.guild_id:
                msg.reference["guild_id"] = str(reply_to.guild_id)
        elif message_type is None:
            msg.type = MESSAGE_DEFAULT
        self._set_mentions(msg, channel, reply_to)
        self.state.messages[mid] = msg
        if not msg.ephemeral:
            channel.last_message_id = mid
            self._dispatch_message("MESSAGE_CREATE", msg, channel)
        self._notify()
        return msg

    def _set_mentions(self, msg: FakeMessage, channel: FakeChannel, reply_to: Optional[FakeMessage]) -> None:
        guild = self.state.guilds.get(channel.guild_id) if channel.guild_id else None
        users, roles = self.state.parse_mentions(msg.content, guild)
        am = msg.allowed_mentions
        if reply_to is not None and reply_to.author_id != msg.author_id:
            # Replies ping the replied-to author unless allowed_mentions says otherwise.
            if am is None or am.get("replied_user"):
                users.append(reply_to.author_id)
        msg.mentions = list(dict.fromkeys(users))
        msg.mention_roles = roles
        wants_everyone = "@everyone" in msg.content or "@here" in msg.content
        allowed = am is None or "everyone" in (am.get("parse") or [])
        msg.mention_everyone = bool(
            wants_everyone and allowed and self.state.channel_permissions(channel, msg.author_id) & P.MENTION_EVERYONE
        )

    def _edit_message(self, msg: FakeMessage, **changes: Any) -> None:
        msg.edits.append(MessageVersion(content=msg.content, embeds=list(msg.embeds),
                                        attachments=list(msg.attachments),
                                        timestamp=msg.edited_timestamp or msg.timestamp,
                                        monotonic=msg.edited_at or msg.created_at))
        for key, value in changes.items():
            setattr(msg, key, value)
        msg.edited_timestamp = iso()
        msg.edited_at = time.monotonic()
        self.edit_log.append((msg.channel_id, msg.id, msg.edited_at))
        channel = self.state.channels[msg.channel_id]
        if "content" in changes:
            reply = self.state.messages.get(msg.message_reference) if msg.message_reference else None
            self._set_mentions(msg, channel, reply)
        if not msg.ephemeral:
            self._dispatch_message("MESSAGE_UPDATE", msg, channel)
        self._notify()

    def _delete_message(self, msg: FakeMessage) -> None:
        if msg.deleted:
            return
        msg.deleted = True
        msg.deleted_at = time.monotonic()
        channel = self.state.channels[msg.channel_id]
        data: Dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.guild_id:
            data["guild_id"] = str(msg.guild_id)
        if not msg.ephemeral:
            self._dispatch_message("MESSAGE_DELETE", msg, channel, data=data)
        self._notify()

    def _react(self, msg: FakeMessage, user_id: int, emoji: str, *, add: bool) -> None:
        users = msg.reactions.setdefault(emoji, set())
        if (user_id in users) == add:
            return
        (users.add if add else users.discard)(user_id)
        if not users:
            del msg.reactions[emoji]
        channel = self.state.channels[msg.channel_id]
        name, _, eid = emoji.rpartition(":") if ":" in emoji else (emoji, "", None)
        data: Dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "emoji": {"id": eid, "name": name},
            "burst": False,
            "type": 0,
        }
        if msg.guild_id:
            data["guild_id"] = str(msg.guild_id)
            member = self.state.guilds[msg.guild_id].members.get(user_id)
            if add and member is not None:
                data["member"] = self.state.member_payload(member)
        if add:
            data["message_author_id"] = str(msg.author_id)
            data["burst_colors"] = []
        intent = Intent.DIRECT_MESSAGE_REACTIONS if channel.type == CHANNEL_DM else Intent.GUILD_MESSAGE_REACTIONS
        event = "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"
        for session in self._channel_sessions(channel, intent):
            session.dispatch(event, data)
        self._notify()

    # ------------------------------------------------------------- dispatching

    def _guild_sessions(self, guild_id: int) -> List[GatewaySession]:
        guild = self.state.guilds[guild_id]
        return [s for s in self.gateway.live_sessions() if s.bot.id in guild.members and s.handles_guild(guild_id)]

    def _channel_sessions(self, channel: FakeChannel, intent: int) -> List[GatewaySession]:
        if channel.type == CHANNEL_DM:
            sessions = [s for s in self.gateway.live_sessions() if s.bot.id == channel.bot_id]
        else:
            sessions = self._guild_sessions(channel.guild_id)
        return [s for s in sessions if s.has_intent(intent)]

    def _dispatch_guild(self, guild_id: int, intent: int, event: str,
                        payload: Callable[[GatewaySession], Dict[str, Any]], skip_bot: Optional[int] = None) -> None:
        for session in self._guild_sessions(guild_id):
            if session.has_intent(intent) and session.bot.id != skip_bot:
                session.dispatch(event, payload(session))
        self._notify()

    def _dispatch_message(self, event: str, msg: FakeMessage, channel: FakeChannel,
                          data: Optional[Dict[str, Any]] = None) -> None:
        intent = Intent.DIRECT_MESSAGES if channel.type == CHANNEL_DM else Intent.GUILD_MESSAGES
        for session in self._channel_sessions(channel, intent):
            if data is not None:
                session.dispatch(event, data)
                continue
            bot_id = session.bot.id
            can_read = session.has_intent(Intent.MESSAGE_CONTENT)

            def hide(m: FakeMessage, bot_id: int = bot_id, can_read: bool = can_read) -> bool:
                # Discord empties content for bots without MESSAGE_CONTENT, except their own
                # messages, DMs and messages mentioning them.
                return not (can_read or m.author_id == bot_id or bot_id in m.mentions or m.guild_id is None)

            session.dispatch(event, self.state.message_payload(msg, viewer_id=bot_id, gateway=True, hide_content=hide))
