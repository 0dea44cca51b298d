"""The store's queries: :class:`Store` (open, settings, limits, jobs, styles, presets) on top of the
connection layer (``db``) and the schema (``schema``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.store.db import Database, StoreError, _Connection, _store_error
from bot.core.store.schema import SCHEMA_VERSION, _MigrationError, _prepare

log = logging.getLogger("bot.core.store")

JOB_STATES = frozenset({"queued", "running", "done", "failed", "cancelled", "interrupted"})
_UPDATABLE_JOB_FIELDS = frozenset({"status_message_id", "state", "outcome", "attempts", "finished_at", "started_at",
                                   "work"})
_JOB_COLUMNS = (
    "job_id, user_id, guild_id, channel_id, message_id, status_message_id, params, state, "
    "outcome, attempts, created_at, updated_at, finished_at, info, started_at, work, roles"
)
_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 17)})"
_STYLE_COLUMNS = "guild_id, name, sha256, ext, bytes, width, height, added_by, added_at"
PRESET_SCOPES = frozenset({"user", "guild"})
_SETTINGS_TABLES = {"user": ("user_settings", "user_id"), "guild": ("guild_limits", "guild_id")}


@dataclass(frozen=True)
class JobRecord:
    """One row of the jobs table, as stored and as returned."""

    job_id: str
    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int  # the user's command message
    status_message_id: int | None  # the bot's status message, once posted
    params: dict
    state: str  # one of JOB_STATES
    outcome: str | None  # short reason/summary when finished
    attempts: int  # times a worker started it: 0 while queued, 2+ when a worker died and it ran again
    created_at: float  # unix time (time.time())
    updated_at: float
    finished_at: float | None
    info: dict = field(default_factory=dict)  # named styles, preset, sources of each value (schema 2)
    started_at: float | None = None  # when a worker reported it started (schema 3)
    work: float | None = None  # planned pixel-steps (bot.core.scheduling.planned_work; schema 3)
    roles: tuple[int, ...] | None = None  # the member's role ids at submission; None in DMs (schema 3)


@dataclass(frozen=True)
class StyleRecord:
    """One named style of a server's library."""

    guild_id: int
    name: str
    sha256: str
    ext: str
    bytes: int
    width: int
    height: int
    added_by: int
    added_at: float

    @property
    def filename(self) -> str:
        return f"{self.sha256}.{self.ext}"


