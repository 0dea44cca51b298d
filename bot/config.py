"""The bot's configuration: one TOML file, validated once at start into typed, frozen sections.

Every key has a default (``config.example.toml`` documents them all) and its allowed range or
choices declared beside it, with ``setting(...)``. Unknown keys and bad values stop start-up with
one message naming the key. The Discord token never lives in the file: it comes from
``DISCORD_TOKEN`` or from a file named by ``bot.token_file`` (e.g. a Docker secret).
"""

from __future__ import annotations

import difflib
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar, get_type_hints

from nst.errors import ParamError
from nst.params import FIELDS, StyleParams, parse_value

if TYPE_CHECKING:
    from .executor import Executor

T = TypeVar("T")

TOKEN_ENV = "DISCORD_TOKEN"
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration cannot be used; str() names the file/key and the problem."""


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    off: bool = False,
    choices: tuple[str, ...] | None = None,
    nonempty: bool = False,
    auto: bool = False,
    memory: bool = False,
) -> Any:
    """A config key with its rule beside it: numbers within [low, high] (``off``: 0 also allowed,
    meaning off; ``auto``: the string "auto" also allowed, read as None), strings among ``choices``
    or not blank (``nonempty``); ``memory``: an amount of memory (bytes or text like "2GiB"), "auto" (None)
    or "unlimited"."""
    rule = {"low": low, "high": high, "off": off, "choices": choices, "nonempty": nonempty, "auto": auto,
            "memory": memory}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=rule)
    return field(default=default, metadata=rule)


@dataclass(frozen=True)
class BotSection:
    command_prefix: str = setting("!", nonempty=True)
    token_file: str = setting("")  # path to a file holding the token; DISCORD_TOKEN wins when both are set
    owner_ids: tuple[int, ...] = setting(())  # bot owners besides the application's owner
    data_dir: str = setting("data")  # the SQLite database lives here
    log_level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_json: bool = setting(False)
    status_interval: float = setting(2.0, low=0.0, high=60.0)  # seconds between status message edits
    preview_interval: float = setting(5.0, low=2.0, high=600.0, off=True)  # seconds between live previews; 0 = off
    shutdown_grace: float = setting(60.0, low=0.0, high=3600.0)  # seconds running jobs get to finish on SIGTERM
    message_content: bool = setting(True)  # request the privileged Message Content intent (prefix commands)
    attachment_hosts: tuple[str, ...] = setting(DISCORD_CDN_HOSTS)  # the only hosts images are downloaded from
    job_history_days: float = setting(30.0, low=1.0, high=3650.0)  # finished job records are pruned after this
    # gateway shards: "auto" (None here: Discord's recommended count) or a count; 2,500+ servers need more than one
    shards: int | None = setting(None, low=1, high=4096, auto=True)


@dataclass(frozen=True)
class EngineSection:
    weights: str = setting("torchvision", nonempty=True)  # "torchvision", a .pth file, or "random" (smoke tests)
    devices: tuple[str, ...] = setting(("auto",))  # one worker process per entry
    cpu_threads: int = setting(0, low=0, high=1024)  # torch threads per CPU worker; 0 = CPU cores / CPU workers
    precision: str = setting("auto", choices=FIELDS["precision"].choices)
    # the memory budget of one job's optimisation step, per worker: "auto" (None here: the engine's default, a share
    # of the worker's device's free memory), bytes or text like "2GiB" (an int here), or "unlimited"; a level over
    # it runs in tiles, and a job that cannot fit even in the smallest tiles is refused before queueing
    max_memory: int | str | None = setting(None, memory=True)


@dataclass(frozen=True)
class CapsSection:
    """Operator caps: the ceiling for every server and user."""

    max_epochs: int = setting(1000, low=1, high=FIELDS["epochs"].maximum)
    max_size: int = setting(1024, low=FIELDS["size"].minimum, high=FIELDS["size"].maximum)
    # the longer side an Upscale ×2 may reach (instead of max_size: upscaling continues from a finished picture, and
    # only the final level runs); a server's max_size lowers it
    max_upscale_size: int = setting(2048, low=FIELDS["size"].minimum, high=FIELDS["size"].maximum)
    max_attachment_bytes: int = setting(10 * MIB, low=1024, high=500 * MIB)
    max_pixels: int = setting(40_000_000, low=1024, high=178_956_970)  # Pillow refuses larger images outright
    max_styles: int = setting(3, low=1, high=10)  # style images one job may blend
    max_jobs_per_user: int = setting(1, low=1, high=1000)
    max_queue: int = setting(20, low=1, high=100_000)
    job_timeout: float = setting(900.0, low=1.0, high=7 * 24 * 3600.0)
    min_cooldown: float = setting(0.0, low=0.0, high=86400.0)  # seconds between a user's jobs, for every server
    max_presets: int = setting(25, low=1, high=1000)  # saved presets per user, and per server
    # Animations (an animated GIF/WebP or a clip as the content): the whole clip is one job, under job_timeout.
    # The engine's own StyleParams fields, so their ranges are the engine's; the bot sets them on every job.
    max_frames: int = setting(StyleParams.max_frames, low=FIELDS["max_frames"].minimum, high=FIELDS["max_frames"].maximum)
    max_clip_seconds: float = setting(StyleParams.max_clip_seconds, low=1.0, high=FIELDS["max_clip_seconds"].maximum)
    max_clip_pixels: int = setting(StyleParams.max_clip_pixels, low=FIELDS["max_clip_pixels"].minimum,
                                   high=FIELDS["max_clip_pixels"].maximum)


# StyleParams fields that are operator caps: set in [caps] (above), never in [defaults] or by users.
CAP_FIELDS = ("max_frames", "max_clip_seconds", "max_clip_pixels")


@dataclass(frozen=True)
class CacheSection:
    """Images kept on disk under data_dir so a result can be re-run with other options."""

    max_bytes: int = setting(512 * MIB, low=0, high=1024 * 1024 * MIB)  # 0 = no cache
    ttl: float = setting(86400.0, low=60.0, high=30 * 86400.0)  # seconds an image stays re-runnable


@dataclass(frozen=True)
class StylesSection:
    """Each server's library of named styles (files under data_dir/styles), and the operator's built-ins."""

    builtin_dir: str = setting("")  # a folder of images every server sees as built-in styles (name = file name); "" = none
    max_per_server: int = setting(50, low=1, high=10_000)  # named styles one server may keep
    max_bytes_per_server: int = setting(50 * MIB, low=1024, high=100 * 1024 * MIB)  # their stored files, together
    max_side: int = setting(2048, low=64, high=8192)  # a style is stored at most this many pixels on its longer side


@dataclass(frozen=True)
class WebSection:
    enabled: bool = setting(False)
    host: str = setting("127.0.0.1", nonempty=True)
    port: int = setting(8080, low=0, high=65535)  # 0: any free port


@dataclass(frozen=True)
class ExecutorSection:
    """Where jobs run: "local" worker processes, or "celery" workers anywhere, through Redis."""

    kind: str = setting("local", choices=("local", "celery"))
    redis_url: str = setting("redis://127.0.0.1:6379/0", nonempty=True)  # rediss:// for TLS; may carry user:password
    redis_password_file: str = setting("")  # a file holding the Redis password (e.g. a Docker secret)
    key_ttl: int = setting(86400, low=60, high=30 * 86400)  # seconds images, results and events live in Redis
    visibility_timeout: int = setting(0, low=0, high=30 * 86400)  # 0 = caps.job_timeout + 600; must exceed the longest job
    max_attempts: int = setting(2, low=1, high=10)  # deliveries of a job whose worker died, before it is given up
    restore_interval: int = setting(10, low=1, high=3600)  # seconds between sweeps for a dead worker's job


# The choices below are bot.core.scheduling.POLICIES and bot.core.usage.OVER_QUOTA_MODES, restated because the
# core imports this module (tests/test_config.py keeps them equal).
POLICIES = ("fair-share", "round-robin", "least-usage", "fcfs")
OVER_QUOTA_MODES = ("slow-lane", "refuse")
QUOTA_HIGH = 864_000.0  # seconds a day: ten workers busy all day; 0 (no cap) is there for more


@dataclass(frozen=True)
class QueueSection:
    """The order in which waiting jobs start (docs/fair-share.md)."""

    policy: str = setting("fair-share", choices=POLICIES)


@dataclass(frozen=True)
class QuotasSection:
    """Daily compute quotas (the workers' own seconds, reset at 00:00 UTC); a server's admins may lower them."""

    user_daily: float = setting(0.0, low=1.0, high=QUOTA_HIGH, off=True)  # per user, everywhere; 0 = no cap
    server_daily: float = setting(0.0, low=1.0, high=QUOTA_HIGH, off=True)  # per server; 0 = no cap
    over_quota: str = setting("slow-lane", choices=OVER_QUOTA_MODES)  # a job over quota waits, or is refused


@dataclass(frozen=True)
class Config:
    bot: BotSection = field(default_factory=BotSection)
    engine: EngineSection = field(default_factory=EngineSection)
    defaults: StyleParams = field(default_factory=StyleParams)  # job defaults for users who set nothing
    caps: CapsSection = field(default_factory=CapsSection)
    cache: CacheSection = field(default_factory=CacheSection)
    styles: StylesSection = field(default_factory=StylesSection)
    web: WebSection = field(default_factory=WebSection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    queue: QueueSection = field(default_factory=QueueSection)
    quotas: QuotasSection = field(default_factory=QuotasSection)
    source: str = "<defaults>"

    @property
    def database_path(self) -> Path:
        return Path(self.bot.data_dir) / "bot.sqlite3"

    @property
    def cache_dir(self) -> Path:
        return Path(self.bot.data_dir) / "cache"

    @property
    def styles_dir(self) -> Path:
        return Path(self.bot.data_dir) / "styles"


_SECTIONS = {
    "bot": BotSection,
    "engine": EngineSection,
    "caps": CapsSection,
    "cache": CacheSection,
    "styles": StylesSection,
    "web": WebSection,
    "executor": ExecutorSection,
    "queue": QueueSection,
    "quotas": QuotasSection,
}


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a TOML file. Raises ConfigError with the file, the key and the problem."""
    where = Path(path)
    try:
        with open(where, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {where} (copy config.example.toml to start)") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {where}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where} is not valid TOML: {error}") from None
    return parse_config(raw, source=str(where))


def parse_config(raw: dict[str, Any], *, source: str = "<config>") -> Config:
    """Validate an already parsed TOML document."""
    known = {*_SECTIONS, "defaults"}
    for key in raw:
        if key not in known:
            _fail(source, key, "is not a section of this config" + _did_you_mean(key, known))
    if "token" in raw.get("bot", {}):
        _fail(source, "bot.token", f"tokens do not belong in config files: set {TOKEN_ENV} or bot.token_file")
    sections = {name: _section(source, name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    config = Config(**sections, defaults=_defaults(source, raw.get("defaults", {}), sections["engine"]), source=source)
    _cross_checks(config)
    return config


def _section(source: str, name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        _fail(source, name, "must be a table ([" + name + "])")
    hints = get_type_hints(cls)
    declared = {f.name: f for f in fields(cls)}
    converted = {}
    for key, value in values.items():
        if key not in declared:
            _fail(source, f"{name}.{key}", "is not a known key" + _did_you_mean(key, declared))
        converted[key] = _convert(source, f"{name}.{key}", hints[key], declared[key].metadata, value)
    return cls(**converted)


def _convert(source: str, key: str, hint: Any, rule: Any, value: Any) -> Any:
    if rule.get("memory"):
        return _memory_budget(source, key, value)
    if rule.get("auto"):
        return _auto_or_number(source, key, rule, value)
    text = str(hint)
    if hint is bool:
        if not isinstance(value, bool):
            _fail(source, key, f"must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            _fail(source, key, f"must be a string, got {value!r}")
        if rule.get("choices"):
            canonical = {choice.lower(): choice for choice in rule["choices"]}
            if value.lower() not in canonical:
                _fail(source, key, f"must be one of {', '.join(rule['choices'])}, got {value!r}")
            return canonical[value.lower()]
        if rule.get("nonempty") and not value.strip():
            _fail(source, key, "must not be empty")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(source, key, f"must be a number, got {value!r}")
        if hint is int and isinstance(value, float):
            if not value.is_integer():
                _fail(source, key, f"must be a whole number, got {value!r}")
            value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            _fail(source, key, f"must be a finite number, got {value!r}")
        low, high = rule.get("low"), rule.get("high")
        if not (rule.get("off") and value == 0) and (
            (low is not None and value < low) or (high is not None and value > high)
        ):
            allowed = f"from {low:g} to {high:g}"
            _fail(source, key, f"must be {'0 (off) or ' if rule.get('off') else ''}{allowed}, got {value!r}")
        return hint(value)
    if text.startswith("tuple[int"):
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            _fail(source, key, f"must be a list of integers (Discord user ids), got {value!r}")
        return tuple(value)
    if text.startswith("tuple[str"):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            _fail(source, key, f"must be a non-empty list of strings, got {value!r}")
        return tuple(v.strip() for v in value)
    raise AssertionError(f"unhandled config type {hint} for {key}")


def _auto_or_number(source: str, key: str, rule: Any, value: Any) -> int | None:
    """"auto" (None: decided at run time) or a whole number within the key's range."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not rule["low"] <= value <= rule["high"]:
        _fail(source, key, f'must be "auto" or a whole number from {rule["low"]:g} to {rule["high"]:g}, got {value!r}')
    return value


def _memory_budget(source: str, key: str, value: Any) -> int | str | None:
    """"auto" (None: the engine's default for the worker's device), "unlimited", or a positive amount of
    memory in bytes (a number, or text like "2GiB" read by the engine's own parser, as the CLI reads it)."""
    from nst.memory import UNLIMITED, parse_budget  # no torch

    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        if not isinstance(value, (str, int, float)):
            raise ParamError(key, "not an amount")
        budget = parse_budget(value, key)
    except ParamError:
        _fail(source, key, f'must be "auto", "unlimited" or an amount of memory like "2GiB", "512MiB" or a number of '
                           f"bytes, got {value!r}")
    return UNLIMITED if budget is None else budget


def _defaults(source: str, values: Any, engine: EngineSection) -> StyleParams:
    if not isinstance(values, dict):
        _fail(source, "defaults", "must be a table ([defaults])")
    for key in values:
        if key in CAP_FIELDS:
            _fail(source, f"defaults.{key}", f"is a cap: set it in [caps] as caps.{key}")
        if key not in FIELDS or key == "precision":
            hint = " (precision is set in [engine])" if key == "precision" else ""
            _fail(source, f"defaults.{key}", "is not a style parameter" + hint + _did_you_mean(key, FIELDS))
    try:
        typed = {key: parse_value(key, value) for key, value in values.items()}
        return StyleParams().replace(**typed, precision=engine.precision)
    except ParamError as error:
        _fail(source, f"defaults.{error.field}", error.reason)


def _cross_checks(config: Config) -> None:
    """Rules that relate two keys; each key's own range is checked where it is declared."""
    source = config.source
    if config.defaults.epochs > config.caps.max_epochs:
        _fail(source, "defaults.epochs", f"{config.defaults.epochs} is above caps.max_epochs ({config.caps.max_epochs})")
    if config.defaults.size > config.caps.max_size:
        _fail(source, "defaults.size", f"{config.defaults.size} is above caps.max_size ({config.caps.max_size})")
    timeout = config.caps.job_timeout
    if config.executor.visibility_timeout and config.executor.visibility_timeout <= timeout:
        _fail(source, "executor.visibility_timeout",
              f"{config.executor.visibility_timeout} s must exceed caps.job_timeout ({timeout:g} s), "
              "or a slow job would be handed to a second worker while it still runs")
    if config.executor.kind == "celery":
        redelivery = visibility_timeout(config) + config.executor.restore_interval
        if config.executor.key_ttl <= redelivery:
            _fail(source, "executor.key_ttl",
                  f"{config.executor.key_ttl} s must exceed the {redelivery} s a dead worker's job may wait to be handed "
                  "to another worker (the visibility timeout and the restore interval), or its images would expire first")
    if config.engine.weights not in ("torchvision", "random") and not Path(config.engine.weights).expanduser().is_file():
        _fail(source, "engine.weights", f"file not found: {config.engine.weights} (or use \"torchvision\")")


def visibility_timeout(config: Config) -> int:
    """Seconds before an unacknowledged Celery job is handed to another worker (0 in the file: the job
    timeout and ten minutes)."""
    return config.executor.visibility_timeout or int(config.caps.job_timeout) + 600


def queue_settings(config: Config):
    """The settings the bot and the Celery workers share (see executor/jobqueue.py)."""
    from .executor.jobqueue import QueueSettings, redis_url

    section = config.executor
    try:
        url = redis_url(section.redis_url, section.redis_password_file)
    except OSError as error:
        raise ConfigError(f"executor.redis_password_file: cannot read it: {error.strerror or error}") from None
    return QueueSettings(
        redis_url=url,
        key_ttl=section.key_ttl,
        visibility_timeout=visibility_timeout(config),
        max_attempts=section.max_attempts,
        job_timeout=config.caps.job_timeout,
        restore_interval=section.restore_interval,
        preview_interval=config.bot.preview_interval,
    )


def make_executor(config: Config) -> "Executor":
    """The executor the config asks for, with its settings: the one place the config becomes them."""
    if config.executor.kind == "celery":
        from .executor.distributed import CeleryExecutor  # lazily: Celery, and the engine's worker code

        return CeleryExecutor(queue_settings(config))
    from .executor.local import LocalExecutor

    return LocalExecutor(
        weights=config.engine.weights,
        devices=config.engine.devices,
        cpu_threads=config.engine.cpu_threads,
        job_timeout=config.caps.job_timeout,
        preview_interval=config.bot.preview_interval,
        precision=config.engine.precision,
        log_level=config.bot.log_level.upper(),
        log_json=config.bot.log_json,
    )


def load_or_report(path: str | os.PathLike, then: Callable[[Config], T]) -> tuple[Config, T] | None:
    """For the entry points (python -m bot, nst-worker): the config at ``path`` and ``then(config)``, or
    None after printing the problem to stderr as one line (the caller exits with status 2)."""
    try:
        config = load_config(path)
        return config, then(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def read_token(config: Config, environ: dict[str, str] | None = None) -> str:
    """The bot token from DISCORD_TOKEN, else from bot.token_file. Never logged."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    if config.bot.token_file:
        path = Path(config.bot.token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"no Discord token: {TOKEN_ENV} is not set and bot.token_file {path} does not exist") from None
        except OSError as error:
            raise ConfigError(f"bot.token_file: cannot read {path}: {error.strerror or error}") from None
        if not token:
            raise ConfigError(f"bot.token_file: {path} is empty")
        return token
    raise ConfigError(f"no Discord token: set the {TOKEN_ENV} environment variable or bot.token_file in the config")


def _fail(source: str, key: str, problem: str):
    raise ConfigError(f"{source}: {key} {problem}")


def _did_you_mean(key: str, choices) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
