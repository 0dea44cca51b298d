"""Plain data objects held by the fake Discord server, plus ids and constants.

Nothing here talks to the network; :mod:`.state` turns these objects into
the JSON payloads Discord would send.
"""

from __future__ import annotations

import datetime as _dt
import io
import mimetypes
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

# --------------------------------------------------------------------------- ids

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeGenerator:
    """Time-based, strictly increasing Discord snowflakes.

    ``(ms since 2015-01-01) << 22 | worker << 17 | process << 12 | increment``,
    so ``discord.utils.snowflake_time(id)`` gives the creation time.
    """

    def __init__(self, worker: int = 1, process: int = 1) -> None:
        self._prefix = (worker & 0x1F) << 17 | (process & 0x1F) << 12
        self._last_ms = 0
        self._increment = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if ms <= self._last_ms:
            ms = self._last_ms
            self._increment += 1
            if self._increment > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
                self._increment = 0
        else:
            self._increment = 0
        self._last_ms = ms
        return ms << 22 | self._prefix | self._increment


def snowflake_datetime(snowflake: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, tz=_dt.timezone.utc)


def iso(when: Optional[_dt.datetime] = None) -> str:
    """ISO-8601 timestamp the way Discord writes it (``2024-01-01T00:00:00.000000+00:00``)."""
    return (when or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="microseconds")


# ------------------------------------------------------------------- constants


