"""Persistence for the bot: one SQLite file (normally ``<data_dir>/bot.sqlite3``), through the standard
library's sqlite3 on two dedicated threads (so the event loop never waits on the disk): one connection
writes, a second, read-only one reads (so a read never waits behind a write; see ``Store``).

This package is the only code that touches the database, in three layers: ``db`` (the connection
threads, transactions, the wording of errors an operator must fix), ``schema`` (the tables and their
migrations) and ``queries`` (the Store and its queries, one scoped settings API for user settings and
server limits). It stores values, it does not judge them:
setting names and values are validated elsewhere; here they are kept as JSON text and come back
with their JSON types (int, float, str, list, dict, bool, None; tuples come back as lists).

Tables (schema version 3)
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
``usage_ledger(job_id, user_id, guild_id, seconds, work, finished_at)``
    (version 3) The compute seconds each job that ran took (the worker's own time), charged once per
    job; pruned with the job history. Jobs gained ``started_at``, ``work`` (planned pixel-steps) and
    ``roles`` (JSON list of the member's role ids at submission).
``usage_resets(user_id, guild_id, reset_at, reset_by)``
    (version 3) A reset of a member's daily usage: everywhere (``guild_id`` NULL, by a bot owner) or
    against the member's own quota in one server (by its admins).
``scheduler_state(name, value)``
    (version 3) The fair order's JSON state that must survive a restart (fair-share's shares, the speed).

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

from bot.core.store.db import StoreError
from bot.core.store.queries import JOB_STATES, JobRecord, Store, StyleRecord, prune_periodically
from bot.core.store.schema import MIGRATIONS, SCHEMA_VERSION, _statements

__all__ = [
    "JOB_STATES", "MIGRATIONS", "SCHEMA_VERSION", "JobRecord", "Store", "StoreError", "StyleRecord", "prune_periodically",
    "_statements",
]
