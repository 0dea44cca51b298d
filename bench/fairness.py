"""How fair the queue is: the real scheduler (bot/core/scheduling.py) on a simulated clock and workload.

    python bench/fairness.py                  # every policy, 1 and 2 workers, floods of 5, 20, 80 jobs
    python bench/fairness.py --hours 12 --seed 7 --noise 0.3

Three servers, each with light members who send short jobs at random times, and in server 1 one
member who keeps a flood of long jobs queued (the flood: that many of his jobs always wait). Workers
take the next job as the dispatcher would (``pick`` on the waiting jobs, the running ones and what
the store keeps of the past), and each new job is shown the estimate ``forecast`` gives it. A job's
true duration is its planned work times the true speed, off by a random factor (``--noise``: load,
early stops); the scheduler knows only the speed it measured from finished jobs (``Speed``) and,
once a running job has done a tenth of its work, that job's own ETA (the engine's Progress.eta),
itself off by about 10%.

Printed per policy, worker count and flood: the light members' median wait (in brackets: those in
the flooder's own server) and 95th-percentile wait, the flooder's throughput (jobs per hour, his
share of the workers' time), and the error of the first estimate a queued job is shown: |predicted
start - actual start| / actual wait, median (light members' jobs · the flooder's) and p95.

Two more tables: "after a heavy morning" (another member floods server 2 for the first three hours,
then stops, and the flooder of server 1 starts: the light members' waits from then on, overall and in
server 2), and a daily quota on every member (over it, the slow lane). Deterministic (seeded); some
seconds.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.core.scheduling import POLICIES, Running, Speed, Usage, Waiting, forecast, pick  # noqa: E402
from bot.core.usage import SLOW, SLOW_LANE, Limits, Used, assess  # noqa: E402

TRUE_SECONDS_PER_UNIT = 4e-6  # the simulated workers' speed; the scheduler starts from its default and learns it
SERVERS = (1, 2, 3)
LIGHT_USERS_PER_SERVER = 3
LIGHT_INTERVAL = 900.0  # a light member's mean time between jobs (s)
LIGHT_WORK = (2e6, 8e6)  # pixel-steps: 8-32 s
FLOOD_WORK = (2.5e7, 3.5e7)  # pixel-steps: 100-140 s
FLOODER, MORNING = 1000, 2000  # the flooder (server 1) and the heavy morning's member (server 2)
MORNING_HOURS = 3.0
DURATION_NOISE = 0.15  # sigma of the log of a job's actual / planned time (load, early stops)
ENGINE_ETA_AFTER = 0.1  # a running job reports its own ETA (Progress.eta) after this share of its time
ENGINE_ETA_NOISE = 0.1  # sigma of the log of that ETA's error


@dataclass(frozen=True)
class Flood:
    """A heavy member who keeps ``jobs`` long jobs waiting from ``start`` to ``end`` (seconds)."""

    user: int
    guild: int
    jobs: int
    start: float
    end: float


@dataclass
class Job:
    waiting: Waiting
    flood: Flood | None  # None: a light member's job
    planned: float = 0.0  # seconds, charged to the shares at the start
    predicted_start: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class World:
    """What the store would hold (the ledger's sums, the last starts, the shares, the speed) and the
    simulation's own bookkeeping."""

    policy: str
    workers: int
    rng: random.Random
    quota: Limits  # the daily caps; over them, the slow lane
    noise: float  # sigma of the log of a job's actual / planned time
    past: Usage = field(default_factory=Usage)
    speed: Speed = field(default_factory=Speed)
    waiting: dict[str, Job] = field(default_factory=dict)
    running: dict[str, tuple[Job, Running, float]] = field(default_factory=dict)  # and its true end
    finished: list[Job] = field(default_factory=list)
    events: list = field(default_factory=list)  # (time, seq, kind, payload)
    seq: itertools.count = field(default_factory=itertools.count)

    def at(self, time: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (time, next(self.seq), kind, payload))


def simulate(policy: str, workers: int, flood: int, hours: float, seed: int, *, user_quota: float | None = None,
             noise: float = DURATION_NOISE, morning: bool = False) -> dict[str, float]:
    """One run. ``user_quota``: a daily cap per member (seconds), over which jobs wait in the slow lane;
    ``morning``: another member floods server 2 for MORNING_HOURS first, and the flooder starts then."""
    world = World(policy, workers, random.Random(seed), Limits(user=user_quota), noise)
    horizon = hours * 3600
    _plan_light_arrivals(world, horizon)
    switch = MORNING_HOURS * 3600 if morning else 0.0
    if morning:
        world.at(0.0, "flood", Flood(MORNING, SERVERS[1], flood, 0.0, switch))
    world.at(switch, "flood", Flood(FLOODER, SERVERS[0], flood, switch, horizon))
    while world.events:
        now, _, kind, payload = heapq.heappop(world.events)
        new = set()
        if kind == "finish":
            _finish(world, now, payload)
        elif kind == "arrive":
            new.add(_submit(world, now, *payload).waiting.job_id)
        elif kind == "flood":
            new |= {_submit(world, now, payload.user, payload.guild, payload).waiting.job_id for _ in range(payload.jobs)}
        new |= _dispatch(world, now)
        _predict(world, now, new & set(world.waiting))
    return _measures(world, switch, horizon)


def _plan_light_arrivals(world: World, horizon: float) -> None:
    for guild in SERVERS:
        for index in range(LIGHT_USERS_PER_SERVER):
            user = guild * 100 + index
            time = world.rng.expovariate(1 / LIGHT_INTERVAL)
            while time < horizon:
                world.at(time, "arrive", (user, guild))
                time += world.rng.expovariate(1 / LIGHT_INTERVAL)


def _submit(world: World, now: float, user: int, guild: int, flood: Flood | None = None) -> Job:
    work = world.rng.uniform(*(FLOOD_WORK if flood else LIGHT_WORK))
    job_id = f"{next(world.seq):06d}"
    job = Job(Waiting(job_id, user, guild, now, work), flood)
    world.waiting[job_id] = job
    return job


def _dispatch(world: World, now: float) -> set[str]:
    """Start jobs on the free workers, as the dispatcher would; the ids of the floods' new jobs."""
    new = set()
    while len(world.running) < world.workers and world.waiting:
        chosen = pick(_waiting(world, now), _running(world, now), world.past, policy=world.policy, speed=world.speed)
        job = world.waiting.pop(chosen.job_id)
        job.started_at, job.planned = now, world.speed.seconds(chosen.work)
        end = now + chosen.work * TRUE_SECONDS_PER_UNIT * world.rng.lognormvariate(0, world.noise)
        world.running[chosen.job_id] = (job, Running(chosen.job_id, chosen.user_id, chosen.guild_id, now, chosen.work), end)
        world.at(end, "finish", chosen.job_id)
        # What the store records at a start: the job's start time, the shares moved on.
        world.past = replace(
            world.past,
            user_last_start={**world.past.user_last_start, chosen.user_id: now},
            server_last_start={**world.past.server_last_start, chosen.guild_id: now},
            shares=world.past.shares.started(chosen.user_id, chosen.guild_id, job.planned),
        )
        if job.flood and now < job.flood.end:  # the flood stays as long
            new.add(_submit(world, now, job.flood.user, job.flood.guild, job.flood).waiting.job_id)
    return new


def _finish(world: World, now: float, job_id: str) -> None:
    """What the store records at the end: the ledger's seconds, the shares corrected, the speed."""
    job, running, _ = world.running.pop(job_id)
    seconds = now - running.started_at
    past = world.past
    world.past = replace(
        past,
        user_seconds={**past.user_seconds, running.user_id: past.user_seconds.get(running.user_id, 0.0) + seconds},
        server_seconds={**past.server_seconds,
                        running.guild_id: past.server_seconds.get(running.guild_id, 0.0) + seconds},
        shares=past.shares.corrected(running.user_id, running.guild_id, job.planned, seconds),
    )
    world.speed = world.speed.measured(seconds, running.work)
    job.finished_at = now
    world.finished.append(job)


def _waiting(world: World, now: float) -> list[Waiting]:
    """The waiting jobs as the scheduler sees them: each one's lane from its member's quota now."""
    if world.quota.user is None:
        return [job.waiting for job in world.waiting.values()]
    users = {job.waiting.user_id for job in world.waiting.values()}
    slow = {user for user in users
            if assess(Used(user=world.past.user_seconds.get(user, 0.0)), world.quota, in_server=False,
                      mode=SLOW_LANE, now=now).verdict == SLOW}
    return [replace(job.waiting, over_quota=True) if job.waiting.user_id in slow else job.waiting
            for job in world.waiting.values()]


def _running(world: World, now: float) -> list[Running]:
    """The running jobs as the scheduler sees them: with their own ETA once they report one."""
    seen = []
    for _, running, end in world.running.values():
        if now - running.started_at >= ENGINE_ETA_AFTER * (end - running.started_at):
            running = replace(running, remaining=(end - now) * world.rng.lognormvariate(0, ENGINE_ETA_NOISE))
        seen.append(running)
    return seen


def _predict(world: World, now: float, job_ids: set[str]) -> None:
    """The first estimate the new jobs' status messages would show."""
    if not job_ids:
        return
    for estimate in forecast(_waiting(world, now), _running(world, now), world.past, policy=world.policy,
                             workers=world.workers, speed=world.speed, now=now):
        if estimate.job_id in job_ids:
            world.waiting[estimate.job_id].predicted_start = now + estimate.starts_in


def _measures(world: World, since: float, horizon: float) -> dict[str, float]:
    """Light members' waits (of the jobs sent after ``since``), the flooder's throughput, ETA errors."""
    light = [j for j in world.finished if j.flood is None and j.waiting.submitted_at >= since]
    waits = sorted(_wait(j) for j in light)
    flooder = [j for j in world.finished if j.flood and j.flood.user == FLOODER and j.started_at < horizon]
    errors = {kind: sorted(abs(j.predicted_start - j.started_at) / _wait(j) for j in world.finished
                           if (j.flood is None) == (kind == "light") and j.predicted_start is not None and _wait(j) > 0)
              for kind in ("light", "flood")}
    return {
        "light_median": statistics.median(waits), "light_p95": _percentile(waits, 0.95),
        "server_median": {g: statistics.median([_wait(j) for j in light if j.waiting.guild_id == g]) for g in SERVERS},
        "server_p95": {g: _percentile(sorted(_wait(j) for j in light if j.waiting.guild_id == g), 0.95) for g in SERVERS},
        "flood_per_hour": len(flooder) / ((horizon - since) / 3600),
        "flood_share": sum(min(j.finished_at, horizon) - j.started_at for j in flooder)
        / ((horizon - since) * world.workers),
        "eta_median": statistics.median(errors["light"] + errors["flood"]),
        "eta_p95": _percentile(sorted(errors["light"] + errors["flood"]), 0.95),
        "eta_light": statistics.median(errors["light"]), "eta_flood": statistics.median(errors["flood"]),
    }


def _wait(job: Job) -> float:
    return job.started_at - job.waiting.submitted_at


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


HEADER = ("| policy | workers | flood | light wait median (in the flooder's server) | light wait p95 | flooder jobs/h "
          "| flooder share | ETA error median (light · flooder) | ETA error p95 |\n|---|---|---|---|---|---|---|---|---|")
MORNING_HEADER = ("| policy | workers | light wait median | light wait p95 | in server 2: median | in server 2: p95 "
                  "|\n|---|---|---|---|---|---|")


def row(policy: str, workers: int, flood: int, m: dict) -> str:
    return (f"| {policy} | {workers} | {flood} | {m['light_median']:.0f} s ({m['server_median'][SERVERS[0]]:.0f} s) "
            f"| {m['light_p95']:.0f} s | {m['flood_per_hour']:.1f} | {m['flood_share']:.0%} | {m['eta_median']:.0%} "
            f"({m['eta_light']:.0%} · {m['eta_flood']:.0%}) | {m['eta_p95']:.0%} |")


def morning_row(policy: str, workers: int, m: dict) -> str:
    server = SERVERS[1]
    return (f"| {policy} | {workers} | {m['light_median']:.0f} s | {m['light_p95']:.0f} s "
            f"| {m['server_median'][server]:.0f} s | {m['server_p95'][server]:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0, help="simulated hours of arrivals (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--floods", type=int, nargs="+", default=[5, 20, 80])
    parser.add_argument("--quota", type=float, default=30.0, help="the last table's daily cap per member, minutes")
    parser.add_argument("--noise", type=float, default=DURATION_NOISE,
                        help=f"sigma of the log of a job's actual / planned time (default {DURATION_NOISE})")
    args = parser.parse_args()
    middle = args.floods[len(args.floods) // 2]
    print(f"{args.hours:g} simulated hours, {len(SERVERS)} servers x {LIGHT_USERS_PER_SERVER} light members "
          f"(a job of 8-32 s every {LIGHT_INTERVAL / 60:g} min on average), one flooder (100-140 s jobs); "
          f"duration noise {args.noise:g}; seed {args.seed}\n")
    print(HEADER)
    for policy in POLICIES:
        for workers in (1, 2):
            for flood in args.floods:
                print(row(policy, workers, flood, simulate(policy, workers, flood, args.hours, args.seed,
                                                           noise=args.noise)))
    print(f"\nAfter a heavy morning: a member floods server 2 ({middle} jobs) for {MORNING_HOURS:g} h, then the "
          f"flooder of server 1 starts; light members' waits from then on:\n")
    print(MORNING_HEADER)
    for policy in POLICIES:
        for workers in (1, 2):
            m = simulate(policy, workers, middle, args.hours, args.seed, noise=args.noise, morning=True)
            print(morning_row(policy, workers, m))
    print(f"\nWith a daily quota of {args.quota:g} min per member (over it, the slow lane), flood {middle}:\n")
    print(HEADER)
    for policy in POLICIES:
        for workers in (1, 2):
            print(row(policy, workers, middle, simulate(policy, workers, middle, args.hours, args.seed,
                                                        user_quota=args.quota * 60, noise=args.noise)))


if __name__ == "__main__":
    main()
