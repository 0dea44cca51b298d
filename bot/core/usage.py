"""Daily compute quotas: pure arithmetic on usage and limits, and the words a user reads.

A day is a UTC day: usage resets at 00:00 UTC (``day_of``, ``next_reset``). Usage is compute
seconds, the worker's own time for each finished job, from the usage ledger.

Limits, each optional (None = no cap), all in seconds per day:

- the operator's caps: per user (everything the user ran today, anywhere) and per server;
- a server's own caps, which can only lower the operator's: per member (what the member ran in
  that server today) and for the whole server;
- a server's role allowances: a member with one of those roles gets the largest of their roles'
  allowances instead of the server's per-member cap (the operator's per-user cap still applies).

Over a quota a job goes to the slow lane (``SLOW_LANE``: it runs only when no job within quota
waits) or is refused (``REFUSE``), as the operator configures.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

SLOW_LANE = "slow-lane"
REFUSE = "refuse"
OVER_QUOTA_MODES = (SLOW_LANE, REFUSE)

WITHIN = "within"
SLOW = "slow"
REFUSED = "refused"

_DAY = 86400.0


def day_of(now: float) -> str:
    """The ledger's day of a moment: its UTC date, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).date().isoformat()


def next_reset(now: float) -> float:
    """When today's usage resets: the next 00:00 UTC."""
    return (now // _DAY + 1) * _DAY


def day_start(now: float) -> float:
    """When today's usage began: the last 00:00 UTC (the ledger counts what finished since)."""
    return now // _DAY * _DAY


@dataclass(frozen=True)
class Limits:
    """The daily caps that apply to a job in one place (seconds; None = no cap)."""

    user: float | None = None  # operator: per user, everywhere
    server: float | None = None  # operator: per server
    server_own: float | None = None  # the server's own cap for itself (only lowers ``server``)
    member: float | None = None  # the server's per-member cap
    roles: Mapping[int, float] = field(default_factory=dict)  # the server's allowances: role id -> seconds

    def server_cap(self) -> float | None:
        return _lowest(self.server, self.server_own)

    def member_cap(self, role_ids: Iterable[int]) -> float | None:
        """The largest allowance among the member's roles, else the server's per-member cap."""
        allowances = [self.roles[role] for role in role_ids if role in self.roles]
        return max(allowances) if allowances else self.member


def _lowest(*caps: float | None) -> float | None:
    present = [cap for cap in caps if cap is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class Used:
    """Compute seconds used today."""

    user: float = 0.0  # by the user, everywhere
    member: float = 0.0  # by the user in this server (0 in direct messages)
    server: float = 0.0  # by everyone in this server (0 in direct messages)


@dataclass(frozen=True)
class Assessment:
    verdict: str  # WITHIN, SLOW or REFUSED
    text: str  # what the user reads ("" within quota)
    resets_at: float  # the next 00:00 UTC


def assess(used: Used, limits: Limits, *, role_ids: Iterable[int] = (), in_server: bool, mode: str,
           now: float) -> Assessment:
    """Within quota, in the slow lane, or refused, with the words that say why and until when. A quota
    is spent once usage reaches it (a job that crosses it is not cut short)."""
    if mode not in OVER_QUOTA_MODES:
        raise ValueError(f"unknown over-quota mode {mode!r}; one of {', '.join(OVER_QUOTA_MODES)}")
    resets_at = next_reset(now)
    spent = spent_quota(used, limits, role_ids=role_ids, in_server=in_server)
    if spent is None:
        return Assessment(WITHIN, "", resets_at)
    until = f"until 00:00 UTC (in {duration(resets_at - now)})"
    if mode == REFUSE:
        return Assessment(REFUSED, f"{spent}; new jobs are refused {until}", resets_at)
    return Assessment(SLOW, f"{spent}; your jobs wait in the slow lane {until}", resets_at)


def spent_quota(used: Used, limits: Limits, *, role_ids: Iterable[int] = (), in_server: bool) -> str | None:
    """The first quota spent, worded ("you have used 14 min of your 10 min today"), or None."""
    if limits.user is not None and used.user >= limits.user:
        return f"you have used {duration(used.user)} of your {duration(limits.user)} today"
    if not in_server:
        return None
    member = limits.member_cap(role_ids)
    if member is not None and used.member >= member:
        return f"you have used {duration(used.member)} of your {duration(member)} in this server today"
    server = limits.server_cap()
    if server is not None and used.server >= server:
        return f"this server has used {duration(used.server)} of its {duration(server)} today"
    return None


def usage_lines(used: Used, limits: Limits, *, role_ids: Iterable[int] = (), in_server: bool) -> list[str]:
    """What /usage shows: each use today against its quota."""
    lines = [f"You, everywhere: {_against(used.user, limits.user)}"]
    if in_server:
        lines.append(f"You, in this server: {_against(used.member, limits.member_cap(role_ids))}")
        lines.append(f"This server: {_against(used.server, limits.server_cap())}")
    return lines


def _against(seconds: float, cap: float | None) -> str:
    return f"{duration(seconds)} today" if cap is None else f"{duration(seconds)} of {duration(cap)} today"


def duration(seconds: float) -> str:
    """Seconds under a minute, whole minutes under an hour, then hours and minutes (rounded down:
    "14 min" for 14 min 50 s, so a user never reads more time than was used)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"


def span(seconds: float) -> str:
    """A quota as set, exactly: "2 h 30 min", "1 min 30 s", "45 s" (whole seconds)."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{seconds} s" if seconds else ""]
    return " ".join(part for part in parts if part) or "0 s"


_UNITS = {"": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60,
          "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", re.ASCII)


def parse_duration(text: str, what: str) -> float:
    """Seconds from what an admin types: ``90`` (seconds), ``90s``, ``30m``, ``2h``, ``1.5h``, ``1h30m``,
    ``2 hours``; ValueError naming ``what`` otherwise."""
    given = str(text).strip().lower()
    parts, end = [], 0
    for match in _PART.finditer(given):
        if match.start() != end:
            break
        parts.append((float(match.group(1)), match.group(2)))
        end = match.end()
    bare = len(parts) > 1 and any(unit == "" for _, unit in parts)  # "1 30": which is which?
    if not parts or end != len(given) or bare or any(unit not in _UNITS for _, unit in parts):
        shown = given if len(given) <= 40 else given[:39] + "…"
        raise ValueError(f"{what}: must be a duration like 90s, 30m, 2h or 1h30m, got {shown!r}")
    return sum(amount * _UNITS[unit] for amount, unit in parts)
