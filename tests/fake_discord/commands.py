"""The registry of application commands for :class:`FakeDiscord`: what the command routes store
(with Discord's validation, see :mod:`.components`), what a test seeds without a sync, and which
commands a user can see and use in a channel (``default_member_permissions``, ``contexts``,
USE_APPLICATION_COMMANDS), as Discord decides before a user can invoke anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

from . import components as C
from .errors import FormErrors
from .models import CHANNEL_DM, FakeBot, FakeChannel, P
from .world import _id

if TYPE_CHECKING:  # pragma: no cover
    from .models import SnowflakeGenerator
    from .state import FakeState


@dataclass
class CommandSync:
    """One write to the application-commands routes (what a test checks "no sync at start-up" with)."""

    method: str
    application_id: int
    guild_id: Optional[int]
    names: List[str]
    time: float


class CommandsMixin:
    if TYPE_CHECKING:
        state: FakeState
        ids: SnowflakeGenerator

        def _notify(self) -> None: ...
        def _channel(self, channel_id: Any) -> FakeChannel: ...

    def _init_commands(self) -> None:
        #: Writes to the application-command routes (not `register_commands`).
        self.command_syncs: List[CommandSync] = []
        #: Commands created (not updated) through the API - what Discord's 200/day limit counts.
        self.command_creates = 0

    # ========================================================== command registry

    def _bot(self, bot: Any = None) -> FakeBot:
        if bot is None:
            if len(self.state.bots) != 1:
                raise ValueError("several (or no) bots registered: pass bot=")
            return next(iter(self.state.bots.values()))
        return self.state.bots[_id(bot)]

    def register_commands(self, payloads: Iterable[Dict[str, Any]], guild_id: Any = None, *,
                          bot: Any = None) -> List[Dict[str, Any]]:
        """Set the registered commands of a scope (global or one guild) as a bulk overwrite would,
        without recording a sync.  Validated like ``PUT .../commands``; raises ``ValueError``."""
        app = self._bot(bot)
        gid = _id(guild_id) if guild_id is not None else None
        body = [dict(p) for p in payloads]
        errors = FormErrors()
        C.check_commands(body, errors)
        if errors:
            raise ValueError(f"invalid commands: {errors.tree}")
        return self._overwrite_commands(app.application_id, gid, body, record=None)

    def register_tree(self, client: Any, guild_id: Any = None) -> List[Dict[str, Any]]:
        """Register what a discord.py ``CommandTree`` would sync (``client.tree``), without a sync."""
        tree = client.tree
        guild = None
        if guild_id is not None:
            import discord

            guild = discord.Object(id=_id(guild_id))
        payloads = [cmd.to_dict(tree) for cmd in tree.get_commands(guild=guild)]
        bot = self.state.bots.get(client.application_id) if client.application_id else None
        return self.register_commands(payloads, guild_id, bot=bot)

    def commands(self, guild_id: Any = None, *, bot: Any = None) -> List[Dict[str, Any]]:
        """Registered commands of a scope (global when ``guild_id`` is None)."""
        app = self._bot(bot)
        return list(self.state.app_commands.get((app.application_id, _id(guild_id) if guild_id else None), []))

    def _overwrite_commands(self, app_id: int, guild_id: Optional[int], body: List[Dict[str, Any]],
                            record: Optional[str]) -> List[Dict[str, Any]]:
        key = (app_id, guild_id)
        old = self.state.app_commands.get(key, [])
        new = []
        for data in body:
            same = next((c for c in old if c["name"] == data.get("name") and c.get("type", 1) == data.get("type", 1)),
                        None)
            new.append(self._command_object(key, data, same))
            if same is None and record:
                self.command_creates += 1
        self.state.app_commands[key] = new
        if record:
            self._record_sync(record, app_id, guild_id, [c["name"] for c in new])
        self._notify()
        return new

    def _command_object(self, key: Tuple[int, Optional[int]], data: Dict[str, Any],
                        old: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        cmd = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            "contexts": None,
            "integration_types": [0],
            **data,
        }
        if cmd["default_member_permissions"] is not None:
            cmd["default_member_permissions"] = str(cmd["default_member_permissions"])
        cmd["id"] = old["id"] if old else str(self.ids.next())
        cmd["application_id"] = str(key[0])
        cmd["version"] = str(self.ids.next())
        if key[1] is not None:
            cmd["guild_id"] = str(key[1])
        return cmd

    def _record_sync(self, method: str, app_id: int, guild_id: Optional[int], names: List[str]) -> None:
        self.command_syncs.append(CommandSync(method, app_id, guild_id, names, time.monotonic()))

    def visible_commands(self, user: Any, channel: Any, *, bot: Any = None) -> List[str]:
        """Names of the commands (all types) the user can pick in that channel."""
        app = self._bot(bot)
        ch = self._channel(channel)
        return [c["name"] for c in self._usable_commands(app, ch, _id(user))]

    def _usable_commands(self, app: FakeBot, channel: FakeChannel, user_id: int) -> List[Dict[str, Any]]:
        scopes = [(app.application_id, channel.guild_id)] if channel.guild_id else []
        scopes.append((app.application_id, None))
        found = []
        for key in scopes:
            for cmd in self.state.app_commands.get(key, []):
                if self._can_use(cmd, channel, user_id, app):
                    found.append(cmd)
        return found

    def _can_use(self, cmd: Dict[str, Any], channel: FakeChannel, user_id: int, app: FakeBot) -> bool:
        contexts = cmd.get("contexts")
        if channel.type == CHANNEL_DM:
            if cmd.get("guild_id") or channel.bot_id != app.id:
                return False  # guild commands are not available in DMs; DMs of other bots are not modelled
            return 1 in contexts if contexts is not None else cmd.get("dm_permission", True) is not False
        if contexts is not None and 0 not in contexts:
            return False
        guild = self.state.guilds[channel.guild_id]
        if user_id not in guild.members:
            return False
        perms = self.state.channel_permissions(channel, user_id)
        if not perms & P.VIEW_CHANNEL or not perms & P.USE_APPLICATION_COMMANDS:
            return False
        needed = cmd.get("default_member_permissions")
        if needed is None or perms == P.ALL:
            return True
        needed = int(needed)
        return needed != 0 and perms & needed == needed

    def _find_command(self, app: FakeBot, channel: FakeChannel, user_id: int, name: str, kind: int) -> Dict[str, Any]:
        registered = [c for key, cmds in self.state.app_commands.items() if key[0] == app.application_id
                      and key[1] in (None, channel.guild_id) for c in cmds
                      if c["name"] == name and c.get("type", 1) == kind]
        if not registered:
            raise ValueError(f"no {('slash', 'user', 'message')[kind - 1]} command {name!r} is registered for "
                             f"{app.name} (sync the tree or use fake.register_commands)")
        usable = [c for c in self._usable_commands(app, channel, user_id) if c in registered]
        if not usable:
            raise PermissionError(f"user {user_id} cannot use command {name!r} in channel {channel.id}")
        return usable[0]  # the guild command first, as the picker lists it first
