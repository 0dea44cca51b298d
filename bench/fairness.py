"""How fair the queue is: the real scheduler (bot/core/scheduling.py) on a simulated clock and workload.

    python bench/fairness.py                  # every policy, 1 and 2 workers, floods of 5, 20, 80 jobs
    python bench/fairness.py --hours 12 --seed 7

Three servers, each with light users who send short jobs at random times, and in server 1 one member
who keeps a flood of long jobs queued (the flood: that many of his jobs always wait). Workers take
the next job as the dispatcher would (``pick`` on the waiting jobs, the running ones and the usage
so far), and each new job is shown the estimate ``forecast`` gives it. A job's true duration is its
planned work times the true speed, off by a random factor (``--noise``: load, early stops); the
scheduler knows only the speed it measured from finished jobs (``Speed``) and, once a running job
has done a tenth of its work, that job's own ETA (the engine's Progress.eta), itself off by up to
about 10%.

Printed per policy, worker count and flood: the light users' median wait (in brackets: those in the
flooder's own server) and 95th-percentile wait, the flooder's throughput (jobs per hour, his share
of the workers' time), and the error of the first estimate a queued job is shown: |predicted start
- actual start| / actual wait, median (light users' jobs · the flooder's) and p95. A second table
puts a daily quota on every user: over it, the slow lane. Deterministic (seeded); a few seconds.
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
LIGHT_INTERVAL = 900.0  # a light user's mean time between jobs (s)
LIGHT_WORK = (2e6, 8e6)  # pixel-steps: 8-32 s
FLOOD_WORK = (2.5e7, 3.5e7)  # pixel-steps: 100-140 s
FLOODER = 1000  # the flooder's user id, in server 1
DURATION_NOISE = 0.15  # sigma of the log of a job's actual / planned time (load, early stops)
ENGINE_ETA_AFTER = 0.1  # a running job reports its own ETA (Progress.eta) after this share of its time
ENGINE_ETA_NOISE = 0.1  # sigma of the log of that ETA's error


@dataclass
class Job:
    waiting: Waiting
    light: bool
    predicted_start: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class World:
    """The scheduler's inputs, as the store would hold them, and the simulation's own bookkeeping."""

    policy: str
    workers: int
    rng: random.Random
    quota: Limits  # the daily caps; over them, the slow lane
    noise: float  # sigma of the log of a job's actual / planned time
    usage: Usage = field(default_factory=Usage)
    speed: Speed = field(default_factory=Speed)
    waiting: dict[str, Job] = field(default_factory=dict)
    running: dict[str, tuple[Job, Running, float]] = field(default_factory=dict)  # and its true end
    finished: list[Job] = field(default_factory=list)
    events: list = field(default_factory=list)  # (time, seq, kind, payload)
    seq: itertools.count = field(default_factory=itertools.count)

    def at(self, time: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (time, next(self.seq), kind, payload))


def simulate(policy: str, workers: int, flood: int, hours: float, seed: int, user_quota: float | None = None,
             noise: float = DURATION_NOISE) -> dict[str, float]:
    """One run; ``user_quota``: a daily cap per user (seconds), over which jobs wait in the slow lane."""
    world = World(policy, workers, random.Random(seed), Limits(user=user_quota), noise)
    horizon = hours * 3600
    _plan_light_arrivals(world, horizon)
    for _ in range(flood):
        _submit(world, 0.0, FLOODER, SERVERS[0], light=False)
    world.at(0.0, "start", None)
    while world.events:
        now, _, kind, payload = heapq.heappop(world.events)
        new = set(world.waiting) if kind == "start" else set()
        if kind == "finish":
            _finish(world, now, payload)
        elif kind == "arrive":
            new.add(_submit(world, now, *payload, light=True).waiting.job_id)
        new |= _dispatch(world, now, refill=now < horizon)
        _predict(world, now, new & set(world.waiting))
    return _measures(world, horizon)


def _plan_light_arrivals(world: World, horizon: float) -> None:
    for guild in SERVERS:
        for index in range(LIGHT_USERS_PER_SERVER):
            user = guild * 100 + index
            time = world.rng.expovariate(1 / LIGHT_INTERVAL)
            while time < horizon:
                world.at(time, "arrive", (user, guild))
                time += world.rng.expovariate(1 / LIGHT_INTERVAL)


def _submit(world: World, now: float, user: int, guild: int, *, light: bool) -> Job:
    work = world.rng.uniform(*(LIGHT_WORK if light else FLOOD_WORK))
    job_id = f"{next(world.seq):06d}"
    job = Job(Waiting(job_id, user, guild, now, work), light)
    world.waiting[job_id] = job
    return job


def _dispatch(world: World, now: float, *, refill: bool) -> set[str]:
    """Start jobs on the free workers; the ids of the flooder's new jobs."""
    new = set()
    while len(world.running) < world.workers and world.waiting:
        chosen = pick(_waiting(world, now), _running(world, now), world.usage, policy=world.policy,
                      speed=world.speed)
        job = world.waiting.pop(chosen.job_id)
        job.started_at = now
        running = Running(chosen.job_id, chosen.user_id, chosen.guild_id, now, chosen.work)
        end = now + chosen.work * TRUE_SECONDS_PER_UNIT * world.rng.lognormvariate(0, world.noise)
        world.running[chosen.job_id] = (job, running, end)
        world.usage = world.usage.charged(chosen.user_id, chosen.guild_id, 0.0, now)  # the start time
        world.at(end, "finish", chosen.job_id)
        if not job.light and refill:
            new.add(_submit(world, now, FLOODER, SERVERS[0], light=False).waiting.job_id)  # the flood stays as long
    return new


