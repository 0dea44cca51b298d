"""The one place where a job's parameters are decided, in this order:

command options  >  the preset (``--preset NAME``)  >  the user's saved defaults  >  the bot's defaults,
then lowered to the server's limits, then to the operator's caps.

Also the bot's own options beside the engine's (``--style NAME``, ``--preset NAME``: see BOT_OPTIONS),
and the catalogue of per-server limits (names, types, ranges), so ``!limits`` validates the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from nst.errors import ParamError
from nst.params import FIELDS, StyleParams, check_value

from bot.config import QUOTA_HIGH, CapsSection, QuotasSection
from bot.core.numbers import NotANumber, check_option_text, number
from bot.core.text import quote
from bot.core.usage import parse_duration, span

# Style parameters users may set per command or as their defaults.
USER_FIELDS: tuple[str, ...] = tuple(name for name, spec in FIELDS.items() if spec.user_option)
# The options a user may keep as defaults (!settings): not those that only make sense per job (style_blend).
SETTING_FIELDS: tuple[str, ...] = tuple(name for name in USER_FIELDS if FIELDS[name].user_setting)

SOURCE_OPTION = "this command"
SOURCE_USER = "your default"
SOURCE_BOT = "bot default"
REASON_SERVER = "this server's limit"
REASON_BOT = "the bot's limit"

# Names of styles and presets: short, lower case (typed in any case), safe in a command line.
NAME_RULE = "1 to 32 letters, digits, - or _, starting with a letter or digit"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def check_name(text: str, what: str = "name") -> str:
    """The canonical (lower-case) form of a style or preset name; ParamError(what) when it is not one."""
    name = str(text).strip().lower()
    if not _NAME.match(name):
        raise ParamError(what, f"{_given(name)} is not a valid name ({NAME_RULE})")
    return name


def check_style_names(value: Any) -> tuple[str, ...]:
    """``starry`` or ``starry,waves`` (blended) -> ("starry", "waves")."""
    parts = value if isinstance(value, (list, tuple)) else str(value).replace(" ", ",").split(",")
    names = tuple(check_name(part, "style") for part in parts if str(part).strip())
    if not names:
        raise ParamError("style", "give a style name, e.g. starry")
    if len(set(names)) != len(names):
        raise ParamError("style", "a style is named twice")
    return names


@dataclass(frozen=True)
class BotOption:
    """An option of the bot's own, beside the engine's parameters (nst.params.FIELDS)."""

    name: str
    help: str
    check: Any  # text or typed value -> typed value, raising ParamError(name)
    setting: bool  # may be kept as a user's default (!settings)
    in_preset: bool  # may be part of a preset


BOT_OPTIONS: dict[str, BotOption] = {
    spec.name: spec
    for spec in (
        BotOption("style", "a named style of this server (see `style list`) instead of a style image; "
                  "several, comma-separated, are blended", check_style_names, setting=True, in_preset=True),
        BotOption("preset", "a saved preset (see `preset list`): its values apply where this command sets none",
                  lambda value: check_name(value, "preset"), setting=False, in_preset=False),
    )
}
# Every option a command may carry, in the order help lists them; those a user may keep as defaults;
# those a preset may hold (everything one may keep as a default: never per-job values like style_blend).
OPTION_NAMES: tuple[str, ...] = (*BOT_OPTIONS, *USER_FIELDS)
SETTING_NAMES: tuple[str, ...] = (*(n for n, o in BOT_OPTIONS.items() if o.setting), *SETTING_FIELDS)
PRESET_NAMES: tuple[str, ...] = (*(n for n, o in BOT_OPTIONS.items() if o.in_preset), *SETTING_FIELDS)


def check_option(name: str, value: Any) -> Any:
    """Validate one option (the engine's or the bot's) on its own; the typed value or ParamError."""
    if name in BOT_OPTIONS:
        return BOT_OPTIONS[name].check(value)
    check_option_text(name, value)
    return check_value(name, value)


def option_help(name: str) -> str:
    return BOT_OPTIONS[name].help if name in BOT_OPTIONS else FIELDS[name].help


def source_of_preset(name: str, scope: str = "user") -> str:
    """How a preset is named as the source of a value: ``preset fast`` (yours) or ``server preset fast``."""
    return f"{'server ' if scope == 'guild' else ''}preset {name}"


def _given(value: Any) -> str:
    """A value an admin typed, as a refusal quotes it (text shortened)."""
    return repr(quote(value, 40)) if isinstance(value, str) else repr(value)


class LimitError(ValueError):
    """A server limit value was refused; str() is the message for the admin."""


@dataclass(frozen=True)
class LimitSpec:
    """A per-server limit. Its range is not restated here: it comes from the nst parameter it bounds
    (max_epochs: epochs, max_size: size) or from the config key of the same meaning."""

    name: str
    help: str
    kind: type  # int, float, str (one of choices), list (channel ids) or dict (role id -> seconds)
    minimum: float | None = None
    maximum: float | None = None
    cap_key: str | None = None  # the [caps] key that bounds it from above, for every server
    choices: tuple[str, ...] = ()  # for kind str: the values, the first being what applies when unset
    quota_key: str | None = None  # the [quotas] key that bounds it (0 there: no bound); a duration: seconds a day

    def cap(self, caps: CapsSection) -> float | None:
        return getattr(caps, self.cap_key) if self.cap_key else None

    def quota_cap(self, quotas: QuotasSection) -> float | None:
        return (getattr(quotas, self.quota_key) or None) if self.quota_key else None


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
        LimitSpec("max_frames", "most frames an animation (GIF, WebP or clip) may have", int,
                  *_param_range("max_frames"), cap_key="max_frames"),
        LimitSpec("max_clip_seconds", "longest animation, in seconds of playing time", float,
                  *_config_range("max_clip_seconds"), cap_key="max_clip_seconds"),
        LimitSpec("max_jobs_per_user", "jobs a member may have queued or running at once", int,
                  *_config_range("max_jobs_per_user"), cap_key="max_jobs_per_user"),
        LimitSpec("cooldown", "seconds a member must wait between two jobs", float, *_config_range("min_cooldown")),
        LimitSpec("channels", "channels where !stylize may be used (none set = everywhere)", list),
        LimitSpec("style_editors", "who may add, rename and remove this server's named styles", str,
                  choices=("admins", "everyone")),
        # daily compute quotas (bot.core.quotas), typed as durations: 30m, 2h, 1h30m
        LimitSpec("quota_member", "compute time a member may use a day in this server", float, 1.0, QUOTA_HIGH,
                  quota_key="user_daily"),
        LimitSpec("quota_server", "compute time this server's members may use a day together", float, 1.0,
                  QUOTA_HIGH, quota_key="server_daily"),
        LimitSpec("quota_roles", "a day's compute time for members of these roles, instead of quota_member "
                  "(the largest of a member's roles)", dict, 1.0, QUOTA_HIGH, quota_key="user_daily"),
    )
}
MAX_QUOTA_ROLES = 25
QUOTA_LIMITS = tuple(name for name, spec in GUILD_LIMITS.items() if spec.quota_key)


def check_guild_limit(name: str, value: Any, caps: CapsSection, quotas: QuotasSection | None = None) -> Any:
    """Validate a server limit (already typed; channel lists are lists of ids, role allowances a mapping of
    role ids to seconds). Returns the value to store."""
    spec = GUILD_LIMITS.get(name)
    if spec is None:
        raise LimitError(f"unknown limit {_given(name)}; limits are: {', '.join(GUILD_LIMITS)}")
    if spec.quota_key:
        return _check_quota(spec, value, quotas or QuotasSection())
    if spec.kind is list:
        if not isinstance(value, list) or not value or not all(isinstance(v, int) for v in value):
            raise LimitError("channels: name one or more channels, e.g. #art #bots")
        return sorted(set(value))
    if spec.kind is str:
        text = str(value).strip().lower()
        if text not in spec.choices:
            raise LimitError(f"{name}: must be {' or '.join(spec.choices)}, got {_given(value)}")
        return text
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (spec.kind is int and not number.is_integer()):
        kind = "a whole number" if spec.kind is int else "a number of seconds"
        raise LimitError(f"{name}: must be {kind}, got {_given(value)}")
    if spec.minimum is not None and number < spec.minimum:
        raise LimitError(f"{name}: must be at least {spec.minimum:g}, got {_given(value)}")
    if spec.maximum is not None and number > spec.maximum:
        unit = " seconds" if spec.kind is float else ""
        raise LimitError(f"{name}: at most {spec.maximum:g}{unit}, got {_given(value)}")
    cap = spec.cap(caps)
    if cap is not None and number > cap:
        raise LimitError(f"{name}: {number:g} is above the bot operator's cap of {cap:g}; the most you can set is {cap:g}")
    return int(number) if spec.kind is int else number


def _check_quota(spec: LimitSpec, value: Any, quotas: QuotasSection) -> float | dict[str, float]:
    """A daily quota in seconds, or for quota_roles ``{role id: seconds}`` (JSON keys are text), within the
    operator's cap."""
    if spec.kind is dict:
        if not isinstance(value, Mapping) or not value:
            raise LimitError(f"{spec.name}: name one or more roles, each with its time a day, e.g. @Patron 2h @VIP 1h")
        if len(value) > MAX_QUOTA_ROLES:
            raise LimitError(f"{spec.name}: at most {MAX_QUOTA_ROLES} roles, got {len(value)}")
        return {str(int(role)): _check_quota_seconds(spec, seconds, quotas, f" for <@&{role}>")
                for role, seconds in value.items()}
    return _check_quota_seconds(spec, value, quotas)


