"""bot.core.quotas.QuotaService against a real store (tmp_path) and a fixed clock: admission, the slow
lane and refusal, charging once, resets by a server's admins and by an owner, and today's usage for the order."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import parse_config
from bot.core import limits, usage
from bot.core.errors import UserError
from bot.core.quotas import QUOTA_LIMITS, QuotaService, quota_limits
from bot.core.store import JobRecord, Store

NOON = 1_700_000_000 // 86400 * 86400 + 12 * 3600  # a day's 12:00 UTC
MEMBER, OTHER, ADMIN = 101, 102, 900
SERVER, ELSEWHERE = 10, 20
PATRON = 555


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "bot.sqlite3")
    yield s
    await s.close()


def service(store: Store, clock: Clock, **quotas) -> QuotaService:
    return QuotaService(parse_config({"quotas": quotas}), store, clock)


async def charge(quotas: QuotaService, job_id: str, user_id: int, guild_id: int | None, seconds: float) -> None:
    await quotas.charge(job_id=job_id, user_id=user_id, guild_id=guild_id, seconds=seconds, work=1e6)


async def test_without_caps_every_job_is_within_quota(store: Store):
    quotas = service(store, Clock(NOON))
    await charge(quotas, "a", MEMBER, SERVER, 10_000.0)
    admitted = await quotas.admit(user_id=MEMBER, guild_id=SERVER, role_ids=[])
    assert (admitted.verdict, admitted.text) == (usage.WITHIN, "")
    assert admitted.resets_at == NOON + 12 * 3600
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])


async def test_over_the_user_cap_the_job_goes_to_the_slow_lane_until_midnight(store: Store):
    clock = Clock(NOON)
    quotas = service(store, clock, user_daily=600)
    await charge(quotas, "a", MEMBER, SERVER, 400.0)
    assert (await quotas.admit(user_id=MEMBER, guild_id=SERVER, role_ids=[])).verdict == usage.WITHIN
    await charge(quotas, "b", MEMBER, ELSEWHERE, 200.0)  # the user's cap counts every server, and DMs
    slow = await quotas.admit(user_id=MEMBER, guild_id=None, role_ids=[])
    assert slow.verdict == usage.SLOW
    assert slow.text == ("you have used 10 min of your 10 min today; your jobs wait in the slow lane until "
                         "00:00 UTC (in 12 h)")
    assert await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])
    assert not await quotas.over_quota(user_id=OTHER, guild_id=SERVER, role_ids=[])
    clock.now = NOON + 12 * 3600  # midnight: a new day, nothing used yet
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])


async def test_refuse_mode_raises_a_user_error_with_the_words(store: Store):
    quotas = service(store, Clock(NOON), server_daily=60, over_quota="refuse")
    await charge(quotas, "a", OTHER, SERVER, 61.0)
    with pytest.raises(UserError, match=r"^this server has used 1 min of its 1 min today; new jobs are refused "
                                        r"until 00:00 UTC \(in 12 h\)$"):
        await quotas.admit(user_id=MEMBER, guild_id=SERVER, role_ids=[])
    assert (await quotas.admit(user_id=MEMBER, guild_id=ELSEWHERE, role_ids=[])).verdict == usage.WITHIN
    assert await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])  # queued ones: the slow lane


async def test_a_server_lowers_the_caps_and_roles_get_their_allowance(store: Store):
    quotas = service(store, Clock(NOON), user_daily=3600)
    await store.set_guild_limit(SERVER, "quota_member", 300.0)
    await store.set_guild_limit(SERVER, "quota_roles", {str(PATRON): 1200.0})
    await charge(quotas, "a", MEMBER, SERVER, 300.0)
    assert await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[PATRON])
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=ELSEWHERE, role_ids=[])  # that server set nothing
    limits = await quotas.limits(SERVER)
    assert limits == usage.Limits(user=3600.0, member=300.0, roles={PATRON: 1200.0})
    assert quota_limits(parse_config({}), None) == usage.Limits()


async def test_a_job_is_charged_once(store: Store):
    quotas = service(store, Clock(NOON), user_daily=100)
    await charge(quotas, "a", MEMBER, SERVER, 60.0)
    await charge(quotas, "a", MEMBER, SERVER, 60.0)  # the same job reported twice
    assert (await quotas.used(user_id=MEMBER, guild_id=SERVER)).user == 60.0
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])


async def test_an_admins_reset_frees_the_member_quota_only_an_owners_frees_everything(store: Store):
    clock = Clock(NOON)
    quotas = service(store, clock, user_daily=1000, server_daily=1000)
    await store.set_guild_limit(SERVER, "quota_member", 100.0)
    await charge(quotas, "a", MEMBER, SERVER, 1000.0)
    assert await quotas.used(user_id=MEMBER, guild_id=SERVER) == usage.Used(user=1000.0, member=1000.0, server=1000.0)

    clock.now += 1
    await quotas.reset(user_id=MEMBER, guild_id=SERVER, by=ADMIN)
    # the member's own quota there is free again; the operator's caps, which a server cannot raise, are not
    assert await quotas.used(user_id=MEMBER, guild_id=SERVER) == usage.Used(user=1000.0, member=0.0, server=1000.0)
    assert await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])

    clock.now += 1
    await quotas.reset(user_id=MEMBER, guild_id=None, by=ADMIN)
    assert await quotas.used(user_id=MEMBER, guild_id=SERVER) == usage.Used()
    assert not await quotas.over_quota(user_id=MEMBER, guild_id=SERVER, role_ids=[])
    clock.now += 1
    await charge(quotas, "b", MEMBER, SERVER, 30.0)  # what runs after a reset counts again
    assert await quotas.used(user_id=MEMBER, guild_id=SERVER) == usage.Used(user=30.0, member=30.0, server=30.0)


async def test_today_gives_the_order_its_seconds_and_last_starts(store: Store):
    clock = Clock(NOON)
    quotas = service(store, clock)
    await store.record_usage("yesterday", MEMBER, SERVER, 999.0, None, NOON - 86400)
    await charge(quotas, "a", MEMBER, SERVER, 30.0)
    await charge(quotas, "b", MEMBER, None, 5.0)
    await charge(quotas, "c", OTHER, SERVER, 12.0)
    await store.add_job(JobRecord(
        job_id="a", user_id=MEMBER, guild_id=SERVER, channel_id=1, message_id=2, status_message_id=None, params={},
        state="done", outcome=None, attempts=1, created_at=NOON - 100, updated_at=NOON, finished_at=NOON,
        started_at=NOON - 90,
    ))  # fmt: skip
    today = await quotas.today()
    assert today.user_seconds == {MEMBER: 35.0, OTHER: 12.0}
    assert today.server_seconds == {SERVER: 42.0, None: 5.0}
    assert (today.user_last_start, today.server_last_start) == ({MEMBER: NOON - 90}, {SERVER: NOON - 90})


async def test_lines_show_each_quota_the_verdict_and_the_reset(store: Store):
    quotas = service(store, Clock(NOON), user_daily=3600, over_quota="refuse")
    await store.set_guild_limit(SERVER, "quota_server", 120.0)
    await charge(quotas, "a", OTHER, SERVER, 150.0)
    await charge(quotas, "b", MEMBER, SERVER, 90.0)
    assert await quotas.lines(user_id=MEMBER, guild_id=SERVER, role_ids=[]) == [
        "You, everywhere: 1 min of 1 h today",
        "You, in this server: 1 min today",
        "This server: 4 min of 2 min today",
        "This server has used 4 min of its 2 min today; new jobs are refused until 00:00 UTC (in 12 h).",
        "Usage resets at 00:00 UTC (in 12 h).",
    ]
    assert await quotas.lines(user_id=MEMBER, guild_id=None, role_ids=[]) == [
        "You, everywhere: 1 min of 1 h today",
        "Usage resets at 00:00 UTC (in 12 h).",
    ]


# ------------------------------------------------------------------ a server's own quota limits, typed as durations

@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5h", 5400),
                                           ("1h30m", 5400), ("2 hours", 7200), ("1h 30 min", 5400)])
def test_durations_as_admins_type_them(text, seconds):
    assert usage.parse_duration(text, "quota_member") == seconds


@pytest.mark.parametrize("text", ["", "lots", "1 30", "2x", "-5", "٣h", "h"])
def test_what_is_not_a_duration_is_refused_by_name(text):
    with pytest.raises(ValueError, match=r"^quota_member: must be a duration like 90s, 30m, 2h or 1h30m, got "):
        usage.parse_duration(text, "quota_member")


def test_spans_show_a_quota_exactly():
    assert [usage.span(s) for s in (0, 45, 90, 1800, 5400, 7261)] == [
        "0 s", "45 s", "1 min 30 s", "30 min", "1 h 30 min", "2 h 1 min 1 s"]


def test_server_quota_limits_stay_within_the_operators_daily_caps():
    config = parse_config({"quotas": {"user_daily": 3600, "server_daily": 0}})
    caps, quotas = config.caps, config.quotas
    assert limits.parse_guild_limit("quota_member", "30m", caps, quotas) == 1800.0
    assert limits.parse_guild_limit("quota_server", "100h", caps, quotas) == 360000.0  # the operator set no server cap
    with pytest.raises(limits.LimitError, match=r"^quota_member: 2 h is above the bot operator's daily cap per user "
                                                r"of 1 h; the most you can set is 1 h$"):
        limits.parse_guild_limit("quota_member", "2h", caps, quotas)
    with pytest.raises(limits.LimitError, match=r"^quota_server: must be from 1 s to 240 h, got 0 s$"):
        limits.parse_guild_limit("quota_server", "0s", caps, quotas)
    assert limits.parse_quota_roles([(5, "1h"), (6, "45m")], caps, quotas) == {"5": 3600.0, "6": 2700.0}
    with pytest.raises(limits.LimitError, match=r"for <@&5> is above the bot operator's daily cap per user of 1 h"):
        limits.parse_quota_roles([(5, "61m")], caps, quotas)
    with pytest.raises(limits.LimitError, match="name one or more roles"):
        limits.check_guild_limit("quota_roles", {}, caps, quotas)
    with pytest.raises(limits.LimitError, match="at most 25 roles"):
        limits.check_guild_limit("quota_roles", {role: 60.0 for role in range(26)}, caps, quotas)
    # the names QuotaService reads are the ones the catalogue validates
    assert set(QUOTA_LIMITS) == set(limits.QUOTA_LIMITS)