class Store(Database):
    """The bot's database. Create with ``await Store.open(path)``; close with ``await store.close()``.

    Writes (and opening, migrating) go through one sqlite3 connection owned by one thread, which runs
    them in the order they were submitted, so concurrent writers are serialised first-come first-served.
    Reads go through a second, read-only connection on its own thread: in WAL mode a reader sees the
    last committed state without the write lock, so a read never waits behind a write that is waiting
    out the busy timeout (a backup or another process holding the lock).
    """

    @classmethod
    async def open(cls, path: str | os.PathLike, *, timeout: float = 10.0) -> Store:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        Fails with StoreError, at startup rather than at the first command, if the file cannot be
        written or another process holds its write lock for longer than ``timeout`` seconds.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory {path.parent} for {path}: {exc.strerror or exc}") from exc

        # isolation_level=None: we issue BEGIN/COMMIT ourselves, the sqlite3 module adds none.
        # timeout= is SQLite's busy timeout: how long to wait for another process's lock.
        db = _Connection(path)
        store = cls(db, path, timeout)
        try:
            await store._run("open", lambda _: db.connect(timeout))
        except StoreError:
            await store.close()
            raise
        try:
            found = await store._run("open", _prepare)
        except _MigrationError as exc:
            await store.close()
            reason = _store_error(exc.error, path, "migrate", timeout)
            raise StoreError(
                f"{reason} (upgrading to schema version {exc.target} failed and was rolled back; "
                f"the file is unchanged at version {exc.target - 1})"
            ) from exc.error
        except BaseException:
            await store.close()
            raise
        if found > SCHEMA_VERSION:
            await store.close()
            raise StoreError(
                f"{path} has schema version {found}, newer than this bot understands ({SCHEMA_VERSION}): "
                "upgrade the bot, or restore a backup made by this version"
            )
        reader = store._reader = _Connection(path, "nst-store-read")
        try:
            await store._read(lambda _: reader.connect(timeout, read_only=True), action="open")
        except BaseException:
            await store.close()
            raise
        return store


    # ------------------------------------------------------------------ settings: a user's defaults, a server's limits

    async def settings(self, scope: str, owner_id: int) -> dict[str, Any]:
        """All of an owner's stored values in ``scope`` ("user": defaults, "guild": limits), ``{name: value}``."""
        table, owner = _settings_table(scope)
        rows = await self._read(
            lambda conn: conn.execute(f"SELECT name, value FROM {table} WHERE {owner} = ? ORDER BY name", (owner_id,)).fetchall(),
        )
        return {name: json.loads(value) for name, value in rows}

    async def set_setting(self, scope: str, owner_id: int, name: str, value: Any, *, changed_by: int | None = None) -> None:
        table, owner = _settings_table(scope)
        encoded = _encode(value)  # before touching the database: a bad value is the caller's bug
        audit = ", changed_by" if scope == "guild" else ""  # who changed a server's limit (audit only)
        values = (owner_id, name, encoded, time.time(), *((changed_by,) if audit else ()))
        await self._write(
            lambda conn: conn.execute(
                f"INSERT INTO {table} ({owner}, name, value, updated_at{audit}) VALUES ({', '.join('?' * len(values))}) "
                f"ON CONFLICT ({owner}, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                + (", changed_by = excluded.changed_by" if audit else ""),
                values,
            )
        )

    async def unset_setting(self, scope: str, owner_id: int, name: str) -> bool:
        """Remove one value; True if it was there."""
        table, owner = _settings_table(scope)
        removed = await self._write(
            lambda conn: conn.execute(f"DELETE FROM {table} WHERE {owner} = ? AND name = ?", (owner_id, name)).rowcount
        )
        return removed > 0

    async def reset_settings(self, scope: str, owner_id: int) -> int:
        """Remove all of an owner's values (all or nothing); returns how many were removed."""
        table, owner = _settings_table(scope)
        return await self._write(lambda conn: conn.execute(f"DELETE FROM {table} WHERE {owner} = ?", (owner_id,)).rowcount)

    # The names callers use, each the scoped API above.

    async def user_settings(self, user_id: int) -> dict[str, Any]:
        return await self.settings("user", user_id)

    async def set_user_setting(self, user_id: int, name: str, value: Any) -> None:
        await self.set_setting("user", user_id, name, value)

    async def unset_user_setting(self, user_id: int, name: str) -> bool:
        return await self.unset_setting("user", user_id, name)

    async def reset_user_settings(self, user_id: int) -> int:
        return await self.reset_settings("user", user_id)

    async def guild_limits(self, guild_id: int) -> dict[str, Any]:
        return await self.settings("guild", guild_id)

    async def set_guild_limit(self, guild_id: int, name: str, value: Any, *, changed_by: int | None = None) -> None:
        await self.set_setting("guild", guild_id, name, value, changed_by=changed_by)

    async def unset_guild_limit(self, guild_id: int, name: str) -> bool:
        return await self.unset_setting("guild", guild_id, name)

    # ------------------------------------------------------------------ jobs

    async def add_job(self, record: JobRecord) -> None:
        """Insert a new job. A job id that already exists is a programming error (ValueError)."""
        _check_state(record.state)
        row = (
            record.job_id, record.user_id, record.guild_id, record.channel_id, record.message_id,
            record.status_message_id, _encode(record.params), record.state, record.outcome,
            record.attempts, record.created_at, record.updated_at, record.finished_at, _encode(record.info),
            record.started_at, record.work, None if record.roles is None else _encode(list(record.roles)),
        )  # fmt: skip
        try:
            await self._write(lambda conn: conn.execute(_INSERT_JOB, row))
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"job {record.job_id!r} already exists") from exc

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Change some of status_message_id, state, outcome, attempts, finished_at, started_at, work;
        updated_at is set to now.

        An unknown field or state raises ValueError. An unknown job_id changes nothing and is only
        logged: the usual cause is that recording the job failed earlier (already reported), and
        bookkeeping must not break the job itself.
        """
        unknown = set(fields) - _UPDATABLE_JOB_FIELDS
        if unknown:
            raise ValueError(f"update_job: unknown field(s) {', '.join(sorted(unknown))}")
        if "state" in fields:
            _check_state(fields["state"])
        names = sorted(fields)  # column names come only from the allow-list above, never from input
        assignments = ", ".join([f"{name} = ?" for name in names] + ["updated_at = ?"])
        values = [fields[name] for name in names] + [time.time(), job_id]
        changed = await self._write(
            lambda conn: conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", values).rowcount
        )
        if changed == 0:
            log.warning("update_job: no job %r in %s (was it never recorded, or pruned?)", job_id, self.path)

    async def get_job(self, job_id: str) -> JobRecord | None:
        row = await self._read(
            lambda conn: conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        )
        return None if row is None else _job(row)

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs still queued or running (e.g. when the bot stopped), oldest first."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at, rowid"
            ).fetchall(),
        )
        return [_job(row) for row in rows]

    async def last_job_started(self, user_id: int, guild_id: int | None) -> float | None:
        """created_at of the user's most recent job in that server (None = DMs), for cooldowns."""
        # "guild_id IS ?" matches NULL (DMs) as well as a real id, unlike "=".
        return await self._read(
            lambda conn: conn.execute(
                "SELECT MAX(created_at) FROM jobs WHERE user_id = ? AND guild_id IS ?", (user_id, guild_id)
            ).fetchone()[0],
        )

    async def prune_jobs(self, older_than: float) -> int:
        """Delete finished jobs whose finished_at is before ``older_than``, and the usage ledger's rows
        and usage resets older than that (one transaction); returns how many jobs."""

        def prune(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM usage_ledger WHERE finished_at < ?", (older_than,))
            conn.execute("DELETE FROM usage_resets WHERE reset_at < ?", (older_than,))
            return conn.execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND finished_at < ?", (older_than,)
            ).rowcount

        return await self._write(prune)

    async def last_starts(self) -> tuple[dict[int, float], dict[int | None, float]]:
        """When each user's, and each server's (None: DMs), most recent kept job started (jobs.started_at)."""

        def read(conn: sqlite3.Connection) -> tuple[dict, dict]:
            users = conn.execute(
                "SELECT user_id, MAX(started_at) FROM jobs WHERE started_at IS NOT NULL GROUP BY user_id"
            ).fetchall()
            servers = conn.execute(
                "SELECT guild_id, MAX(started_at) FROM jobs WHERE started_at IS NOT NULL GROUP BY guild_id"
            ).fetchall()
            return dict(users), dict(servers)

        return await self._read(read)

    # ------------------------------------------------------------------ usage ledger and resets

    async def record_usage(self, job_id: str, user_id: int, guild_id: int | None, seconds: float,
                           work: float | None, finished_at: float) -> bool:
        """Charge a job's compute seconds; a job is charged once (a second call changes nothing).
        True if this call recorded it."""
        if not (seconds >= 0 and seconds != float("inf")):
            raise ValueError(f"record_usage: seconds must be a finite number >= 0, got {seconds!r}")
        return await self._write(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO usage_ledger (job_id, user_id, guild_id, seconds, work, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, user_id, guild_id, float(seconds), work, finished_at),
            ).rowcount
            > 0
        )

    async def usage_since(self, since: float, *, user_id: int | None = None,
                          guild_id: int | None = None) -> list[tuple[int, int | None, float, float]]:
        """Compute seconds finished at or after ``since``, per (user, server), resets applied:
        ``(user_id, guild_id, seconds, member_seconds)``. ``seconds`` leaves out what finished up to the
        user's latest reset everywhere (a bot owner's); ``member_seconds`` also up to the latest reset of
        the member in that server (its admins'). Only resets at or after ``since`` count. With
        ``user_id``, only that user's rows and (when ``guild_id`` is given) every row of that server."""
        where, values = "l.finished_at >= :since", {"since": since, "user": user_id, "guild": guild_id}
        if user_id is not None:
            where += " AND (l.user_id = :user" + (" OR l.guild_id = :guild)" if guild_id is not None else ")")
        query = f"""
            SELECT l.user_id, l.guild_id,
                   SUM(CASE WHEN l.finished_at > COALESCE(g.at, -1) THEN l.seconds ELSE 0 END),
                   SUM(CASE WHEN l.finished_at > MAX(COALESCE(g.at, -1), COALESCE(s.at, -1)) THEN l.seconds ELSE 0 END)
            FROM usage_ledger l
            LEFT JOIN (SELECT user_id, MAX(reset_at) AS at FROM usage_resets
                       WHERE guild_id IS NULL AND reset_at >= :since GROUP BY user_id) g
                   ON g.user_id = l.user_id
            LEFT JOIN (SELECT user_id, guild_id, MAX(reset_at) AS at FROM usage_resets
                       WHERE guild_id IS NOT NULL AND reset_at >= :since GROUP BY user_id, guild_id) s
                   ON s.user_id = l.user_id AND s.guild_id = l.guild_id
            WHERE {where}
            GROUP BY l.user_id, l.guild_id
        """
        rows = await self._read(lambda conn: conn.execute(query, values).fetchall())
        return [(user, guild, float(seconds), float(member)) for user, guild, seconds, member in rows]

    async def reset_usage(self, user_id: int, guild_id: int | None, reset_at: float, reset_by: int) -> None:
        """From ``reset_at`` on, what the user finished up to then no longer counts: everywhere
        (``guild_id`` None) or against the member's own quota in that server."""
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO usage_resets (user_id, guild_id, reset_at, reset_by) VALUES (?, ?, ?, ?)",
                (user_id, guild_id, reset_at, reset_by),
            )
        )

    # ------------------------------------------------------------------ the scheduler's own state

    async def scheduler_state(self, name: str) -> str | None:
        """A JSON blob the fair order persists (e.g. fair-share's shares), or None if never set."""
        row = await self._read(
            lambda conn: conn.execute("SELECT value FROM scheduler_state WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else row[0]

    async def set_scheduler_state(self, name: str, value: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"set_scheduler_state: value must be text (JSON), got {type(value).__name__}")
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO scheduler_state (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )
        )

    # ------------------------------------------------------------------ named styles

    async def guild_styles(self, guild_id: int) -> list[StyleRecord]:
        """A server's styles, by name."""
        rows = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_STYLE_COLUMNS} FROM styles WHERE guild_id = ? ORDER BY name", (guild_id,)
            ).fetchall(),
        )
        return [StyleRecord(*row) for row in rows]

    async def get_style(self, guild_id: int, name: str) -> StyleRecord | None:
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {_STYLE_COLUMNS} FROM styles WHERE guild_id = ? AND name = ?", (guild_id, name)
            ).fetchone(),
        )
        return None if row is None else StyleRecord(*row)

    async def style_usage(self, guild_id: int) -> tuple[int, int]:
        """(names, bytes of the distinct files they use) of a server's library."""
        return await self._read(
            lambda conn: conn.execute(
                "SELECT (SELECT COUNT(*) FROM styles WHERE guild_id = ?), "
                "(SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT sha256, bytes FROM styles WHERE guild_id = ?))",
                (guild_id, guild_id),
            ).fetchone(),
        )

    async def add_style(self, record: StyleRecord) -> None:
        """Insert a named style; a name the server already has raises ValueError."""
        row = tuple(getattr(record, name.strip()) for name in _STYLE_COLUMNS.split(","))
        try:
            await self._write(
                lambda conn: conn.execute(f"INSERT INTO styles ({_STYLE_COLUMNS}) VALUES ({', '.join('?' * 9)})", row)
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"style {record.name!r} already exists in server {record.guild_id}") from exc

    async def rename_style(self, guild_id: int, old: str, new: str) -> bool:
        """True if renamed; False if there is no ``old``; ValueError if ``new`` is taken."""
        try:
            changed = await self._write(
                lambda conn: conn.execute(
                    "UPDATE styles SET name = ? WHERE guild_id = ? AND name = ?", (new, guild_id, old)
                ).rowcount
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"style {new!r} already exists in server {guild_id}") from exc
        return changed > 0

    async def remove_style(self, guild_id: int, name: str) -> tuple[StyleRecord | None, bool]:
        """Delete a named style, in one transaction with the question whether any name (of any server)
        still uses its file: (the removed record or None, file still used)."""

        def remove(conn: sqlite3.Connection) -> tuple[StyleRecord | None, bool]:
            row = conn.execute(
                f"SELECT {_STYLE_COLUMNS} FROM styles WHERE guild_id = ? AND name = ?", (guild_id, name)
            ).fetchone()
            if row is None:
                return None, False
            record = StyleRecord(*row)
            conn.execute("DELETE FROM styles WHERE guild_id = ? AND name = ?", (guild_id, name))
            used = conn.execute("SELECT 1 FROM styles WHERE sha256 = ? LIMIT 1", (record.sha256,)).fetchone()
            return record, used is not None

        return await self._write(remove)

    async def style_files(self) -> set[str]:
        """The file names (sha256.ext) that some named style uses."""
        rows = await self._read(lambda conn: conn.execute("SELECT DISTINCT sha256, ext FROM styles").fetchall())
        return {f"{sha}.{ext}" for sha, ext in rows}

    # ------------------------------------------------------------------ presets

    async def presets(self, scope: str, owner_id: int) -> dict[str, dict[str, Any]]:
        """A member's (scope "user") or a server's (scope "guild") presets, ``{name: options}``."""
        _check_scope(scope)
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT name, options FROM presets WHERE scope = ? AND owner_id = ? ORDER BY name", (scope, owner_id)
            ).fetchall(),
        )
        return {name: json.loads(options) for name, options in rows}

    async def save_preset(self, scope: str, owner_id: int, name: str, options: dict[str, Any], *,
                          changed_by: int | None = None) -> None:
        _check_scope(scope)
        encoded = _encode(options)
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO presets (scope, owner_id, name, options, updated_at, changed_by) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope, owner_id, name) DO UPDATE SET options = excluded.options, "
                "updated_at = excluded.updated_at, changed_by = excluded.changed_by",
                (scope, owner_id, name, encoded, time.time(), changed_by),
            )
        )

    async def remove_preset(self, scope: str, owner_id: int, name: str) -> bool:
        _check_scope(scope)
        removed = await self._write(
            lambda conn: conn.execute(
                "DELETE FROM presets WHERE scope = ? AND owner_id = ? AND name = ?", (scope, owner_id, name)
            ).rowcount
        )
        return removed > 0

    # ------------------------------------------------------------------ plumbing


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_state(state: str) -> None:
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r} (expected one of {', '.join(sorted(JOB_STATES))})")