def _check_quota_seconds(spec: LimitSpec, value: Any, quotas: QuotasSection, where: str = "") -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):
        raise LimitError(f"{spec.name}: must be a duration like 90s, 30m, 2h or 1h30m, got {_given(value)}")
    if seconds < spec.minimum or seconds > spec.maximum:
        raise LimitError(f"{spec.name}: must be from {span(spec.minimum)} to {span(spec.maximum)}{where}, "
                         f"got {span(seconds)}")
    cap = spec.quota_cap(quotas)
    if cap is not None and seconds > cap:
        whose = "per user" if spec.quota_key == "user_daily" else "per server"
        raise LimitError(f"{spec.name}: {span(seconds)}{where} is above the bot operator's daily cap {whose} of "
                         f"{span(cap)}; the most you can set is {span(cap)}")
    return seconds


def parse_quota_roles(pairs: list[tuple[int, str]], caps: CapsSection, quotas: QuotasSection) -> dict[str, float]:
    """``[(role id, "2h"), ...]`` (roles already resolved by the command) -> the value quota_roles stores."""
    allowances: dict[int, float] = {}
    for role, text in pairs:
        try:
            allowances[role] = parse_duration(text, "quota_roles")
        except ValueError as error:
            raise LimitError(str(error)) from None
    return check_guild_limit("quota_roles", allowances, caps, quotas)


