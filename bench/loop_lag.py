"""Event-loop lag while the bot serves a running job, against the same job run on the loop itself.

    python bench/loop_lag.py                  # 100 steps at 256 px, random weights (about a minute)
    python bench/loop_lag.py --epochs 50 --size 192
    python bench/loop_lag.py --preview-interval 0   # without live previews (on by default, every 2 s)

The bot runs in-process against the fake Discord from the tests (real discord.py client, real worker
process); a sampler sleeps 10 ms at a time and records how late it wakes up. Goal: p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot_harness import command, make_config, make_world, reply_to, running_bot  # noqa: E402
from fake_discord import FakeDiscord  # noqa: E402
from nst import images  # noqa: E402
from nst.model import export_features, load_vgg19  # noqa: E402
from nst.params import StyleParams  # noqa: E402
from nst.transfer import stylize  # noqa: E402

INTERVAL = 0.010


class LagSampler:
    def __init__(self):
        self.lags: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(INTERVAL)
            self.lags.append(loop.time() - started - INTERVAL)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def summary(lags: list[float]) -> tuple[float, float, float, int]:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000, len(ordered)


async def bot_serving(
    weights: Path, content: bytes, style: bytes, epochs: int, size: int, preview_interval: float
) -> tuple[list[float], float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeDiscord() as fake:
            world = make_world(fake)
            config = make_config(
                Path(tmp), weights, caps={"max_epochs": 10_000, "max_size": 4096},
                bot={"log_level": "WARNING", "status_interval": 2.0, "preview_interval": preview_interval},
                engine={"cpu_threads": 0},  # all cores, as in production
            )
            async with running_bot(fake, config):
                sampler = LagSampler()
                sampler.start()
                started = time.perf_counter()
                files = [("content.jpg", content, "image/jpeg"), ("style.jpg", style, "image/jpeg")]
                request = await command(fake, world.general, world.alice, f"!stylize --epochs {epochs} --size {size}", files)
                await reply_to(fake, request, lambda m: m.attachments and m.attachments[0].filename.startswith("stylized"),
                               timeout=3600)
                seconds = time.perf_counter() - started
                await sampler.stop()
                previews = len({  # distinct preview images shown on the status message
                    a.id for m in fake.bot_messages() if m.message_reference == request.id
                    for v in [*m.edits, m] for a in v.attachments if a.filename.startswith("preview")
                })
    return sampler.lags, seconds, previews


async def on_the_loop(weights: Path, content: bytes, style: bytes, epochs: int, size: int) -> tuple[list[float], float]:
    """What a naive bot does: call the engine from the coroutine that handles the command."""
    model = load_vgg19(weights, device="cpu")
    params = StyleParams(epochs=epochs, size=size)
    sampler = LagSampler()
    sampler.start()
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    stylize(images.decode_image(content), images.decode_image(style), params, model=model)
    seconds = time.perf_counter() - started
    await asyncio.sleep(0.05)
    await sampler.stop()
    return sampler.lags, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--preview-interval", type=float, default=2.0, help="seconds between live previews (0 = off)")
    args = parser.parse_args()
    content = (ROOT / "examples" / "content.jpg").read_bytes()
    style = (ROOT / "examples" / "style.jpg").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "vgg19-features.pth"
        export_features("random", weights, progress=False)
        lags, seconds, previews = asyncio.run(
            bot_serving(weights, content, style, args.epochs, args.size, args.preview_interval)
        )
        rows = [
            (f"bot (worker process), {previews} previews", lags, seconds),
            ("engine on the event loop", *asyncio.run(on_the_loop(weights, content, style, args.epochs, args.size))),
        ]
    print(f"event-loop lag, sampled every {INTERVAL * 1000:.0f} ms during one {args.epochs}-step job at {args.size} px (CPU)")
    print()
    print("| where the job runs | job wall time | samples | lag p50 | lag p99 | lag max |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, lags, seconds in rows:
        p50, p99, worst, count = summary(lags)
        print(f"| {name} | {seconds:.1f} s | {count} | {p50:.1f} ms | {p99:.1f} ms | {worst:.0f} ms |")
    print()
    p99 = summary(rows[0][1])[1]
    print(f"goal: p99 under 50 ms while a job runs: {p99:.1f} ms {'met' if p99 < 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
