"""Jobs per minute through Celery + Redis with 1 and with 2 CPU workers, on identical small jobs.

    python bench/throughput.py                 # 8 jobs of 40 steps at 96 px per run (a few minutes)
    python bench/throughput.py --jobs 12 --epochs 60

Starts its own redis-server on a free loopback port (Debian's redis-server must be installed) and
real `nst-worker` processes with one torch thread each, so two workers use the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot.config import load_config, queue_settings  # noqa: E402
from bot.executor.base import Done, StyleJob  # noqa: E402
from bot.executor.distributed import CeleryExecutor  # noqa: E402
from nst.model import export_features  # noqa: E402
from nst.params import StyleParams  # noqa: E402
from redis_harness import Worker, celery_config, redis_server  # noqa: E402


async def run_jobs(config: Path, jobs: int, epochs: int, size: int) -> float:
    content = (ROOT / "examples" / "content.jpg").read_bytes()
    style = (ROOT / "examples" / "style.jpg").read_bytes()
    executor = CeleryExecutor(queue_settings(load_config(config)))
    await executor.start()
    try:
        started = time.perf_counter()
        handles = [
            await executor.submit(
                StyleJob(user_id=i, guild_id=1, channel_id=1, message_id=i, content=content, styles=(style,),
                         params=StyleParams(epochs=epochs, size=size, seed=i).as_dict(),
                         max_result_bytes=8_000_000, max_pixels=40_000_000),
                max_per_user=1, max_queue=jobs,
            )
            for i in range(jobs)
        ]

        async def last(handle):
            event = None
            async for event in handle:
                pass
            return event

        results = await asyncio.gather(*(last(h) for h in handles))
        seconds = time.perf_counter() - started
    finally:
        await executor.close()
    failed = [r for r in results if not isinstance(r, Done)]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) failed: {failed[0]}")
    return seconds


def measure(tmp: Path, weights: Path, url: str, workers: int, args) -> float:
    import redis

    redis.Redis.from_url(url).flushall()
    folder = tmp / f"w{workers}"
    folder.mkdir()
    config = celery_config(folder, weights, url, job_timeout=600, max_queue=100)
    config.write_text(config.read_text().replace("visibility_timeout = 6", "visibility_timeout = 1200"))
    pool = [Worker(config, f"bench{i}@local", folder / f"worker{i}.log") for i in range(workers)]
    try:
        for worker in pool:
            worker.wait_ready()
        return asyncio.run(run_jobs(config, args.jobs, args.epochs, args.size))
    finally:
        for worker in pool:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        weights = Path(tmp) / "vgg19-features.pth"
        export_features("random", weights, progress=False)
        rows = [(n, measure(Path(tmp), weights, url, n, args)) for n in (1, 2)]
    print(f"throughput: {args.jobs} identical jobs of {args.epochs} steps at {args.size} px, CPU workers with 1 torch thread each")
    print()
    print("| workers | wall time | jobs per minute | speed-up |")
    print("|---:|---:|---:|---:|")
    for workers, seconds in rows:
        print(f"| {workers} | {seconds:.1f} s | {args.jobs / seconds * 60:.1f} | {rows[0][1] / seconds:.2f}× |")


if __name__ == "__main__":
    main()
