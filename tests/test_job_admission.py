"""The job service's admission without Discord: its collaborators are a real store, image cache and
style library, and a front-end and an executor that record what they are asked. Each refusal comes
before the costlier checks after it (bot.core.jobs's docstring gives the order)."""

from __future__ import annotations

import asyncio
import io
import time
from types import SimpleNamespace

import pytest
from PIL import Image

from bot.config import parse_config
from bot.core.errors import UserError
from bot.core.imagecache import ImageCache
from bot.core.jobs import Destination, JobRequest, JobService, Silent
from bot.core.store import JobRecord, Store
from bot.core.styles import StyleLibrary
from bot.executor.base import JobInfo, Refused, SHUTTING_DOWN, Started
from bot_harness import config_values

GUILD, CHANNEL, OTHER_CHANNEL, ALICE = 1, 10, 11, 100


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, "PNG")
    return out.getvalue()


class Frontend:
    """The Discord side, recorded: which questions the service asked, in order."""

    def __init__(self, missing: list[str] | None = None):
        self.asked: list[str] = []
        self.missing = missing or []

    def view(self, job, where, notes, **_):
        self.asked.append("view")
        self.started_on: list[str] = []

        async def started(device):
            self.started_on.append(device)

        return SimpleNamespace(started=started)

    def missing_permissions(self, where):
        self.asked.append("permissions")
        return list(self.missing)

    def check_attachments(self, attached, **limits):
        self.asked.append("attachments")
        if len(attached) < 2:
            raise UserError("attach a content image and a style image")

    async def download(self, attached, **limits):
        self.asked.append("download")
        return [png(64, 48), png(64, 64)]

    async def find_destination(self, *ids):
        return None


class Executor:
    def __init__(self, queued: list[JobInfo] = (), refuse: str | None = None, events=()):
        self.queued = list(queued)
        self.refuse = refuse
        self.events = list(events)  # what each submitted job's handle yields before it waits forever
        self.submitted = []
        self.asked: list[str] = []

    def jobs(self):
        self.asked.append("jobs")
        return list(self.queued)

    async def submit(self, job, *, max_per_user, max_queue):
        self.asked.append("submit")
        if self.refuse:
            raise Refused(self.refuse)
        self.submitted.append(job)
        return _NeverEnds(job, self.events)


class _NeverEnds:
    def __init__(self, job, events=()):
        self.job = job
        self.events = list(events)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.events:
            return self.events.pop(0)
        await asyncio.Event().wait()


@pytest.fixture
async def service(tmp_path):
    config = parse_config(config_values(tmp_path, "random"), source="test")
    store = await Store.open(tmp_path / "bot.sqlite3")
    cache = ImageCache(tmp_path / "cache", max_bytes=10_000_000, ttl=3600)
    frontend, executor = Frontend(), Executor()
    jobs = JobService(config, cache, SimpleNamespace(job_finished=lambda *a: None), frontend)
    jobs.start(store=store, styles=StyleLibrary(config, store), executor=executor)
    yield SimpleNamespace(jobs=jobs, store=store, frontend=frontend, executor=executor)
    for task in list(jobs._tasks):
        task.cancel()
    await store.close()


def request(*, attachments=("content", "style"), options=None, channel=CHANNEL, interactive=False) -> JobRequest:
    where = Destination(channel=SimpleNamespace(id=channel), guild=SimpleNamespace(id=GUILD))
    return JobRequest(user_id=ALICE, destination=where, attachments=list(attachments), options=options or {},
                      interactive=interactive)


def queued_job(user_id: int) -> JobInfo:
    return JobInfo(job_id="x" * 32, user_id=user_id, guild_id=GUILD, state="queued", position=1, fraction=0.0,
                   device=None, submitted_at=time.time())


