"""Storage of the fake's world (users, guilds, channels, messages), permission
computation, and the JSON payloads Discord would produce for them.

Payload shapes follow the Discord API v10 docs and what discord.py 2.7
reads (``Guild._from_data``, ``Member.__init__`` - which requires ``flags`` -,
``Message.__init__``, ``Attachment.__init__``, ``AppInfo.__init__`` ...).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Optional

from .models import (
    APP_FLAG_FOR_INTENT,
    CHANNEL_DM,
    CHANNEL_GUILD_TEXT,
    FakeAttachment,
    FakeBot,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Intent,
    P,
    UPLOAD_LIMIT_BY_TIER,
)

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")

# Permissions that are meaningless without SEND_MESSAGES (Discord strips them).
_SEND_DEPENDENT = P.SEND_TTS_MESSAGES | P.EMBED_LINKS | P.ATTACH_FILES | P.MENTION_EVERYONE


class FakeState:
    def __init__(self) -> None:
        self.users: Dict[int, FakeUser] = {}
        self.bots: Dict[int, FakeBot] = {}
        self.guilds: Dict[int, FakeGuild] = {}
        self.channels: Dict[int, FakeChannel] = {}
        self.messages: Dict[int, FakeMessage] = {}
        #: (application_id, guild_id or None) -> list of application command payloads
        self.app_commands: Dict[Any, List[Dict[str, Any]]] = {}

    # ------------------------------------------------------------------ lookups

    def bot_by_token(self, token: Optional[str]) -> Optional[FakeBot]:
        if not token:
            return None
        for bot in self.bots.values():
            if bot.token == token:
                return bot
        return None

    def channel_messages(self, channel_id: int, include_deleted: bool = False) -> List[FakeMessage]:
        return sorted(
            (m for m in self.messages.values() if m.channel_id == channel_id and (include_deleted or not m.deleted)),
            key=lambda m: m.id,
        )

    def guilds_of(self, user_id: int) -> List[FakeGuild]:
        return [g for g in self.guilds.values() if user_id in g.members]

    def upload_limit(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return UPLOAD_LIMIT_BY_TIER[0]
        return self.guilds[channel.guild_id].upload_limit

    # ------------------------------------------------------------- permissions

    def base_permissions(self, guild: FakeGuild, user_id: int) -> int:
        if user_id == guild.owner_id:
            return P.ALL
        member = guild.members.get(user_id)
        if member is None:
            return 0
        perms = guild.everyone_role.permissions
        for role_id in member.roles:
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & P.ADMINISTRATOR:
            return P.ALL
        return perms

    def channel_permissions(self, channel: FakeChannel, user_id: int) -> int:
        """Discord's permission algorithm (base permissions + channel overwrites)."""
        if channel.type == CHANNEL_DM:
            allowed = {channel.bot_id, channel.recipient_id}
            return (P.VIEW_CHANNEL | P.SEND_MESSAGES | P.READ_MESSAGE_HISTORY | P.ATTACH_FILES
                    | P.EMBED_LINKS | P.ADD_REACTIONS) if user_id in allowed else 0
        guild = self.guilds[channel.guild_id]
        perms = self.base_permissions(guild, user_id)
        if perms == P.ALL:
            return P.ALL
        member = guild.members.get(user_id)
        roles = set(member.roles) if member else set()
        everyone = [o for o in channel.overwrites if o.type == 0 and o.id == guild.id]
        role_ows = [o for o in channel.overwrites if o.type == 0 and o.id in roles]
        member_ows = [o for o in channel.overwrites if o.type == 1 and o.id == user_id]
        for group in (everyone, role_ows, member_ows):
            allow = deny = 0
            for ow in group:
                allow |= ow.allow
                deny |= ow.deny
            perms = (perms & ~deny) | allow
        if not perms & P.VIEW_CHANNEL:
            return 0
        if not perms & P.SEND_MESSAGES:
            perms &= ~_SEND_DEPENDENT
        return perms

    # -------------------------------------------------------------- payloads

    def user_payload(self, user: FakeUser) -> Dict[str, Any]:
        return {
            "id": str(user.id),
            "username": user.name,
            "discriminator": user.discriminator,
            "global_name": user.global_name,
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
            "public_flags": 0,
            "bot": user.bot,
        }

    def me_payload(self, bot: FakeBot) -> Dict[str, Any]:
        """``GET /users/@me`` and READY ``user``: a user plus private fields."""
        return {
            **self.user_payload(bot.user),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
            "flags": 0,
            "premium_type": 0,
        }

    def application_flags(self, bot: FakeBot) -> int:
        flags = 0
        for intent, flag in APP_FLAG_FOR_INTENT.items():
            if bot.privileged_intents & intent:
                flags |= flag
        return flags

    def application_payload(self, bot: FakeBot) -> Dict[str, Any]:
        owner = self.users[bot.owner_id]
        return {
            "id": str(bot.application_id),
            "name": bot.name,
            "icon": None,
            "description": bot.description,
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.user_payload(owner),
            "team": None,
            "flags": self.application_flags(bot),
            "hook": True,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds_of(bot.id)),
            "bot": self.user_payload(bot.user),
        }

    def role_payload(self, role: FakeRole) -> Dict[str, Any]:
        return {
            "id": str(role.id),
            "name": role.name,
            "description": None,
            "color": role.color,
            "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
            "hoist": role.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": role.position,
            "permissions": str(role.permissions),
            "managed": role.managed,
            "mentionable": role.mentionable,
            "flags": 0,
        }

    def member_payload(self, member: FakeMember, with_user: bool = True) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in member.roles],
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user_payload(self.users[member.user_id])
        return data

    def channel_payload(self, channel: FakeChannel) -> Dict[str, Any]:
        if channel.type == CHANNEL_DM:
            return {
                "id": str(channel.id),
                "type": CHANNEL_DM,
                "last_message_id": str(channel.last_message_id) if channel.last_message_id else None,
                "recipients": [self.user_payload(self.users[channel.recipient_id])],
                "flags": 0,
            }
        data: Dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "parent_id": str(channel.parent_id) if channel.parent_id else None,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites
            ],
            "nsfw": channel.nsfw,
            "flags": 0,
        }
        if channel.type == CHANNEL_GUILD_TEXT:
            data.update(
                topic=channel.topic,
                rate_limit_per_user=0,
                last_message_id=str(channel.last_message_id) if channel.last_message_id else None,
                default_auto_archive_duration=1440,
            )
        return data

    def guild_payload(self, guild: FakeGuild, *, with_counts: bool = False) -> Dict[str, Any]:
        """The REST guild object (``GET /guilds/{id}``)."""
        text_channels = [c for c in guild.channel_ids if self.channels[c].type == CHANNEL_GUILD_TEXT]
        data: Dict[str, Any] = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self.role_payload(r) for r in sorted(guild.roles.values(), key=lambda r: r.position)],
            "emojis": [],
            "stickers": [],
            "features": list(guild.features),
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(text_channels[0]) if text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(guild.premium_tier, 0),
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "nsfw": False,
            "incidents_data": None,
        }
        if with_counts:
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return data

    def guild_create_payload(self, guild: FakeGuild, bot_id: int, intents: int) -> Dict[str, Any]:
        """The gateway GUILD_CREATE object: REST guild + channels, members, ...

        Without the GUILD_MEMBERS intent Discord only includes the bot's own
        member (there are no voice states here), so that is what we do too.
        """
        members = list(guild.members.values())
        if not intents & Intent.GUILD_MEMBERS:
            members = [m for m in members if m.user_id == bot_id]
        return {
            **self.guild_payload(guild),
            "joined_at": guild.members[bot_id].joined_at,
            "large": len(guild.members) >= 250,
            "unavailable": False,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [self.member_payload(m) for m in members],
            "channels": [self.channel_payload(self.channels[c]) for c in guild.channel_ids],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
        }

    def attachment_payload(self, att: FakeAttachment) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "id": str(att.id),
            "filename": att.filename,
            "size": att.size,
            "url": att.url,
            "proxy_url": att.url,
            "flags": 0,
        }
        if att.content_type:
            data["content_type"] = att.content_type
        if att.width is not None:
            data["width"] = att.width
            data["height"] = att.height
        if att.description is not None:
            data["description"] = att.description
        return data

    def message_payload(
        self,
        msg: FakeMessage,
        *,
        viewer_id: Optional[int] = None,
        gateway: bool = False,
        hide_content: Optional[Callable[[FakeMessage], bool]] = None,
        _depth: int = 0,
    ) -> Dict[str, Any]:
        """A message object.

        ``gateway=True`` adds what MESSAGE_CREATE/UPDATE carry on top of the
        REST shape: ``guild_id``, the author's partial ``member`` and
        ``member`` inside each mention.  When ``hide_content(msg)`` is true,
        content/embeds/attachments/components are emptied, as Discord does
        for bots without the MESSAGE_CONTENT intent.  ``viewer_id`` (the bot asking)
        decides ``reactions[].me``.
        """
        strip_content = bool(hide_content and hide_content(msg))
        author = self.users[msg.author_id]
        guild = self.guilds.get(msg.guild_id) if msg.guild_id else None
        mentions = []
        for uid in msg.mentions:
            user = self.users.get(uid)
            if user is None:
                continue
            mention = self.user_payload(user)
            if gateway and guild and uid in guild.members:
                mention["member"] = self.member_payload(guild.members[uid], with_user=False)
            mentions.append(mention)
        data: Dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self.user_payload(author),
            "content": "" if strip_content else msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": msg.tts,
            "mention_everyone": msg.mention_everyone,
            "mentions": mentions,
            "mention_roles": [str(r) for r in msg.mention_roles],
            "attachments": [] if strip_content else [self.attachment_payload(a) for a in msg.attachments],
            "embeds": [] if strip_content else [dict(e) for e in msg.embeds],
            "components": [] if strip_content else list(msg.components),
            "pinned": msg.pinned,
            "type": msg.type,
            "flags": msg.flags,
        }
        if msg.nonce is not None and _depth == 0:
            data["nonce"] = msg.nonce
        if msg.webhook_id is not None:
            data["webhook_id"] = str(msg.webhook_id)
            data["application_id"] = str(msg.webhook_id)
        if msg.interaction_metadata is not None:
            data["interaction_metadata"] = dict(msg.interaction_metadata)
        if msg.interaction_legacy is not None:
            data["interaction"] = dict(msg.interaction_legacy)
        if msg.reactions:
            data["reactions"] = [
                {
                    "emoji": _emoji_payload(emoji),
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": viewer_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in msg.reactions.items()
                if users
            ]
        if msg.reference is not None:
            data["message_reference"] = dict(msg.reference)
            if _depth == 0 and msg.message_reference is not None:
                ref = self.messages.get(msg.message_reference)
                if ref is None or ref.deleted:
                    data["referenced_message"] = None
                else:
                    data["referenced_message"] = self.message_payload(
                        ref, viewer_id=viewer_id, hide_content=hide_content, _depth=1
                    )
        if gateway and guild is not None:
            data["guild_id"] = str(guild.id)
            member = guild.members.get(msg.author_id)
            if member is not None:
                data["member"] = self.member_payload(member, with_user=False)
        return data

    # ---------------------------------------------------------------- helpers

    def parse_mentions(self, content: str, guild: Optional[FakeGuild]):
        users = [int(u) for u in _USER_MENTION.findall(content or "") if int(u) in self.users]
        roles = [int(r) for r in _ROLE_MENTION.findall(content or "") if guild and int(r) in guild.roles]
        return list(dict.fromkeys(users)), list(dict.fromkeys(roles))

    def members_chunk(self, guild: FakeGuild, user_ids: Optional[Iterable[int]], query: str, limit: int):
        members = list(guild.members.values())
        if user_ids:
            wanted = {int(u) for u in user_ids}
            members = [m for m in members if m.user_id in wanted]
        elif query:
            q = query.lower()
            members = [m for m in members if self.users[m.user_id].name.lower().startswith(q)]
        if limit:
            members = members[:limit]
        return [self.member_payload(m) for m in members]


def _emoji_payload(emoji: str) -> Dict[str, Any]:
    if ":" in emoji:  # custom emoji "name:id"
        name, _, eid = emoji.rpartition(":")
        return {"id": eid, "name": name, "animated": False}
    return {"id": None, "name": emoji}
