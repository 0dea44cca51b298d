"""The store's lowest layer: a sqlite3 connection on a dedicated thread, one unit of work at a time in
submission order and within a time bound, transactions, and the one-line wording of every error an
operator must fix (:class:`StoreError`). Knows no table."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

log = logging.getLogger("bot.core.store")

T = TypeVar("T")


class StoreError(Exception):
    """Persistence failed for a reason an operator must fix; str() is a clear one-line message naming the file."""




class Database:
    """Two connections to one file, each on its own thread: ``_db`` writes (and opens, migrates),
    ``_reader`` is read-only, so in WAL mode a read never waits behind a write."""

    def __init__(self, db: "_Connection", path: Path, timeout: float) -> None:
        # Use Store.open(); the constructor only wires up an already prepared connection.
        self._db: _Connection | None = db
        self._reader: _Connection | None = None  # opened once the schema is known to be current
        self.path = path
        self._timeout = timeout

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