async def test_a_job_that_passes_every_check_is_submitted_recorded_and_cached(service):
    submitted = await service.jobs.submit(request(options={"epochs": "5"}))
    assert service.frontend.asked == ["permissions", "attachments", "download", "view"]
    assert service.executor.asked == ["jobs", "submit"]
    assert submitted.job.params["epochs"] == 5
    assert (await service.store.get_job(submitted.job.job_id)).state == "queued"
    assert await service.jobs.cache.get(submitted.job.job_id) is not None


async def test_after_shutdown_began_nothing_is_asked(service):
    service.jobs.stop_accepting()
    with pytest.raises(UserError, match=SHUTTING_DOWN[:20]):
        await service.jobs.submit(request())
    assert service.frontend.asked == [] and service.executor.asked == []


async def test_a_channel_the_server_did_not_allow_is_refused_before_the_permissions(service):
    await service.store.set_guild_limit(GUILD, "channels", [OTHER_CHANNEL])
    with pytest.raises(UserError, match=f"<#{OTHER_CHANNEL}> only"):
        await service.jobs.submit(request())
    assert service.frontend.asked == []


@pytest.mark.parametrize("interactive", [False, True])
async def test_missing_permissions_come_before_the_options(service, interactive):
    service.frontend.missing = ["Send Messages"]
    expected = UserError if interactive else Silent  # a prefix command in a channel the bot cannot post in: silence
    with pytest.raises(expected, match="Send Messages"):
        await service.jobs.submit(request(options={"epochs": "-1"}, interactive=interactive))
    assert service.frontend.asked == ["permissions"]


async def test_a_bad_option_is_refused_before_the_attachments_are_looked_at(service):
    with pytest.raises(UserError, match="epochs"):
        await service.jobs.submit(request(attachments=(), options={"epochs": "-1"}))
    assert service.frontend.asked == ["permissions"]


async def test_attachments_are_checked_from_their_metadata_before_the_cooldown(service):
    await service.store.set_guild_limit(GUILD, "cooldown", 600.0)
    with pytest.raises(UserError, match="attach a content image"):
        await service.jobs.submit(request(attachments=("content",)))
    assert service.frontend.asked == ["permissions", "attachments"]


async def test_the_cooldown_is_refused_before_the_queue_is_consulted_or_anything_downloaded(service):
    await service.store.set_guild_limit(GUILD, "cooldown", 600.0)
    now = time.time()
    await service.store.add_job(JobRecord(
        job_id="a" * 32, user_id=ALICE, guild_id=GUILD, channel_id=CHANNEL, message_id=0, status_message_id=None,
        params={}, state="done", outcome=None, attempts=0, created_at=now, updated_at=now, finished_at=now, info={}))
    with pytest.raises(UserError, match="please wait"):
        await service.jobs.submit(request())
    assert "download" not in service.frontend.asked and service.executor.asked == []


async def test_a_full_per_user_quota_is_refused_before_the_download(service):
    service.executor.queued = [queued_job(ALICE)]  # the default cap: one job per user
    with pytest.raises(UserError, match="you already have 1 job"):
        await service.jobs.submit(request())
    assert "download" not in service.frontend.asked and service.executor.asked == ["jobs"]


async def test_the_executors_own_refusal_becomes_the_reply_and_nothing_is_recorded(service):
    service.executor.refuse = "the queue is full (4 jobs); please try again later"
    with pytest.raises(UserError, match="the queue is full"):
        await service.jobs.submit(request())
    assert await service.store.unfinished_jobs() == []


async def test_a_job_started_again_after_its_worker_died_records_the_attempt(service):
    service.executor.events = [Started("cpu", 2)]
    submitted = await service.jobs.submit(request())
    for _ in range(200):  # the service follows the handle in a task of its own
        if service.frontend.started_on:
            break
        await asyncio.sleep(0.01)
    record = await service.store.get_job(submitted.job.job_id)
    assert service.frontend.started_on == ["cpu"]
    assert (record.state, record.attempts) == ("running", 2)
