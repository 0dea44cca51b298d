"""The one place where a job's parameters are decided, in this order:

command options  >  the user's saved defaults  >  the bot's defaults,
then lowered to the server's limits, then to the operator's caps.

Also the catalogue of per-server limits (names, types, ranges), so ``!limits`` validates the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from nst.errors import ParamError
from nst.params import FIELDS, StyleParams, check_value

from .config import CapsSection

# Style parameters users may set per command or as their defaults.
USER_FIELDS: tuple[str, ...] = tuple(name for name, spec in FIELDS.items() if spec.user_option)
# The options a user may keep as defaults (!settings): not those that only make sense per job (style_blend).
SETTING_FIELDS: tuple[str, ...] = tuple(name for name in USER_FIELDS if FIELDS[name].user_setting)

SOURCE_OPTION = "this command"
SOURCE_USER = "your default"
SOURCE_BOT = "bot default"
REASON_SERVER = "this server's limit"
REASON_BOT = "the bot's limit"


class LimitError(ValueError):
    """A server limit value was refused; str() is the message for the admin."""


@dataclass(frozen=True)
class LimitSpec:
    """A per-server limit. Its range is not restated here: it comes from the nst parameter it bounds
    (max_epochs: epochs, max_size: size) or from the config key of the same meaning."""

    name: str
    help: str
    kind: type  # int, float, or list (channel ids)
    minimum: float | None = None
    maximum: float | None = None
    cap_key: str | None = None  # the [caps] key that bounds it from above, for every server

    def cap(self, caps: CapsSection) -> float | None:
        return getattr(caps, self.cap_key) if self.cap_key else None


def _param_range(field: str) -> tuple[float | None, float | None]:
    spec = FIELDS[field]
    return spec.minimum, spec.maximum


def _config_range(key: str) -> tuple[float | None, float | None]:
    rule = next(f for f in fields(CapsSection) if f.name == key).metadata
    return rule["low"], rule["high"]


GUILD_LIMITS: dict[str, LimitSpec] = {
    spec.name: spec
    for spec in (
        LimitSpec("max_epochs", "most optimisation steps a job may run", int, *_param_range("epochs"), cap_key="max_epochs"),
        LimitSpec("max_size", "largest output side in pixels", int, *_param_range("size"), cap_key="max_size"),
        LimitSpec("max_jobs_per_user", "jobs a member may have queued or running at once", int,
                  *_config_range("max_jobs_per_user"), cap_key="max_jobs_per_user"),
        LimitSpec("cooldown", "seconds a member must wait between two jobs", float, *_config_range("min_cooldown")),
        LimitSpec("channels", "channels where !stylize may be used (none set = everywhere)", list),
    )
}


def check_guild_limit(name: str, value: Any, caps: CapsSection) -> Any:
    """Validate a server limit (already typed; channel lists are lists of ids). Returns the value to store."""
    spec = GUILD_LIMITS.get(name)
    if spec is None:
        raise LimitError(f"unknown limit {name!r}; limits are: {', '.join(GUILD_LIMITS)}")
    if spec.kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
            raise LimitError("channels: name one or more channels, e.g. #art #bots")
        return sorted(set(value))
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (spec.kind is int and not number.is_integer()):
        kind = "a whole number" if spec.kind is int else "a number of seconds"
        raise LimitError(f"{name}: must be {kind}, got {value!r}")
    if spec.minimum is not None and number < spec.minimum:
        raise LimitError(f"{name}: must be at least {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None and number > spec.maximum:
        unit = " seconds" if spec.kind is float else ""
        raise LimitError(f"{name}: at most {spec.maximum:g}{unit}, got {value!r}")
    cap = spec.cap(caps)
    if cap is not None and number > cap:
        raise LimitError(f"{name}: {number:g} is above the bot operator's cap of {cap:g}; the most you can set is {cap:g}")
    return int(number) if spec.kind is int else number


def parse_guild_limit(name: str, text: str, caps: CapsSection) -> Any:
    """Parse a number typed by an admin (channel lists are handled by the command, which resolves mentions)."""
    spec = GUILD_LIMITS.get(name)
    if spec is None or spec.kind is list:
        return check_guild_limit(name, text, caps)
    try:
        value: Any = float(text)
    except ValueError:
        raise LimitError(f"{name}: must be a number, got {text!r}") from None
    return check_guild_limit(name, value, caps)


@dataclass(frozen=True)
class Effective:
    """What applies to one member in one place (a server, or DMs where guild is None)."""

    max_epochs: tuple[int, str]  # (value, reason it has that value)
    max_size: tuple[int, str]
    max_jobs_per_user: int
    cooldown: float
    channels: tuple[int, ...]  # empty = everywhere


def effective_limits(guild: Mapping[str, Any] | None, caps: CapsSection) -> Effective:
    guild = guild or {}

    def lowest(name: str, cap: int) -> tuple[int, str]:
        server = guild.get(name)
        if server is not None and server < cap:
            return int(server), REASON_SERVER
        return cap, REASON_BOT

    return Effective(
        max_epochs=lowest("max_epochs", caps.max_epochs),
        max_size=lowest("max_size", caps.max_size),
        max_jobs_per_user=min(int(guild.get("max_jobs_per_user") or caps.max_jobs_per_user), caps.max_jobs_per_user),
        cooldown=max(float(guild.get("cooldown") or 0.0), caps.min_cooldown),
        channels=tuple(guild.get("channels") or ()),
    )


@dataclass(frozen=True)
class Resolved:
    params: StyleParams
    sources: dict[str, str]  # field -> SOURCE_OPTION / SOURCE_USER / SOURCE_BOT
    notes: tuple[str, ...]  # human lines: values lowered by a limit, saved defaults ignored


def resolve(
    defaults: StyleParams,
    user: Mapping[str, Any],
    options: Mapping[str, Any],
    guild: Mapping[str, Any] | None,
    caps: CapsSection,
) -> Resolved:
    """Merge options over the user's defaults over the bot's, then apply the server's limits and the caps.

    ``options`` and ``user`` hold typed or text values for USER_FIELDS; raises ParamError for an
    invalid option (naming it) or an invalid combination.
    """
    values: dict[str, Any] = {}
    sources = {name: SOURCE_BOT for name in USER_FIELDS}
    notes: list[str] = []
    for name, value in user.items():
        if name not in USER_FIELDS:
            continue
        try:
            values[name] = check_value(name, value)
            sources[name] = SOURCE_USER
        except ParamError as error:
            notes.append(f"your saved {name} is no longer valid ({error.reason}); ignored")
    for name, value in options.items():
        if name not in USER_FIELDS:
            raise ParamError(name, "cannot be set from Discord")
        values[name] = check_value(name, value)
        sources[name] = SOURCE_OPTION

    limits = effective_limits(guild, caps)
    for name, (ceiling, reason) in (("epochs", limits.max_epochs), ("size", limits.max_size)):
        wanted = values.get(name, getattr(defaults, name))
        if wanted > ceiling:
            values[name] = ceiling
            notes.append(f"{name} {wanted} → {ceiling}: {reason}")
    return Resolved(defaults.replace(**values), sources, tuple(notes))
