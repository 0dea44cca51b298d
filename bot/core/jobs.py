"""The job service: the whole life of a job, the same for every front-end.

The prefix command, the slash command, the message menu and the buttons each turn Discord input
into a :class:`JobRequest` and call :meth:`JobService.submit`. The service decides, in this order
(cheapest first, so a refusal never costs a download):

    accepting?  ▸  channel allowed  ▸  the bot's own permissions in the channel  ▸  options resolved
    (command > preset > the user's defaults > the bot's, then limits)  ▸  the inputs' metadata (or
    the cached inputs of a re-run), named styles looked up  ▸  cooldown  ▸  a pre-check of the queue
    and per-user caps  ▸  the daily quotas (refused, or the slow lane)  ▸  named styles read, download
    and decode  ▸  executor.submit (the authoritative admission check)  ▸  image cache, store record
    ▸  follow the events

The executor keeps the queue; the order of its waiting jobs is the fair queue's (bot.core.fairqueue,
handed to it as its order function), which this service keeps informed: a job's member and slow lane
at admission, its start (fair-share's shares), its end (the speed, and the usage ledger: the worker's
own seconds for a finished job, the seconds between its start and its end for one that failed or was
cancelled after it started).

Named styles (``--style NAME``, or a preset's or the user's default style when no style image is
attached) are read from the server's library at admission: the job carries those bytes from then on,
so removing the style later cannot break it, and Again/Vary re-run from the image cache's copy.

Every refusal is a :class:`~bot.core.errors.UserError` (the front-end replies with it, ephemerally
where it can) or :class:`Silent` (the bot cannot speak in that channel at all: logged, nothing runs).
Events go into the store and the metrics here, and into messages through the front-end's
:class:`JobView` (a :class:`JobFrontend` supplies it, with everything else that is Discord's: the
attachments' metadata and downloads, the bot's permissions, a channel found again on resume). This
module never imports discord (an import contract in .ci/run). On start the service resumes the unfinished jobs of an
*earlier* process only (jobs this process submitted before ``on_ready`` are its own), and at shutdown
it stops accepting and waits, bounded, for every job's last message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from nst.errors import ParamError

from bot.core import usage
from bot.core.errors import UserError
from bot.core.fairqueue import FairQueue, job_work
from bot.executor.base import (
    CANCELLED,
    SHUTDOWN,
    SHUTTING_DOWN,
    Detached,
    Done,
    Failed,
    JobHandle,
    Preview,
    Progress,
    Queued,
    Refused,
    Started,
    StyleJob,
    check_admission,
)
from bot.core.imagecache import ImageCache
from bot.core.inputs import check_runnable
from bot.core.limits import SOURCE_OPTION, SOURCE_USER, USER_FIELDS, Resolved, effective_limits, resolve, upscaled_side
from bot.core.options import option_refusal
from bot.core.presets import find_preset
from bot.core.store import JobRecord, StoreError

if TYPE_CHECKING:
    from bot.config import Config
    from bot.core.quotas import QuotaService
    from bot.core.store import Store
    from bot.core.styles import StyleLibrary
    from bot.executor import Executor

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's upload limit outside a boosted server (discord.py's default)
UPLOAD_MARGIN = 64 * 1024  # room for the multipart envelope and the message text next to the file
SEED_RANGE = 2**32
LOST = "the bot restarted and your job was lost; please send it again"
SOURCE_EARLIER = "the earlier job"  # a re-run's values that the button or form did not change
SOURCE_UPSCALE = "Upscale ×2 of the delivered picture"  # an upscale's size


class Silent(Exception):
    """The bot cannot post in the request's channel at all: nothing runs, the reason is logged."""


@dataclass(frozen=True)
class Destination:
    """Where a job's messages go."""

    channel: Any  # a messageable channel (text channel, thread, DM) with .id
    guild: Any  # the server (with .id), None in a DM
    reply_to: Any = None  # the message status and result reply to, if any
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    permissions: Any = None  # the bot's, when the front-end knows them (interactions)


