"""Downloads through the real bot against the fake Discord: only allowed hosts are fetched, and a body is
read only up to the size cap, whatever the server declares (issue 11, defects 5 and 7)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from bot_harness import IMAGES, command, make_config, reply_to, running_bot

CAP = 256 * 1024


@contextlib.asynccontextmanager
async def endless_server():
    """A host on 127.0.0.1 that answers every GET with an image body that never ends (chunked, no
    declared length), counting the requests it got and the bytes it managed to send."""
    seen = {"requests": 0, "sent": 0, "closed": asyncio.Event()}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen["requests"] += 1
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        chunk = b"\x89PNG\r\n\x1a\n" + b"\0" * (64 * 1024 - 8)
        try:
            while True:
                await response.write(chunk)
                seen["sent"] += len(chunk)
        except (ConnectionResetError, ConnectionError, RuntimeError):
            seen["closed"].set()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/attachments/1/2/content.png", seen
    finally:
        await runner.cleanup()


async def post_then_reply(fake, world, url: str):
    """Alice posts the two images, the content image's URL is pointed at ``url``, and she replies to
    her post with the command (the bot takes the images of the message replied to)."""
    post = await command(fake, world.general, world.alice, "here are my pictures", IMAGES)
    post.attachments[0].url = url
    return await command(fake, world.general, world.alice, "!stylize", reply_to=post)


async def test_a_body_larger_than_the_cap_is_cut_off_whatever_the_server_declares(fake, world, tmp_path, weights_file):
    """Regression (defect 5): the declared size was checked, then the whole body read before its real
    size was; an endless body kept the bot reading until its download timeout."""
    config = make_config(tmp_path, weights_file, caps={"max_attachment_bytes": CAP})
    async with endless_server() as (url, seen), running_bot(fake, config):
        request = await post_then_reply(fake, world, url)
        answer = await reply_to(fake, request, timeout=20)
        await asyncio.wait_for(seen["closed"].wait(), 10)  # the bot hung up
    assert "the content image is larger than the limit of 256 KB" in answer.content
    assert seen["requests"] == 1
    # what the server could push before the bot hung up: the cap plus socket buffers, never the body
    assert seen["sent"] < CAP + 32 * 1024 * 1024


async def test_only_the_configured_hosts_are_fetched(fake, world, tmp_path, weights_file):
    """Regression (defect 7): attachment URLs were fetched from any host."""
    config = make_config(tmp_path, weights_file, bot={"attachment_hosts": ["cdn.discordapp.com", "media.discordapp.net"]})
    async with endless_server() as (url, seen), running_bot(fake, config):
        direct = await command(fake, world.general, world.alice, "!stylize", IMAGES)  # the fake hosts files on 127.0.0.1
        refused = await reply_to(fake, direct, timeout=20)
        assert "the content image is not hosted on Discord's CDN, so I will not download it" in refused.content
        elsewhere = await post_then_reply(fake, world, url)
        assert "not hosted on Discord's CDN" in (await reply_to(fake, elsewhere, timeout=20)).content
    assert seen["requests"] == 0
    assert not [r for r in fake.requests if "/attachments/" in r.path]
