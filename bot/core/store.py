"""Persistence for the bot: one SQLite file (normally ``<data_dir>/bot.sqlite3``), through the standard
library's sqlite3 on two dedicated threads (so the event loop never waits on the disk): one connection
writes, a second, read-only one reads (so a read never waits behind a write; see ``Store``).

This is the only module that touches the database. It stores values, it does not judge them:
setting names and values are validated elsewhere; here they are kept as JSON text and come back
with their JSON types (int, float, str, list, dict, bool, None; tuples come back as lists).

Tables (schema version 2)
-------------------------
``user_settings(user_id, name, value, updated_at)``
    A user's defaults, applied in every server. Primary key ``(user_id, name)``.
``guild_limits(guild_id, name, value, updated_at, changed_by)``
    A server's limits; ``changed_by`` is the id of the member who set it (audit only).
    Primary key ``(guild_id, name)``.
``jobs(job_id, user_id, guild_id, channel_id, message_id, status_message_id, params, state,
outcome, attempts, created_at, updated_at, finished_at)``
    One row per style-transfer request. ``guild_id`` is NULL for DMs. ``params`` is JSON; ``info``
    (version 2, NULL in older rows) is JSON: the named styles and preset used, each value's source.
``styles(guild_id, name, sha256, ext, bytes, width, height, added_by, added_at)``
    A server's named styles (version 2). The image is the file ``<sha256>.<ext>`` under
    ``<data_dir>/styles`` (content addressed, shared by every name that uses it; see bot/styles.py).
``presets(scope, owner_id, name, options, updated_at, changed_by)``
    Saved option sets (version 2): ``scope`` "user" (owner = user id) or "guild" (owner = server id).

Discord ids (snowflakes) are 64-bit and stored as INTEGER (SQLite's signed 64-bit fits them);
times are unix seconds (REAL); ``value``/``params`` are JSON text.

Durability: WAL journal, ``synchronous=FULL`` (a commit is fsynced before the call returns, so an
acknowledged write survives a crash or power loss), ``foreign_keys=ON``, and a busy timeout.
Every write method is exactly one transaction, committed before it returns; a failed write is
rolled back whole.

Migration policy
----------------
The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` is the SQL script that
takes the database from version ``i`` to ``i + 1``; ``SCHEMA_VERSION == len(MIGRATIONS)``.
At open, each missing step runs in its own transaction together with the ``user_version``
bump, so a failed step leaves the file at the previous version. Released scripts are never
edited: a schema change is a new script appended to the list (for changes ALTER TABLE cannot
do, use SQLite's create-copy-drop-rename procedure inside the script). There are no downgrades:
a file with a newer version than this code knows is refused untouched, because an older bot
could silently drop or misread what a newer one wrote.

Errors an operator must fix (read-only file or directory, full disk, locked database, not a
database, corrupt file) are raised as :class:`StoreError` with a one-line message naming the
file. Programming errors (duplicate job id, unknown field, unknown job state) raise
``ValueError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = [
    "JOB_STATES", "MIGRATIONS", "SCHEMA_VERSION", "JobRecord", "Store", "StoreError", "StyleRecord", "prune_periodically",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 0 -> 1: initial schema.
    """
    CREATE TABLE user_settings (
        user_id    INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        value      TEXT    NOT NULL,          -- JSON
        updated_at REAL    NOT NULL,
        PRIMARY KEY (user_id, name)
    ) WITHOUT ROWID;

    CREATE TABLE guild_limits (
        guild_id   INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        value      TEXT    NOT NULL,          -- JSON
        updated_at REAL    NOT NULL,
        changed_by INTEGER,                   -- member who set it; NULL if unknown
        PRIMARY KEY (guild_id, name)
    ) WITHOUT ROWID;

    -- No CHECK on state: the set of states is enforced in Python (JOB_STATES), so adding a
    -- state later needs no table rebuild. The rowid breaks created_at ties in insertion order.
    CREATE TABLE jobs (
        job_id            TEXT    NOT NULL PRIMARY KEY,
        user_id           INTEGER NOT NULL,
        guild_id          INTEGER,            -- NULL for DMs
        channel_id        INTEGER NOT NULL,
        message_id        INTEGER NOT NULL,
        status_message_id INTEGER,
        params            TEXT    NOT NULL,   -- JSON object
        state             TEXT    NOT NULL,
        outcome           TEXT,
        attempts          INTEGER NOT NULL DEFAULT 0,
        created_at        REAL    NOT NULL,
        updated_at        REAL    NOT NULL,
        finished_at       REAL
    );
    -- last_job_started (cooldowns) and unfinished_jobs (restart recovery) are the hot queries.
    CREATE INDEX jobs_by_user ON jobs (user_id, guild_id, created_at);
    CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE state IN ('queued', 'running');
    """,
    # 1 -> 2: named styles, presets, and what a job was made from.
    """
    -- One row per name in a server's style library. The image itself is a file named by its SHA-256
    -- (content addressed: two names for the same picture share one file), under data_dir/styles.
    CREATE TABLE styles (
        guild_id   INTEGER NOT NULL,
        name       TEXT    NOT NULL,          -- lower case, validated by the bot
        sha256     TEXT    NOT NULL,          -- hex digest of the stored (re-encoded) file
        ext        TEXT    NOT NULL,          -- the file's format: png, webp or jpg
        bytes      INTEGER NOT NULL,
        width      INTEGER NOT NULL,
        height     INTEGER NOT NULL,
        added_by   INTEGER NOT NULL,
        added_at   REAL    NOT NULL,
        PRIMARY KEY (guild_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX styles_by_file ON styles (sha256);

    -- Saved option sets: a member's own (scope 'user', owner_id = user id) or a server's (scope
    -- 'guild', owner_id = guild id, set by its admins).
    CREATE TABLE presets (
        scope      TEXT    NOT NULL,
        owner_id   INTEGER NOT NULL,
        name       TEXT    NOT NULL,
        options    TEXT    NOT NULL,          -- JSON object
        updated_at REAL    NOT NULL,
        changed_by INTEGER,
        PRIMARY KEY (scope, owner_id, name)
    ) WITHOUT ROWID;

    -- JSON: the named styles and the preset a job used, and where each of its values came from.
    ALTER TABLE jobs ADD COLUMN info TEXT;
    """,
]

SCHEMA_VERSION: int = len(MIGRATIONS)

JOB_STATES = frozenset({"queued", "running", "done", "failed", "cancelled", "interrupted"})
_UPDATABLE_JOB_FIELDS = frozenset({"status_message_id", "state", "outcome", "attempts", "finished_at"})
_JOB_COLUMNS = (
    "job_id, user_id, guild_id, channel_id, message_id, status_message_id, params, state, "
    "outcome, attempts, created_at, updated_at, finished_at, info"
)
_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_STYLE_COLUMNS = "guild_id, name, sha256, ext, bytes, width, height, added_by, added_at"
PRESET_SCOPES = frozenset({"user", "guild"})


class StoreError(Exception):
    """Persistence failed for a reason an operator must fix; str() is a clear one-line message naming the file."""


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
    attempts: int
    created_at: float  # unix time (time.time())
    updated_at: float
    finished_at: float | None
    info: dict = field(default_factory=dict)  # named styles, preset, sources of each value (schema 2)


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


class Store:
    """The bot's database. Create with ``await Store.open(path)``; close with ``await store.close()``.

    Writes (and opening, migrating) go through one sqlite3 connection owned by one thread, which runs
    them in the order they were submitted, so concurrent writers are serialised first-come first-served.
    Reads go through a second, read-only connection on its own thread: in WAL mode a reader sees the
    last committed state without the write lock, so a read never waits behind a write that is waiting
    out the busy timeout (a backup or another process holding the lock).
    """

    def __init__(self, db: "_Connection", path: Path, timeout: float) -> None:
        # Use Store.open(); the constructor only wires up an already prepared connection.
        self._db: _Connection | None = db
        self._reader: _Connection | None = None  # opened once the schema is known to be current
        self.path = path
        self._timeout = timeout

    # ------------------------------------------------------------------ lifecycle

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

    async def close(self) -> None:
        """Finish queued operations and close the file. Safe to call more than once."""
        reader, self._reader = self._reader, None
        db, self._db = self._db, None
        for connection in (reader, db):
            if connection is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(connection.close()), _deadline(self._timeout))
            except (sqlite3.Error, asyncio.TimeoutError) as exc:
                # Everything acknowledged is already committed (and fsynced); failing to close
                # cleanly only leaves a WAL file that SQLite replays on the next open.
                log.warning("%s", _store_error(exc, self.path, "close", self._timeout))

    # ------------------------------------------------------------------ user settings

    async def user_settings(self, user_id: int) -> dict[str, Any]:
        """All of a user's stored defaults, ``{name: value}``."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT name, value FROM user_settings WHERE user_id = ? ORDER BY name", (user_id,)
            ).fetchall(),
        )
        return {name: json.loads(value) for name, value in rows}

    async def set_user_setting(self, user_id: int, name: str, value: Any) -> None:
        encoded = _encode(value)  # before touching the database: a bad value is the caller's bug
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO user_settings (user_id, name, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (user_id, name, encoded, time.time()),
            )
        )

    async def unset_user_setting(self, user_id: int, name: str) -> bool:
        """Remove one setting; True if it was there."""
        removed = await self._write(
            lambda conn: conn.execute(
                "DELETE FROM user_settings WHERE user_id = ? AND name = ?", (user_id, name)
            ).rowcount
        )
        return removed > 0

    async def reset_user_settings(self, user_id: int) -> int:
        """Remove all of a user's settings (all or nothing); returns how many were removed."""
        return await self._write(
            lambda conn: conn.execute("DELETE FROM user_settings WHERE user_id = ?", (user_id,)).rowcount
        )

    # ------------------------------------------------------------------ guild limits

    async def guild_limits(self, guild_id: int) -> dict[str, Any]:
        """All of a server's stored limits, ``{name: value}``."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT name, value FROM guild_limits WHERE guild_id = ? ORDER BY name", (guild_id,)
            ).fetchall(),
        )
        return {name: json.loads(value) for name, value in rows}

    async def set_guild_limit(self, guild_id: int, name: str, value: Any, *, changed_by: int | None = None) -> None:
        encoded = _encode(value)
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO guild_limits (guild_id, name, value, updated_at, changed_by) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at, changed_by = excluded.changed_by",
                (guild_id, name, encoded, time.time(), changed_by),
            )
        )

    async def unset_guild_limit(self, guild_id: int, name: str) -> bool:
        """Remove one limit; True if it was there."""
        removed = await self._write(
            lambda conn: conn.execute(
                "DELETE FROM guild_limits WHERE guild_id = ? AND name = ?", (guild_id, name)
            ).rowcount
        )
        return removed > 0

    # ------------------------------------------------------------------ jobs

    async def add_job(self, record: JobRecord) -> None:
        """Insert a new job. A job id that already exists is a programming error (ValueError)."""
        _check_state(record.state)
        row = (
            record.job_id, record.user_id, record.guild_id, record.channel_id, record.message_id,
            record.status_message_id, _encode(record.params), record.state, record.outcome,
            record.attempts, record.created_at, record.updated_at, record.finished_at, _encode(record.info),
        )  # fmt: skip
        try:
            await self._write(lambda conn: conn.execute(_INSERT_JOB, row))
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"job {record.job_id!r} already exists") from exc

    async def update_job(self, job_id: str, **fields: Any) -> None:
        """Change some of status_message_id, state, outcome, attempts, finished_at; updated_at is set to now.

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
        """Delete finished jobs whose finished_at is before ``older_than``; returns how many."""
        return await self._write(
            lambda conn: conn.execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND finished_at < ?", (older_than,)
            ).rowcount
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

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one transaction: committed before returning, rolled back whole on failure."""

        def transaction(conn: sqlite3.Connection) -> T:
            # IMMEDIATE takes the write lock up front, so waiting for another writer goes
            # through the busy timeout here instead of failing later in the transaction.
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return result

        return await self._run("write", transaction)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], *, action: str = "read") -> T:
        """Run a query on the read-only connection (see the class): never queued behind a write."""
        return await self._on(self._reader, action, fn)

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writing connection (see ``_on``)."""
        return await self._on(self._db, action, fn)

    async def _on(self, db: "_Connection | None", action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on ``db``'s thread, in submission order, with a time bound.

        A whole unit of work (a transaction, a query and its fetch) goes to the thread as one
        callable, so it can neither interleave with other coroutines nor be left half-done by a
        cancellation; a unit whose caller gave up before it started never runs.
        """
        if db is None:
            raise RuntimeError(f"the store for {self.path} is closed")
        call = db.submit(fn)
        try:
            return await asyncio.wait_for(asyncio.shield(call.future), _deadline(self._timeout))
        except asyncio.TimeoutError as exc:
            started = call.abandon()
            detail = (
                "the operation may still complete (is the disk or file system stalled?)"
                if started
                else "earlier operations were still running; nothing was changed"
            )
            bound = _deadline(self._timeout)
            raise StoreError(f"cannot {action} {self.path}: no answer within {bound:g}s, {detail}") from exc
        except asyncio.CancelledError:
            call.abandon()  # the caller gave up: if it has not started, it never will
            raise
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise  # a bug in the caller or in this module, not an operator problem
            raise _store_error(exc, self.path, action, self._timeout) from exc


class _Connection:
    """One sqlite3 connection and the one thread that ever uses it: units of work run there one at a
    time, in submission order, and their results come back to the submitting event loop."""

    def __init__(self, path: Path, name: str = "nst-store") -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None  # only touched on the thread
        self._work: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def connect(self, timeout: float, *, read_only: bool = False) -> int:
        """On the thread: open the file (the writer's pragmas and migrations follow: ``_prepare``)."""
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=True)
        if read_only:
            self._conn.execute("PRAGMA query_only = ON")  # SQLite itself refuses a write through it
        return 0

    def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> "_Call":
        call = _Call(fn, asyncio.get_running_loop())
        self._work.put(call)
        return call

    async def close(self) -> None:
        """Close the connection after the work already queued, and end the thread."""
        call = self.submit(lambda conn: conn.close() if conn is not None else None)
        self._work.put(None)
        await call.future

    def _serve(self) -> None:
        while True:
            call = self._work.get()
            if call is None:
                return
            call.run(self._conn)


class _Call:
    """A unit of work for the connection thread that is skipped if its caller has already given up."""

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], loop: asyncio.AbstractEventLoop) -> None:
        self._fn = fn
        self._loop = loop
        self.future: asyncio.Future = loop.create_future()
        # a caller that timed out no longer awaits it: its late outcome must not be reported as unretrieved
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._lock = threading.Lock()
        self._state = "pending"  # -> "running" (thread picked it up) or "abandoned" (caller gave up first)

    def run(self, conn: sqlite3.Connection | None) -> None:
        """On the connection thread."""
        with self._lock:
            if self._state == "abandoned":
                return
            self._state = "running"
        try:
            outcome, failed = self._fn(conn), False
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            outcome, failed = exc, True
        try:
            self._loop.call_soon_threadsafe(self._settle, outcome, failed)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _settle(self, outcome: Any, failed: bool) -> None:
        if self.future.done():
            return
        if failed:
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)

    def abandon(self) -> bool:
        """Mark as abandoned; True if it had already started (so it may still take effect)."""
        with self._lock:
            if self._state == "pending":
                self._state = "abandoned"
            return self._state == "running"


