"""The store's schema: the tables, and the migrations that bring a file to the current version (the
policy is in the package docstring: one script per version, never edited once released)."""

from __future__ import annotations

import logging
import sqlite3

from bot.core.store.db import _rollback

log = logging.getLogger("bot.core.store")

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
    # 2 -> 3: the usage ledger, quota resets, and what the fair order needs of a job and keeps of itself.
    """
    ALTER TABLE jobs ADD COLUMN started_at REAL;   -- when a worker reported that it started the job
    ALTER TABLE jobs ADD COLUMN work REAL;         -- planned work in pixel-steps (bot.core.scheduling)
    ALTER TABLE jobs ADD COLUMN roles TEXT;        -- JSON list of the member's role ids at submission; NULL in DMs

    -- One row per job that ran: the worker's own compute seconds, charged once (the job id is the key).
    CREATE TABLE usage_ledger (
        job_id      TEXT    NOT NULL PRIMARY KEY,
        user_id     INTEGER NOT NULL,
        guild_id    INTEGER,                  -- NULL for DMs
        seconds     REAL    NOT NULL,
        work        REAL,                     -- planned pixel-steps, when known
        finished_at REAL    NOT NULL
    );
    CREATE INDEX usage_by_time ON usage_ledger (finished_at);

    -- Resets of a member's usage: what finished at or before reset_at no longer counts. guild_id NULL:
    -- everywhere (by a bot owner); else the member's own quota in that server (by its admins).
    CREATE TABLE usage_resets (
        user_id  INTEGER NOT NULL,
        guild_id INTEGER,
        reset_at REAL    NOT NULL,
        reset_by INTEGER NOT NULL
    );
    CREATE INDEX usage_resets_by_user ON usage_resets (user_id, reset_at);

    -- The fair order's own state (JSON), which must survive a restart: fair-share's shares, the speed.
    CREATE TABLE scheduler_state (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION: int = len(MIGRATIONS)


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


