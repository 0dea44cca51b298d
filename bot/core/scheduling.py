"""The fair order of waiting jobs, their positions and their estimated starts.

Pure functions of what the store holds: no discord, no executor, no clock and no state of their own.
Given the same waiting jobs, the same :class:`Usage` and the same policy, every caller (any bot
process, before or after a restart) gets the same next job, so one dispatcher that reads its inputs
from the store decides the same way whichever machine asks. The one state a policy needs, fair-share's
:class:`Shares`, is a value the caller persists (updated when a job starts and when it ends).

Policies (``POLICIES``); direct messages count as one more server (``None``):

- ``fair-share`` (the default): servers share the workers by compute seconds, then the members of a
  server share their server's (start-time fair queuing, :class:`Shares`): the server that has had
  the least service goes next, where a server that had nothing waiting comes back level with the
  others instead of banking credit or carrying debt. A member's own jobs go first come, first served.
- ``round-robin``: servers take turns, then the members of a server take turns, one job a turn
  whatever its length. Whose turn it is comes from the job records: the server (then the member)
  whose last job *started* longest ago goes next.
- ``least-usage``: the server with the fewest compute seconds today goes next, then its member with
  the fewest (a relax queue); ties go to the least recently served, then the oldest job.
- ``fcfs``: first come, first served (the order before fair scheduling; for comparison and for
  operators who want it).

Under every policy a job over its quota (``Waiting.over_quota``) is in the slow lane: it is taken
only when no job within quota waits. ``bench/fairness.py`` measures the policies against each other
(docs/fair-share.md): fair-share serves light members as well as least-usage does and, unlike it,
does not hold a whole server back for hours after one member's heavy morning; round-robin's
one-job-a-turn lets long jobs take more than their share.

Work is measured in pixel-steps (:func:`planned_work`), time in seconds: a :class:`Speed` (seconds per
pixel-step, an exponential moving average of finished jobs) turns one into the other for the
estimates and for charging a started job to its user.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Mapping, Sequence

from nst.schedule import Plan

FAIR_SHARE = "fair-share"
ROUND_ROBIN = "round-robin"
LEAST_USAGE = "least-usage"
FCFS = "fcfs"
POLICIES = (FAIR_SHARE, ROUND_ROBIN, LEAST_USAGE, FCFS)
DEFAULT_POLICY = FAIR_SHARE  # measured in bench/fairness.py: see the module's docstring

# A step's cost grows with its pixels plus a fixed part: the engine's ETA uses the same constant
# (nst.transfer.ETA_OVERHEAD_PIXELS; tests/test_scheduling.py keeps the two equal).
OVERHEAD_PIXELS = 16384


def planned_work(plan: Plan, work: Sequence[float] | None = None) -> float:
    """A job's planned work in pixel-steps: every level's step budget times its pixels (plus the
    per-step overhead), as the engine's ETA prices them; ``work``: each level's pixel work relative
    to an untiled step, where the job will be tiled (nst.tiling's Tiling.work). Early stopping may end
    a job sooner; the estimate is then pessimistic."""
    factors = work or [1.0] * len(plan.levels)
    return float(sum(level.steps * (level.pixels * factor + OVERHEAD_PIXELS)
                     for level, factor in zip(plan.levels, factors)))


@dataclass(frozen=True)
class Waiting:
    """A queued job, as the order sees it."""

    job_id: str
    user_id: int
    guild_id: int | None  # None: a direct message
    submitted_at: float
    work: float  # planned pixel-steps
    over_quota: bool = False  # the slow lane: runs only when no job within quota waits


@dataclass(frozen=True)
class Running:
    """A job a worker has started."""

    job_id: str
    user_id: int
    guild_id: int | None
    started_at: float
    work: float  # planned pixel-steps
    remaining: float | None = None  # seconds left by the job's own progress ETA, once it reports one

    def seconds_left(self, speed: "Speed", now: float) -> float:
        """The job's own estimate when it has one (it measured its device's real speed), else the rest
        of its planned time."""
        if self.remaining is not None:
            return max(0.0, self.remaining)
        return max(0.0, speed.seconds(self.work) - (now - self.started_at))


@dataclass(frozen=True)
class Shares:
    """The ``fair-share`` policy's state (start-time fair queuing), which the caller persists and
    updates when a job starts (:meth:`started`) and ends (:meth:`corrected`).

    Each server has a tag, the service it has received in a virtual time; ``clock`` is the tag at
    which the last job started. A server's turn comes at ``max(its tag, clock)``: the lowest goes
    next, and starting a job moves the server's tag on by the job's planned seconds. A server that
    waited for nothing neither banks credit nor carries debt: it comes back at the clock. The members
    of each server are ordered the same way among themselves, with that server's own clock."""

    clock: float = 0.0
    servers: Mapping[int | None, float] = field(default_factory=dict)
    member_clocks: Mapping[int | None, float] = field(default_factory=dict)
    members: Mapping[tuple[int | None, int], float] = field(default_factory=dict)  # (server, user)

    def server_turn(self, guild_id: int | None) -> float:
        return max(self.servers.get(guild_id, self.clock), self.clock)

    def member_turn(self, user_id: int, guild_id: int | None) -> float:
        clock = self.member_clocks.get(guild_id, 0.0)
        return max(self.members.get((guild_id, user_id), clock), clock)

    def started(self, user_id: int, guild_id: int | None, seconds: float) -> "Shares":
        """After a job of ``user_id`` in ``guild_id``, planned to take ``seconds``, started."""
        server_start = self.server_turn(guild_id)
        member_start = self.member_turn(user_id, guild_id)
        return Shares(
            clock=server_start,
            servers={**self.servers, guild_id: server_start + seconds},
            member_clocks={**self.member_clocks, guild_id: member_start},
            members={**self.members, (guild_id, user_id): member_start + seconds},
        )

    def corrected(self, user_id: int, guild_id: int | None, planned: float, actual: float) -> "Shares":
        """After that job ended: charged what it took (``actual`` seconds), not what was planned."""
        member = (guild_id, user_id)
        return replace(self, servers=_added(self.servers, guild_id, actual - planned),
                       members=_added(self.members, member, actual - planned))


