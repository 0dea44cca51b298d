"""The fair-share core (bot/core/scheduling.py, bot/core/usage.py): the orders, the slow lane, positions
and estimated starts, quota decisions and their words; and bench/fairness.py's claims, on a short run."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import sys
from pathlib import Path

import pytest

from bot.core.scheduling import (
    DEFAULT_POLICY, FAIR_SHARE, FCFS, LEAST_USAGE, OVERHEAD_PIXELS, POLICIES, ROUND_ROBIN, Estimate, Running, Shares,
    Speed, Usage, Waiting, estimates, forecast, next_job, order, pick, planned_work, queued_text,
)
from bot.core.usage import (
    REFUSE, REFUSED, SLOW, SLOW_LANE, WITHIN, Limits, Used, assess, day_of, duration, next_reset, usage_lines,
)

ROOT = Path(__file__).resolve().parents[1]
SPEED = Speed(seconds_per_unit=1.0, samples=1)  # one second per unit of work: times read as work
ALICE, BOB, CAROL = 1, 2, 3  # Alice and Bob in server 10, Carol in server 20


def job(job_id: str, user: int, guild: int | None, at: float, work: float = 10.0, over_quota: bool = False) -> Waiting:
    return Waiting(job_id, user, guild, at, work, over_quota)


def ids(jobs) -> list[str]:
    return [j.job_id for j in jobs]


# Alice floods server 10; Bob (server 10) and Carol (server 20) come later with one or two jobs.
QUEUE = [job("a1", ALICE, 10, 1), job("a2", ALICE, 10, 2), job("a3", ALICE, 10, 3), job("b1", BOB, 10, 4),
         job("c1", CAROL, 20, 5), job("c2", CAROL, 20, 6)]


# ------------------------------------------------------------------------------------------ orders

def test_fcfs_takes_the_jobs_as_they_came():
    assert ids(order(QUEUE, Usage(), FCFS)) == ["a1", "a2", "a3", "b1", "c1", "c2"]


def test_round_robin_alternates_servers_then_the_users_of_a_server():
    assert ids(order(QUEUE, Usage(), ROUND_ROBIN)) == ["a1", "c1", "b1", "c2", "a2", "a3"]


def test_round_robin_turns_come_from_the_persisted_start_times():
    """Server 10 was served last (a restart forgets nothing: the start times are the store's)."""
    usage = Usage(server_last_start={10: 500.0, 20: 400.0}, user_last_start={ALICE: 500.0, BOB: 100.0, CAROL: 400.0})
    assert next_job(QUEUE, usage, ROUND_ROBIN).job_id == "c1"
    assert ids(order(QUEUE, usage, ROUND_ROBIN)) == ["c1", "b1", "c2", "a1", "a2", "a3"]


def test_fair_share_alternates_servers_then_the_users_of_a_server():
    assert DEFAULT_POLICY == FAIR_SHARE
    assert ids(order(QUEUE, Usage(), FAIR_SHARE, SPEED)) == ["a1", "c1", "b1", "c2", "a2", "a3"]


def test_fair_share_counts_seconds_where_round_robin_counts_turns():
    """Alice's jobs take three times as long as Carol's: Carol's server gets three turns to Alice's one."""
    waiting = [job("a1", ALICE, 10, 1, work=30), job("a2", ALICE, 10, 2, work=30)] + [
        job(f"c{i}", CAROL, 20, 2 + i, work=10) for i in range(1, 5)]
    assert ids(order(waiting, Usage(), FAIR_SHARE, SPEED)) == ["a1", "c1", "c2", "c3", "a2", "c4"]
    assert ids(order(waiting, Usage(), ROUND_ROBIN, SPEED)) == ["a1", "c1", "a2", "c2", "c3", "c4"]


def _after_a_heavy_morning() -> Usage:
    """Server 20 ran alone all morning: 100 jobs of 100 s, started and ended as planned."""
    shares = Shares()
    for _ in range(100):
        shares = shares.started(CAROL, 20, 100.0)
    return Usage(user_seconds={CAROL: 10_000.0}, server_seconds={20: 10_000.0}, shares=shares)


def test_after_a_heavy_morning_fair_share_does_not_hold_the_server_back():
    """Bob (server 20, light) waits behind one of Alice's jobs (server 10, new and heavy), not all of them."""
    waiting = [job(f"a{i}", ALICE, 10, i, work=120) for i in range(1, 6)] + [job("b1", BOB, 20, 9, work=10)]
    morning = _after_a_heavy_morning()
    assert ids(order(waiting, morning, FAIR_SHARE, SPEED))[:2] == ["a1", "b1"]
    assert ids(order(waiting, morning, LEAST_USAGE, SPEED))[-1] == "b1"  # its usage today holds it back


def test_fair_share_neither_banks_credit_nor_carries_debt():
    shares = Shares(clock=500.0, servers={10: 100.0, 20: 520.0})
    assert shares.server_turn(10) == 500.0  # idle a while: back at the clock, no credit for it
    assert shares.server_turn(20) == 520.0  # served ahead of the clock: waits for the others
    assert shares.server_turn(30) == 500.0  # new
    started = shares.started(ALICE, 10, 40.0)
    assert (started.clock, started.servers[10], started.members[(10, ALICE)]) == (500.0, 540.0, 40.0)


def test_a_member_back_from_a_pause_takes_turns_with_the_others_not_all_of_them():
    """Alice was away while Bob used the server: she comes back at her server's member clock."""
    usage = Usage(shares=Shares(member_clocks={10: 1000.0}, members={(10, ALICE): 0.0, (10, BOB): 1000.0}))
    waiting = [job("a1", ALICE, 10, 1), job("a2", ALICE, 10, 2), job("a3", ALICE, 10, 3), job("b1", BOB, 10, 4)]
    assert ids(order(waiting, usage, FAIR_SHARE, SPEED)) == ["a1", "b1", "a2", "a3"]


def test_fair_share_charges_what_a_job_took_once_it_ends():
    shares = Shares().started(ALICE, 10, 10.0).corrected(ALICE, 10, planned=10.0, actual=25.0)
    assert (shares.servers[10], shares.members[(10, ALICE)]) == (25.0, 25.0)


def test_least_usage_serves_the_server_and_then_the_user_with_the_fewest_seconds_today():
    usage = Usage(user_seconds={ALICE: 900.0, BOB: 0.0, CAROL: 60.0}, server_seconds={10: 900.0, 20: 60.0})
    assert ids(order(QUEUE, usage, LEAST_USAGE, SPEED)) == ["c1", "c2", "b1", "a1", "a2", "a3"]
    even = Usage(user_seconds={ALICE: 15.0, CAROL: 10.0}, server_seconds={10: 15.0, 20: 10.0})
    assert ids(order(QUEUE, even, LEAST_USAGE, SPEED)) == ["c1", "b1", "c2", "a1", "a2", "a3"]


@pytest.mark.parametrize("policy", POLICIES)
def test_pick_is_the_first_of_the_forecast(policy):
    running = [Running("a0", ALICE, 10, started_at=0.0, work=50.0)]
    usage = Usage(user_seconds={BOB: 30.0}, server_seconds={10: 30.0}, user_last_start={BOB: 0.0},
                  server_last_start={10: 0.0})
    first = forecast(QUEUE, running, usage, policy=policy, workers=2, speed=SPEED, now=10.0)[0]
    assert (first.job_id, first.position, first.starts_in) == (pick(QUEUE, running, usage, policy=policy,
                                                                    speed=SPEED).job_id, 1, 0.0)


def test_a_running_job_counts_against_its_user_so_a_second_worker_goes_to_someone_else():
    running = [Running("a0", ALICE, 10, started_at=100.0, work=50.0)]
    waiting = [job("a1", ALICE, 10, 1), job("b1", BOB, 10, 2)]
    assert next_job(waiting, Usage(), LEAST_USAGE).job_id == "a1"
    assert next_job(waiting, Usage().with_running(running, SPEED), LEAST_USAGE).job_id == "b1"
    assert next_job(waiting, Usage().with_running(running, SPEED), ROUND_ROBIN).job_id == "b1"


@pytest.mark.parametrize("policy", POLICIES)
def test_the_slow_lane_runs_only_when_no_job_within_quota_waits(policy):
    waiting = [job("a1", ALICE, 10, 1, over_quota=True), job("b1", BOB, 10, 2), job("c1", CAROL, 20, 3)]
    assert ids(order(waiting, Usage(), policy))[-1] == "a1"
    assert next_job([waiting[0]], Usage(), policy).job_id == "a1"


@pytest.mark.parametrize("policy", POLICIES)
def test_the_decision_is_the_same_whatever_the_order_of_the_inputs(policy):
    """Several dispatchers (or one after a restart) reading the same rows decide alike: ties included."""
    rng = random.Random(5)
    waiting = [job(f"j{i:02d}", rng.choice([ALICE, BOB, CAROL, 4]), rng.choice([10, 20, None]), rng.choice([1.0, 2.0]))
               for i in range(30)]
    usage = Usage(user_seconds={BOB: 30.0}, server_seconds={20: 30.0}, user_last_start={BOB: 7.0},
                  server_last_start={20: 7.0}, shares=Shares().started(BOB, 20, 30.0))
    expected = order(waiting, usage, policy, SPEED)
    for _ in range(5):
        rng.shuffle(waiting)
        assert order(waiting, usage, policy, SPEED) == expected
        assert next_job(waiting, usage, policy) == expected[0]


def test_an_unknown_policy_is_refused_by_name():
    with pytest.raises(ValueError, match="'lottery'"):
        next_job(QUEUE, Usage(), "lottery")


def test_nothing_waiting_means_no_next_job():
    assert next_job([], Usage()) is None


# ------------------------------------------------------------------------------- position and ETA

def test_estimates_with_one_worker_queue_behind_the_running_job():
    running = [Running("r", ALICE, 10, started_at=96.0, work=10.0)]  # 6 s of its plan left at 100
    queued = [job("q1", BOB, 10, 97, work=5.0), job("q2", CAROL, 20, 98, work=10.0)]
    assert estimates(queued, running, workers=1, speed=SPEED, now=100.0) == [
        Estimate("q1", 1, 6.0), Estimate("q2", 2, 11.0)]


def test_estimates_with_two_workers_use_the_first_worker_free():
    running = [Running("r", ALICE, 10, started_at=96.0, work=10.0)]
    queued = [job("q1", BOB, 10, 97, work=5.0), job("q2", CAROL, 20, 98, work=10.0), job("q3", 4, 20, 99, work=1.0)]
    assert [e.starts_in for e in estimates(queued, running, workers=2, speed=SPEED, now=100.0)] == [0.0, 5.0, 6.0]


def test_a_running_jobs_own_eta_beats_its_plan_and_an_overrun_never_goes_negative():
    late = Running("r", ALICE, 10, started_at=0.0, work=10.0)  # planned 10 s, running for 100
    assert estimates([job("q", BOB, 10, 1)], [late], workers=1, speed=SPEED, now=100.0)[0].starts_in == 0.0
    told = Running("r", ALICE, 10, started_at=0.0, work=10.0, remaining=30.0)
    assert estimates([job("q", BOB, 10, 1)], [told], workers=1, speed=SPEED, now=100.0)[0].starts_in == 30.0


def test_with_no_worker_online_no_start_is_promised():
    (estimate,) = estimates([job("q", BOB, 10, 1)], [], workers=0, speed=SPEED, now=100.0)
    assert queued_text(estimate) == "⏳ Queued, position 1 · starts when a worker is back online"


@pytest.mark.parametrize(("seconds", "text"), [
    (3, "⏳ Queued, position 3 · starts in a few seconds"),
    (42, "⏳ Queued, position 3 · starts in about 40 s"),
    (125, "⏳ Queued, position 3 · starts in about 2 min"),
    (3 * 3600 + 12 * 60, "⏳ Queued, position 3 · starts in about 3 h 12 min"),
])
def test_the_status_line_of_a_queued_job(seconds, text):
    assert queued_text(Estimate("j", 3, seconds)) == text


def test_speed_is_a_moving_average_of_finished_jobs_the_first_replacing_the_default():
    speed = Speed().measured(seconds=20.0, work=10.0)
    assert speed == Speed(2.0, 1)
    assert speed.measured(seconds=40.0, work=10.0, weight=0.5) == Speed(3.0, 2)
    assert speed.measured(seconds=5.0, work=0.0) == speed


def test_planned_work_prices_steps_as_the_engines_eta_does():
    from nst.params import StyleParams
    from nst.schedule import plan
    from nst.transfer import ETA_OVERHEAD_PIXELS

    assert OVERHEAD_PIXELS == ETA_OVERHEAD_PIXELS
    the_plan = plan((96, 64), [(64, 64)], StyleParams(size=96, epochs=20, schedule="single"))
    (level,) = the_plan.levels
    assert planned_work(the_plan) == level.steps * (96 * 64 + OVERHEAD_PIXELS)
    assert planned_work(the_plan, work=[1.5]) == level.steps * (96 * 64 * 1.5 + OVERHEAD_PIXELS)  # tiled


def test_a_jobs_planned_work_prices_its_tiled_levels_under_the_operators_budget():
    import io

    from PIL import Image

    from bot.core.fairqueue import job_work
    from nst.params import StyleParams
    from nst.schedule import level_work, plan

    def png(size):
        out = io.BytesIO()
        Image.new("RGB", size, (90, 120, 200)).save(out, "PNG")
        return out.getvalue()

    params = StyleParams(size=1024, epochs=20)
    the_plan = plan((1024, 768), [(256, 256)], params)
    untiled = [1.0] * len(the_plan.levels)
    assert level_work(the_plan, params) == untiled and level_work(the_plan, params, "unlimited") == untiled
    tiled = level_work(the_plan, params, "1.5GiB")  # 1024×768 needs about 2.1 GiB whole in fp32: tiles
    assert tiled[-1] > 1.0 and tiled[:-1] == untiled[:-1]  # the coarser levels fit whole
    content, style = png((1024, 768)), png((256, 256))
    assert job_work(content, [style], params) == planned_work(the_plan)
    assert job_work(content, [style], params, max_memory="1.5GiB") == planned_work(the_plan, tiled) > planned_work(the_plan)


# ------------------------------------------------------------------------------------------ quotas

EVENING = dt.datetime(2026, 12, 3, 20, 48, 10, tzinfo=dt.timezone.utc).timestamp()  # 3 h 11 min 50 s to midnight


def test_usage_resets_at_utc_midnight():
    assert day_of(EVENING) == "2026-12-03"
    assert next_reset(EVENING) == dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc).timestamp()
    assert day_of(next_reset(EVENING)) == "2026-12-04"


