"""The fair order, wired into the running bot: the executors' order function and what it reads.

The executors keep the queue; :meth:`FairQueue.order` (handed to them as ``executor.set_order``)
ranks the waiting jobs and estimates their starts with bot.core.scheduling's rules. It must be
synchronous and cheap (the local executor asks it whenever a worker frees and every few seconds),
so it reads an in-memory snapshot that the job service keeps current:

- today's usage and when each user and server last started a job (``QuotaService.today()``),
  refreshed when a job ends, at start-up and every REFRESH_EVERY seconds (the day's reset, and the
  jobs other bot processes finished);
- which members are over quota (the slow lane): known at admission, checked again at each refresh;
- fair-share's :class:`~bot.core.scheduling.Shares` and the measured
  :class:`~bot.core.scheduling.Speed`, persisted in the store (``scheduler_state``) so that a restart,
  or another bot process, carries on from them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bot.core import scheduling
from bot.core.store import StoreError
from bot.executor.base import Placement, QueueEntry

if TYPE_CHECKING:
    from bot.core.quotas import QuotaService
    from bot.core.store import Store

log = logging.getLogger(__name__)

SHARES_STATE = "fair-share"  # scheduler_state names
SPEED_STATE = "speed"
REFRESH_EVERY = 60.0  # seconds between re-reads of today's usage and of who is over quota

Member = tuple[int, "int | None"]  # (user, server; None: direct messages)


def job_work(content: bytes, styles: Sequence[bytes], params: Any, frames: int = 1,
             max_memory: int | str | None = None) -> float:
    """A job's planned work in pixel-steps (scheduling.planned_work), from its images' sizes (their
    headers only) and its parameters, its tiled levels priced as the engine prices them under the
    operator's memory budget (engine.max_memory; None: the worker's device decides, unknown here);
    an animation counts each frame as a still. 0 when it cannot be planned (the worker then says
    what is wrong)."""
    from PIL import Image

    from nst.schedule import level_work, plan

    try:
        sizes = []
        for data in (content, *styles):
            with Image.open(io.BytesIO(data)) as image:
                sizes.append(image.size)
        the_plan = plan(sizes[0], sizes[1:], params)
        return scheduling.planned_work(the_plan, level_work(the_plan, params, max_memory)) * max(1, frames)
    except Exception:  # noqa: BLE001 - a clip Pillow cannot open, say: no estimate, never a refusal
        return 0.0


class FairQueue:
    def __init__(self, policy: str, quotas: "QuotaService | None", store: "Store | None",
                 clock: Callable[[], float] = time.time):
        self.policy = policy
        self.quotas = quotas
        self.store = store
        self.clock = clock
        self.usage = scheduling.Usage()
        self.shares = scheduling.Shares()
        self.speed = scheduling.Speed()
        self._members: dict[str, tuple[Member, tuple[int, ...]]] = {}  # unfinished job -> its member, role ids
        self._slow: dict[Member, bool] = {}  # members over quota: their jobs wait in the slow lane
        self._unknown: set[Member] = set()  # members seen in the queue whose quota was never checked
        self._planned: dict[str, float] = {}  # started job -> the seconds its shares were moved on by
        self._checking: asyncio.Task | None = None

    # ------------------------------------------------------------------ the order function

    def order(self, waiting: Sequence[QueueEntry], running: Sequence[QueueEntry], workers: int) -> list[Placement]:
        """base.Order: every waiting job's position and estimated start, the next first."""
        now = self.clock()
        shares = self.shares
        for entry in running:
            if entry.started_at is not None:  # a start before the records say it (another bot's job, say)
                self.usage = self.usage.started(entry.user_id, entry.guild_id, entry.started_at)
            if entry.job_id in self._members and entry.job_id not in self._planned:
                # ours, sent to its worker but its Started not handled yet: its share moves on now, for this order
                shares = shares.started(entry.user_id, entry.guild_id, self.speed.seconds(entry.work))
        queued = [scheduling.Waiting(e.job_id, e.user_id, e.guild_id, e.submitted_at, e.work,
                                     over_quota=self._over_quota((e.user_id, e.guild_id)))
                  for e in waiting]
        started = [scheduling.Running(e.job_id, e.user_id, e.guild_id, e.started_at or now, e.work, e.remaining)
                   for e in running]
        estimates = scheduling.forecast(queued, started, replace(self.usage, shares=shares), policy=self.policy,
                                        workers=workers, speed=self.speed, now=now)
        return [Placement(e.job_id, e.position, e.starts_in) for e in estimates]

    def _over_quota(self, member: Member) -> bool:
        if member not in self._slow and self.quotas is not None:
            self._unknown.add(member)  # a job of another bot process, say: checked in the background
            self._check_soon()
        return self._slow.get(member, False)

    def _check_soon(self) -> None:
        if self._checking is not None and not self._checking.done():
            return
        try:
            self._checking = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:  # no loop running (a synchronous caller): the next refresh checks it
            pass

    # ------------------------------------------------------------------ what the job service tells it

    def admitted(self, job_id: str, user_id: int, guild_id: int | None, role_ids: Sequence[int] | None,
                 slow: bool | None) -> None:
        """A job is queued (or followed again after a restart): ``slow`` is its admission's verdict (None:
        not known yet, checked at the next refresh)."""
        member = (user_id, guild_id)
        self._members[job_id] = (member, tuple(role_ids or ()))
        if slow is not None:
            self._slow[member] = slow
        elif member not in self._slow:
            self._unknown.add(member)

    async def started(self, job_id: str, user_id: int, guild_id: int | None, work: float) -> None:
        """A worker started the job: fair-share moves its server and member on by its planned seconds."""
        planned = self.speed.seconds(work)
        self._planned[job_id] = planned
        await self._update_shares(lambda shares: shares.started(user_id, guild_id, planned))
        self.usage = self.usage.started(user_id, guild_id, self.clock())  # round-robin's turn, before the next read

    async def ended(self, job_id: str, user_id: int, guild_id: int | None, work: float,
                    seconds: float | None, *, measured: bool) -> None:
        """The job ended, after ``seconds`` of a worker's time (None: it never started). ``measured``: the
        worker's own time for the whole job (a Done), which teaches the speed."""
        self._members.pop(job_id, None)
        planned = self._planned.pop(job_id, None)
        if seconds is None:
            return
        if planned is not None:
            await self._update_shares(lambda shares: shares.corrected(user_id, guild_id, planned, seconds))
        if measured and work > 0:
            self.speed = self.speed.measured(seconds, work)
            await self._save(SPEED_STATE, {"seconds_per_unit": self.speed.seconds_per_unit, "samples": self.speed.samples})
        if self.quotas is not None:
            try:
                await self.quotas.charge(job_id=job_id, user_id=user_id, guild_id=guild_id, seconds=seconds,
                                         work=work or None)
            except StoreError as error:
                log.error("could not charge job %s to its user: %s", job_id, error)
        await self.refresh()

    def forget(self, job_id: str) -> None:
        """A job that ended before it started."""
        self._members.pop(job_id, None)
        self._planned.pop(job_id, None)

    # ------------------------------------------------------------------ the snapshot

    async def load(self) -> None:
        """At start-up: the persisted shares and speed, then today's usage."""
        shares = await self._load(SHARES_STATE)
        if shares is not None:
            self.shares = shares_from_json(shares)
        speed = await self._load(SPEED_STATE)
        if speed is not None:
            self.speed = scheduling.Speed(float(speed["seconds_per_unit"]), int(speed["samples"]))
        await self.refresh()

    async def refresh(self) -> None:
        """Today's usage again (the running jobs count from their start: the executors say which run),
        the shares as the store has them (other bot processes move them too), and whether each member
        with a job in the queue is over quota now."""
        shares = await self._load(SHARES_STATE)
        if shares is not None:
            self.shares = shares_from_json(shares)
        if self.quotas is None:
            return
        try:
            self.usage = await self.quotas.today()
            members = {member: roles for member, roles in self._members.values()}
            members.update({member: () for member in self._unknown if member not in members})
            self._unknown.clear()
            slow = {}  # only the members with a job now: the map does not grow with every member ever seen
            for (user_id, guild_id), roles in members.items():
                slow[(user_id, guild_id)] = await self.quotas.over_quota(user_id=user_id, guild_id=guild_id,
                                                                         role_ids=roles)
            # a job admitted while this ran keeps its admission's verdict
            current = {member for member, _ in self._members.values()}
            self._slow = {**{member: over for member, over in self._slow.items() if member in current}, **slow}
        except StoreError as error:  # the order goes on with what it knew
            log.error("could not read today's usage for the queue order: %s", error)

    async def refresh_periodically(self, every: float = REFRESH_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - logged; the next refresh tries again
                log.exception("could not refresh the queue order's view of today's usage")

    async def _update_shares(self, change: Callable[[scheduling.Shares], scheduling.Shares]) -> None:
        """Apply ``change`` to the shares as the store has them (another bot process may have moved them)."""
        stored = await self._load(SHARES_STATE)
        if stored is not None:
            self.shares = shares_from_json(stored)
        self.shares = change(self.shares)
        await self._save(SHARES_STATE, shares_to_json(self.shares))

    async def _load(self, name: str) -> Any:
        if self.store is None:
            return None
        try:
            value = await self.store.scheduler_state(name)
            return None if value is None else json.loads(value)
        except (StoreError, ValueError, KeyError) as error:
            log.error("could not read the queue order's %s: %s", name, error)
            return None

    async def _save(self, name: str, value: Any) -> None:
        if self.store is None:
            return
        try:
            await self.store.set_scheduler_state(name, json.dumps(value))
        except StoreError as error:
            log.error("could not keep the queue order's %s: %s", name, error)


def shares_to_json(shares: scheduling.Shares) -> dict[str, Any]:
    """Shares as JSON (its keys are ids, None for direct messages, and (server, user) pairs)."""
    return {
        "clock": shares.clock,
        "servers": [[guild, tag] for guild, tag in shares.servers.items()],
        "member_clocks": [[guild, clock] for guild, clock in shares.member_clocks.items()],
        "members": [[guild, user, tag] for (guild, user), tag in shares.members.items()],
    }


def shares_from_json(value: dict[str, Any]) -> scheduling.Shares:
    return scheduling.Shares(
        clock=float(value["clock"]),
        servers={guild: float(tag) for guild, tag in value["servers"]},
        member_clocks={guild: float(clock) for guild, clock in value["member_clocks"]},
        members={(guild, user): float(tag) for guild, user, tag in value["members"]},
    )
