"""The container's start-up, without Docker: the image's ENTRYPOINT + CMD, run from this checkout with
the image's own config, a weights file made from random weights at the path the image uses (under a
temporary root that mirrors the image's layout), reaching READY against the fake Discord and passing
the image's HEALTHCHECK."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from nst.model import export_features
from redis_harness import free_port
from test_container import DOCKER_CONFIG, HEALTHCHECK_SCRIPT, exec_form, final_stage, healthcheck_command, only

try:
    from fake_discord import FakeDiscord
except ImportError:
    from tests.fake_discord import FakeDiscord

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "container-token"


def image_command() -> list[str]:
    stage = final_stage()
    return exec_form(only(stage, "ENTRYPOINT")) + exec_form(only(stage, "CMD"))


async def test_the_containers_command_starts_the_bot_and_passes_the_healthcheck(tmp_path):
    command = image_command()
    entrypoint, config_in_image = command[0], command[command.index("--config") + 1]
    # the image's paths, re-rooted under tmp_path
    root = tmp_path / "image"
    text = DOCKER_CONFIG.read_text()
    port = free_port()
    for absolute in ("/opt/nst/", "/data", "/run/secrets/"):
        text = text.replace(f'"{absolute}', f'"{root}{absolute}')
    text = text.replace("port = 8080", f"port = {port}")
    config = root / config_in_image.lstrip("/")
    config.parent.mkdir(parents=True)
    config.write_text(text)
    weights = root / "opt" / "nst" / "vgg19-features.pth"
    export_features("random", weights, progress=False)
    # the entrypoint is the console script; here it lives in this environment's bin folder
    script = Path(sys.executable).parent / Path(entrypoint).name
    assert script.exists(), f"{script} is not installed: pip install -e . declares it"
    probe = healthcheck_command()
    probe[-1] = probe[-1].replace(":8080", f":{port}")

    async with FakeDiscord() as fake:
        fake.add_bot(token=TOKEN)
        guild = fake.add_guild(name="Container Test")
        fake.add_text_channel(guild.id, "general")
        env = {**os.environ, **fake.env(), "DISCORD_TOKEN": TOKEN}
        proc = await asyncio.create_subprocess_exec(
            str(script), "--config", str(config), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await fake.wait_ready(timeout=90)
            deadline = asyncio.get_running_loop().time() + 60
            while True:  # the image's HEALTHCHECK command, as Docker would run it
                result = subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), probe[-1]], capture_output=True, text=True)
                if result.returncode == 0 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert result.returncode == 0, result.stdout + result.stderr
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        fake.assert_clean()
    assert proc.returncode == 0, err.decode()
    assert (root / "data" / "bot.sqlite3").exists()
    assert TOKEN not in err.decode()