class _MigrationError(Exception):
    """A migration step failed (and was rolled back); carries the step and the SQLite error."""

    def __init__(self, target: int, error: sqlite3.Error) -> None:
        super().__init__(target, error)
        self.target = target
        self.error = error


def _prepare(conn: sqlite3.Connection) -> int:
    """Runs once at open, on the connection thread: pragmas, migrations, a write check.

    Returns the schema version found in the file; if it is newer than SCHEMA_VERSION nothing
    else is done (the caller refuses the file).
    """
    # Read the version before anything that could write: a newer file must stay untouched.
    # This first read is also where "file is not a database" shows up.
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        return found
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("SQLite kept journal mode %r instead of WAL; writes stay durable but are slower", mode)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")  # a no-op inside a transaction, so set it before any
    for target in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] < target:
                for statement in _statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(target)}")  # PRAGMA takes no bound parameters
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise _MigrationError(target, exc) from exc
        except BaseException:
            _rollback(conn)
            raise
    # Fail at startup rather than at the first command if the file cannot be written (read-only
    # file or mount): rewriting the version needs write access; it is rolled back, never committed.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
    finally:
        _rollback(conn)
    return found


def _statements(script: str) -> list[str]:
    """Split a migration script into single statements (sqlite3's execute() runs only one).

    Splitting at every ';' and re-joining until SQLite's own tokenizer says the statement is
    complete keeps semicolons inside strings, comments and trigger bodies intact.
    """
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                statements.append(pending)
            pending = ""
    if pending.strip().strip(";").strip():
        statements.append(pending)  # incomplete: let SQLite report the syntax error
    return statements


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (e.g. after SQLITE_FULL); never mask the original error.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback failed", exc_info=True)