def _settings_table(scope: str) -> tuple[str, str]:
    """The table and owner column of a settings scope."""
    try:
        return _SETTINGS_TABLES[scope]
    except KeyError:
        raise ValueError(f"unknown settings scope {scope!r} (expected user or guild)") from None


def _check_scope(scope: str) -> None:
    if scope not in PRESET_SCOPES:
        raise ValueError(f"unknown preset scope {scope!r} (expected user or guild)")


def _job(row: tuple) -> JobRecord:
    (job_id, user_id, guild_id, channel_id, message_id, status_message_id, params, state,
     outcome, attempts, created_at, updated_at, finished_at, info, started_at, work, roles) = row  # fmt: skip
    return JobRecord(
        job_id=job_id, user_id=user_id, guild_id=guild_id, channel_id=channel_id, message_id=message_id,
        status_message_id=status_message_id, params=json.loads(params), state=state, outcome=outcome,
        attempts=attempts, created_at=created_at, updated_at=updated_at, finished_at=finished_at,
        info=json.loads(info) if info else {}, started_at=started_at, work=work,
        roles=None if roles is None else tuple(json.loads(roles)),
    )  # fmt: skip


PRUNE_EVERY = 3600.0  # seconds between prunes of old job records


async def prune_periodically(store: Store, keep_seconds: float, every: float = PRUNE_EVERY) -> None:
    """Delete finished job records older than ``keep_seconds``: at once, then every ``every`` seconds,
    until cancelled. A failed prune is logged and tried again next time."""
    while True:
        try:
            removed = await store.prune_jobs(time.time() - keep_seconds)
            if removed:
                log.info("pruned %d finished job record(s) older than %g days", removed, keep_seconds / 86400)
        except StoreError as exc:
            log.warning("could not prune old job records: %s", exc)
        await asyncio.sleep(every)


