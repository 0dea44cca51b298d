"""How long a local worker takes to start and to stop, forked from the fork server or spawned.

    python bench/workers.py                # 3 rounds of each, one CPU worker, random weights

Each round starts a LocalExecutor with one CPU worker (the worker loads VGG-19 from a file), waits
until it is ready, and closes it. The fork server's first round includes the server's own imports
(once per bot process); later rounds are what a restart after a crash costs. The spawn rounds
run the start method macOS uses. Memory: PSS (proportional set size, shared pages split) of two
workers and, when forked, the fork server, read from /proc (Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.executor import local  # noqa: E402
from nst.model import export_features  # noqa: E402


def pss_mb(pid: int) -> float | None:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    return next(int(line.split()[1]) / 1024 for line in lines if line.startswith("Pss:"))


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def rounds(weights: str, count: int) -> list[tuple[float, float]]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        executor = local.LocalExecutor(weights=weights, devices=("cpu",), cpu_threads=1)
        await executor.start()
        ready = time.perf_counter()
        await executor.close()
        timings.append((ready - started, time.perf_counter() - ready))
    return timings


async def memory(weights: str) -> str:
    executor = local.LocalExecutor(weights=weights, devices=("cpu", "cpu"), cpu_threads=1)
    await executor.start()
    try:
        workers = [w.process.pid for w in executor._workers]
        parts = [pss_mb(pid) for pid in workers]
        server = parent_of(workers[0])
        if server != multiprocessing.current_process().pid:
            parts.append(pss_mb(server))
    finally:
        await executor.close()
    if None in parts:
        return "n/a"
    return " + ".join(f"{p:.0f}" for p in parts) + f" = {sum(parts):.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default=None, help="a VGG-19 features file (default: random weights)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or str(Path(tmp) / "vgg19-random.pth")
        if not args.weights:
            export_features("random", weights, progress=False)
        forked = local.worker_context
        rows = []
        for name, context in (("fork server", forked), ("spawn", lambda: multiprocessing.get_context("spawn"))):
            local.worker_context = context  # what LocalExecutor starts its workers with
            timings = asyncio.run(rounds(weights, args.rounds))
            rows.append((name, timings, asyncio.run(memory(weights))))
        local.worker_context = forked
    print(f"# {platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| start method | start, s (each round) | close, s (each round) | PSS of 2 workers (+ server) |")
    print("|---|---|---|---|")
    for name, timings, pss in rows:
        print(f"| {name} | {' / '.join(f'{s:.2f}' for s, _ in timings)} | {' / '.join(f'{c:.2f}' for _, c in timings)} | {pss} |")


if __name__ == "__main__":
    main()