@dataclass(frozen=True)
class JobRequest:
    user_id: int
    destination: Destination
    attachments: Sequence[Any] = ()  # new inputs: content first, then the style(s)
    rerun_of: str | None = None  # or: the inputs and options of this earlier job (Again, Vary)
    options: Mapping[str, Any] = field(default_factory=dict)  # what the user set (text or typed)
    new_seed: bool = False  # a re-run with a fresh random seed unless options name one
    via: str = "prefix"  # prefix, slash, menu, again, vary, upscale: for logs and hints
    interactive: bool = False  # refusals can be private (interaction) rather than replies
    # Upscale ×2 (with rerun_of): the delivered picture (the result message's attachment), continued at twice its size
    upscale: Any = None
    # the member's role ids in the request's server (role quota allowances); None: the front-end did not
    # say, and the service asks it (JobFrontend.role_ids)
    role_ids: Sequence[int] | None = None


@dataclass(frozen=True)
class Submitted:
    job: StyleJob
    resolved: Resolved
    notes: tuple[str, ...]


class JobView(Protocol):
    """How a job looks where it was asked for; the front-end renders each event."""

    async def queued(self, position: int, starts_in: float | None = None) -> None: ...
    async def started(self, device: str) -> None: ...
    async def progress(self, event: Progress) -> None: ...
    def preview(self, event: Preview) -> None: ...
    async def deliver(self, done: Done) -> str | None: ...  # a problem, or None once the result is posted
    async def delivered(self) -> None: ...
    async def failed(self, event: Failed, *, retry: bool = False) -> None: ...
    async def detached(self, reason: str) -> None: ...
    def summary(self, stats: Mapping[str, Any]) -> str: ...


class JobFrontend(Protocol):
    """What the job service asks of the front-end that received the request."""

    def view(self, job: StyleJob, where: Destination, notes: Sequence[str], *, existing_status: Any = None,
             on_status: Any = None, named: Sequence[str] = (), upscaled_from: Mapping[str, Any] | None = None) -> JobView: ...

    def missing_permissions(self, where: Destination) -> list[str]:
        """The bot's missing permissions in the destination, by their names in Discord's settings."""

    def check_attachments(self, attached: Sequence[Any], *, max_bytes: int, max_pixels: int, max_styles: int,
                          named_styles: int) -> None:
        """Refuse (UserError) attachments that are too many, too big or not images, from their metadata."""

    async def download(self, attached: Sequence[Any], *, max_bytes: int, max_pixels: int,
                       allowed_hosts: Sequence[str], names: Sequence[str] | None = None) -> Sequence[bytes]: ...

    async def find_destination(self, channel_id: int, message_id: int | None,
                               status_message_id: int | None) -> tuple[Destination, Any] | None:
        """Where a job of an earlier process posts (and its status message), or None: the channel is gone."""

    async def role_ids(self, user_id: int, where: Destination) -> Sequence[int]:
        """The member's role ids in the destination's server (none in a DM, or when it cannot be told)."""


