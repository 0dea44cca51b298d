"""bot.core.store against a real SQLite file in tmp_path: schema, round-trips, failures an operator meets, concurrency."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

import bot.core.store.schema as store_module
from bot.core.store import SCHEMA_VERSION, JobRecord, Store, StoreError

SNOWFLAKE = 2**63 - 1  # the largest id SQLite's INTEGER holds; Discord ids are below it


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "bot.sqlite3"  # "data" does not exist yet: open must create it


@pytest.fixture
async def store(db_path: Path):
    s = await Store.open(db_path)
    yield s
    await s.close()


def plain_connect(path: Path) -> sqlite3.Connection:
    """An independent connection through the plain sqlite3 module, as another process would use."""
    return sqlite3.connect(path, isolation_level=None)


def user_version(path: Path) -> int:
    conn = plain_connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


async def pragma(s: Store, name: str):
    # Test-only reach into the store's connection to inspect or set per-connection pragmas.
    row = await s._run("read", lambda conn: conn.execute(f"PRAGMA {name}").fetchone())
    return None if row is None else row[0]


# ---------------------------------------------------------------------- schema and migrations


async def test_first_open_creates_file_schema_and_pragmas(db_path: Path):
    assert not db_path.parent.exists()
    s = await Store.open(db_path)
    try:
        assert s.path == db_path
        assert db_path.is_file()
        assert await pragma(s, "journal_mode") == "wal"
        assert await pragma(s, "synchronous") == 2  # FULL
        assert await pragma(s, "foreign_keys") == 1
        assert await pragma(s, "busy_timeout") == 10_000
        await s.set_user_setting(1, "steps", 300)
    finally:
        await s.close()
    assert user_version(db_path) == SCHEMA_VERSION
    conn = plain_connect(db_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"user_settings", "guild_limits", "jobs"} <= tables

    # Reopening is a no-op migration: same version, data kept.
    s = await Store.open(db_path)
    try:
        assert await s.user_settings(1) == {"steps": 300}
    finally:
        await s.close()
    assert user_version(db_path) == SCHEMA_VERSION


async def test_existing_empty_file_migrates_from_zero(db_path: Path):
    db_path.parent.mkdir(parents=True)
    db_path.touch()  # a zero-byte file is a valid, empty SQLite database at version 0
    s = await Store.open(db_path)
    await s.set_guild_limit(5, "max_steps", 500)
    await s.close()
    assert user_version(db_path) == SCHEMA_VERSION


async def test_failed_migration_is_rolled_back(db_path: Path, monkeypatch):
    s = await Store.open(db_path)
    await s.set_user_setting(1, "steps", 100)
    await s.close()

    # A hypothetical version 2 whose second statement fails: the first must not survive either.
    broken = "CREATE TABLE half_done (a INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as caught:
        await Store.open(db_path)
    message = str(caught.value)
    assert str(db_path) in message and "no such table" in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message and "rolled back" in message

    assert user_version(db_path) == SCHEMA_VERSION
    conn = plain_connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()
    monkeypatch.undo()
    s = await Store.open(db_path)
    assert await s.user_settings(1) == {"steps": 100}
    await s.close()


async def test_newer_schema_is_refused_and_file_untouched(db_path: Path):
    db_path.parent.mkdir(parents=True)
    conn = plain_connect(db_path)
    conn.execute("CREATE TABLE from_the_future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db_path.read_bytes()

    with pytest.raises(StoreError) as caught:
        await Store.open(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"({SCHEMA_VERSION})" in message
    assert "upgrade the bot" in message

    assert db_path.read_bytes() == before
    assert not Path(f"{db_path}-wal").exists()  # not even switched to WAL


async def test_not_a_database(db_path: Path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"these are someone's holiday photos, not a database\n" * 100)
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="is not a SQLite database") as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)
    assert db_path.read_bytes() == before


async def test_unusable_paths(tmp_path: Path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        await Store.open(tmp_path / "a_file" / "bot.sqlite3")
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(StoreError, match="it is a directory"):
        await Store.open(tmp_path / "a_dir")


# ---------------------------------------------------------------------- settings and limits

VALUES = {
    "steps": 300,
    "content_weight": 1e9,
    "style": "starry night",
    "channels": [123456789012345678, 2, 3],
    "seed": None,
    "flag": True,
    "big_id": SNOWFLAKE,
}


def assert_same_types(got: dict, expected: dict) -> None:
    assert got == expected
    for name, value in expected.items():
        assert type(got[name]) is type(value), name


async def test_settings_and_limits_round_trip_with_types(db_path: Path):
    s = await Store.open(db_path)
    for name, value in VALUES.items():
        await s.set_user_setting(SNOWFLAKE, name, value)
        await s.set_guild_limit(SNOWFLAKE, name, value, changed_by=42)
    await s.set_user_setting(7, "steps", 100)
    await s.set_user_setting(7, "steps", 200)  # overwrite
    assert_same_types(await s.user_settings(SNOWFLAKE), VALUES)
    assert_same_types(await s.guild_limits(SNOWFLAKE), VALUES)
    assert await s.user_settings(7) == {"steps": 200}
    assert await s.user_settings(8) == {}
    assert await s.guild_limits(8) == {}
    await s.close()

    s = await Store.open(db_path)
    assert_same_types(await s.user_settings(SNOWFLAKE), VALUES)
    assert_same_types(await s.guild_limits(SNOWFLAKE), VALUES)
    assert await s.user_settings(7) == {"steps": 200}
    await s.close()

    conn = plain_connect(db_path)
    assert conn.execute("SELECT DISTINCT changed_by FROM guild_limits").fetchall() == [(42,)]
    conn.close()


async def test_unset_and_reset(store: Store):
    await store.set_user_setting(1, "steps", 300)
    await store.set_user_setting(1, "size", 512)
    await store.set_user_setting(1, "style", "ink")
    await store.set_user_setting(2, "steps", 50)
    assert await store.unset_user_setting(1, "steps") is True
    assert await store.unset_user_setting(1, "steps") is False
    assert await store.unset_user_setting(3, "steps") is False
    assert await store.reset_user_settings(1) == 2
    assert await store.user_settings(1) == {}
    assert await store.user_settings(2) == {"steps": 50}
    assert await store.reset_user_settings(1) == 0

    await store.set_guild_limit(9, "max_steps", 500)
    assert await store.unset_guild_limit(9, "max_steps") is True
    assert await store.unset_guild_limit(9, "max_steps") is False
    assert await store.guild_limits(9) == {}


async def test_acknowledged_write_is_visible_to_another_connection_at_once(store: Store, db_path: Path):
    conn = plain_connect(db_path)
    try:
        await store.set_user_setting(11, "steps", 123)
        row = conn.execute("SELECT value FROM user_settings WHERE user_id = 11 AND name = 'steps'").fetchone()
        assert row == ("123",)
        await store.add_job(job("j", created_at=1.0))
        assert conn.execute("SELECT state FROM jobs WHERE job_id = 'j'").fetchone() == ("queued",)
    finally:
        conn.close()


# ---------------------------------------------------------------------- failures


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; see the query_only test")
async def test_read_only_file_and_directory(db_path: Path):
    s = await Store.open(db_path)
    await s.set_user_setting(1, "steps", 300)
    await s.close()
    os.chmod(db_path, 0o444)
    os.chmod(db_path.parent, 0o555)
    try:
        # Reported at open (the store checks it can write) or, at the latest, at the first write.
        with pytest.raises(StoreError, match="read-only") as caught:
            s = await Store.open(db_path)
            try:
                await s.set_user_setting(1, "steps", 400)
            finally:
                await s.close()
        assert str(db_path) in str(caught.value)
    finally:
        os.chmod(db_path.parent, 0o755)
        os.chmod(db_path, 0o644)


async def test_read_only_database_is_reported(store: Store, db_path: Path):
    # Root (as in CI containers) ignores chmod, so the permission test above is skipped there.
    # PRAGMA query_only makes SQLite itself refuse writes with the same SQLITE_READONLY error a
    # read-only file or mount gives, which exercises the same error mapping without faking it.
    await store.set_user_setting(1, "steps", 300)
    await store._run("read", lambda conn: conn.execute("PRAGMA query_only = ON"))
    with pytest.raises(StoreError) as caught:
        await store.set_user_setting(1, "steps", 400)
    assert str(caught.value) == f"cannot write {db_path}: the database is read-only"
    with pytest.raises(StoreError, match="read-only"):
        await store.reset_user_settings(1)
    assert await store.user_settings(1) == {"steps": 300}  # reads still work, nothing half-written
    await store._run("read", lambda conn: conn.execute("PRAGMA query_only = OFF"))
    await store.set_user_setting(1, "steps", 500)  # no transaction was left open
    assert await store.user_settings(1) == {"steps": 500}


async def test_full_disk(db_path: Path):
    s = await Store.open(db_path)
    await s.set_user_setting(1, "steps", 300)
    await s.set_user_setting(1, "style", "ink")
    # Cap the file a few pages above its current size: SQLite then fails with SQLITE_FULL,
    # exactly what a full disk produces.
    pages = await pragma(s, "page_count")
    await pragma(s, f"max_page_count = {pages + 4}")
    written = 0
    with pytest.raises(StoreError) as caught:
        for i in range(200):
            await s.set_user_setting(2, f"k{i}", "x" * 3000)
            written += 1
    assert str(caught.value) == f"cannot write {db_path}: the disk is full"
    assert 0 < written < 200
    await s.close()

    s = await Store.open(db_path)  # the cap is per connection: a new one has room again
    assert await s.user_settings(1) == {"steps": 300, "style": "ink"}
    assert len(await s.user_settings(2)) == written  # every acknowledged write, not the failed one
    await s.close()


async def test_locked_database_fails_within_the_timeout(db_path: Path):
    s = await Store.open(db_path, timeout=0.3)
    await s.set_user_setting(1, "steps", 300)
    other = plain_connect(db_path)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked") as caught:
            await s.set_user_setting(1, "steps", 400)
        elapsed = time.monotonic() - started
        assert 0.2 < elapsed < 1.5
        assert str(db_path) in str(caught.value)
        assert await s.user_settings(1) == {"steps": 300}  # WAL: reading is not blocked
    finally:
        other.execute("ROLLBACK")
        other.close()
    await s.set_user_setting(1, "steps", 500)
    assert await s.user_settings(1) == {"steps": 500}
    await s.close()


async def test_open_reports_a_held_write_lock(db_path: Path):
    await (await Store.open(db_path)).close()
    other = plain_connect(db_path)
    other.execute("BEGIN EXCLUSIVE")  # e.g. a second copy of the bot mid-write
    try:
        with pytest.raises(StoreError, match=f"cannot open {db_path}: the database is locked"):
            await Store.open(db_path, timeout=0.2)
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_stalled_connection_is_bounded_and_abandoned_writes_never_land(db_path: Path):
    # A stalled disk cannot be produced portably, so occupy the connection's thread with a slow
    # call (test-only use of the internal runner). Both callers must get an answer within the
    # bound (2 * timeout + 1 s); the write still queued behind the stall is dropped, not applied late.
    s = await Store.open(db_path, timeout=0.05)
    await s.set_user_setting(1, "steps", 300)
    stall = asyncio.create_task(s._run("read", lambda conn: time.sleep(1.6)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(StoreError, match="nothing was changed") as caught:
        await s.set_user_setting(1, "steps", 999)
    assert time.monotonic() - started < 1.5
    assert str(caught.value).startswith(f"cannot write {db_path}: no answer within 1.1s")
    with pytest.raises(StoreError, match="may still complete"):
        await stall
    await asyncio.sleep(0.5)  # let the stall finish
    assert await s.user_settings(1) == {"steps": 300}
    await s.close()


async def test_closed_store(db_path: Path):
    s = await Store.open(db_path)
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await s.user_settings(1)


# ---------------------------------------------------------------------- concurrency


async def test_concurrent_writes_are_serialised_in_submission_order(db_path: Path):
    s = await Store.open(db_path)
    users = range(10)
    calls, model = [], {u: {} for u in users}
    # Round-robin interleaving: round r writes every user's setting, alternating two names. Writes run
    # in submission order, so the last one submitted for each (user, name) wins; a read sees every
    # write acknowledged before it was made.
    for r in range(5):
        for u in users:
            name = "steps" if r % 2 == 0 else "size"
            value = r * 1000 + u
            calls.append(s.set_user_setting(u, name, value))
            model[u][name] = value
        results = await asyncio.gather(*calls)
        calls.clear()
        assert results == [None] * len(users)
        for u in users:
            assert await s.user_settings(u) == model[u]

    final = {u: {"steps": 4000 + u, "size": 3000 + u} for u in users}
    assert model == final
    for u in users:
        assert await s.user_settings(u) == final[u]
    await s.close()

    s = await Store.open(db_path)
    for u in users:
        assert await s.user_settings(u) == final[u]
    await s.close()


async def test_a_read_does_not_wait_behind_a_write_waiting_for_the_lock(db_path: Path):
    """Another process (a backup, say) holds the write lock: a write waits out the busy timeout; reads
    meanwhile answer at once from the last committed state, and the write lands once the lock is free."""
    s = await Store.open(db_path, timeout=10)
    await s.set_user_setting(1, "epochs", 300)
    other = plain_connect(db_path)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        write = asyncio.create_task(s.set_user_setting(1, "epochs", 400))
        await asyncio.sleep(0)  # the write is on the writer's thread, waiting for the lock
        assert await s.user_settings(1) == {"epochs": 300}
        assert await s.get_job("0" * 32) is None
        assert not write.done()  # the reads did not queue behind it
    finally:
        other.execute("ROLLBACK")
        other.close()
    await write
    assert await s.user_settings(1) == {"epochs": 400}
    with pytest.raises(StoreError, match="read-only"):
        await s._read(lambda conn: conn.execute("DELETE FROM user_settings"))  # the reading side cannot write
    await s.close()


# ---------------------------------------------------------------------- jobs


def job(
    job_id: str, *, user_id: int = 1, guild_id: int | None = 10, created_at: float, state: str = "queued"
) -> JobRecord:
    return JobRecord(
        job_id=job_id, user_id=user_id, guild_id=guild_id, channel_id=SNOWFLAKE, message_id=SNOWFLAKE - 1,
        status_message_id=None, params={"steps": 300, "style_weight": 1e6, "layers": [1, 2]}, state=state,
        outcome=None, attempts=0, created_at=created_at, updated_at=created_at, finished_at=None,
    )  # fmt: skip


async def test_job_records(store: Store):
    await store.add_job(job("b", created_at=200.0))
    await store.add_job(job("a", created_at=100.0, guild_id=None))
    await store.add_job(job("c", created_at=300.0, user_id=2))
    await store.add_job(job("d", created_at=50.0, state="done"))

    assert await store.get_job("b") == job("b", created_at=200.0)
    assert await store.get_job("missing") is None
    with pytest.raises(ValueError, match="already exists"):
        await store.add_job(job("b", created_at=999.0))
    with pytest.raises(ValueError, match="unknown job state"):
        await store.add_job(job("e", created_at=1.0, state="exploded"))

    # queued -> running -> done, with attempts and the status message
    await store.update_job("b", state="running", attempts=1, status_message_id=SNOWFLAKE - 2)
    running = await store.get_job("b")
    assert (running.state, running.attempts, running.status_message_id) == ("running", 1, SNOWFLAKE - 2)
    assert running.updated_at > 200.0 and running.created_at == 200.0
    await store.update_job("b", state="done", outcome="ok in 12.3s", finished_at=400.0)
    done = await store.get_job("b")
    assert (done.state, done.outcome, done.finished_at, done.attempts) == ("done", "ok in 12.3s", 400.0, 1)
    assert done.params == {"steps": 300, "style_weight": 1e6, "layers": [1, 2]}
    assert done.updated_at >= running.updated_at

    with pytest.raises(ValueError, match="unknown field"):
        await store.update_job("b", colour="red")
    with pytest.raises(ValueError, match="unknown job state"):
        await store.update_job("b", state="exploded")
    await store.update_job("missing", state="failed")  # logged, not raised: recording it may have failed
    assert await store.get_job("missing") is None

    assert [j.job_id for j in await store.unfinished_jobs()] == ["a", "c"]  # oldest first
    await store.update_job("c", state="running")
    assert [j.job_id for j in await store.unfinished_jobs()] == ["a", "c"]

    # cooldowns: per (user, guild); None is DMs
    assert await store.last_job_started(1, 10) == 200.0
    assert await store.last_job_started(1, None) == 100.0
    assert await store.last_job_started(2, 10) == 300.0
    assert await store.last_job_started(2, None) is None
    assert await store.last_job_started(3, 10) is None

    # prune: only finished jobs that finished before the cutoff
    await store.update_job("d", finished_at=60.0)
    await store.update_job("a", state="interrupted", finished_at=500.0)
    assert await store.prune_jobs(450.0) == 2  # "d" (60) and "b" (400)
    assert await store.get_job("d") is None and await store.get_job("b") is None
    assert await store.get_job("a") is not None  # finished after the cutoff
    assert await store.get_job("c") is not None  # still running
    assert await store.prune_jobs(450.0) == 0


async def test_one_scoped_settings_api_keeps_users_and_servers_apart(store: Store):
    """User settings and server limits are one API with a scope; the same id in both scopes never mixes."""
    await store.set_setting("user", 5, "epochs", 300)
    await store.set_setting("guild", 5, "max_epochs", 200, changed_by=9)
    assert await store.settings("user", 5) == {"epochs": 300} == await store.user_settings(5)
    assert await store.settings("guild", 5) == {"max_epochs": 200} == await store.guild_limits(5)
    assert await store.unset_setting("guild", 5, "epochs") is False  # the user's name, not the server's
    assert await store.reset_settings("user", 5) == 1 and await store.guild_limits(5) == {"max_epochs": 200}
    with pytest.raises(ValueError, match="unknown settings scope"):
        await store.settings("channel", 5)



# ---------------------------------------------------------------------- schema 3: usage ledger, resets, scheduler state

async def test_a_version_2_file_with_rows_migrates_to_3(db_path: Path):
    """A file written by the previous release keeps its jobs (the new columns empty) and gains the ledger."""
    db_path.parent.mkdir(parents=True)
    conn = plain_connect(db_path)
    for script in store_module.MIGRATIONS[:2]:
        for statement in store_module._statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO jobs (job_id, user_id, guild_id, channel_id, message_id, params, state, attempts, created_at, "
        "updated_at, finished_at, info) VALUES ('old', 1, 10, 3, 4, '{\"steps\": 5}', 'done', 1, 100.0, 150.0, 150.0, '{}')"
    )
    conn.execute("INSERT INTO user_settings (user_id, name, value, updated_at) VALUES (1, 'epochs', '300', 1.0)")
    conn.close()

    s = await Store.open(db_path)
    try:
        assert user_version(db_path) == SCHEMA_VERSION == 3
        old = await s.get_job("old")
        assert (old.params, old.state, old.finished_at) == ({"steps": 5}, "done", 150.0)
        assert (old.started_at, old.work, old.roles) == (None, None, None)
        assert await s.user_settings(1) == {"epochs": 300}
        assert await s.record_usage("old", 1, 10, 12.5, None, 150.0) is True
        assert await s.usage_since(0.0) == [(1, 10, 12.5, 12.5)]
    finally:
        await s.close()


async def test_job_records_carry_start_work_and_roles(store: Store):
    await store.add_job(replace(job("r", created_at=100.0), roles=(SNOWFLAKE, 7), work=2.5e6))
    await store.add_job(job("dm", created_at=100.0, guild_id=None))
    assert (await store.get_job("r")).roles == (SNOWFLAKE, 7)
    assert (await store.get_job("dm")).roles is None  # DMs: no roles at all, not an empty list
    await store.update_job("r", state="running", started_at=120.0, work=3e6)
    started = await store.get_job("r")
    assert (started.started_at, started.work) == (120.0, 3e6)
    await store.update_job("dm", state="running", started_at=130.0)
    await store.add_job(replace(job("other", created_at=90.0, user_id=2, guild_id=20), started_at=110.0))
    assert await store.last_starts() == ({1: 130.0, 2: 110.0}, {10: 120.0, None: 130.0, 20: 110.0})


async def test_usage_is_charged_once_per_job(store: Store):
    assert await store.record_usage("j", 1, 10, 30.0, 1e6, 1000.0) is True
    assert await store.record_usage("j", 1, 10, 99.0, 1e6, 2000.0) is False  # a second report of the same job
    assert await store.usage_since(0.0) == [(1, 10, 30.0, 30.0)]
    with pytest.raises(ValueError, match="finite number"):
        await store.record_usage("k", 1, 10, float("nan"), None, 1000.0)


async def test_usage_since_sums_per_user_and_server_and_applies_resets(store: Store):
    for job_id, user, guild, seconds, at in [
        ("y", 1, 10, 500.0, 50.0),  # yesterday: before ``since``
        ("a", 1, 10, 10.0, 110.0), ("b", 1, 10, 20.0, 130.0), ("c", 1, 20, 40.0, 120.0),
        ("d", 1, None, 80.0, 125.0), ("e", 2, 10, 5.0, 140.0), ("f", 3, 30, 7.0, 140.0),
    ]:
        await store.record_usage(job_id, user, guild, seconds, None, at)
    rows = sorted(await store.usage_since(100.0), key=repr)
    assert rows == sorted([(1, 10, 30.0, 30.0), (1, 20, 40.0, 40.0), (1, None, 80.0, 80.0), (2, 10, 5.0, 5.0),
                           (3, 30, 7.0, 7.0)], key=repr)
    # filtered: the user's rows everywhere, and every row of the server
    assert sorted(await store.usage_since(100.0, user_id=2, guild_id=10), key=repr) == sorted(
        [(1, 10, 30.0, 30.0), (2, 10, 5.0, 5.0)], key=repr)
    assert await store.usage_since(100.0, user_id=3) == [(3, 30, 7.0, 7.0)]

    # a server admin's reset: only the member's own count there, and only what finished until then
    await store.reset_usage(1, 10, 120.0, reset_by=9)
    assert (1, 10, 30.0, 20.0) in await store.usage_since(100.0)
    # an owner's reset: everything of the user until then, everywhere; a reset before ``since`` is ignored
    await store.reset_usage(1, None, 126.0, reset_by=8)
    await store.reset_usage(2, None, 90.0, reset_by=8)
    rows = sorted(await store.usage_since(100.0), key=repr)
    assert rows == sorted([(1, 10, 20.0, 20.0), (1, 20, 0.0, 0.0), (1, None, 0.0, 0.0), (2, 10, 5.0, 5.0),
                           (3, 30, 7.0, 7.0)], key=repr)


async def test_ledger_and_resets_are_pruned_with_the_job_history(store: Store):
    await store.add_job(replace(job("old", created_at=10.0, state="done"), finished_at=20.0))
    await store.record_usage("old", 1, 10, 5.0, None, 20.0)
    await store.record_usage("new", 1, 10, 6.0, None, 500.0)
    await store.reset_usage(1, 10, 30.0, reset_by=9)
    await store.reset_usage(1, 10, 400.0, reset_by=9)
    assert await store.prune_jobs(100.0) == 1
    assert await store.usage_since(0.0) == [(1, 10, 6.0, 6.0)]
    count = await store._read(lambda conn: conn.execute("SELECT COUNT(*) FROM usage_resets").fetchone()[0])
    assert count == 1


async def test_scheduler_state_round_trips_and_survives_a_reopen(store: Store, db_path: Path):
    assert await store.scheduler_state("shares") is None
    await store.set_scheduler_state("shares", '{"clock": 1.5}')
    await store.set_scheduler_state("shares", '{"clock": 2.5}')
    await store.set_scheduler_state("speed", '{"seconds_per_unit": 5e-06}')
    with pytest.raises(ValueError, match="must be text"):
        await store.set_scheduler_state("shares", {"clock": 3})
    await store.close()
    reopened = await Store.open(db_path)
    try:
        assert await reopened.scheduler_state("shares") == '{"clock": 2.5}'
        assert await reopened.scheduler_state("speed") == '{"seconds_per_unit": 5e-06}'
    finally:
        await reopened.close()
