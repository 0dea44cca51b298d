"""Daily quotas against the usage ledger: what a member may still run, what a job is charged, and what
the fair order reads of today's use. The arithmetic and the words are bot.core.usage's; this module
brings them the store's numbers and the limits in force (the operator's ``[quotas]``, a server's own
``quota_*`` limits).

Resets: a bot owner's reset of a user (``guild_id`` None) takes what they finished until then out of
every count, everywhere; a server admin's reset takes it out of the member's own quota in that server
only (their per-member cap or role allowance), never out of the operator's per-user and per-server
caps, which a server cannot raise.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from bot.config import Config
from bot.core import scheduling, usage
from bot.core.errors import UserError
from bot.core.store import Store

# A server's own quota limits (bot.core.limits' catalogue validates them): seconds a day.
QUOTA_MEMBER = "quota_member"  # per member
QUOTA_SERVER = "quota_server"  # for the whole server
QUOTA_ROLES = "quota_roles"  # {role id (text, as JSON keys are): seconds}, instead of quota_member
QUOTA_LIMITS = (QUOTA_MEMBER, QUOTA_SERVER, QUOTA_ROLES)


def quota_limits(config: Config, server: Mapping[str, Any] | None) -> usage.Limits:
    """The caps in force in a place: the operator's (0 = none) and a server's own (``server``: its
    stored limits; None in direct messages)."""
    quotas, server = config.quotas, server or {}
    roles = server.get(QUOTA_ROLES) or {}
    return usage.Limits(
        user=quotas.user_daily or None,
        server=quotas.server_daily or None,
        server_own=_seconds(server.get(QUOTA_SERVER)),
        member=_seconds(server.get(QUOTA_MEMBER)),
        roles={int(role): float(seconds) for role, seconds in roles.items()},
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _uncapped(limits: usage.Limits) -> bool:
    return (limits.user is None and limits.server_cap() is None and limits.member is None
            and not limits.roles)


class QuotaService:
    """Quotas for the job service and the /usage command: one instance per bot, no state of its own
    (everything is in the store, so every process and every restart sees the same)."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock

    # ------------------------------------------------------------------ what a member may run

    async def limits(self, guild_id: int | None) -> usage.Limits:
        server = await self.store.guild_limits(guild_id) if guild_id is not None else None
        return quota_limits(self.config, server)

    async def used(self, *, user_id: int, guild_id: int | None, now: float | None = None) -> usage.Used:
        """Today's seconds: the user's everywhere, the member's in this server, the server's (resets applied)."""
        now = self.clock() if now is None else now
        rows = await self.store.usage_since(usage.day_start(now), user_id=user_id, guild_id=guild_id)
        if guild_id is None:
            return usage.Used(user=sum(seconds for user, _, seconds, _ in rows if user == user_id))
        return usage.Used(
            user=sum(seconds for user, _, seconds, _ in rows if user == user_id),
            member=sum(member for user, guild, _, member in rows if user == user_id and guild == guild_id),
            server=sum(seconds for _, guild, seconds, _ in rows if guild == guild_id),
        )

    async def assess(self, *, user_id: int, guild_id: int | None, role_ids: Sequence[int]) -> usage.Assessment:
        now = self.clock()
        limits = await self.limits(guild_id)
        if _uncapped(limits):  # nothing to count against: no ledger read
            return usage.Assessment(usage.WITHIN, "", usage.next_reset(now))
        used = await self.used(user_id=user_id, guild_id=guild_id, now=now)
        return usage.assess(used, limits, role_ids=role_ids, in_server=guild_id is not None,
                            mode=self.config.quotas.over_quota, now=now)

    async def admit(self, *, user_id: int, guild_id: int | None, role_ids: Sequence[int]) -> usage.Assessment:
        """At submission: WITHIN, or SLOW (the job waits in the slow lane; ``.text`` says why and until
        when). Over quota where the operator refuses: UserError with those words."""
        assessment = await self.assess(user_id=user_id, guild_id=guild_id, role_ids=role_ids)
        if assessment.verdict == usage.REFUSED:
            raise UserError(assessment.text)
        return assessment

    async def over_quota(self, *, user_id: int, guild_id: int | None, role_ids: Sequence[int]) -> bool:
        """Whether a waiting job belongs in the slow lane now (asked again each time the order is computed)."""
        assessment = await self.assess(user_id=user_id, guild_id=guild_id, role_ids=role_ids)
        return assessment.verdict != usage.WITHIN

    # ------------------------------------------------------------------ the ledger

    async def charge(self, *, job_id: str, user_id: int, guild_id: int | None, seconds: float,
                     work: float | None) -> None:
        """Record a job's compute seconds, now; a job already charged is not charged again."""
        await self.store.record_usage(job_id, user_id, guild_id, max(0.0, float(seconds)), work, self.clock())

    async def today(self) -> scheduling.Usage:
        """Today's seconds per user and per server (None: DMs), owners' resets applied, and when each
        user's and server's last job started; fair-share's shares are left for the caller to fill."""
        rows = await self.store.usage_since(usage.day_start(self.clock()))
        users: dict[int, float] = {}
        servers: dict[int | None, float] = {}
        for user, guild, seconds, _ in rows:
            users[user] = users.get(user, 0.0) + seconds
            servers[guild] = servers.get(guild, 0.0) + seconds
        user_starts, server_starts = await self.store.last_starts()
        return scheduling.Usage(user_seconds=users, server_seconds=servers, user_last_start=user_starts,
                                server_last_start=server_starts)

    async def reset(self, *, user_id: int, guild_id: int | None, by: int) -> None:
        """What ``user_id`` has used so far today no longer counts: everywhere (``guild_id`` None: a bot
        owner's reset) or against their own quota in that server (its admins'). Who may is the caller's check."""
        await self.store.reset_usage(user_id, guild_id, self.clock(), by)

    # ------------------------------------------------------------------ what /usage shows

    async def lines(self, *, user_id: int, guild_id: int | None, role_ids: Sequence[int]) -> list[str]:
        """Today's use against every quota that applies here, whether a new job would wait or be
        refused, and when the quotas reset."""
        now = self.clock()
        limits = await self.limits(guild_id)
        used = await self.used(user_id=user_id, guild_id=guild_id, now=now)
        in_server = guild_id is not None
        lines = usage.usage_lines(used, limits, role_ids=role_ids, in_server=in_server)
        assessment = usage.assess(used, limits, role_ids=role_ids, in_server=in_server,
                                  mode=self.config.quotas.over_quota, now=now)
        if assessment.verdict != usage.WITHIN:
            lines.append(assessment.text[:1].upper() + assessment.text[1:] + ".")
        lines.append(f"Usage resets at 00:00 UTC (in {usage.duration(assessment.resets_at - now)}).")
        return lines