def parse_guild_limit(name: str, text: str, caps: CapsSection, quotas: QuotasSection | None = None) -> Any:
    """Parse a number (or for a quota, a duration) typed by an admin (channel lists and role allowances are
    handled by the command, which resolves mentions)."""
    spec = GUILD_LIMITS.get(name)
    if spec is not None and spec.quota_key and spec.kind is not dict:
        try:
            seconds = parse_duration(text, name)
        except ValueError as error:
            raise LimitError(str(error)) from None
        return check_guild_limit(name, seconds, caps, quotas)
    if spec is None or spec.kind in (list, str, dict):
        return check_guild_limit(name, text, caps, quotas)
    try:
        value: Any = number(text, name)
    except NotANumber as error:
        raise LimitError(str(error)) from None
    return check_guild_limit(name, value, caps)


@dataclass(frozen=True)
class Effective:
    """What applies to one member in one place (a server, or DMs where guild is None)."""

    max_epochs: tuple[int, str]  # (value, reason it has that value)
    max_size: tuple[int, str]
    max_jobs_per_user: int
    cooldown: float
    channels: tuple[int, ...]  # empty = everywhere
    style_editors: str = "admins"  # "admins" (Manage Server) or "everyone"
    max_frames: tuple[int, str] = (StyleParams.max_frames, REASON_BOT)
    max_clip_seconds: tuple[float, str] = (StyleParams.max_clip_seconds, REASON_BOT)
    max_upscale_size: tuple[int, str] = (CapsSection.max_upscale_size, REASON_BOT)

    def upscale_refusal(self, size: tuple[int, int]) -> str | None:
        """Why a picture of ``size`` cannot be upscaled ×2 here (the numbers, whose limit), or None."""
        target = upscaled_side(size)
        ceiling, reason = self.max_upscale_size
        if target <= ceiling:
            return None
        return (f"upscaling this {size[0]}×{size[1]} picture ×2 would make it {target} px on its longer side; "
                f"{reason} for upscaled pictures is {ceiling} px")

    def clip_caps(self, caps: CapsSection) -> dict[str, Any]:
        """The StyleParams caps of an animation for this member here (the engine checks a clip with them)."""
        return {"max_frames": self.max_frames[0], "max_clip_seconds": self.max_clip_seconds[0],
                "max_clip_pixels": caps.max_clip_pixels}

    def reason_of(self, field: str) -> str:
        """Whose limit an engine cap is (``max_frames`` -> "this server's limit" or "the bot's limit")."""
        limit = getattr(self, field, None)
        return limit[1] if isinstance(limit, tuple) else REASON_BOT


UPSCALE_FACTOR = 2


def upscaled_side(size: tuple[int, int]) -> int:
    """The longer side of an Upscale ×2 of a picture of ``size`` (width, height)."""
    return UPSCALE_FACTOR * max(size)


