"""The local executor with real worker processes: its event stream, cancels, timeouts, crashes, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from bot.executor.base import CANCELLED, CRASHED, ERROR, SHUTDOWN, TIMEOUT, Done, ExecutorError, Failed, Placement, Preview, Progress, Queued, Refused, Started, StyleJob, timeout_reason, worth_announcing
from bot.executor.local import LocalExecutor, _wait_for_exit, worker_context
from bot_harness import CONTENT_PNG, PRECISION, STYLE_PNG, proc_stat, time_budget
from nst.params import StyleParams

LIMITS = dict(max_per_user=5, max_queue=10)
ROOT = Path(__file__).resolve().parents[1]


def job(user: int = 1, epochs: int = 6, size: int = 48, content: bytes = CONTENT_PNG) -> StyleJob:
    return StyleJob(user_id=user, guild_id=1, channel_id=2, message_id=3, content=content, styles=(STYLE_PNG,),
                    params=StyleParams(epochs=epochs, size=size, seed=1, precision=PRECISION).as_dict(), max_result_bytes=8_000_000,
                    max_pixels=10**7)


@contextlib.asynccontextmanager
async def executor(weights_file, **options):
    ex = LocalExecutor(weights=str(weights_file), devices=("cpu",), cpu_threads=1, **options)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.close()


@pytest.fixture(autouse=True)
def step_budget(weights_file):
    """Timeouts below are sized from step counts and the measured step time, never a fast CPU's."""
    global BUDGET
    BUDGET = lambda steps: time_budget(steps, weights_file)  # noqa: E731


async def events(handle, timeout: float | None = None) -> list:
    async def collect():
        return [event async for event in handle]

    return await asyncio.wait_for(collect(), timeout or BUDGET(60))


async def first(handle, kind, timeout: float | None = None):
    async def wait():
        async for event in handle:
            if isinstance(event, kind):
                return event
            assert not isinstance(event, (Done, Failed)), event

    return await asyncio.wait_for(wait(), timeout or BUDGET(10))


def assert_reports(ex, dtype: str) -> None:
    """Regression (issue 11, defect 14): the worker reported the dtype of precision "auto" whatever
    engine.precision said (bfloat16 for fp32 on a CPU with AVX512-BF16, float32 for bf16 on one without).
    engine.precision only sets the dtype a worker reports (each job carries its own precision), so the
    tests below check it on executors they start anyway (a start loads a worker: seconds)."""
    assert ex.describe_workers() == f"cpu ({dtype})"
    assert ex.health() == (True, f"all workers ready: cpu ({dtype})")


async def test_event_stream_and_queue_positions_then_cancels(weights_file):
    """Two scenarios on one executor (a start loads a worker: seconds): the event stream of three
    jobs, then cancelling a queued and a running job."""
    async with executor(weights_file, precision="fp32") as ex:
        assert ex.health()[0] and ex.health()[1].startswith("all workers ready: cpu (")
        assert_reports(ex, "float32")
        handles = [await ex.submit(job(user), **LIMITS) for user in (1, 2, 3)]
        streams = await asyncio.gather(*(events(h) for h in handles))
        await cancel_queued_and_running(ex)
    first_stream = streams[0]
    assert isinstance(first_stream[0], Started) and first_stream[0].device == "cpu"
    steps = [e.step for e in first_stream if isinstance(e, Progress)]
    assert steps == sorted(steps) and steps[-1] == 6 and all(e.total == 6 for e in first_stream if isinstance(e, Progress))
    done = first_stream[-1]
    assert isinstance(done, Done) and done.filename == "stylized.png" and done.content_type == "image/png"
    assert Image.open(io.BytesIO(done.image)).size == (48, 36)
    assert done.stats["steps"] == 6 and done.stats["device"] == "cpu" and done.stats["seed"] == 1
    # the third job waited at position 2, then 1
    assert [e.position for e in streams[2] if isinstance(e, Queued)] == [2, 1]
    assert all(isinstance(s[-1], Done) for s in streams)


async def test_refusals(weights_file):
    async with executor(weights_file, precision="bf16") as ex:
        assert_reports(ex, "bfloat16")
        running = await ex.submit(job(1, epochs=300, size=64), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="you already have 1 job queued or running"):
            await ex.submit(job(1), max_per_user=1, max_queue=2)
        await ex.submit(job(2, epochs=300, size=64), max_per_user=1, max_queue=2)
        with pytest.raises(Refused, match="the queue is full"):
            await ex.submit(job(3), max_per_user=1, max_queue=2)
        assert [(i.state, i.user_id) for i in ex.jobs()] == [("running", 1), ("queued", 2)]
        assert not running.finished
        await ex.close(grace=0)
        with pytest.raises(Refused, match="shutting down"):
            await ex.submit(job(4), **LIMITS)