class JobService:
    """Admits, submits and follows jobs. ``start`` hands it the collaborators that exist only once the
    bot is set up (the store, the style library, the executor)."""

    def __init__(self, config: "Config", cache: ImageCache, metrics: Any, frontend: JobFrontend):
        self.config = config
        self.cache = cache
        self.metrics = metrics
        self.frontend = frontend
        self.store: "Store | None" = None
        self.styles: "StyleLibrary | None" = None
        self.executor: "Executor | None" = None
        self.quotas: "QuotaService | None" = None
        self.fair: FairQueue = FairQueue(config.queue.policy, None, None)
        self.accepting = True
        self._mine: set[str] = set()  # ids this process submitted: never "interrupted" by resume()
        self._handles: dict[str, JobHandle] = {}  # unfinished jobs this process follows
        self._tasks: set[asyncio.Task] = set()
        self._resumed = False

    def start(self, *, store: "Store", styles: "StyleLibrary", executor: "Executor",
              quotas: "QuotaService | None" = None) -> None:
        """``quotas``: the daily quotas and usage ledger (None: none kept). The executor's order is
        ``self.fair.order`` once the bot hands it over (bot.app); ``load_order`` reads its persisted state."""
        self.store, self.styles, self.executor, self.quotas = store, styles, executor, quotas
        self.fair = FairQueue(self.config.queue.policy, quotas, store)

    async def load_order(self) -> None:
        """The fair order's persisted state and today's usage, before the first job is ordered."""
        await self.fair.load()

    # ------------------------------------------------------------------------------ submit

    async def submit(self, request: JobRequest) -> Submitted:
        config = self.config
        store = self.store
        where = request.destination
        if not self.accepting:
            raise UserError(SHUTTING_DOWN)
        guild_id = where.guild.id if where.guild else None
        guild_limits = await store.guild_limits(guild_id) if guild_id else None
        limits = effective_limits(guild_limits, config.caps)
        if guild_id and limits.channels and where.channel.id not in limits.channels:
            places = ", ".join(f"<#{channel}>" for channel in limits.channels)
            raise UserError(f"on this server, stylize works in {places} only")
        self.check_permissions(request)

        cached = None
        base: dict[str, Any] = {}
        earlier: dict[str, Any] = {}
        if request.rerun_of is not None:
            cached, base, earlier = await self._rerun_inputs(request.rerun_of)
        resolved, preset = await self._resolve(request, guild_id, guild_limits, base, earlier)
        attached = list(request.attachments)
        names = self._style_names(request, resolved, rerun=cached is not None)
        if cached is None:
            self.frontend.check_attachments(
                attached, max_bytes=config.caps.max_attachment_bytes, max_pixels=config.caps.max_pixels,
                max_styles=config.caps.max_styles, named_styles=len(names),
            )
        await self._check_style_names(guild_id, names, resolved)
        if cached is not None:
            styles_given = len(names) or len(cached.styles)
        else:
            styles_given = len(attached) - 1 + len(names)
        blend = resolved.params.style_blend
        if blend and len(blend) != styles_given:
            raise UserError(f"`--style-blend` gives {len(blend)} weights for {styles_given} style image"
                            f"{'s' if styles_given != 1 else ''}; give one weight per style image")
        await self._check_cooldown(request.user_id, guild_id, limits.cooldown)
        self._precheck_queue(request.user_id, limits.max_jobs_per_user)
        role_ids = await self._role_ids(request, guild_id)
        slow = await self._admit_quota(request.user_id, guild_id, role_ids)

        content, styles, labels = await self._read_inputs(guild_id, names, attached, cached, earlier)
        init_image = await self._upscale_picture(request.upscale)
        params = resolved.params
        reasons = {name: limits.reason_of(name) for name in ("max_frames", "max_clip_seconds")}
        checked = await check_runnable(content, styles, params, max_pixels=config.caps.max_pixels, reasons=reasons,
                                       max_memory=config.engine.max_memory, init_image=init_image)
        if params.seed is None:  # pick it here, so the result and Details can say how to get it again
            params = params.replace(seed=self._fresh_seed(None))
        work = await asyncio.to_thread(job_work, content, styles, params, checked.frames, config.engine.max_memory)
        job = self._style_job(request, content, styles, params, init_image, work)
        self.fair.admitted(job.job_id, job.user_id, job.guild_id, role_ids, slow is not None)  # before it is ordered
        try:
            handle = await self.executor.submit(job, max_per_user=limits.max_jobs_per_user, max_queue=config.caps.max_queue)
        except Refused as refusal:
            self.fair.forget(job.job_id)
            raise UserError(str(refusal)) from None
        self._mine.add(job.job_id)  # before the record exists: resume() must never see it as an orphan
        log.info("job %s accepted via %s", job.job_id, request.via, extra={"job": job.job_id})
        info = {
            "styles": labels,
            "preset": {"name": preset.name, "scope": preset.scope} if preset else None,
            "sources": {name: resolved.explain(name) for name in (*USER_FIELDS, *(("style",) if names else ()))},
            "frames": checked.frames,
            # an upscale: the job and the size of the picture it continues from, for its result line
            **({"upscaled_from": {"job": request.rerun_of, "size": [request.upscale.width, request.upscale.height]}}
               if init_image else {}),
        }
        await self._record(job, info, role_ids if guild_id else None)
        await self.cache.put(job.job_id, content, styles)
        notes = (*resolved.notes, *checked.notes, *((slow,) if slow else ()))
        messages = self._messages(job, where, notes, named=[label for label in labels if label],
                                  upscaled_from=info.get("upscaled_from"))
        self._spawn(self._follow(handle, messages))
        return Submitted(job, resolved, notes)

    async def _resolve(self, request: JobRequest, guild_id: int | None, guild_limits, base: Mapping[str, Any],
                       earlier: Mapping[str, Any]):
        """(resolved options, the preset used or None): the request's options over a re-run's (an upscale's
        size: twice the delivered picture's), the preset, the user's defaults and the bot's, then the limits."""
        config, store = self.config, self.store
        options = {**base, **request.options}
        if request.new_seed and "seed" not in request.options:
            options["seed"] = self._fresh_seed(base.get("seed"))
        if request.upscale is not None:
            options["size"] = self._upscale_size(request.upscale, effective_limits(guild_limits, config.caps), earlier)
        preset = await find_preset(store, request.user_id, guild_id, options["preset"]) if "preset" in options else None
        try:
            resolved = resolve(config.defaults, await store.user_settings(request.user_id), options, guild_limits, config.caps,
                               preset=preset.options if preset else None, preset_source=preset.source if preset else "preset",
                               upscale=request.upscale is not None)
        except ParamError as error:
            raise option_refusal(error) from None
        for name, value in base.items():
            if name not in request.options and options[name] == value and resolved.sources.get(name) == SOURCE_OPTION:
                resolved.sources[name] = SOURCE_EARLIER
        if request.upscale is not None:
            resolved.sources["size"] = SOURCE_UPSCALE
        return resolved, preset

    @staticmethod
    def _upscale_size(picture: Any, limits, earlier: Mapping[str, Any]) -> int:
        """The size (longer side) of an Upscale ×2 of ``picture`` (an attachment: its width and height), or a
        refusal with the numbers: an animation, or beyond the upscale limit (a stale button after a limit
        was lowered)."""
        if (earlier.get("frames") or 1) > 1:
            raise UserError("an animated result cannot be upscaled; send the clip again with a larger `--size`")
        size = (picture.width or 0, picture.height or 0)
        if not min(size):
            raise UserError("I cannot tell the size of that picture, so I cannot upscale it")
        refusal = limits.upscale_refusal(size)
        if refusal is not None:
            raise UserError(refusal)
        return upscaled_side(size)

    async def _upscale_picture(self, picture: Any) -> bytes:
        """The delivered picture an upscale continues from, downloaded like any attachment (the same hosts and
        size caps), or b"" for any other job. The worker decodes it, bounded by max_pixels."""
        if picture is None:
            return b""
        caps = self.config.caps
        data, = await self.frontend.download(
            [picture], max_bytes=caps.max_attachment_bytes, max_pixels=caps.max_pixels,
            allowed_hosts=self.config.bot.attachment_hosts, names=["picture to upscale"],
        )
        return data

    def _style_job(self, request: JobRequest, content: bytes, styles: Sequence[bytes], params,
                   init_image: bytes = b"", work: float = 0.0) -> StyleJob:
        where = request.destination
        return StyleJob(
            user_id=request.user_id,
            guild_id=where.guild.id if where.guild else None,
            channel_id=where.channel.id,
            message_id=where.reply_to.id if where.reply_to is not None else 0,
            content=content,
            styles=styles,
            params=params.as_dict(),
            max_result_bytes=where.upload_limit - UPLOAD_MARGIN,
            max_pixels=self.config.caps.max_pixels,
            max_memory=self.config.engine.max_memory,
            init_image=init_image,
            work=work,
        )

    @staticmethod
    def _style_names(request: JobRequest, resolved: Resolved, rerun: bool) -> tuple[str, ...]:
        """The named styles a job uses. A re-run keeps its own styles unless the form names others; a new
        job uses the ones its command gives, else the preset's or the user's default style, but only when
        no style image is attached."""
        if rerun:
            return resolved.styles if "style" in request.options else ()
        return resolved.styles if resolved.sources["style"] == SOURCE_OPTION or len(request.attachments) == 1 else ()

    async def _check_style_names(self, guild_id: int | None, names: Sequence[str], resolved: Resolved) -> None:
        """Refuse, before anything is read, more named styles than the caps allow or a name this server
        does not have (the reply offers the close names and says where the name came from)."""
        max_styles = self.config.caps.max_styles
        if len(names) > max_styles:
            raise UserError(f"a job takes at most {max_styles} styles (I found {len(names)})")
        for name in names:
            if await self.styles.find(guild_id, name) is None:
                text = await self.styles.unknown(guild_id, name)
                source = resolved.sources["style"]
                if source == SOURCE_USER:
                    text += " (it is your default style: `settings unset style`, or attach a style image)"
                elif source != SOURCE_OPTION:
                    text += f" (it comes from the {source})"
                raise UserError(text)

    async def _read_inputs(self, guild_id: int | None, names: Sequence[str], attached: Sequence[Any],
                           cached, earlier: Mapping[str, Any]):
        """(content, styles, labels) of an admitted job: the named styles' bytes read from the library now
        (the job no longer depends on it), after the attached images (downloaded and decoded) or in place
        of a re-run's cached styles; a label per style, its name or None for an attached image."""
        config = self.config
        named = tuple(await self.styles.load(guild_id, names))
        if cached is not None:
            labels = list(names) if names else earlier.get("styles", [None] * len(cached.styles))
            return cached.content, named or cached.styles, labels
        content, *rest = await self.frontend.download(
            attached, max_bytes=config.caps.max_attachment_bytes, max_pixels=config.caps.max_pixels,
            allowed_hosts=config.bot.attachment_hosts,
        )
        return content, (*rest, *named), [None] * len(rest) + list(names)  # None: an attached image

    def check_permissions(self, request: JobRequest) -> None:
        """Refuse before queueing when the bot could not post the status or the result here."""
        where = request.destination
        missing = self.frontend.missing_permissions(where)
        if not missing:
            return
        if not request.interactive and ("View Channel" in missing or "Send Messages" in missing):
            raise Silent(f"cannot post in channel {where.channel.id}: missing {', '.join(missing)}")
        names = " and ".join(f"**{name}**" for name in missing)
        raise UserError(f"I need the {names} permission{'s' if len(missing) > 1 else ''} in this channel to post your result; "
                        "ask a server admin to grant it")

    async def _rerun_inputs(self, job_id: str):
        """(cached images, the earlier job's options, its info) of a re-run."""
        record = await self.store.get_job(job_id)
        cached = await self.cache.get(job_id) if record is not None else None
        if record is None or cached is None:
            raise UserError(self.expired_message())
        base = {name: record.params[name] for name in USER_FIELDS if name in record.params}
        return cached, base, record.info

    def expired_message(self) -> str:
        if not self.cache.enabled:
            return "this bot keeps no copies of the images, so a job cannot be re-run; send the images again"
        return (f"the images of that job are no longer kept (the bot keeps them for {self.cache.describe_ttl()}); "
                "send them again with a new command")

    @staticmethod
    def _fresh_seed(old: Any) -> int:
        while True:
            seed = random.randrange(SEED_RANGE)
            if seed != old:
                return seed

    async def _check_cooldown(self, user_id: int, guild_id: int | None, cooldown: float) -> None:
        if cooldown <= 0:
            return
        last = await self.store.last_job_started(user_id, guild_id)
        if last is not None and time.time() - last < cooldown:
            wait = cooldown - (time.time() - last)
            raise UserError(f"please wait {wait:.0f} s before your next job (the cooldown here is {cooldown:g} s)")

    async def _role_ids(self, request: JobRequest, guild_id: int | None) -> tuple[int, ...]:
        """The member's role ids, for the server's role allowances: asked of the front-end only when the
        request did not carry them and the server has allowances (for most, it costs nothing)."""
        if guild_id is None:
            return ()
        if request.role_ids is not None:
            return tuple(request.role_ids)
        if self.quotas is None or not (await self.quotas.limits(guild_id)).roles:
            return ()
        return tuple(await self.frontend.role_ids(request.user_id, request.destination))

    async def _admit_quota(self, user_id: int, guild_id: int | None, role_ids: Sequence[int]) -> str | None:
        """The daily quotas: a refusal (UserError), or the slow lane's words for the reply (None: within)."""
        if self.quotas is None:
            return None
        try:
            assessment = await self.quotas.admit(user_id=user_id, guild_id=guild_id, role_ids=role_ids)
        except StoreError as error:  # the ledger unreadable: the job runs, in the ordinary lane
            log.error("could not read the usage ledger for user %s: %s", user_id, error)
            return None
        return assessment.text if assessment.verdict == usage.SLOW else None

    def _precheck_queue(self, user_id: int, max_per_user: int) -> None:
        """The executor's own check, on what it reported last, before anything is downloaded."""
        try:
            jobs = self.executor.jobs()
            mine = sum(1 for info in jobs if info.user_id == user_id)
            check_admission(mine, len(jobs), max_per_user=max_per_user, max_queue=self.config.caps.max_queue)
        except Refused as refusal:
            raise UserError(str(refusal)) from None

    # ------------------------------------------------------------------------------ follow

    def _messages(self, job: StyleJob, where: Destination, notes: Sequence[str], existing_status=None,
                  named: Sequence[str] = (), upscaled_from: Mapping[str, Any] | None = None) -> JobView:
        async def remember_status(message: Any) -> None:
            await self._update(job.job_id, status_message_id=message.id)

        return self.frontend.view(job, where, notes, existing_status=existing_status, on_status=remember_status,
                                  named=named, upscaled_from=upscaled_from)

    async def _follow(self, handle: JobHandle, messages: JobView, started_at: float | None = None) -> None:
        """``started_at``: when the job started, for one followed again after a restart that had."""
        job = handle.job
        self._handles[job.job_id] = handle
        try:
            async for event in handle:
                if isinstance(event, Queued):
                    await messages.queued(event.position, event.starts_in)
                elif isinstance(event, Started):
                    if started_at is None or event.attempt > 1:  # not a replay of its start before a restart
                        started_at = await self._started(job)
                    await self._update(job.job_id, state="running", attempts=event.attempt)  # 2+: a worker died
                    await messages.started(event.device)
                elif isinstance(event, Progress):
                    await messages.progress(event)
                elif isinstance(event, Preview):
                    messages.preview(event)
                elif isinstance(event, Done):
                    await self._ended(job, started_at, event.stats.get("seconds"))
                    await self._done(job, event, messages)
                elif isinstance(event, Failed):
                    await self._ended(job, started_at, None)
                    self.metrics.job_finished(event.kind)
                    state = {CANCELLED: "cancelled", SHUTDOWN: "interrupted"}.get(event.kind, "failed")
                    await self._update(job.job_id, state=state, outcome=event.reason, finished_at=time.time())
                    await messages.failed(event)
                elif isinstance(event, Detached):  # goes on without us; resume() picks it up after a restart
                    await messages.detached(event.reason)
        finally:
            self._handles.pop(job.job_id, None)

    async def _started(self, job: StyleJob) -> float:
        """A worker took the job: recorded (round-robin reads when each member last started one), and
        fair-share moves its server and member on."""
        started_at = time.time()
        await self._update(job.job_id, started_at=started_at, work=job.work or None)
        try:
            await self.fair.started(job.job_id, job.user_id, job.guild_id, job.work)
        except Exception:  # noqa: BLE001 - bookkeeping must never stop a job
            log.exception("could not account for the start of job %s", job.job_id)
        return started_at

    async def _ended(self, job: StyleJob, started_at: float | None, worker_seconds: Any) -> None:
        """The job ended: charged to its user when it had started, with the worker's own seconds for a
        finished job (they teach the speed too), else the seconds from its start until now."""
        if started_at is None:
            self.fair.forget(job.job_id)
            return
        measured = isinstance(worker_seconds, (int, float)) and worker_seconds >= 0
        seconds = float(worker_seconds) if measured else max(0.0, time.time() - started_at)
        try:
            await self.fair.ended(job.job_id, job.user_id, job.guild_id, job.work, seconds, measured=measured)
        except Exception:  # noqa: BLE001 - bookkeeping must never keep a result from its user
            log.exception("could not account for the end of job %s", job.job_id)

    async def _done(self, job: StyleJob, done: Done, messages: JobView) -> None:
        await self.cache.put_meta(job.job_id, {"stats": done.stats, "params": job.params})
        problem = await messages.deliver(done)
        if problem is not None:
            self.metrics.job_finished("undelivered")
            await self._update(job.job_id, state="failed", outcome=problem, finished_at=time.time())
            return
        self.metrics.job_finished("done", done.stats)
        # Recorded before the status message is removed: that edit waits its turn in the channel, and a
        # shutdown must not find a delivered job still 'running'.
        await self._update(job.job_id, state="done", outcome=messages.summary(done.stats), finished_at=time.time())
        await messages.delivered()

    # ------------------------------------------------------------------------------ cancel

    def handle(self, job_id: str) -> JobHandle | None:
        return self._handles.get(job_id)

    def handles_for_user(self, user_id: int) -> list[JobHandle]:
        return [handle for handle in self._handles.values() if handle.job.user_id == user_id]

    # ------------------------------------------------------------------------------ restart

    async def resume(self) -> None:
        """Once per process: follow again, or report as lost, the jobs an earlier process left unfinished."""
        if self._resumed:
            return
        self._resumed = True
        try:
            records = await self.store.unfinished_jobs()
        except StoreError as error:
            log.error("cannot look for jobs from before the restart: %s", error)
            return
        for record in records:
            if record.job_id in self._mine:  # submitted by this process before on_ready: already followed
                continue
            self._spawn(self._resume(record))

    async def _resume(self, record: JobRecord) -> None:
        found = await self.frontend.find_destination(record.channel_id, record.message_id, record.status_message_id)
        if found is None:
            log.warning("job %s: its channel is gone; dropping it", record.job_id)
            await self._update(record.job_id, state="failed", outcome="channel gone", finished_at=time.time())
            return
        where, existing = found
        job = StyleJob(
            user_id=record.user_id, guild_id=record.guild_id, channel_id=record.channel_id, message_id=record.message_id,
            content=b"", styles=(b"",), params=record.params, max_result_bytes=0, max_pixels=0,
            job_id=record.job_id, submitted_at=record.created_at, work=record.work or 0.0,
        )
        messages = self._messages(job, where, (), existing_status=existing,
                                  named=[label for label in record.info.get("styles") or () if label],
                                  upscaled_from=record.info.get("upscaled_from"))
        handle = await self.executor.reattach(job)
        if handle is None:
            await self._update(record.job_id, state="interrupted", outcome=LOST, finished_at=time.time())
            retry = await self.cache.styles_kept(record.job_id) > 0  # its images are still here: offer Again
            await messages.failed(Failed(SHUTDOWN, LOST + (" (or press Again)" if retry else "")), retry=retry)
            return
        log.info("re-attached to job %s", record.job_id)
        self.fair.admitted(job.job_id, job.user_id, job.guild_id, record.roles, None)  # its quota: checked again
        await self._follow(handle, messages, started_at=record.started_at)

    # ------------------------------------------------------------------------------ shutdown

    def stop_accepting(self) -> None:
        self.accepting = False

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every followed job's last message has been posted."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # ------------------------------------------------------------------------------ helpers

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)
        return task

    async def _record(self, job: StyleJob, info: dict[str, Any], role_ids: Sequence[int] | None) -> None:
        record = JobRecord(
            job_id=job.job_id, user_id=job.user_id, guild_id=job.guild_id, channel_id=job.channel_id,
            message_id=job.message_id, status_message_id=None, params=job.params, state="queued", outcome=None,
            attempts=0, created_at=job.submitted_at, updated_at=job.submitted_at, finished_at=None, info=info,
            work=job.work or None, roles=None if role_ids is None else tuple(role_ids),
        )
        try:
            await self.store.add_job(record)
        except StoreError as error:  # bookkeeping must not stop the job itself
            log.error("could not record job %s: %s", job.job_id, error)

    async def _update(self, job_id: str, **fields) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        try:
            await self.store.update_job(job_id, **fields)
        except StoreError as error:
            log.error("could not update job %s: %s", job_id, error)


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("job task failed", exc_info=(type(error), error, error.__traceback__))