def effective_limits(guild: Mapping[str, Any] | None, caps: CapsSection) -> Effective:
    guild = guild or {}

    def lowest(name: str, cap: float) -> tuple[Any, str]:
        server = guild.get(name)
        if server is not None and server < cap:
            return type(cap)(server), REASON_SERVER
        return cap, REASON_BOT

    return Effective(
        max_epochs=lowest("max_epochs", caps.max_epochs),
        max_size=lowest("max_size", caps.max_size),
        max_jobs_per_user=min(int(guild.get("max_jobs_per_user") or caps.max_jobs_per_user), caps.max_jobs_per_user),
        cooldown=max(float(guild.get("cooldown") or 0.0), caps.min_cooldown),
        channels=tuple(guild.get("channels") or ()),
        style_editors=guild.get("style_editors") or GUILD_LIMITS["style_editors"].choices[0],
        max_frames=lowest("max_frames", caps.max_frames),
        max_clip_seconds=lowest("max_clip_seconds", caps.max_clip_seconds),
        # the operator's separate cap for upscaled pictures, which the server's max_size may lower
        max_upscale_size=lowest("max_size", caps.max_upscale_size),
    )


@dataclass(frozen=True)
class Resolved:
    params: StyleParams
    sources: dict[str, str]  # option -> SOURCE_OPTION / "preset NAME" / SOURCE_USER / SOURCE_BOT (style too)
    notes: tuple[str, ...]  # human lines: values lowered by a limit, saved defaults ignored
    styles: tuple[str, ...] = ()  # named styles (the style option), from wherever it came
    lowered: dict[str, tuple[Any, str]] = field(default_factory=dict)  # option -> (value wanted, the limit's reason)

    def explain(self, name: str) -> str:
        """Where the value of ``name`` came from, e.g. ``preset fast`` or ``this command: 30, lowered by
        this server's limit``."""
        source = self.sources.get(name, SOURCE_BOT)
        if name in self.lowered:
            wanted, reason = self.lowered[name]
            return f"{source} {wanted}, lowered by {reason}"
        return source


def resolve(
    defaults: StyleParams,
    user: Mapping[str, Any],
    options: Mapping[str, Any],
    guild: Mapping[str, Any] | None,
    caps: CapsSection,
    preset: Mapping[str, Any] | None = None,
    preset_source: str = "preset",
    upscale: bool = False,
) -> Resolved:
    """Merge options over the preset over the user's defaults over the bot's, then apply the server's
    limits and the caps.

    ``options``, ``preset`` and ``user`` hold typed or text values (of USER_FIELDS and the bot's
    ``style``; ``preset`` names in options are looked up by the caller); raises ParamError for an
    invalid option (naming it) or an invalid combination. ``upscale``: the size is bounded by the upscale
    limit (max_upscale_size) instead of max_size.
    """
    values: dict[str, Any] = {}
    names: tuple[str, ...] = ()
    sources = {name: SOURCE_BOT for name in (*USER_FIELDS, "style")}
    notes: list[str] = []

    def take(name: str, value: Any, source: str) -> None:
        nonlocal names
        if name == "style":
            names = check_style_names(value)
        else:
            values[name] = check_option(name, value)
        sources[name] = source

    # saved values that no longer validate (a range narrowed since) are ignored with a note, never fatal
    for saved, allowed, source, whose in ((user, SETTING_NAMES, SOURCE_USER, "your saved"),
                                          (preset or {}, PRESET_NAMES, preset_source, "the preset's")):
        for name, value in saved.items():
            if name not in allowed:
                continue
            try:
                take(name, value, source)
            except ParamError as error:
                notes.append(f"{whose} {name} is no longer valid ({error.reason}); ignored")
    for name, value in options.items():
        if name == "preset":
            continue  # looked up by the caller and given as ``preset``
        if name not in USER_FIELDS and name != "style":
            raise ParamError(name, "cannot be set from Discord")
        take(name, value, SOURCE_OPTION)

    limits = effective_limits(guild, caps)
    lowered: dict[str, tuple[Any, str]] = {}
    size_limit = limits.max_upscale_size if upscale else limits.max_size
    for name, (ceiling, reason) in (("epochs", limits.max_epochs), ("size", size_limit)):
        wanted = values.get(name, getattr(defaults, name))
        if wanted > ceiling:
            values[name] = ceiling
            lowered[name] = (wanted, reason)
            notes.append(f"{name} {wanted} → {ceiling}: {reason}")
    # an animation's frames: the bot's animation size (not a user option; a --size given with the command
    # may only lower it, for a quicker clip), within the same size limit, and the clip caps of this place;
    # the engine checks the clip against them (bot.core.inputs)
    frame_size = min(defaults.animation_size, limits.max_size[0])
    if sources["size"] == SOURCE_OPTION:
        frame_size = min(frame_size, values["size"])
    values["animation_size"] = frame_size
    values.update(limits.clip_caps(caps))
    return Resolved(defaults.replace(**values), sources, tuple(notes), names, lowered)
