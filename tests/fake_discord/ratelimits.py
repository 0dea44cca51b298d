"""Optional per-channel rate limits (off unless a test sets one).

Discord documents the mechanism (X-RateLimit-* headers, 429 with ``retry_after``, buckets per major
parameter such as ``channel_id``), not the numbers of each route, so a test chooses them:
``fake.set_rate_limit("edit", limit=5, per=5.0)``.  Kinds: ``"send"`` (POST channel messages) and
``"edit"`` (PATCH of a message through the channel route), counted per channel, and
``"interaction-edit"`` (PATCH of a message through an interaction's webhook), counted per
interaction: the webhook routes' major parameter is the webhook and its token, not the channel, so
editing an interaction's messages does not spend the channel's edits. Fixed windows like Discord's
buckets.  discord.py reads the headers and waits before the bucket is empty; a 429 carries ``Via`` so
discord.py retries it after ``retry_after``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import ApiError

KINDS = ("send", "edit", "interaction-edit")


@dataclass
class _Bucket:
    start: float
    count: int = 0


class RateLimiter:
    def __init__(self) -> None:
        self.rules: Dict[str, Tuple[int, float]] = {}
        self._buckets: Dict[Tuple[str, int], _Bucket] = {}
        #: ``(kind, channel_id, time.monotonic())`` of every request answered 429.
        self.limited: List[Tuple[str, int, float]] = []

    def set(self, kind: str, limit: Optional[int], per: float = 5.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if limit is None:
            self.rules.pop(kind, None)
        else:
            self.rules[kind] = (int(limit), float(per))

    def hit(self, kind: str, channel_id: int) -> Dict[str, str]:
        """Count one request; return the X-RateLimit headers, or raise a 429 ``ApiError``."""
        rule = self.rules.get(kind)
        if rule is None:
            return {}
        limit, per = rule
        now = time.monotonic()
        bucket = self._buckets.get((kind, channel_id))
        if bucket is None or now >= bucket.start + per:
            bucket = self._buckets[(kind, channel_id)] = _Bucket(start=now)
        reset_after = max(0.0, bucket.start + per - now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": f"fake-{kind}",
        }
        if bucket.count >= limit:
            self.limited.append((kind, channel_id, now))
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "user",
                            "Retry-After": str(max(1, int(reset_after + 0.999))), "Via": "1.1 google"})
            raise ApiError(429, 0, "You are being rate limited.", extra={"retry_after": round(reset_after, 3),
                                                                         "global": False}, headers=headers)
        bucket.count += 1
        headers["X-RateLimit-Remaining"] = str(limit - bucket.count)
        return headers
