"""A bounded, time-limited cache of each job's input images, so Again and Vary can re-run it.

One directory per job under ``<data_dir>/cache``: ``stored_at``, ``content``, ``style0``..``styleN``
(the raw uploaded bytes) and ``meta.json`` (the finished job's stats, for Details). An entry lives ``ttl``
seconds; the whole cache never holds more than ``max_bytes`` (the oldest entries go first). The
files are on the bot's own disk, so it works the same whichever executor runs the jobs. File work
runs in a thread: the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[0-9a-f]{8,64}$")  # job ids are uuid4 hex: never a path


@dataclass(frozen=True)
class CachedInputs:
    content: bytes
    styles: tuple[bytes, ...]
    stored_at: float


class ImageCache:
    def __init__(self, root: str | os.PathLike, *, max_bytes: int, ttl: float, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()  # one writer/pruner at a time (calls run in worker threads)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.ttl > 0

    def describe_ttl(self) -> str:
        hours = self.ttl / 3600
        return f"{hours:g} h" if hours >= 1 else f"{self.ttl / 60:g} min"

    # ------------------------------------------------------------------------- async API

    async def put(self, job_id: str, content: bytes, styles: tuple[bytes, ...]) -> None:
        if self.enabled:
            await asyncio.to_thread(self._put, job_id, content, tuple(styles))

    async def get(self, job_id: str) -> CachedInputs | None:
        """The job's inputs, or None once expired, evicted or never cached."""
        if not self.enabled:
            return None
        return await asyncio.to_thread(self._get, job_id)

    async def styles_kept(self, job_id: str) -> int:
        """How many style images of the job are kept (0: expired, evicted or never cached), without reading them."""
        if not self.enabled:
            return 0
        return await asyncio.to_thread(self._styles_kept, job_id)

    async def put_meta(self, job_id: str, meta: dict[str, Any]) -> None:
        if self.enabled:
            await asyncio.to_thread(self._put_meta, job_id, meta)

    async def get_meta(self, job_id: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return await asyncio.to_thread(self._get_meta, job_id)

    async def prune(self) -> int:
        return await asyncio.to_thread(self._prune) if self.enabled else 0

    # ------------------------------------------------------------------------ in a thread

    def _entry(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def _put(self, job_id: str, content: bytes, styles: tuple[bytes, ...]) -> None:
        size = len(content) + sum(map(len, styles))
        if size > self.max_bytes:
            log.info("job %s: inputs (%d bytes) exceed the whole cache (%d bytes); not cached", job_id, size, self.max_bytes)
            return
        final = self._entry(job_id)
        with self._lock:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
                (staging / "content").write_bytes(content)
                for index, style in enumerate(styles):
                    (staging / f"style{index}").write_bytes(style)
                (staging / "stored_at").write_text(repr(self.clock()), encoding="ascii")
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                staging.rename(final)  # readers see the whole entry or none of it
            except OSError as error:
                log.warning("image cache: cannot store job %s: %s", job_id, error)
                return
            self._prune_locked(keep=job_id)

    def _get(self, job_id: str) -> CachedInputs | None:
        entry = self._entry(job_id)
        try:
            stored = _stored_at(entry)
            if self.clock() - stored > self.ttl:
                return None
            content = (entry / "content").read_bytes()
            styles = []
            while (entry / f"style{len(styles)}").exists():
                styles.append((entry / f"style{len(styles)}").read_bytes())
        except (OSError, ValueError):
            return None
        return CachedInputs(content, tuple(styles), stored) if styles else None

    def _styles_kept(self, job_id: str) -> int:
        entry = self._entry(job_id)
        try:
            if self.clock() - _stored_at(entry) > self.ttl or not (entry / "content").is_file():
                return 0
        except (OSError, ValueError):
            return 0
        count = 0
        while (entry / f"style{count}").is_file():
            count += 1
        return count

    def _put_meta(self, job_id: str, meta: dict[str, Any]) -> None:
        entry = self._entry(job_id)
        if not entry.is_dir():
            return
        try:
            temporary = entry / ".meta.json.tmp"
            temporary.write_text(json.dumps(meta), encoding="utf-8")
            temporary.replace(entry / "meta.json")
        except OSError as error:
            log.warning("image cache: cannot store details of job %s: %s", job_id, error)

    def _get_meta(self, job_id: str) -> dict[str, Any] | None:
        entry = self._entry(job_id)
        try:
            if self.clock() - _stored_at(entry) > self.ttl:
                return None
            return json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _prune(self) -> int:
        with self._lock:
            return self._prune_locked()

    def _prune_locked(self, keep: str | None = None) -> int:
        """Drop expired entries, then the oldest until the cache fits max_bytes. Returns how many went."""
        try:
            children = list(self.root.iterdir())
        except OSError:
            return 0
        now = self.clock()
        entries = []
        removed = 0
        for path in children:
            if path.name.startswith(".incoming-"):
                try:
                    if now - path.stat().st_mtime > 3600:  # left behind by a crash mid-write
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    pass
                continue
            try:
                stamp = _stored_at(path)
            except (OSError, ValueError):
                shutil.rmtree(path, ignore_errors=True)  # not an entry of ours, or a broken one
                continue
            if now - stamp > self.ttl:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
                continue
            try:
                size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            except OSError:
                continue
            entries.append((stamp, path, size))
        total = sum(size for _, _, size in entries)
        for stamp, path, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if path.name == keep:
                continue
            shutil.rmtree(path, ignore_errors=True)
            total -= size
            removed += 1
        return removed


def _stored_at(entry: Path) -> float:
    return float((entry / "stored_at").read_text(encoding="ascii"))