def _waiting(world: World, now: float) -> list[Waiting]:
    """The waiting jobs as the scheduler sees them: each one's lane from its user's quota now."""
    users = {job.waiting.user_id for job in world.waiting.values()}
    slow = {user for user in users if assess(Used(user=world.usage.user_seconds.get(user, 0.0)), world.quota,
                                             in_server=False, mode=SLOW_LANE, now=now).verdict == SLOW}
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


def _finish(world: World, now: float, job_id: str) -> None:
    job, running, _ = world.running.pop(job_id)
    seconds = now - running.started_at
    world.usage = world.usage.charged(running.user_id, running.guild_id, seconds, running.started_at)
    world.speed = world.speed.measured(seconds, running.work)
    job.finished_at = now
    world.finished.append(job)


def _predict(world: World, now: float, job_ids: set[str]) -> None:
    """The first estimate the new jobs' status messages would show."""
    if not job_ids:
        return
    for estimate in forecast(_waiting(world, now), _running(world, now), world.usage, policy=world.policy,
                             workers=world.workers, speed=world.speed, now=now):
        if estimate.job_id in job_ids:
            world.waiting[estimate.job_id].predicted_start = now + estimate.starts_in


def _measures(world: World, horizon: float) -> dict[str, float]:
    light = [j for j in world.finished if j.light]
    waits = sorted(_wait(j) for j in light)
    neighbours = [_wait(j) for j in light if j.waiting.guild_id == SERVERS[0]]
    flood_done = [j for j in world.finished if not j.light and j.started_at < horizon]
    flood_seconds = sum(min(j.finished_at, horizon) - j.started_at for j in flood_done)
    errors = {kind: sorted(abs(j.predicted_start - j.started_at) / _wait(j) for j in world.finished
                           if j.light == (kind == "light") and j.predicted_start is not None and _wait(j) > 0)
              for kind in ("light", "flood")}
    every = sorted(errors["light"] + errors["flood"])
    return {
        "light_median": statistics.median(waits), "light_p95": _percentile(waits, 0.95),
        "neighbour_median": statistics.median(neighbours),
        "flood_per_hour": len(flood_done) / (horizon / 3600),
        "flood_share": flood_seconds / (horizon * world.workers),
        "eta_median": statistics.median(every), "eta_p95": _percentile(every, 0.95),
        "eta_light": statistics.median(errors["light"]), "eta_flood": statistics.median(errors["flood"]),
    }


def _wait(job: Job) -> float:
    return job.started_at - job.waiting.submitted_at


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


HEADER = ("| policy | workers | flood | light wait median (in the flooder's server) | light wait p95 | flooder jobs/h "
          "| flooder share | ETA error median (light · flooder) | ETA error p95 |\n|---|---|---|---|---|---|---|---|---|")


def row(policy: str, workers: int, flood: int, m: dict[str, float]) -> str:
    return (f"| {policy} | {workers} | {flood} | {m['light_median']:.0f} s ({m['neighbour_median']:.0f} s) "
            f"| {m['light_p95']:.0f} s | {m['flood_per_hour']:.1f} | {m['flood_share']:.0%} | {m['eta_median']:.0%} "
            f"({m['eta_light']:.0%} · {m['eta_flood']:.0%}) | {m['eta_p95']:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=8.0, help="simulated hours of arrivals (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--floods", type=int, nargs="+", default=[5, 20, 80])
    parser.add_argument("--quota", type=float, default=30.0, help="the second table's daily cap per user, minutes")
    parser.add_argument("--noise", type=float, default=DURATION_NOISE,
                        help=f"sigma of the log of a job's actual / planned time (default {DURATION_NOISE})")
    args = parser.parse_args()
    print(f"{args.hours:g} simulated hours, {len(SERVERS)} servers x {LIGHT_USERS_PER_SERVER} light users "
          f"(a job of 8-32 s every {LIGHT_INTERVAL / 60:g} min on average), one flooder (100-140 s jobs); "
          f"duration noise {args.noise:g}; seed {args.seed}\n")
    print(HEADER)
    for policy in POLICIES:
        for workers in (1, 2):
            for flood in args.floods:
                m = simulate(policy, workers, flood, args.hours, args.seed, noise=args.noise)
                print(row(policy, workers, flood, m))
    print(f"\nWith a daily quota of {args.quota:g} min per user (over it, the slow lane), flood "
          f"{args.floods[len(args.floods) // 2]}:\n")
    print(HEADER)
    for policy in POLICIES:
        for workers in (1, 2):
            flood = args.floods[len(args.floods) // 2]
            m = simulate(policy, workers, flood, args.hours, args.seed, user_quota=args.quota * 60, noise=args.noise)
            print(row(policy, workers, flood, m))


if __name__ == "__main__":
    main()
