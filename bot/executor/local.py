"""Local executor: one worker process per configured device, fed from one queue.

The parent (the bot's event loop) keeps the queue and decides which worker runs which job, so it
always knows whose job a dead worker took with it. Each worker has a pipe: jobs go down, events come
up through a reader thread that hands them to the loop, in the one wire form of base.encode_event.
Cancelling writes the job's sequence number into a shared integer that the worker polls before every
optimisation step. A job has *started* once its worker reported Started for it (the first thing a
worker does with a job, before it reads the images): a worker that dies before that cannot have been
killed by the job (it was dead or dying when the job was sent), so the job goes back to the front of
the queue, once; only a job that started is failed with its worker. The job's deadline is enforced inside the worker (jobrun); a worker stuck past it
is killed. Workers die with the bot, however it dies (see worker.die_with_parent).

Which waiting job a free worker takes is the order's to say (base.Order, set by the job service;
first come, first served without one). The queued jobs' positions and estimated starts are announced
when a job is queued, starts or ends, and every ANNOUNCE_EVERY seconds while jobs wait (the running
jobs' progress moves the estimates), each only when it changed meaningfully (base.worth_announcing).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .base import (
    CANCELLED,
    CRASHED,
    SHUTDOWN,
    SHUTDOWN_QUEUED,
    SHUTDOWN_RUNNING,
    SHUTTING_DOWN,
    TIMEOUT,
    Done,
    ExecutorError,
    Failed,
    JobHandle,
    JobInfo,
    Order,
    Placement,
    Progress,
    Queued,
    QueueEntry,
    Refused,
    Started,
    StyleJob,
    arrival_order,
    check_admission,
    decode_event,
    ordered,
    timeout_reason,
    worth_announcing,
)
from .jobrun import JobPayload
from .worker import WorkerSpec, run_worker

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 600.0  # the first start may download VGG-19 (548 MB)
CANCEL_GRACE = 30.0  # a running job that ignores its stop flag this long is killed with its worker
RESTART_BACKOFF = 10.0  # a replacement worker that cannot start is retried after this
STOP_WAIT = 10.0  # at shutdown, how long stopped jobs get to report before they are failed anyway
HURRIED_WAIT = 1.0  # the same after a second signal (hurry): users are still told, within a second or two
ANNOUNCE_EVERY = 2.0  # seconds between refreshes of the queued jobs' estimated starts


# What the fork server imports once, so that each worker it forks starts without seconds of imports.
WORKER_PRELOAD = ("torch", "torchvision", "nst.model", "nst.transfer", "bot.executor.worker")


def worker_context(platform: str = sys.platform) -> multiprocessing.context.BaseContext:
    """How worker processes start. On Linux a fork server that has imported torch (and done nothing
    else: no CUDA, no tensor work, no model; numpy's idle OpenBLAS thread is stopped and restarted
    around fork by OpenBLAS itself) forks each one: a start or a restart after a crash takes a
    fraction of a second instead of the ~4 s of imports a fresh interpreter needs. Elsewhere spawn
    (macOS's system frameworks are not fork-safe). The server is a fresh process, never the bot
    forked; it exits once the bot and the workers are gone (they hold its pipe's write end, and each
    worker follows the bot through its lifeline). If it dies, its workers die with it and
    multiprocessing starts a new one at the next start (its imports then block the loop for a few
    seconds, once)."""
    if not platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


@dataclass(eq=False)
class _Entry:
    handle: JobHandle
    seq: int
    worker: "_Worker | None" = None
    stop_reason: str | None = None  # why we asked it to stop: CANCELLED, TIMEOUT or SHUTDOWN
    fraction: float = 0.0
    started_at: float | None = None  # when it was sent to its worker (monotonic)
    started_wall: float | None = None  # the same, by the wall clock (what the order reads)
    eta: tuple[float, float] | None = None  # (monotonic time, seconds left) of its last progress report
    acknowledged: bool = False  # its worker reported Started: from here on, its worker's death is its failure
    requeued: bool = False  # it went back to the queue once already, its worker dead before it started
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    announced: Queued | None = None  # what its users were last told while it waited
    requeued_first: bool = False  # back in the queue after its worker died before it started: next to go

    @property
    def job(self) -> StyleJob:
        return self.handle.job


@dataclass(eq=False)
class _Worker:
    index: int
    device: str
    process: Any
    conn: Any
    cancel: Any  # multiprocessing Value('q'): the seq of the job to stop
    lifeline: Any  # write end of the pipe whose EOF tells the worker the bot is gone; never written
    ready: asyncio.Future
    state: str = "starting"  # starting | idle | busy | failed (cannot load) | dead | stopped (by us)
    entry: _Entry | None = None
    label: str = ""  # the device as the worker resolved it, e.g. "cuda:0"
    dtype: str = ""  # what it computes in, under engine.precision: "bfloat16" or "float32"
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class LocalExecutor:
    def __init__(
        self,
        *,
        weights: str,
        devices: tuple[str, ...] = ("auto",),
        cpu_threads: int = 0,
        job_timeout: float = 900.0,
        preview_interval: float = 0.0,
        precision: str = "auto",
        log_level: str = "INFO",
        log_json: bool = False,
    ):
        self._weights = weights
        self._devices = tuple(devices)
        self._threads = cpu_threads or self._default_threads()
        self._job_timeout = job_timeout
        self._preview_interval = preview_interval
        self._precision = precision
        self._log_level = log_level
        self._log_json = log_json
        self._context = worker_context()
        self._workers: list[_Worker] = []
        self._waiting: list[_Entry] = []  # in arrival order; the order decides which goes next
        self._order: Order = arrival_order
        self._ticker: asyncio.TimerHandle | None = None
        self._entries: dict[str, _Entry] = {}
        self._seq = itertools.count(1)
        self._closing = False
        self._idle = asyncio.Event()
        self._hurry = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.restarts = 0  # workers replaced after dying (for /metrics)

    def _default_threads(self) -> int:
        cpu_workers = sum(1 for d in self._devices if d == "cpu") or 1
        try:
            usable = len(os.sched_getaffinity(0))  # respects cpusets (docker --cpuset-cpus)
        except AttributeError:  # macOS
            usable = os.cpu_count() or 1
        return max(1, usable // cpu_workers)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn(index, device) for index, device in enumerate(self._devices)]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready for w in self._workers)), STARTUP_TIMEOUT)
        except (asyncio.TimeoutError, ExecutorError) as error:
            self._closing = True
            await self._stop_workers()
            if isinstance(error, ExecutorError):
                raise
            raise ExecutorError(f"the workers did not load VGG-19 within {STARTUP_TIMEOUT:.0f} s") from None
        log.info("workers ready: %s", self.describe_workers())
        self._ticker = self._loop.call_later(ANNOUNCE_EVERY, self._tick)

    def _spawn(self, index: int, device: str) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        life_read, life_write = self._context.Pipe(duplex=False)
        cancel = self._context.Value("q", 0, lock=False)  # aligned 64-bit: reads and writes are atomic
        threads = self._threads if device == "cpu" or device == "auto" else 0
        # A forked server's child has the server, not the bot, as its parent: the lifeline alone tells.
        parent_pid = os.getpid() if self._context.get_start_method() == "spawn" else 0
        spec = WorkerSpec(device, self._weights, threads, self._log_level, self._log_json, self._precision, parent_pid)
        process = self._context.Process(
            target=run_worker, args=(child_end, cancel, spec, life_read), name=f"nst-worker-{index}", daemon=True
        )
        process.start()
        child_end.close()  # so the parent's reads see EOF when the child dies
        life_read.close()  # only the child reads it; only this process holds the write end
        worker = _Worker(index, device, process, parent_end, cancel, life_write, self._loop.create_future())
        threading.Thread(target=self._read, args=(worker,), name=f"nst-reader-{index}", daemon=True).start()
        return worker

    def _read(self, worker: _Worker) -> None:
        """Reader thread: forward the worker's messages to the loop; report its exit."""
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            if not self._call_soon(self._on_message, worker, message):
                return
        _wait_for_exit(worker.process)  # EOF means it is exiting
        self._call_soon(self._on_exit, worker)

    def _call_soon(self, callback, *args) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:  # the loop is closed: the bot is gone
            return False

    async def close(self, grace: float = 0.0) -> None:
        """Refuse new jobs; fail queued ones; give running ones ``grace`` seconds; stop the workers.
        ``hurry()`` (a second signal) cuts every wait here to a second or so."""
        if self._closing:
            return
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        while self._waiting:
            self._finish(self._waiting.pop(0), Failed(SHUTDOWN, SHUTDOWN_QUEUED))
        if self._running() and grace > 0:
            log.info("waiting up to %.0f s for %d running job(s)", grace, len(self._running()))
            await self._until_idle(grace)
        for entry in self._running():
            self._request_stop(entry, SHUTDOWN)
        if self._running():
            await self._until_idle(HURRIED_WAIT if self._hurry.is_set() else STOP_WAIT)
        for entry in self._running():
            self._finish(entry, Failed(SHUTDOWN, SHUTDOWN_RUNNING))
        await self._stop_workers()

    def hurry(self) -> None:
        """Stop waiting for running jobs: stop them now, tell their users, and end within a second or two."""
        self._hurry.set()

    async def _until_idle(self, timeout: float) -> None:
        """Wait until no job runs, at most ``timeout`` seconds, or HURRIED_WAIT once hurry() is called."""
        self._idle.clear()
        if not self._running():
            return
        idle = asyncio.ensure_future(self._idle.wait())
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({idle, hurried}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            hurried.cancel()

    async def _stop_workers(self) -> None:
        workers = list(self._workers)
        for worker in workers:
            worker.state = "stopped"
            self._send(worker, ("stop",))
        patience = HURRIED_WAIT if self._hurry.is_set() else 5.0
        await asyncio.gather(*(asyncio.to_thread(self._reap, w, patience) for w in workers))

    @staticmethod
    def _reap(worker: _Worker, patience: float) -> None:
        worker.process.join(timeout=patience)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=patience)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.lifeline.close()

    # ------------------------------------------------------------------------------ jobs

    async def submit(self, job: StyleJob, *, max_per_user: int, max_queue: int) -> JobHandle:
        if self._closing:
            raise Refused(SHUTTING_DOWN)
        mine = sum(1 for e in self._entries.values() if e.job.user_id == job.user_id)
        check_admission(mine, len(self._entries), max_per_user=max_per_user, max_queue=max_queue)
        handle = JobHandle(job, self.cancel)
        entry = _Entry(handle, next(self._seq))
        self._entries[job.job_id] = entry
        self._waiting.append(entry)
        self._dispatch()
        return handle

    def set_order(self, order: Order) -> None:
        self._order = order

    async def cancel(self, job_id: str) -> bool:
        entry = self._entries.get(job_id)
        if entry is None:
            return False
        if entry.worker is None:  # still queued
            self._waiting.remove(entry)
            self._finish(entry, Failed(CANCELLED, "cancelled before it started"))
            self._announce_positions()
        else:
            self._request_stop(entry, CANCELLED)
        return True

    def jobs(self) -> list[JobInfo]:
        running = sorted(self._running(), key=lambda e: e.started_at or 0)
        infos = [
            JobInfo(e.job.job_id, e.job.user_id, e.job.guild_id, "running", None, e.fraction, e.worker.label, e.job.submitted_at)
            for e in running
        ]
        infos += [
            JobInfo(e.job.job_id, e.job.user_id, e.job.guild_id, "queued", placement.position, 0.0, None,
                    e.job.submitted_at, placement.starts_in)
            for e, placement in self._placed()
        ]
        return infos

    async def reattach(self, job: StyleJob) -> JobHandle | None:
        return None  # local workers die with the bot: a job from before a restart is gone

    def describe_workers(self) -> str:
        """e.g. "cuda:0 (bfloat16), cpu (float32)": each worker's device and the dtype it computes in."""
        return ", ".join(f"{w.label or w.device} ({w.dtype or '?'})" for w in self._workers)

    def health(self) -> tuple[bool, str]:
        problems = []
        for worker in self._workers:
            if worker.state not in ("idle", "busy") or not worker.process.is_alive():
                problems.append(f"worker {worker.index} ({worker.device}) is {worker.state}")
        return (not problems, "; ".join(problems) or f"all workers ready: {self.describe_workers()}")

    def _running(self) -> list[_Entry]:
        return [e for e in self._entries.values() if e.worker is not None]

    def _placed(self) -> list[tuple[_Entry, Placement]]:
        """The waiting jobs in the order they will start, with their placements. A job whose worker died
        before it started goes first, as if never sent."""
        if not self._waiting:
            return []
        now = time.monotonic()
        running = [self._queue_entry(e, now) for e in self._running()]
        workers = sum(1 for w in self._workers if w.state in ("idle", "busy"))
        placements = ordered(self._order, [self._queue_entry(e, now) for e in self._waiting], running, workers, log)
        by_id = {e.job.job_id: e for e in self._waiting}
        placed = [(by_id[p.job_id], p) for p in placements]
        first = [pair for pair in placed if pair[0].requeued_first]
        if first:
            placed = first + [pair for pair in placed if not pair[0].requeued_first]
            placed = [(e, Placement(p.job_id, position, p.starts_in)) for position, (e, p) in enumerate(placed, start=1)]
        return placed

    @staticmethod
    def _queue_entry(entry: _Entry, now: float) -> QueueEntry:
        job = entry.job
        remaining = None
        if entry.eta is not None:
            reported, seconds = entry.eta
            remaining = max(0.0, seconds - (now - reported))
        return QueueEntry(job.job_id, job.user_id, job.guild_id, job.submitted_at, job.work,
                          started_at=entry.started_wall, remaining=remaining)

    def _dispatch(self) -> None:
        while self._waiting and not self._closing:
            worker = next((w for w in self._workers if w.state == "idle"), None)
            if worker is None:
                break
            entry = self._placed()[0][0]
            self._waiting.remove(entry)
            entry.requeued_first = False
            worker.state, worker.entry = "busy", entry
            entry.worker, entry.started_at, entry.started_wall = worker, time.monotonic(), time.time()
            worker.cancel.value = 0
            job = entry.job
            payload = JobPayload.of(job, timeout=self._job_timeout, preview_interval=self._preview_interval)
            self._send(worker, ("job", entry.seq, payload))
            # The worker stops the job at its deadline by itself; this only catches a step that never returns.
            entry.timers.append(self._loop.call_later(self._job_timeout + CANCEL_GRACE, self._kill_overdue, worker, entry))
            log.info("job start %s", _fmt(job.describe() | {"device": worker.label}))
        self._announce_positions()

    def _send(self, worker: _Worker, message) -> None:
        """Send without blocking the loop: a job carries megabytes of images through the pipe."""

        def send() -> None:
            with worker.send_lock:
                try:
                    worker.conn.send(message)
                except (BrokenPipeError, OSError):
                    pass  # the worker died; its reader thread reports the exit

        self._loop.run_in_executor(None, send)

    def _announce_positions(self) -> None:
        for entry, placement in self._placed():
            queued = Queued(placement.position, placement.starts_in)
            if worth_announcing(entry.announced, queued):
                entry.announced = queued
                entry.handle.emit(queued)

    def _tick(self) -> None:
        """Refresh the estimates while jobs wait: the running jobs' progress moves them."""
        if self._closing:
            return
        self._announce_positions()
        self._ticker = self._loop.call_later(ANNOUNCE_EVERY, self._tick)

    def _request_stop(self, entry: _Entry, reason: str) -> None:
        worker = entry.worker
        if worker is None or worker.entry is not entry or entry.stop_reason is not None:
            return
        entry.stop_reason = reason
        worker.cancel.value = entry.seq
        # A step normally takes well under a second; one that never returns takes its worker with it.
        entry.timers.append(self._loop.call_later(CANCEL_GRACE, self._kill_if_running, worker, entry))

    def _kill_if_running(self, worker: _Worker, entry: _Entry) -> None:
        if worker.entry is entry and worker.process.is_alive():
            log.warning("job %s did not stop within %.0f s; killing its worker", entry.job.job_id, CANCEL_GRACE)
            worker.process.kill()

    def _kill_overdue(self, worker: _Worker, entry: _Entry) -> None:
        if worker.entry is entry and worker.process.is_alive():
            entry.stop_reason = TIMEOUT
            log.warning("job %s ran %.0f s past its deadline; killing its worker", entry.job.job_id, CANCEL_GRACE)
            worker.process.kill()

    def _finish(self, entry: _Entry, event) -> None:
        for timer in entry.timers:
            timer.cancel()
        self._entries.pop(entry.job.job_id, None)
        worker = entry.worker
        if worker is not None and worker.entry is entry:
            worker.entry = None
            if worker.state == "busy":
                worker.state = "idle"
        entry.handle.emit(event)
        outcome = "done" if isinstance(event, Done) else event.kind
        seconds = time.monotonic() - entry.started_at if entry.started_at else 0.0
        log.info("job end %s", _fmt(entry.job.describe() | {"outcome": outcome, "seconds": round(seconds, 1)}))
        if not self._running():
            self._idle.set()

    # ------------------------------------------------------------------------------ worker messages

    def _on_message(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            worker.state, worker.label, worker.dtype = "idle", message[1]["device"], message[1]["dtype"]
            if not worker.ready.done():
                worker.ready.set_result(None)
            self._dispatch()
        elif kind == "fatal":
            worker.state = "failed"
            if not worker.ready.done():
                worker.ready.set_exception(ExecutorError(message[1]))
            log.error("worker %d (%s) cannot start: %s", worker.index, worker.device, message[1])
        elif kind == "event":
            _, seq, header, blob = message
            entry = worker.entry
            if entry is None or entry.seq != seq:
                return  # a late message from a job that already ended
            self._on_job_event(entry, decode_event(header, blob))

    def _on_job_event(self, entry: _Entry, event) -> None:
        if isinstance(event, Started):
            entry.acknowledged = True
        if isinstance(event, Progress):
            entry.fraction = event.fraction
            eta = getattr(event, "eta", None)
            if isinstance(eta, (int, float)):
                entry.eta = (time.monotonic(), float(eta))
        if isinstance(event, Failed) and event.kind == CANCELLED:
            event = self._stopped_event(entry)  # we asked it to stop: say why
        if isinstance(event, (Done, Failed)):
            self._finish(entry, event)
            self._dispatch()
        else:
            entry.handle.emit(event)

    def _stopped_event(self, entry: _Entry) -> Failed:
        if entry.stop_reason == TIMEOUT:
            return Failed(TIMEOUT, timeout_reason(self._job_timeout))
        if entry.stop_reason == SHUTDOWN:
            return Failed(SHUTDOWN, SHUTDOWN_RUNNING)
        return Failed(CANCELLED, "cancelled")

    def _on_exit(self, worker: _Worker) -> None:
        if worker.state == "stopped" or self._loop.is_closed():
            return
        could_not_start = worker.state in ("starting", "failed")
        worker.state = "dead"
        code = worker.process.exitcode
        if not worker.ready.done():
            worker.ready.set_exception(ExecutorError(f"a worker process exited while starting ({_describe_exit(code)})"))
        entry = worker.entry
        log.error("worker %d (%s) exited unexpectedly: %s", worker.index, worker.device, _describe_exit(code))
        worker.entry = None
        if entry is not None:
            self._settle_job_of_dead_worker(entry, code)
        if could_not_start:
            # It could not even load the model: do not spin; try again later.
            self._loop.call_later(RESTART_BACKOFF, self._replace, worker)
        else:
            self._replace(worker)

    def _settle_job_of_dead_worker(self, entry: _Entry, code: int | None) -> None:
        """A job whose worker died: stopped as asked, failed if it had started, else queued again (once)."""
        if entry.stop_reason is not None:
            self._finish(entry, self._stopped_event(entry))
        elif entry.acknowledged:
            self._finish(entry, Failed(CRASHED, f"the worker running your job stopped unexpectedly ({_describe_exit(code)}); please try again"))
        elif self._closing:
            self._finish(entry, Failed(SHUTDOWN, SHUTDOWN_QUEUED))
        elif entry.requeued:
            self._finish(entry, Failed(CRASHED, f"two workers stopped before your job could start (the last {_describe_exit(code)}); please try again"))
        else:
            self._requeue(entry)

    def _requeue(self, entry: _Entry) -> None:
        """Back to the front of the queue, as if never sent: the next worker to be ready takes it."""
        log.warning("job %s never started on its worker, which died; it is queued again", entry.job.job_id)
        for timer in entry.timers:
            timer.cancel()
        entry.timers.clear()
        entry.worker, entry.started_at, entry.started_wall, entry.eta = None, None, None, None
        entry.announced, entry.requeued, entry.requeued_first = None, True, True
        self._waiting.insert(0, entry)
        self._dispatch()

    def _replace(self, worker: _Worker) -> None:
        if self._closing or self._workers[worker.index] is not worker:
            return
        try:
            replacement = self._spawn(worker.index, worker.device)
        except Exception as error:  # noqa: BLE001 - e.g. the fork server cannot be reached: try again later
            log.error("could not start a replacement for worker %d (%s): %s; retrying in %.0f s",
                      worker.index, worker.device, error, RESTART_BACKOFF)
            self._loop.call_later(RESTART_BACKOFF, self._replace, worker)
            return
        self.restarts += 1
        self._workers[worker.index] = replacement
        # A replacement that fails to start is retried by _on_exit; nobody awaits its future.
        replacement.ready.add_done_callback(lambda f: f.exception())


def _wait_for_exit(process: multiprocessing.process.BaseProcess, timeout: float = 5.0) -> None:
    """Wait until ``process`` has exited, without reaping it. Only the loop thread (_on_exit) and _reap
    reap: joining one process from two threads races (the loser's waitpid gets ECHILD, and its
    is_alive() then reports the dead process alive)."""
    deadline = time.monotonic() + timeout
    if not multiprocessing.connection.wait([process.sentinel], timeout):
        return
    # A spawned child's sentinel closes as it exits: wait the moment until its exit status exists.
    # (A forked server's child is not ours: ECHILD at once, and its sentinel means its status is there.)
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return
        except (OSError, AttributeError):  # reaped already (by _reap), not our child, or no waitid here
            return
        time.sleep(0.005)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", often the out-of-memory killer" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


def _fmt(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())