class P:
    """Discord permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    STREAM = 1 << 9
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    USE_VAD = 1 << 25
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    SEND_VOICE_MESSAGES = 1 << 46
    SEND_POLLS = 1 << 49
    USE_EXTERNAL_APPS = 1 << 50

    ALL = (1 << 51) - 1


#: What a fresh guild's @everyone role gets on Discord (no MANAGE_*, no ADMINISTRATOR).
DEFAULT_EVERYONE_PERMISSIONS = (
    P.CREATE_INSTANT_INVITE | P.ADD_REACTIONS | P.STREAM | P.VIEW_CHANNEL | P.SEND_MESSAGES
    | P.EMBED_LINKS | P.ATTACH_FILES | P.READ_MESSAGE_HISTORY | P.MENTION_EVERYONE
    | P.USE_EXTERNAL_EMOJIS | P.CONNECT | P.SPEAK | P.USE_VAD | P.CHANGE_NICKNAME
    | P.USE_APPLICATION_COMMANDS | P.CREATE_PUBLIC_THREADS | P.CREATE_PRIVATE_THREADS
    | P.USE_EXTERNAL_STICKERS | P.SEND_MESSAGES_IN_THREADS | P.SEND_VOICE_MESSAGES
    | P.SEND_POLLS | P.USE_EXTERNAL_APPS
)


class Intent:
    """Gateway intent bits (https://discord.com/developers/docs/events/gateway#gateway-intents)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15

    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


# Application flags saying "this privileged intent is switched on in the developer portal".
APP_FLAG_FOR_INTENT = {
    Intent.GUILD_PRESENCES: 1 << 12,
    Intent.GUILD_MEMBERS: 1 << 14,
    Intent.MESSAGE_CONTENT: 1 << 18,
}

#: Upload limit per file, by guild premium tier (DMs use tier 0).  Same table as
#: ``discord.Guild._PREMIUM_GUILD_LIMITS``.
UPLOAD_LIMIT_BY_TIER = {0: 10 * 1024 * 1024, 1: 10 * 1024 * 1024, 2: 50 * 1024 * 1024, 3: 100 * 1024 * 1024}

CHANNEL_GUILD_TEXT = 0
CHANNEL_DM = 1
CHANNEL_GUILD_CATEGORY = 4

MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20
MESSAGE_CONTEXT_MENU_COMMAND = 23

MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7
MESSAGE_FLAG_IS_COMPONENTS_V2 = 1 << 15


# ----------------------------------------------------------------------- objects


@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False
    discriminator: str = "0"
    global_name: Optional[str] = None
    #: ``False`` makes the bot's DMs to this user fail with 403 / code 50007.
    accepts_dms: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class FakeBot:
    """A bot account + its application (``application_id == id``, as for all modern apps)."""

    user: FakeUser
    token: str
    owner_id: int
    #: Privileged intents enabled "in the developer portal" (bits of :class:`Intent`).
    privileged_intents: int = Intent.PRIVILEGED
    description: str = ""

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def application_id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return f"<@{self.user.id}>"


@dataclass
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"


@dataclass
class FakeMember:
    guild_id: int
    user_id: int
    roles: List[int] = field(default_factory=list)
    nick: Optional[str] = None
    joined_at: str = field(default_factory=iso)


@dataclass
class Overwrite:
    """A channel permission overwrite; ``type`` 0 = role, 1 = member."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0


@dataclass
class FakeChannel:
    id: int
    type: int
    name: Optional[str] = None
    guild_id: Optional[int] = None
    position: int = 0
    topic: Optional[str] = None
    nsfw: bool = False
    parent_id: Optional[int] = None
    overwrites: List[Overwrite] = field(default_factory=list)
    #: DM only: the bot side and the user side of the conversation.
    bot_id: Optional[int] = None
    recipient_id: Optional[int] = None
    last_message_id: Optional[int] = None

    @property
    def is_dm(self) -> bool:
        return self.type == CHANNEL_DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    features: List[str] = field(default_factory=list)
    roles: Dict[int, FakeRole] = field(default_factory=dict)
    members: Dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: List[int] = field(default_factory=list)

    @property
    def everyone_role(self) -> FakeRole:
        return self.roles[self.id]

    @property
    def upload_limit(self) -> int:
        return UPLOAD_LIMIT_BY_TIER.get(self.premium_tier, UPLOAD_LIMIT_BY_TIER[0])


@dataclass
class FakeAttachment:
    """A stored file.  ``data`` holds the exact bytes uploaded; ``url`` serves them."""

    id: int
    filename: str
    data: bytes
    content_type: Optional[str]
    url: str
    width: Optional[int] = None
    height: Optional[int] = None
    description: Optional[str] = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class MessageVersion:
    """A previous version of an edited message (see :attr:`FakeMessage.edits`)."""

    content: str
    embeds: List[Dict[str, Any]]
    attachments: List[FakeAttachment]
    timestamp: str  # ISO time this version was created / last edited
    monotonic: float


@dataclass
class FakeMessage:
    """A message as stored by the fake (sent by a user via ``user_sends`` or by a bot via REST)."""

    id: int
    channel_id: int
    guild_id: Optional[int]
    author_id: int
    content: str = ""
    embeds: List[Dict[str, Any]] = field(default_factory=list)
    attachments: List[FakeAttachment] = field(default_factory=list)
    #: Id of the message this one replies to (``None`` if not a reply).
    message_reference: Optional[int] = None
    #: The raw ``message_reference`` object (``message_id``/``channel_id``/``guild_id``/``type``).
    reference: Optional[Dict[str, Any]] = None
    type: int = MESSAGE_DEFAULT
    tts: bool = False
    flags: int = 0
    nonce: Optional[str] = None
    components: List[Dict[str, Any]] = field(default_factory=list)
    mentions: List[int] = field(default_factory=list)
    mention_roles: List[int] = field(default_factory=list)
    mention_everyone: bool = False
    #: ``allowed_mentions`` exactly as the bot sent it (``None`` if absent).
    allowed_mentions: Optional[Dict[str, Any]] = None
    pinned: bool = False
    #: emoji (unicode string or ``name:id``) -> ids of users who reacted.
    reactions: Dict[str, Set[int]] = field(default_factory=dict)
    #: Previous versions, oldest first; the current version is the message itself.
    edits: List[MessageVersion] = field(default_factory=list)
    timestamp: str = ""
    edited_timestamp: Optional[str] = None
    created_at: float = field(default_factory=time.monotonic)
    edited_at: Optional[float] = None
    deleted: bool = False
    deleted_at: Optional[float] = None
    #: Set for messages created through an interaction (response or follow-up).
    interaction_id: Optional[int] = None
    #: The application's id for messages sent through an interaction token (Discord sets ``webhook_id``).
    webhook_id: Optional[int] = None
    #: The only user who sees this message (ephemeral interaction responses), else ``None``.
    ephemeral_to: Optional[int] = None
    #: ``interaction_metadata`` (and the legacy ``interaction``) object Discord attaches, as sent.
    interaction_metadata: Optional[Dict[str, Any]] = None
    interaction_legacy: Optional[Dict[str, Any]] = None

    @property
    def ephemeral(self) -> bool:
        return self.ephemeral_to is not None

    @property
    def loading(self) -> bool:
        """A deferred response not yet edited ("<bot> is thinking...")."""
        return bool(self.flags & MESSAGE_FLAG_LOADING)

    @property
    def attachment_names(self) -> List[str]:
        return [a.filename for a in self.attachments]


# ------------------------------------------------------------------------ files


def describe_file(filename: str, data: bytes, content_type: Optional[str] = None):
    """Return ``(content_type, width, height)`` for an uploaded file.

    The content type comes from the explicit argument, else from the file name
    (as Discord does; discord.py uploads every file as application/octet-stream),
    else from Pillow's sniffing.  Width/height are read with Pillow for images.
    """
    guessed = content_type or mimetypes.guess_type(filename)[0]
    width = height = None
    if guessed is None or guessed.startswith("image/"):
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if guessed is None and img.format:
                    guessed = Image.MIME.get(img.format)
        except Exception:
            pass
    return guessed, width, height