async def cancel_queued_and_running(ex):
    running = await ex.submit(job(1, epochs=400, size=64), **LIMITS)
    waiting = await ex.submit(job(2), **LIMITS)
    await first(running, Progress)
    assert await waiting.cancel()
    assert (await events(waiting))[-1] == Failed(CANCELLED, "cancelled before it started")
    assert await running.cancel()
    stream = await events(running, timeout=BUDGET(2))
    assert stream[-1] == Failed(CANCELLED, "cancelled")
    assert not await running.cancel()  # already over
    assert ex.jobs() == []
    after = await ex.submit(job(3), **LIMITS)  # the worker took the next job at once
    assert isinstance((await events(after))[-1], Done)


async def test_timeout_and_worker_errors(weights_file):
    async with executor(weights_file, job_timeout=1.5) as ex:
        slow = await ex.submit(job(1, epochs=400, size=64), **LIMITS)
        assert (await events(slow, timeout=BUDGET(5)))[-1] == Failed(TIMEOUT, "stopped: it ran past the time limit of 1.5 s")
        broken = await ex.submit(job(2, content=CONTENT_PNG[:80]), **LIMITS)
        last = (await events(broken))[-1]
        assert last.kind == ERROR and last.reason.startswith("the content image is")


async def test_a_dead_worker_fails_its_job_only_and_is_replaced(weights_file, monkeypatch):
    joined_by = []  # which threads join workers: never a reader thread (see the reader test below)
    join = multiprocessing.process.BaseProcess.join
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "join",
                        lambda self, *a, **k: (joined_by.append(threading.current_thread().name), join(self, *a, **k))[1])
    async with executor(weights_file) as ex:
        doomed = await ex.submit(job(1, epochs=400, size=64), **LIMITS)
        waiting = await ex.submit(job(2), **LIMITS)
        await first(doomed, Progress)
        os.kill(ex._workers[0].process.pid, signal.SIGKILL)
        last = (await events(doomed))[-1]
        assert last.kind == CRASHED and "killed by SIGKILL" in last.reason
        assert not ex.health()[0]  # the replacement is still loading
        assert isinstance((await events(waiting))[-1], Done)
        assert ex.health()[0] and ex.restarts == 1
        # The fork server killed: its workers die with it (PR_SET_PDEATHSIG); a new server forks the replacement.
        doomed = await ex.submit(job(1, epochs=400, size=64), **LIMITS)
        waiting = await ex.submit(job(2), **LIMITS)
        await first(doomed, Progress)
        server = parent_of(ex._workers[0].process.pid)
        assert server != os.getpid()
        os.kill(server, signal.SIGKILL)
        last = (await events(doomed))[-1]
        assert last.kind == CRASHED and "stopped unexpectedly" in last.reason
        assert isinstance((await events(waiting))[-1], Done)
        assert ex.health()[0] and ex.restarts == 2
        assert parent_of(parent_of(ex._workers[0].process.pid)) == os.getpid()
    assert joined_by and not any(name.startswith("nst-reader") for name in joined_by), joined_by


async def test_a_job_sent_to_a_worker_that_had_just_died_is_queued_again_once(weights_file, monkeypatch):
    """Regression (issue 18, defect 6): a worker killed, its replacement killed a moment later, then a
    job sent: the job went to the dead replacement before its death was noticed, and was failed with
    "the worker running your job stopped unexpectedly". A job its worker never acknowledged (Started)
    cannot have killed it: it goes back to the queue and runs on the next replacement. Once: if that
    one dies before it starts the job too, the job is failed."""
    async with executor(weights_file) as ex:
        os.kill(ex._workers[0].process.pid, signal.SIGKILL)
        await asyncio.wait_for(until(lambda: ex.restarts == 1 and ex._workers[0].state == "idle"), BUDGET(10))
        replacement = kill_unnoticed(ex._workers[0])
        handle = await ex.submit(job(1), **LIMITS)
        assert [i.state for i in ex.jobs()] == ["running"] and ex._workers[0].process is replacement  # sent to the dead one
        stream = await events(handle)
        assert isinstance(stream[-1], Done), stream[-1]
        assert [type(e) for e in stream if not isinstance(e, Progress)] == [Queued, Started, Done]  # queued again, then ran once
        assert ex.restarts == 2 and ex.health()[0]

        # The same, and the replacement that takes the job back is killed as it reports ready.
        on_message, killed = ex._on_message, []

        def killed_when_ready(worker, message):
            if message[0] == "ready" and not killed:
                killed.append(kill_unnoticed(worker))
            on_message(worker, message)

        monkeypatch.setattr(ex, "_on_message", killed_when_ready)
        kill_unnoticed(ex._workers[0])
        last = (await events(await ex.submit(job(2), **LIMITS)))[-1]
        assert killed and last == Failed(CRASHED, "two workers stopped before your job could start "
                                                  "(the last killed by SIGKILL, often the out-of-memory killer); please try again")
        await asyncio.wait_for(until(lambda: ex.health()[0]), BUDGET(10))
        assert ex.restarts == 4