def test_over_the_users_quota_in_the_slow_lane():
    result = assess(Used(user=14 * 60 + 20), Limits(user=600), in_server=False, mode=SLOW_LANE, now=EVENING - 10)
    assert result.verdict == SLOW
    assert result.text == ("you have used 14 min of your 10 min today; your jobs wait in the slow lane "
                           "until 00:00 UTC (in 3 h 12 min)")
    assert result.resets_at == next_reset(EVENING)


def test_over_the_servers_quota_refused():
    limits = Limits(server=7200, server_own=3600)
    result = assess(Used(user=60, member=60, server=3700), limits, in_server=True, mode=REFUSE, now=EVENING)
    assert result.verdict == REFUSED
    assert result.text == ("this server has used 1 h 1 min of its 1 h today; new jobs are refused "
                           "until 00:00 UTC (in 3 h 11 min)")


def test_within_quota():
    result = assess(Used(user=599, member=599, server=599), Limits(user=600, member=600, server=600), in_server=True,
                    mode=REFUSE, now=EVENING)
    assert (result.verdict, result.text) == (WITHIN, "")


def test_an_unknown_over_quota_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="'queue'"):
        assess(Used(), Limits(), in_server=False, mode="queue", now=EVENING)


def test_a_server_can_lower_the_operators_cap_but_not_raise_it():
    assert Limits(server=7200, server_own=3600).server_cap() == 3600
    assert Limits(server=3600, server_own=7200).server_cap() == 3600
    assert Limits(server_own=900).server_cap() == 900
    assert Limits().server_cap() is None