@dataclass(frozen=True)
class Usage:
    """Everything the order reads of the past, as the store keeps it: per user and per server (None =
    direct messages), the compute seconds of the jobs finished today (the usage ledger) and when
    their last job started (the job records); and the fair-share policy's :class:`Shares`."""

    user_seconds: Mapping[int, float] = field(default_factory=dict)
    server_seconds: Mapping[int | None, float] = field(default_factory=dict)
    user_last_start: Mapping[int, float] = field(default_factory=dict)
    server_last_start: Mapping[int | None, float] = field(default_factory=dict)
    shares: Shares = field(default_factory=Shares)

    def charged(self, user_id: int, guild_id: int | None, seconds: float, started_at: float) -> "Usage":
        """This usage after a job of ``user_id`` in ``guild_id`` planned to take ``seconds`` started
        at ``started_at`` (how :func:`order` looks ahead)."""
        return replace(self._with_running(user_id, guild_id, seconds, started_at),
                       shares=self.shares.started(user_id, guild_id, seconds))

    def started(self, user_id: int, guild_id: int | None, started_at: float) -> "Usage":
        """This usage once a job of ``user_id`` in ``guild_id`` started at ``started_at``: when each one
        last started, as the job records will say (a caller's snapshot, until it reads them again)."""
        return replace(self, user_last_start=_latest(self.user_last_start, user_id, started_at),
                       server_last_start=_latest(self.server_last_start, guild_id, started_at))

    def with_running(self, running: Iterable[Running], speed: "Speed") -> "Usage":
        """The ledger holds finished jobs; a running one counts with its planned seconds from its start,
        so a second free worker does not go to the same user just because the first job has not ended.
        (The shares were moved on when the job started.)"""
        usage = self
        for job in running:
            usage = usage._with_running(job.user_id, job.guild_id, speed.seconds(job.work), job.started_at)
        return usage

    def _with_running(self, user_id: int, guild_id: int | None, seconds: float, started_at: float) -> "Usage":
        return replace(
            self,
            user_seconds=_added(self.user_seconds, user_id, seconds),
            server_seconds=_added(self.server_seconds, guild_id, seconds),
            user_last_start=_latest(self.user_last_start, user_id, started_at),
            server_last_start=_latest(self.server_last_start, guild_id, started_at),
        )


