"""World building for :class:`FakeDiscord`: bots, users, guilds, roles, members, channels, DMs.

Changes made while clients are connected are dispatched as gateway events
(GUILD_CREATE, CHANNEL_CREATE/UPDATE, GUILD_ROLE_CREATE/UPDATE, GUILD_MEMBER_ADD/UPDATE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Sequence

from .models import (
    CHANNEL_DM,
    CHANNEL_GUILD_TEXT,
    DEFAULT_EVERYONE_PERMISSIONS,
    FakeBot,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Intent,
    Overwrite,
)

if TYPE_CHECKING:  # pragma: no cover
    from .gateway import Gateway
    from .models import SnowflakeGenerator
    from .state import FakeState


def _id(obj: Any) -> int:
    return int(getattr(obj, "id", obj))


class WorldMixin:
    if TYPE_CHECKING:
        state: FakeState
        ids: SnowflakeGenerator
        gateway: Gateway

        def _notify(self) -> None: ...
        def _dispatch_guild(self, guild_id, intent, event, payload, skip_bot=None) -> None: ...
        def _guild_sessions(self, guild_id): ...

    def add_bot(
        self,
        token: str = "test-token",
        *,
        user_id: Optional[int] = None,
        name: str = "StyleBot",
        owner_id: Optional[int] = None,
        privileged_intents: int = Intent.PRIVILEGED,
        join_guilds: bool = True,
    ) -> FakeBot:
        """Register a bot account + application (``application_id == user id``).

        ``owner_id`` is the application owner (what ``Bot.is_owner`` checks);
        a user "<name>-owner" is created when omitted.  ``privileged_intents``
        is what the "developer portal" allows (bits of ``Intent``; IDENTIFY
        asking for more is closed with 4014).  With ``join_guilds`` the bot
        becomes a member of every existing guild (and ``add_guild`` adds all
        bots to new guilds by default).
        """
        if self.state.bot_by_token(token) is not None:
            raise ValueError(f"token {token!r} is already used")
        user = self._new_user(name, bot=True, user_id=user_id, discriminator="0001")
        if owner_id is None:
            owner_id = self.add_user(f"{name}-owner").id
        elif owner_id not in self.state.users:
            raise ValueError(f"unknown owner user {owner_id}")
        bot = FakeBot(user=user, token=token, owner_id=owner_id, privileged_intents=privileged_intents)
        self.state.bots[user.id] = bot
        if join_guilds:
            for guild in list(self.state.guilds.values()):
                self.add_member(guild.id, user.id)
        return bot

    def add_user(
        self,
        name: str = "user",
        bot: bool = False,
        *,
        user_id: Optional[int] = None,
        global_name: Optional[str] = None,
        accepts_dms: bool = True,
    ) -> FakeUser:
        """A (non-application) user.  ``accepts_dms=False``: the bot's DMs to them fail with 50007."""
        return self._new_user(name, bot=bot, user_id=user_id, global_name=global_name, accepts_dms=accepts_dms)

    def _new_user(self, name: str, *, bot: bool, user_id: Optional[int], **kw: Any) -> FakeUser:
        uid = user_id or self.ids.next()
        if uid in self.state.users:
            raise ValueError(f"user id {uid} already exists")
        user = FakeUser(id=uid, name=name, bot=bot, **kw)
        self.state.users[uid] = user
        return user

    def add_guild(
        self,
        guild_id: Optional[int] = None,
        name: str = "Test Server",
        owner_id: Optional[int] = None,
        premium_tier: int = 0,
        *,
        features: Sequence[str] = (),
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        add_bots: bool = True,
    ) -> FakeGuild:
        """A guild with its @everyone role (id == guild id, ``everyone_permissions``).

        The owner (a new user "<name> owner" when ``owner_id`` is None) is made a
        member, and so is every registered bot when ``add_bots``.  The owner has
        every permission - do not use the owner as the "plain member" in tests.
        """
        gid = guild_id or self.ids.next()
        if gid in self.state.guilds:
            raise ValueError(f"guild id {gid} already exists")
        if owner_id is None:
            owner_id = self.add_user(f"{name} owner").id
        elif owner_id not in self.state.users:
            raise ValueError(f"unknown owner user {owner_id}")
        guild = FakeGuild(id=gid, name=name, owner_id=owner_id, premium_tier=premium_tier, features=list(features))
        guild.roles[gid] = FakeRole(id=gid, guild_id=gid, name="@everyone", permissions=everyone_permissions)
        self.state.guilds[gid] = guild
        self.add_member(gid, owner_id)
        if add_bots:
            for bot_id in self.state.bots:
                if bot_id != owner_id:
                    self.add_member(gid, bot_id)
        return guild

    def add_text_channel(
        self,
        guild_id: int,
        name: str = "general",
        *,
        channel_id: Optional[int] = None,
        position: Optional[int] = None,
        topic: Optional[str] = None,
        nsfw: bool = False,
        parent_id: Optional[int] = None,
        overwrites: Iterable[Overwrite] = (),
    ) -> FakeChannel:
        """A GUILD_TEXT channel (CHANNEL_CREATE is dispatched if clients are connected)."""
        guild = self._guild(guild_id)
        cid = channel_id or self.ids.next()
        if cid in self.state.channels:
            raise ValueError(f"channel id {cid} already exists")
        channel = FakeChannel(
            id=cid,
            type=CHANNEL_GUILD_TEXT,
            name=name,
            guild_id=guild.id,
            position=len(guild.channel_ids) if position is None else position,
            topic=topic,
            nsfw=nsfw,
            parent_id=parent_id,
            overwrites=list(overwrites),
        )
        self.state.channels[cid] = channel
        guild.channel_ids.append(cid)
        self._dispatch_guild(guild.id, Intent.GUILDS, "CHANNEL_CREATE", lambda s: self.state.channel_payload(channel))
        return channel

    def add_role(
        self,
        guild_id: int,
        name: str,
        permissions: int = 0,
        *,
        role_id: Optional[int] = None,
        position: Optional[int] = None,
        color: int = 0,
        hoist: bool = False,
        mentionable: bool = False,
    ) -> FakeRole:
        """A role; ``permissions`` is a bit field (e.g. ``discord.Permissions(manage_guild=True).value``)."""
        guild = self._guild(guild_id)
        rid = role_id or self.ids.next()
        if position is None:
            position = max(r.position for r in guild.roles.values()) + 1
        role = FakeRole(id=rid, guild_id=guild.id, name=name, permissions=int(permissions), position=position,
                        color=color, hoist=hoist, mentionable=mentionable)
        guild.roles[rid] = role
        self._dispatch_guild(guild.id, Intent.GUILDS, "GUILD_ROLE_CREATE",
                             lambda s: {"guild_id": str(guild.id), "role": self.state.role_payload(role)})
        return role

    def update_role(self, guild_id: int, role_id: Any, *, permissions: Optional[int] = None,
                    name: Optional[str] = None) -> FakeRole:
        """Change a role (dispatches GUILD_ROLE_UPDATE)."""
        guild = self._guild(guild_id)
        role = guild.roles[_id(role_id)]
        if permissions is not None:
            role.permissions = int(permissions)
        if name is not None:
            role.name = name
        self._dispatch_guild(guild.id, Intent.GUILDS, "GUILD_ROLE_UPDATE",
                             lambda s: {"guild_id": str(guild.id), "role": self.state.role_payload(role)})
        return role

    def add_member(self, guild_id: int, user_id: Any, roles: Iterable[Any] = (), *,
                   nick: Optional[str] = None) -> FakeMember:
        """Make a user (or bot) a guild member.  ``roles``: role ids or ``FakeRole`` objects.

        Connected clients get GUILD_MEMBER_ADD (GUILD_MEMBERS intent); a bot
        being added gets GUILD_CREATE.
        """
        guild = self._guild(guild_id)
        uid = _id(user_id)
        if uid not in self.state.users:
            raise ValueError(f"unknown user {uid}")
        role_ids = self._role_ids(guild, roles)
        member = FakeMember(guild_id=guild.id, user_id=uid, roles=role_ids, nick=nick)
        guild.members[uid] = member
        for session in self.gateway.live_sessions():
            if session.bot.id == uid and session.handles_guild(guild.id) and session.has_intent(Intent.GUILDS):
                session.dispatch("GUILD_CREATE", self.state.guild_create_payload(guild, uid, session.intents))
        self._dispatch_guild(
            guild.id, Intent.GUILD_MEMBERS, "GUILD_MEMBER_ADD",
            lambda s: {**self.state.member_payload(member), "guild_id": str(guild.id)},
            skip_bot=uid,
        )
        self._notify()
        return member

    def update_member(self, guild_id: int, user_id: Any, *, roles: Optional[Iterable[Any]] = None,
                      nick: Any = ...) -> FakeMember:
        """Change a member's roles/nick (dispatches GUILD_MEMBER_UPDATE: to sessions with the
        GUILD_MEMBERS intent, and always to the bot whose own member changed)."""
        guild = self._guild(guild_id)
        member = guild.members[_id(user_id)]
        if roles is not None:
            member.roles = self._role_ids(guild, roles)
        if nick is not ...:
            member.nick = nick
        payload = lambda s: {**self.state.member_payload(member), "guild_id": str(guild.id)}  # noqa: E731
        for session in self._guild_sessions(guild.id):
            if session.has_intent(Intent.GUILD_MEMBERS) or session.bot.id == member.user_id:
                session.dispatch("GUILD_MEMBER_UPDATE", payload(session))
        self._notify()
        return member

    def set_overwrite(self, channel_id: int, target: Any, *, allow: int = 0, deny: int = 0) -> FakeChannel:
        """Set a channel permission overwrite for a role (or @everyone: the guild id) or a member.

        ``allow=0, deny=0`` removes it.  Dispatches CHANNEL_UPDATE.
        """
        channel = self.state.channels[_id(channel_id)]
        guild = self._guild(channel.guild_id)
        tid = _id(target)
        kind = 0 if tid in guild.roles else 1
        channel.overwrites = [o for o in channel.overwrites if o.id != tid]
        if allow or deny:
            channel.overwrites.append(Overwrite(id=tid, type=kind, allow=int(allow), deny=int(deny)))
        self._dispatch_guild(guild.id, Intent.GUILDS, "CHANNEL_UPDATE", lambda s: self.state.channel_payload(channel))
        return channel

    def open_dm(self, user_id: Any, bot_id: Optional[int] = None) -> FakeChannel:
        """The DM channel between a bot (default: the only bot) and a user; created on first use."""
        uid = _id(user_id)
        if uid not in self.state.users:
            raise ValueError(f"unknown user {uid}")
        if bot_id is None:
            if len(self.state.bots) != 1:
                raise ValueError("several (or no) bots registered: pass bot_id")
            bot_id = next(iter(self.state.bots))
        for channel in self.state.channels.values():
            if channel.type == CHANNEL_DM and channel.bot_id == bot_id and channel.recipient_id == uid:
                return channel
        channel = FakeChannel(id=self.ids.next(), type=CHANNEL_DM, bot_id=bot_id, recipient_id=uid)
        self.state.channels[channel.id] = channel
        return channel

    def _guild(self, guild_id: Any) -> FakeGuild:
        try:
            return self.state.guilds[_id(guild_id)]
        except KeyError:
            raise ValueError(f"unknown guild {guild_id}") from None

    def _role_ids(self, guild: FakeGuild, roles: Iterable[Any]) -> List[int]:
        ids = [_id(r) for r in roles]
        for rid in ids:
            if rid not in guild.roles:
                raise ValueError(f"unknown role {rid} in guild {guild.id}")
        return [r for r in ids if r != guild.id]