def test_a_members_allowance_is_the_largest_of_their_roles_else_the_servers_default():
    limits = Limits(member=300, roles={11: 600, 12: 1800})
    assert limits.member_cap([11, 12, 99]) == 1800
    assert limits.member_cap([11]) == 600
    assert limits.member_cap([99]) == 300
    used = Used(user=900, member=900, server=900)
    assert assess(used, limits, role_ids=[12], in_server=True, mode=REFUSE, now=EVENING).verdict == WITHIN
    refused = assess(used, limits, role_ids=[11], in_server=True, mode=REFUSE, now=EVENING)
    assert refused.text.startswith("you have used 15 min of your 10 min in this server today;")


def test_the_operators_per_user_cap_holds_whatever_the_role():
    limits = Limits(user=600, roles={12: 1800})
    result = assess(Used(user=700, member=700), limits, role_ids=[12], in_server=True, mode=SLOW_LANE, now=EVENING)
    assert result.text.startswith("you have used 11 min of your 10 min today;")


def test_server_caps_do_not_apply_in_direct_messages():
    limits = Limits(member=60, server=60)
    used = Used(user=900, member=900, server=900)
    assert assess(used, limits, in_server=False, mode=REFUSE, now=EVENING).verdict == WITHIN
    assert assess(used, limits, in_server=True, mode=REFUSE, now=EVENING).verdict == REFUSED