def _added(mapping: Mapping, key, amount: float) -> dict:
    return {**mapping, key: mapping.get(key, 0.0) + amount}


def _latest(mapping: Mapping, key, moment: float) -> dict:
    return {**mapping, key: max(mapping.get(key, -math.inf), moment)}


# ------------------------------------------------------------------------------------------- speed

# About a 2-core CPU (a default job: ~10 M pixel-steps, ~50 s); the first finished job replaces it.
DEFAULT_SECONDS_PER_UNIT = 5e-6
SPEED_WEIGHT = 0.3  # the newest finished job's share of the moving average


@dataclass(frozen=True)
class Speed:
    """Seconds per pixel-step, an exponential moving average of finished jobs (the caller persists it)."""

    seconds_per_unit: float = DEFAULT_SECONDS_PER_UNIT
    samples: int = 0

    def seconds(self, work: float) -> float:
        return work * self.seconds_per_unit

    def measured(self, seconds: float, work: float, weight: float = SPEED_WEIGHT) -> "Speed":
        """After a job of ``work`` pixel-steps took ``seconds`` of the worker's time. The first
        measurement replaces the default; jobs without work (or time) teach nothing."""
        if work <= 0 or seconds <= 0:
            return self
        observed = seconds / work
        if self.samples == 0:
            return Speed(observed, 1)
        return Speed((1 - weight) * self.seconds_per_unit + weight * observed, self.samples + 1)


# ------------------------------------------------------------------------------------------- order

def next_job(waiting: Sequence[Waiting], usage: Usage, policy: str = DEFAULT_POLICY) -> Waiting | None:
    """The job to start next, or None if none waits: within quota first (the slow lane only when no
    job within quota waits), then by ``policy``."""
    return next(_picks(waiting, usage, policy, Speed()), None)


def order(waiting: Sequence[Waiting], usage: Usage, policy: str = DEFAULT_POLICY,
          speed: Speed = Speed()) -> list[Waiting]:
    """Every waiting job in the order it would start if nothing else arrived: :func:`next_job`
    repeatedly, each pick charged to its user and server (its planned seconds) as if it started then."""
    return list(_picks(waiting, usage, policy, speed))


def pick(waiting: Sequence[Waiting], running: Sequence[Running], usage: Usage, *, policy: str = DEFAULT_POLICY,
         speed: Speed) -> Waiting | None:
    """What the dispatcher starts on a free worker: :func:`next_job`, the running jobs charged to
    their users."""
    return next_job(waiting, usage.with_running(running, speed), policy)


def forecast(waiting: Sequence[Waiting], running: Sequence[Running], usage: Usage, *, policy: str = DEFAULT_POLICY,
             workers: int, speed: Speed, now: float) -> list[Estimate]:
    """Every waiting job's position and estimated start, in order (the first is :func:`pick`'s):
    what the status messages and /queue show."""
    ordered = order(waiting, usage.with_running(running, speed), policy, speed)
    return estimates(ordered, running, workers=workers, speed=speed, now=now)


def _picks(waiting: Sequence[Waiting], usage: Usage, policy: str, speed: Speed) -> Iterator[Waiting]:
    if policy not in POLICIES:
        raise ValueError(f"unknown scheduling policy {policy!r}; one of {', '.join(POLICIES)}")
    latest = max([*usage.user_last_start.values(), *usage.server_last_start.values(), 0.0])
    for lane in ([job for job in waiting if not job.over_quota], [job for job in waiting if job.over_quota]):
        if policy == FCFS:
            yield from sorted(lane, key=_arrival)
            continue
        queues = _queues(lane)
        while queues:
            job = _take(queues, usage, policy)
            yield job
            latest += 1.0  # a virtual start after every real one: only the order of starts matters
            usage = usage.charged(job.user_id, job.guild_id, speed.seconds(job.work), latest)