def kill_unnoticed(worker):
    """SIGKILL the worker and wait, blocking the loop, until it is dead: the executor has not noticed yet
    (the reader thread's report of the death waits in the loop's queue, behind whatever runs next)."""
    process = worker.process
    os.kill(process.pid, signal.SIGKILL)
    wait_until_dead(process.pid)
    return process


def wait_until_dead(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` is a zombie or gone (a forked worker is the fork server's child: it reaps it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc_stat(pid)[0] in ("Z", "X"):
                return
        except (FileNotFoundError, ProcessLookupError):  # gone: reaped before the open, or between open and read
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} still alive {timeout:.0f} s after SIGKILL")


async def test_a_replacement_that_cannot_start_is_tried_again(weights_file, monkeypatch):
    """Say the fork server cannot be reached (its socket under /tmp cleaned away): the dead worker's
    replacement is tried again after RESTART_BACKOFF, never left undone with jobs waiting for it."""
    monkeypatch.setattr("bot.executor.local.RESTART_BACKOFF", 0.2)
    async with executor(weights_file) as ex:
        spawn, failed = ex._spawn, []

        def spawn_failing_once(index, device):
            if not failed:
                failed.append(index)
                raise OSError("[Errno 111] Connection refused")
            return spawn(index, device)

        monkeypatch.setattr(ex, "_spawn", spawn_failing_once)
        os.kill(ex._workers[0].process.pid, signal.SIGKILL)
        await asyncio.wait_for(until(lambda: failed), BUDGET(10))  # the death is noticed, the first try fails
        waiting = await ex.submit(job(2), **LIMITS)
        assert isinstance((await events(waiting))[-1], Done)
        assert failed == [0] and ex.restarts == 1 and ex.health()[0]


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_close_lets_running_jobs_finish_within_the_grace(weights_file):
    async with executor(weights_file) as ex:
        quick = await ex.submit(job(1, epochs=30), **LIMITS)
        queued = await ex.submit(job(2), **LIMITS)
        await first(quick, Started)
        await ex.close(grace=BUDGET(30))
        assert isinstance((await events(quick))[-1], Done)
        assert (await events(queued))[-1].kind == SHUTDOWN
    async with executor(weights_file) as ex:
        slow = await ex.submit(job(1, epochs=400, size=64), **LIMITS)
        await first(slow, Progress)
        await ex.close(grace=0.5)
        last = (await events(slow))[-1]
        assert last.kind == SHUTDOWN and "shut down while your job was running" in last.reason
        assert all(not w.process.is_alive() for w in ex._workers)


PRELOAD_TOUCHES_NO_GPU = """
import importlib, torch
calls = []
for name in ("is_available", "device_count", "init", "current_device", "is_bf16_supported", "get_device_properties"):
    original = getattr(torch.cuda, name)
    setattr(torch.cuda, name, lambda *a, _name=name, _original=original, **k: (calls.append(_name), _original(*a, **k))[1])
from bot.executor.local import WORKER_PRELOAD
for module in WORKER_PRELOAD:
    importlib.import_module(module)
print(calls, torch.cuda.is_initialized())
"""


def test_the_fork_servers_imports_never_touch_cuda():
    """Workers are forked from a server that imported WORKER_PRELOAD: had an import asked torch about
    GPUs (is_available() initialises the driver), CUDA would fail in every forked worker."""
    out = subprocess.run([sys.executable, "-c", PRELOAD_TOUCHES_NO_GPU], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "False"]


def parent_of(pid: int) -> int:
    return int(proc_stat(pid)[1])


async def test_workers_are_forked_on_linux_and_spawned_elsewhere(weights_file):
    async with executor(weights_file) as ex:
        server = parent_of(ex._workers[0].process.pid)
        assert server != os.getpid() and parent_of(server) == os.getpid()  # the fork server's child
    assert worker_context("linux").get_start_method() == "forkserver"
    assert worker_context("darwin").get_start_method() == "spawn"
    assert worker_context("win32").get_start_method() == "spawn"


async def test_spawned_workers_run_jobs_too(weights_file, monkeypatch):
    """The start method of macOS and Windows, here: its workers check that the bot is their parent."""
    monkeypatch.setattr("bot.executor.local.worker_context", lambda: multiprocessing.get_context("spawn"))
    async with executor(weights_file) as ex:
        assert parent_of(ex._workers[0].process.pid) == os.getpid()
        assert isinstance((await events(await ex.submit(job(1, epochs=2), **LIMITS)))[-1], Done)


def _exit_at_once() -> None:
    pass


def test_the_reader_never_reaps_so_a_stopped_worker_is_never_reported_alive():
    """Regression (CI at stop 10): the reader thread joined the worker while close() reaped it in another
    thread; the loser's waitpid got ECHILD and is_alive() reported the dead worker alive (~3 % of exits
    here). _wait_for_exit waits without reaping, and leaves the exit status for whoever reaps."""
    context = multiprocessing.get_context("fork")  # the child only exits: fork keeps 100 of them quick
    for attempt in range(100):
        process = context.Process(target=_exit_at_once)
        process.start()
        reader = threading.Thread(target=_wait_for_exit, args=(process,))
        reader.start()
        if attempt % 2:
            LocalExecutor._reap(_ReapOnly(process), patience=5.0)  # what close() does, racing the reader
            assert not process.is_alive()
        else:
            reader.join()
            assert process.exitcode == 0  # the status is still there for _on_exit
        reader.join()


@dataclasses.dataclass
class _ReapOnly:
    process: multiprocessing.process.BaseProcess
    lifeline: io.BytesIO = dataclasses.field(default_factory=io.BytesIO)


async def test_unusable_weights_stop_the_start_with_the_reason(tmp_path):
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"not weights")
    ex = LocalExecutor(weights=str(bad), devices=("cpu",), cpu_threads=1)
    with pytest.raises(ExecutorError, match="is not a readable PyTorch weights file"):
        await ex.start()
    await asyncio.sleep(0.2)
    assert all(not w.process.is_alive() for w in ex._workers)



def test_out_of_memory_is_caught_on_every_supported_torch(monkeypatch, model):
    """Regression (issue 11, defect 9): torch.OutOfMemoryError only exists from torch 2.5, and naming it in
    an except clause raised AttributeError on older torch. Here torch is made to look like 2.1-2.4 (only
    torch.cuda.OutOfMemoryError), and the engine runs out of memory."""
    import torch

    import nst.transfer
    from bot.executor.jobrun import OUT_OF_MEMORY, JobPayload, out_of_memory_errors, run_job

    cuda_oom = type("OutOfMemoryError", (RuntimeError,), {})  # torch.cuda's class before 2.5
    monkeypatch.delattr(torch, "OutOfMemoryError")
    monkeypatch.setattr(torch.cuda, "OutOfMemoryError", cuda_oom)
    assert out_of_memory_errors(torch) == (cuda_oom,)

    def out_of_memory(*args, **kwargs):
        raise cuda_oom("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(nst.transfer, "stylize", out_of_memory)
    payload = JobPayload(job_id="j", params=StyleParams(epochs=2, size=32).as_dict(), max_result_bytes=10**6,
                         max_pixels=10**7, timeout=60.0, preview_interval=0.0, content=CONTENT_PNG, styles=(STYLE_PNG,))
    assert run_job(model, payload, emit=lambda event: None, should_stop=lambda: False) == Failed(ERROR, OUT_OF_MEMORY)


async def test_previews_and_every_progress_field_come_through_the_pipe(weights_file):
    async with executor(weights_file, preview_interval=0.01) as ex:
        stream = await events(await ex.submit(job(1, epochs=12), **LIMITS))
    previews = [e for e in stream if isinstance(e, Preview)]
    assert previews and all(p.image.startswith(b"\xff\xd8") for p in previews)  # JPEG
    assert Image.open(io.BytesIO(previews[-1].image)).size == (48, 36)
    assert [p.step for p in previews] == sorted(p.step for p in previews) and previews[-1].step < 12
    progress = [e for e in stream if isinstance(e, Progress)]
    assert all(isinstance(e.tv_loss, float) and isinstance(e.eta, float) for e in progress)  # nst.Progress, whole
    assert isinstance(stream[-1], Done)


def test_one_wire_format_for_every_event():
    from bot.executor.base import Detached, Preview, decode_event, encode_event

    samples = [Queued(2), Started("cuda:0 on w1", 2), Progress(step=3, total=9, eta=1.5, level=1, levels=2),
               Preview(3, b"\xff\xd8jpeg"), Done(b"png", "stylized.png", "image/png", {"steps": 9}),
               Failed(TIMEOUT, "stopped"), Detached("later")]
    for event in samples:
        header, blob = encode_event(event)
        assert isinstance(header, str) and (blob is not None) == isinstance(event, (Preview, Done))
        assert decode_event(header, blob) == event
    assert decode_event('{"type": "failed", "kind": "novel", "reason": "x"}') == Failed(ERROR, "x")


def gif_clip(frames: int = 3, size=(48, 40), durations=(70, 80, 90)) -> bytes:
    """A tiny animated GIF: a square moving over a still background."""
    pictures = []
    for i in range(frames):
        picture = Image.new("RGB", size, (40, 90, 160))
        picture.paste((240, 200, 40), (4 + 8 * i, 10, 16 + 8 * i, 22))
        pictures.append(picture)
    buffer = io.BytesIO()
    pictures[0].save(buffer, "GIF", save_all=True, append_images=pictures[1:], duration=list(durations), loop=0)
    return buffer.getvalue()


def clip_job(**params) -> StyleJob:
    values = dict(epochs=6, animation_size=48, frame_steps=2, seed=1, precision=PRECISION, **params)
    return dataclasses.replace(job(), content=gif_clip(), params=StyleParams(**values).as_dict())


async def test_an_animated_content_runs_as_a_clip_with_frame_progress_and_a_preview_per_frame(weights_file):
    async with executor(weights_file, preview_interval=0.01) as ex:
        stream = await events(await ex.submit(clip_job(), **LIMITS))
    progress = [e for e in stream if isinstance(e, Progress)]
    assert progress and all(e.frames == 3 and 1 <= e.frame <= 3 for e in progress)  # the one event format, whole
    assert [e.step for e in progress] == sorted(e.step for e in progress)  # steps count over the clip
    previews = [e for e in stream if isinstance(e, Preview)]
    assert [p.step for p in previews] == [1, 2, 3]  # each finished frame, numbered
    done = stream[-1]
    assert isinstance(done, Done) and done.filename == "stylized.gif" and done.content_type == "image/gif"
    assert done.stats["frames"] == 3 and done.stats["durations"] == [70, 80, 90] and done.stats["given_up"] == []
    with Image.open(io.BytesIO(done.image)) as result:
        assert result.n_frames == 3 and result.size == (48, 40)


def test_a_clip_past_its_deadline_out_of_memory_or_refused_by_the_engine_fails_with_its_reason(monkeypatch, model):
    """The animation path shares run_job's endings: the deadline, out of memory, the engine's own cap check."""
    import torch

    import nst.animation
    from bot.executor.jobrun import OUT_OF_MEMORY, JobPayload, out_of_memory_errors, run_job

    def payload(timeout: float = 60.0, **params) -> JobPayload:
        return JobPayload.of(clip_job(**params), timeout=timeout, preview_interval=0.0)

    refused = run_job(model, payload(max_frames=2), emit=lambda event: None, should_stop=lambda: False)
    assert refused == Failed(ERROR, "the content image has 3 frames; the limit is 2")
    late = run_job(model, payload(timeout=0.0), emit=lambda event: None, should_stop=lambda: False)
    assert late == Failed(TIMEOUT, timeout_reason(0.0))  # the deadline holds for a clip as for a still

    def out_of_memory(*args, **kwargs):
        raise out_of_memory_errors(torch)[0]("CUDA out of memory")

    monkeypatch.setattr(nst.animation, "stylize_animation", out_of_memory)
    assert run_job(model, payload(), emit=lambda event: None, should_stop=lambda: False) == Failed(ERROR, OUT_OF_MEMORY)


def test_the_memory_budget_and_an_upscales_picture_reach_the_engine(model):
    """engine.max_memory and an Upscale's starting picture travel in the one payload (whole through a local
    worker's pipe; on Celery the picture travels apart, like the other images) and reach stylize: a run
    continues from the picture at twice its size under the budget, and a budget too small is the engine's
    refusal, word for word."""
    from bot.executor.jobrun import JobPayload, run_job
    from bot_harness import png
    from test_upscale_e2e import is_red

    budget = 3 * 1024**3

    def payload(max_memory, **params) -> JobPayload:
        job = StyleJob(user_id=1, guild_id=None, channel_id=1, message_id=1, content=CONTENT_PNG, styles=(STYLE_PNG,),
                       params=StyleParams(epochs=2, seed=1, precision=PRECISION, **params).as_dict(),
                       max_result_bytes=10**6, max_pixels=10**7, max_memory=max_memory,
                       init_image=png(Image.new("RGB", (48, 36), (230, 20, 20))))
        sent = JobPayload.of(job, timeout=60.0, preview_interval=0.0)
        assert "init_image" not in sent.message() and sent.message()["max_memory"] == max_memory  # JSON-able
        assert JobPayload.from_message(sent.message(), sent.content, sent.styles, sent.init_image) == sent
        return sent

    done = run_job(model, payload(budget, size=96), emit=lambda event: None, should_stop=lambda: False)
    assert isinstance(done, Done), done
    assert tuple(done.stats["size"]) == (96, 72) and done.stats["memory_budget"] == budget
    assert done.stats["steps"] <= 2 and len(done.stats["tiles"]) == 1 and is_red(done.image)  # from the picture
    refused = run_job(model, payload(1024**2, size=96), emit=lambda event: None, should_stop=lambda: False)
    assert refused.kind == ERROR and "more than the memory budget of 1.0 MiB" in refused.reason


async def test_the_order_function_decides_which_job_a_free_worker_takes_and_its_estimates_are_announced(weights_file):
    """The executor keeps the queue, the order (issue 23: the job service's fair queue) ranks it: here,
    the newest first, each estimated 100 s a place. It sees the running job with its start and work."""
    seen_running = []

    def newest_first(waiting, running, workers):
        seen_running.extend(running)
        ranked = sorted(waiting, key=lambda entry: -entry.submitted_at)
        return [Placement(entry.job_id, position, 100.0 * position) for position, entry in enumerate(ranked, start=1)]

    async with executor(weights_file) as ex:
        ex.set_order(newest_first)
        first_job = dataclasses.replace(job(1, epochs=60, size=64), work=1234.0)
        handles = [await ex.submit(first_job, **LIMITS)]
        await first(handles[0], Started)
        for user in (2, 3, 4):
            handles.append(await ex.submit(dataclasses.replace(job(user), submitted_at=time.time() + user), **LIMITS))
        assert [(i.user_id, i.position, i.starts_in) for i in ex.jobs() if i.state == "queued"] == [
            (4, 1, 100.0), (3, 2, 200.0), (2, 3, 300.0)]
        starts = []

        async def follow(handle):
            async for event in handle:
                if isinstance(event, Started):
                    starts.append(handle.job.user_id)
                yield event

        streams = await asyncio.gather(*(events(follow(h)) for h in handles[1:]))
    assert starts == [4, 3, 2]  # the order's, not the arrival's
    queued = {h.job.user_id: [e for e in s if isinstance(e, Queued)] for h, s in zip(handles[1:], streams)}
    assert queued[4][0] == Queued(1, 100.0)
    assert [e.position for e in queued[2]] == [1, 2, 3, 2, 1]  # each newer job went ahead of it, then it moved up
    running = next(e for e in seen_running if e.job_id == first_job.job_id)
    assert running.work == 1234.0 and running.started_at is not None and running.started_at <= time.time()


def test_an_estimate_is_announced_again_only_when_it_moved_meaningfully():
    assert worth_announcing(None, Queued(2, 40.0))
    assert worth_announcing(Queued(2, 40.0), Queued(1, 40.0))  # a new position
    assert not worth_announcing(Queued(2, 40.0), Queued(2, 45.0))  # 5 s: not worth an edit
    assert not worth_announcing(Queued(2, 100.0), Queued(2, 85.0))  # 15 s but 15 %
    assert worth_announcing(Queued(2, 100.0), Queued(2, 75.0))  # 25 s and 25 %
    assert worth_announcing(Queued(2, 40.0), Queued(2, math.inf))  # the last worker went away
    assert not worth_announcing(Queued(2, math.inf), Queued(2, math.inf))
    assert worth_announcing(Queued(2), Queued(2, 40.0))  # an estimate appears
    assert not worth_announcing(Queued(2), Queued(2))