def test_usage_lines_show_each_use_against_its_quota():
    lines = usage_lines(Used(user=900, member=300, server=4000), Limits(member=600, server=7200), in_server=True)
    assert lines == ["You, everywhere: 15 min today", "You, in this server: 5 min of 10 min today",
                     "This server: 1 h 6 min of 2 h today"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"),
                                               (3600, "1 h"), (11520, "3 h 12 min")])
def test_durations_round_down(seconds, text):
    assert duration(seconds) == text


# ----------------------------------------------------------------------------------- the benchmark

def _bench():
    spec = importlib.util.spec_from_file_location("fairness_bench", ROOT / "bench" / "fairness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("policy", [FAIR_SHARE, ROUND_ROBIN, LEAST_USAGE])
def test_under_a_fair_order_a_light_users_wait_does_not_grow_with_the_flood(policy):
    bench = _bench()
    small, large = (bench.simulate(policy, 1, flood, hours=3, seed=2) for flood in (5, 80))
    fcfs = bench.simulate(FCFS, 1, 80, hours=3, seed=2)
    assert large["light_median"] < 1.5 * small["light_median"]
    assert fcfs["light_median"] > 10 * large["light_median"]
    assert large["eta_median"] < 0.25


def test_the_benchmark_after_a_heavy_morning_holds_back_only_under_least_usage():
    bench = _bench()
    hours = bench.MORNING_HOURS + 1
    fair, least = (bench.simulate(policy, 1, 20, hours=hours, seed=2, morning=True)
                   for policy in (FAIR_SHARE, LEAST_USAGE))
    assert fair["server_p95"][2] < 600
    assert least["server_median"][2] > 1800


def test_the_benchmark_is_deterministic():
    bench = _bench()
    assert bench.simulate(FAIR_SHARE, 2, 20, hours=1, seed=3) == bench.simulate(FAIR_SHARE, 2, 20, hours=1, seed=3)