def _deadline(timeout: float) -> float:
    """The asyncio bound on one operation: the busy timeout, plus as long again for queueing and I/O."""
    return 2 * timeout + 1.0


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_state(state: str) -> None:
    if state not in JOB_STATES:
        raise ValueError(f"unknown job state {state!r} (expected one of {', '.join(sorted(JOB_STATES))})")


def _check_scope(scope: str) -> None:
    if scope not in PRESET_SCOPES:
        raise ValueError(f"unknown preset scope {scope!r} (expected user or guild)")


def _job(row: tuple) -> JobRecord:
    (job_id, user_id, guild_id, channel_id, message_id, status_message_id, params, state,
     outcome, attempts, created_at, updated_at, finished_at, info) = row  # fmt: skip
    return JobRecord(
        job_id=job_id, user_id=user_id, guild_id=guild_id, channel_id=channel_id, message_id=message_id,
        status_message_id=status_message_id, params=json.loads(params), state=state, outcome=outcome,
        attempts=attempts, created_at=created_at, updated_at=updated_at, finished_at=finished_at,
        info=json.loads(info) if info else {},
    )  # fmt: skip


# ---------------------------------------------------------------------- housekeeping

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


# ---------------------------------------------------------------------- error messages


def _store_error(exc: BaseException, path: Path, action: str, timeout: float) -> StoreError:
    """Turn a sqlite3 error into a one-line message an operator can act on."""
    if isinstance(exc, asyncio.TimeoutError):
        bound = _deadline(timeout)
        return StoreError(f"cannot {action} {path}: no answer within {bound:g}s (is the disk or file system stalled?)")
    # Python >= 3.11 gives the exact SQLite code; older versions only have the message text.
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name == "SQLITE_NOTADB" or "file is not a database" in text:
        return StoreError(f"{path} is not a SQLite database (wrong path, or the file was overwritten)")
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return StoreError(f"{path} is corrupt ({exc}): restore a backup")
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        problem = "the disk is full"
    elif name.startswith("SQLITE_READONLY") or "readonly database" in text:
        problem = _why_read_only(path, name)
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        problem = (
            f"the database is locked by another connection (gave up after {timeout:g}s); "
            "is another copy of the bot, or a tool, holding it?"
        )
    elif name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in text:
        problem = _why_cannot_open(path)
    elif name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        problem = f"a disk I/O error occurred ({exc})"
    else:
        problem = str(exc)
    return StoreError(f"cannot {action} {path}: {problem}")


def _why_read_only(path: Path, name: str) -> str:
    if name == "SQLITE_READONLY_DIRECTORY":
        return "the directory is read-only"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        if side.exists() and not os.access(side, os.W_OK):
            return f"{side.name} is read-only (was the bot run once as another user?)"
    if not os.access(path.parent, os.W_OK):
        return "the directory is read-only"
    return "the database is read-only"


def _why_cannot_open(path: Path) -> str:
    if path.is_dir():
        return "it is a directory"
    if not path.parent.is_dir():
        return f"the directory {path.parent} does not exist"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "permission denied on the file"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        # SQLite must create the file, and in WAL mode its -wal and -shm files, beside it.
        return "the directory is read-only"
    return "the operating system refused to open the file"
