"""How soon a default job's first live preview shows in its status message, through the real bot.

    python bench/first_preview.py                  # 384 px examples, the bot's default intervals, 3 jobs
    python bench/first_preview.py --size 512 --runs 1

The real StyleBot (its real worker process, random VGG-19 weights) against the fake Discord of the
tests, with the bot's default status and preview intervals. A member sends ``!stylize`` with the
examples; the script polls the status message and prints, per job: when the message first showed the
job running (its first progress line), and when it first carried a preview, both from the command,
and the gap between the two. Each job is cancelled once its preview has been seen.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bot_harness import command, make_config, make_world, reply_to, running_bot  # noqa: E402
from fake_discord import FakeDiscord  # noqa: E402

from nst.model import export_features  # noqa: E402


def _attachment(path: Path, name: str) -> tuple[str, bytes, str]:
    return (name, path.read_bytes(), "image/jpeg")


async def one_job(fake, world, size: int) -> tuple[float, float]:
    images = [_attachment(ROOT / "examples" / "content.jpg", "content.jpg"), _attachment(ROOT / "examples" / "style.jpg", "style.jpg")]
    sent = time.monotonic()
    request = await command(fake, world.general, world.alice, f"!stylize --size {size}", images)
    status = await reply_to(fake, request, timeout=120)
    running = preview = None
    deadline = sent + 300
    while preview is None and time.monotonic() < deadline:
        message = fake.get_message(status.id)
        if running is None and "%" in message.content:
            running = time.monotonic() - sent
        if any(a.filename.startswith("preview") for a in message.attachments):
            preview = time.monotonic() - sent
        await asyncio.sleep(0.05)
    await command(fake, world.general, world.alice, "!cancel")
    await reply_to(fake, request, lambda m: "did not finish" in m.content, timeout=120)
    if running is None or preview is None:
        raise SystemExit("no preview within 300 s")
    return running, preview


async def main_async(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        weights = tmp_path / "vgg19-features.pth"
        export_features("random", weights, progress=False)
        config = make_config(
            tmp_path, weights,
            bot={"status_interval": 2.0, "preview_interval": 5.0},  # the bot's defaults
            engine={"cpu_threads": 0, "precision": args.precision},
            defaults={"epochs": 500, "size": args.size},
            caps={"max_epochs": 500, "max_size": 1024},
        )
        async with FakeDiscord() as fake:
            world = make_world(fake)
            async with running_bot(fake, config):
                for _ in range(args.runs):
                    rows.append(await one_job(fake, world, args.size))
    print(f"first preview: {args.size} px examples, precision {args.precision}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, status edits every 2 s, previews every 5 s")
    print()
    print("| job | running shown at, s | first preview at, s | preview after running, s |")
    print("|---|---:|---:|---:|")
    for i, (running, preview) in enumerate(rows, 1):
        print(f"| {i} | {running:.1f} | {preview:.1f} | {preview - running:.1f} |")
    print(f"| median | {statistics.median(r for r, _ in rows):.1f} | {statistics.median(p for _, p in rows):.1f} "
          f"| {statistics.median(p - r for r, p in rows):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