def _arrival(job: Waiting) -> tuple[float, str]:
    return (job.submitted_at, job.job_id)


def _queues(jobs: Iterable[Waiting]) -> dict[int | None, dict[int, list[Waiting]]]:
    """server -> user -> that user's jobs there, the oldest last (popped first)."""
    queues: dict[int | None, dict[int, list[Waiting]]] = {}
    for job in sorted(jobs, key=_arrival, reverse=True):
        queues.setdefault(job.guild_id, {}).setdefault(job.user_id, []).append(job)
    return queues


def _take(queues: dict[int | None, dict[int, list[Waiting]]], usage: Usage, policy: str) -> Waiting:
    """Remove and return the next job: the server whose turn it is, its member whose turn it is, then
    that member's oldest job. Ties go to the one with the oldest waiting job."""
    def oldest(users: Mapping[int, list[Waiting]]) -> tuple[float, str]:
        return min(_arrival(jobs[-1]) for jobs in users.values())

    server = min(queues, key=lambda key: (_server_rank(policy, usage, key), oldest(queues[key])))
    users = queues[server]
    user = min(users, key=lambda key: (_member_rank(policy, usage, server, key), _arrival(users[key][-1])))
    job = users[user].pop()
    if not users[user]:
        del users[user]
        if not users:
            del queues[server]
    return job


def _server_rank(policy: str, usage: Usage, server: int | None) -> tuple[float, ...]:
    served = usage.server_last_start.get(server, -math.inf)
    if policy == FAIR_SHARE:
        return (usage.shares.server_turn(server),)
    if policy == ROUND_ROBIN:
        return (served,)
    return (usage.server_seconds.get(server, 0.0), served)


def _member_rank(policy: str, usage: Usage, server: int | None, user: int) -> tuple[float, ...]:
    served = usage.user_last_start.get(user, -math.inf)
    if policy == FAIR_SHARE:
        return (usage.shares.member_turn(user, server),)
    if policy == ROUND_ROBIN:
        return (served,)
    return (usage.user_seconds.get(user, 0.0), served)


# ------------------------------------------------------------------------------- position and ETA

@dataclass(frozen=True)
class Estimate:
    job_id: str
    position: int  # 1 = next to start
    starts_in: float  # seconds from now


def estimates(ordered: Sequence[Waiting], running: Sequence[Running], *, workers: int, speed: Speed,
              now: float) -> list[Estimate]:
    """Each queued job's position and estimated start, for ``ordered`` (from :func:`order`): the
    workers finish the running jobs' remaining planned time, then take the queue in order, each job
    on the first worker free. With no worker at all (every Celery worker gone) no start can be
    estimated: ``starts_in`` is infinite."""
    free = sorted(job.seconds_left(speed, now) for job in running)
    free += [0.0] * max(0, workers - len(free))
    if not free:
        return [Estimate(job.job_id, position, math.inf) for position, job in enumerate(ordered, start=1)]
    heapq.heapify(free)
    result = []
    for position, job in enumerate(ordered, start=1):
        start = heapq.heappop(free)
        result.append(Estimate(job.job_id, position, start))
        heapq.heappush(free, start + speed.seconds(job.work))
    return result


def queued_text(estimate: Estimate) -> str:
    """The status line of a queued job: "⏳ Queued, position 3 · starts in about 40 s"."""
    return f"⏳ Queued, position {estimate.position} · {starts_in_text(estimate.starts_in)}"


def starts_in_text(seconds: float) -> str:
    if math.isinf(seconds):
        return "starts when a worker is back online"
    if seconds < 10:
        return "starts in a few seconds"
    return f"starts in about {about(seconds)}"


def about(seconds: float) -> str:
    """A rounded duration for estimates: 5 s steps under a minute, minutes under an hour, else h and min."""
    if seconds < 57.5:
        return f"{max(5, 5 * round(seconds / 5))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" if minutes == 0 else f"{hours} h {minutes} min"
