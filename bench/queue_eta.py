"""The estimated start of queued jobs against their real start, on this machine's local worker.

bench/fairness.py measures the scheduler on a simulated clock; this runs real jobs: one CPU worker
(one torch thread) behind the bot's own fair queue (bot.core.fairqueue, no store, no quotas), two
warm-up jobs to measure the speed, then a burst of jobs of mixed sizes from members of three
servers. For each job it prints two estimates its user would read against the seconds it actually
waited from then: the first one (shown at its submission, before the rest of the burst arrived and
perhaps overtook it) and the one shown once the whole burst was queued; and the median error of
each, |predicted - actual| / actual, over the jobs that waited more than a second. Random VGG-19 weights: the speed is the real
network's, the pictures do not matter.

    python bench/queue_eta.py [--policy fair-share] [--precision fp32]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.fairqueue import FairQueue, job_work  # noqa: E402
from bot.core.scheduling import POLICIES  # noqa: E402
from bot.executor.base import Done, Queued, Started, StyleJob  # noqa: E402
from bot.executor.local import LocalExecutor  # noqa: E402
from nst.model import export_features  # noqa: E402
from nst.params import StyleParams  # noqa: E402

WARM_UP = [(20, 64), (20, 64)]  # (epochs, size) of the jobs that teach the speed
BURST = [(30, 64), (15, 96), (40, 48), (20, 64), (30, 80), (10, 64), (25, 96), (30, 64)]


def picture(width: int, height: int, seed: int) -> bytes:
    image = Image.new("RGB", (width, height), (40 * seed % 255, 120, 200))
    draw = ImageDraw.Draw(image)
    for i in range(0, width, 8):
        draw.line([(i, 0), (width - i, height)], fill=(255 - 20 * seed % 255, i % 255, 60), width=2)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


CONTENT, STYLE = picture(96, 72, 1), picture(64, 64, 2)


def job(user: int, epochs: int, size: int, precision: str) -> StyleJob:
    params = StyleParams(epochs=epochs, size=size, seed=1, precision=precision)
    return StyleJob(user_id=user, guild_id=user % 3, channel_id=1, message_id=1, content=CONTENT, styles=(STYLE,),
                    params=params.as_dict(), max_result_bytes=8_000_000, max_pixels=10**7,
                    work=job_work(CONTENT, (STYLE,), params))


async def follow(fair: FairQueue, handle, starts: list) -> None:
    """The job's events, told to the fair queue as the job service tells it; its estimates and its start."""
    estimates = []
    job = handle.job
    async for event in handle:
        if isinstance(event, Queued) and event.starts_in is not None:
            estimates.append((time.monotonic(), event.starts_in))
        elif isinstance(event, Started):
            starts.append((job.job_id, estimates, time.monotonic()))
            await fair.started(job.job_id, job.user_id, job.guild_id, job.work)
        elif isinstance(event, Done):
            await fair.ended(job.job_id, job.user_id, job.guild_id, job.work, event.stats["seconds"], measured=True)


async def main(policy: str, precision: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "vgg19-features.pth"
        export_features("random", weights, progress=False)
        executor = LocalExecutor(weights=str(weights), devices=("cpu",), cpu_threads=1)
        await executor.start()
        fair = FairQueue(policy, None, None)
        executor.set_order(fair.order)
        limits = dict(max_per_user=99, max_queue=99)

        async def submit(job: StyleJob):
            fair.admitted(job.job_id, job.user_id, job.guild_id, (), False)  # as the job service does
            return await executor.submit(job, **limits)

        try:
            for epochs, size in WARM_UP:
                await follow(fair, await submit(job(0, epochs, size, precision)), [])
            starts: list = []
            handles = [await submit(job(i + 1, epochs, size, precision)) for i, (epochs, size) in enumerate(BURST)]
            queued = time.monotonic()  # the whole burst is in the queue: what !queue would show now
            settled = {info.job_id: (queued, info.starts_in) for info in executor.jobs() if info.state == "queued"}
            await asyncio.gather(*(follow(fair, handle, starts) for handle in handles))
        finally:
            await executor.close()
    errors: dict[str, list[float]] = {"first": [], "burst queued": []}
    for job_id, estimates, started in starts:
        if not estimates or job_id not in settled:  # it started at once
            continue
        line = []
        for name, (shown_at, predicted) in (("first", estimates[0]), ("burst queued", settled[job_id])):
            actual = started - shown_at
            if actual > 1:
                errors[name].append(abs(predicted - actual) / actual)
                line.append(f"{name}: predicted {predicted:5.1f} s, actual {actual:5.1f} s, error {errors[name][-1]:4.0%}")
        if line:
            print("   ".join(line))
    for name, values in errors.items():
        print(f"{policy}, the {name} estimate: median error {statistics.median(values):.0%} over {len(values)} jobs")
    print(f"speed {fair.speed.seconds_per_unit:.3g} s per pixel-step, from {fair.speed.samples} jobs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="fair-share", choices=POLICIES)
    parser.add_argument("--precision", default="fp32", help="the jobs' precision (fp32, bf16, auto)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.policy, arguments.precision))
