"""Tests of tests/fake_discord: the REAL discord.py client against the fake server.

Everything runs in-process on pytest-asyncio's loop (plus one subprocess bot);
every wait is bounded, every bot is closed and every fake stopped in fixtures,
and each test ends by checking that no unimplemented route was called.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from types import SimpleNamespace

import aiohttp
import discord
import pytest
from discord.ext import commands
from PIL import Image

try:
    from fake_discord import SITE_DIR, FakeDiscord, P
except ImportError:  # tests/ became a package
    from tests.fake_discord import SITE_DIR, FakeDiscord, P

TOKEN = "test-token"
MiB = 1024 * 1024


def png_bytes(size=(32, 24), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_bot(*, message_content: bool = True, **kwargs) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    return commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.2, **kwargs)


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot, token: str = TOKEN):
    """Start ``bot`` against ``fake`` until on_ready; always close it afterwards."""
    with fake.patch_client():
        async with bot:
            task = asyncio.create_task(bot.start(token))
            ready = asyncio.create_task(bot.wait_until_ready())
            try:
                done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    task.result()  # startup failed: raise its error
                assert ready in done, "bot did not reach on_ready within 5 s"
                yield bot
            finally:
                ready.cancel()
                await bot.close()
                finished, _ = await asyncio.wait({task}, timeout=5)
                assert task in finished, "bot.start() did not return after close()"
            task.result()  # the connection loop must not have died with an error


@pytest.fixture
async def fake():
    async with FakeDiscord() as server:
        yield server
        server.assert_clean()  # unimplemented routes / fake crashes fail the test


@pytest.fixture
def world(fake: FakeDiscord) -> SimpleNamespace:
    bot_user = fake.add_bot(token=TOKEN, name="StyleBot")
    guild = fake.add_guild(name="Test Server")
    general = fake.add_text_channel(guild.id, "general")
    art = fake.add_text_channel(guild.id, "art")
    admin_role = fake.add_role(guild.id, "Admin", permissions=discord.Permissions(manage_guild=True).value)
    alice = fake.add_user("alice")
    fake.add_member(guild.id, alice.id)
    boss = fake.add_user("boss")
    fake.add_member(guild.id, boss.id, roles=[admin_role])
    return SimpleNamespace(bot_user=bot_user, guild=guild, general=general, art=art,
                           admin_role=admin_role, alice=alice, boss=boss)


# --------------------------------------------------------------------- login


async def test_login_ready_and_guild_state(fake, world):
    bot = make_bot()
    seen = {}

    @bot.event
    async def on_ready():
        seen["ready"] = True

    async with running(fake, bot):
        assert seen == {"ready": True}
        assert bot.user.id == world.bot_user.id and bot.user.name == "StyleBot" and bot.user.bot
        assert bot.application_id == world.bot_user.application_id
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.name == "Test Server" and not guild.unavailable
        assert [c.name for c in guild.text_channels] == ["general", "art"]
        assert guild.me is not None and guild.me.id == world.bot_user.id
        assert guild.get_role(world.admin_role.id).permissions.manage_guild
        assert guild.member_count == 4  # owner, bot, alice, boss
        # No GUILD_MEMBERS intent: like Discord, only the bot's own member is sent.
        assert guild.get_member(world.alice.id) is None
        default = guild.default_role.permissions
        assert default.send_messages and default.attach_files and default.read_message_history
        assert default.view_channel and not default.manage_guild
        assert fake.permissions_for(world.general.id, world.bot_user.id) & P.SEND_MESSAGES
        session = await fake.wait_ready(timeout=2)
        assert session.bot.id == world.bot_user.id and session.connection.compress == "zlib-stream"
    assert [tuple(r) for r in fake.requests[:2]] == [("GET", "/users/@me", 200), ("GET", "/oauth2/applications/@me", 200)]
    assert fake.gateway.connects[0] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    # discord.py 2.7.1 + aiohttp 3.14 actually close with 4000 (its poll loop wins the race against
    # close(1000)), which leaves the session resumable on Discord too; only the socket is gone.
    await fake.wait_until(lambda: not fake.gateway.connections, timeout=5)
    assert not any(s.connected for s in fake.sessions)


async def test_wrong_token_raises_login_failure(fake, world):
    bot = make_bot()
    with fake.patch_client():
        async with bot:
            with pytest.raises(discord.LoginFailure):
                await asyncio.wait_for(bot.start("not-the-token"), 5)
    assert tuple(fake.requests[-1]) == ("GET", "/users/@me", 401)
    assert fake.gateway.connects == []


# ------------------------------------------------------------------ messages


async def test_echo_command_replies(fake, world):
    bot = make_bot()

    @bot.command()
    async def echo(ctx, *, text: str):
        async with ctx.typing():
            await ctx.reply(text)

    async with running(fake, bot):
        sent = await fake.user_sends(world.general.id, world.alice.id, "!echo hello")
        reply = await fake.wait_for_message(lambda m: m.content == "hello", timeout=5)
    assert reply.message_reference == sent.id and reply.channel_id == world.general.id
    assert reply.type == 19 and reply.reference["message_id"] == str(sent.id)
    assert world.alice.id in reply.mentions  # replies ping the author by default
    assert [m.id for m in fake.bot_messages(world.general.id)] == [reply.id]
    assert fake.typing and fake.typing[0][0] == world.general.id


async def test_attachments_are_read_and_files_uploaded(fake, world):
    bot = make_bot()
    produced = {}

    @bot.command()
    async def stylize(ctx):
        content, style = ctx.message.attachments
        data = [await content.read(), await style.read()]
        img = Image.open(io.BytesIO(data[0])).convert("RGB").resize((40, 30))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        produced["png"] = buf.getvalue()
        await ctx.reply(
            f"{content.filename}:{content.width}x{content.height}:{len(data[0])} "
            f"{style.filename}:{style.content_type}:{len(data[1])}",
            file=discord.File(io.BytesIO(produced["png"]), filename="result.png"),
        )

    content_png = png_bytes((32, 24))
    style_jpg = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(style_jpg, format="JPEG")
    async with running(fake, bot):
        await fake.user_sends(world.general.id, world.alice.id, "!stylize",
                              attachments=[("cat.png", content_png), ("style.jpg", style_jpg.getvalue(), "image/jpeg")])
        reply = await fake.wait_for_message(lambda m: m.attachments, timeout=5)
    assert reply.content == f"cat.png:32x24:{len(content_png)} style.jpg:image/jpeg:{len(style_jpg.getvalue())}"
    [att] = reply.attachments
    assert att.filename == "result.png" and att.content_type == "image/png"
    assert att.data == produced["png"] and (att.width, att.height) == (40, 30)
    downloads = [r for r in fake.requests if r.path.startswith("/attachments/")]
    assert len(downloads) == 2 and all(r.status == 200 for r in downloads)
    # The fake serves uploaded files back, byte for byte.
    async with aiohttp.ClientSession() as http:
        async with http.get(att.url) as resp:
            assert resp.headers["Content-Type"] == "image/png" and await resp.read() == produced["png"]


async def test_edit_is_recorded_in_history(fake, world):
    bot = make_bot()

    @bot.command()
    async def work(ctx):
        msg = await ctx.send("working...")
        await msg.edit(content="done", embed=discord.Embed(title="Result"))

    async with running(fake, bot):
        await fake.user_sends(world.general.id, world.alice.id, "!work")
        msg = await fake.wait_for_message(lambda m: m.content == "done", timeout=5)
    assert [v.content for v in msg.edits] == ["working..."] and msg.edits[0].embeds == []
    assert msg.embeds[0]["title"] == "Result" and msg.edited_timestamp and msg.edited_at >= msg.created_at
    assert sum(1 for r in fake.requests if r.method == "PATCH") == 1


async def test_guild_permissions_and_permission_check(fake, world):
    bot = make_bot()

    @bot.command()
    async def perms(ctx):
        await ctx.send(f"manage_guild={ctx.author.guild_permissions.manage_guild}")

    @bot.command()
    @commands.has_guild_permissions(manage_guild=True)
    async def admin(ctx):
        await ctx.send("admin ok")

    @bot.event
    async def on_command_error(ctx, error):
        await ctx.send(f"denied: {type(error).__name__}")

    async with running(fake, bot):
        for user, expected in ((world.alice, "False"), (world.boss, "True")):
            sent = await fake.user_sends(world.general.id, user.id, "!perms")
            reply = await fake.wait_for_message(after=sent, timeout=5)
            assert reply.content == f"manage_guild={expected}"
        sent = await fake.user_sends(world.general.id, world.alice.id, "!admin")
        assert (await fake.wait_for_message(after=sent, timeout=5)).content == "denied: MissingPermissions"
        sent = await fake.user_sends(world.general.id, world.boss.id, "!admin")
        assert (await fake.wait_for_message(after=sent, timeout=5)).content == "admin ok"


async def test_reply_gives_resolved_reference_with_attachments(fake, world):
    bot = make_bot()

    @bot.command()
    async def resolve(ctx):
        ref = ctx.message.reference
        target = ref.resolved
        assert isinstance(target, discord.Message)
        data = await target.attachments[0].read()
        await ctx.send(f"{ref.message_id} {target.author.name} {[a.filename for a in target.attachments]} "
                       f"{hashlib.sha256(data).hexdigest()}")

    image = png_bytes((16, 16))
    async with running(fake, bot):
        original = await fake.user_sends(world.art.id, world.alice.id, "look", attachments=[("in.png", image)])
        await fake.user_sends(world.art.id, world.boss.id, "!resolve", reply_to=original.id)
        reply = await fake.wait_for_message(timeout=5)
    assert reply.content == f"{original.id} alice ['in.png'] {hashlib.sha256(image).hexdigest()}"


async def test_dm_command_and_bot_initiated_dm(fake, world):
    bot = make_bot()

    @bot.command()
    async def echo(ctx, *, text: str):
        assert ctx.guild is None and isinstance(ctx.channel, discord.DMChannel)
        await ctx.reply(text)

    @bot.command()
    async def dm_me(ctx):
        await ctx.author.send("psst")

    dm = fake.open_dm(world.alice.id)
    async with running(fake, bot):
        sent = await fake.user_sends(dm.id, world.alice.id, "!echo hi there")
        reply = await fake.wait_for_message(lambda m: m.channel_id == dm.id, timeout=5)
        assert reply.content == "hi there" and reply.message_reference == sent.id and reply.guild_id is None
        await fake.user_sends(world.general.id, world.alice.id, "!dm_me")
        psst = await fake.wait_for_message(lambda m: m.content == "psst", timeout=5)
    assert psst.channel_id == dm.id  # POST /users/@me/channels returned the same DM channel
    assert any(r.path == "/users/@me/channels" for r in fake.requests)


async def test_message_content_intent_is_honoured(fake, world):
    bot = make_bot(message_content=False)
    contents = []
    got_both = asyncio.Event()

    @bot.listen()
    async def on_message(message):
        if not message.author.bot:
            contents.append((message.content, len(message.attachments)))
            if len(contents) == 2:
                got_both.set()

    async with running(fake, bot):
        await fake.user_sends(world.general.id, world.alice.id, "!secret", attachments=[("a.png", png_bytes())])
        await fake.user_sends(world.general.id, world.alice.id, f"hey {world.bot_user.mention}")
        await asyncio.wait_for(got_both.wait(), 5)
    assert contents == [("", 0), (f"hey <@{world.bot_user.id}>", 0)]
    assert fake.bot_messages() == []


async def test_filesize_limits_follow_premium_tier(fake, world):
    boosted = fake.add_guild(name="Boosted", premium_tier=2)
    fake.add_text_channel(boosted.id, "general")
    bot = make_bot()
    async with running(fake, bot):
        assert bot.get_guild(world.guild.id).filesize_limit == 10 * MiB
        assert bot.get_guild(boosted.id).filesize_limit == 50 * MiB
        channel = bot.get_channel(world.general.id)
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(file=discord.File(io.BytesIO(b"\0" * (10 * MiB + 1)), filename="big.bin"))
        assert info.value.status == 413 and info.value.code == 40005
        ok = await channel.send(file=discord.File(io.BytesIO(b"\0" * 1000), filename="small.bin"))
        assert ok.attachments[0].size == 1000


async def test_missing_send_permission_is_forbidden(fake, world):
    fake.set_overwrite(world.art.id, world.guild.id, deny=P.SEND_MESSAGES)
    bot = make_bot()
    async with running(fake, bot):
        with pytest.raises(discord.Forbidden) as info:
            await bot.get_channel(world.art.id).send("hello")
        assert info.value.code == 50013
        assert not bot.get_channel(world.art.id).permissions_for(bot.get_guild(world.guild.id).me).send_messages
        updated = bot.wait_for("guild_channel_update", timeout=5)
        fake.set_overwrite(world.art.id, world.guild.id)  # remove it again: CHANNEL_UPDATE reaches the client
        before, after = await updated
        assert after.permissions_for(after.guild.me).send_messages and not before.overwrites == after.overwrites
        await bot.get_channel(world.art.id).send("hello")


async def test_unhandled_routes_are_recorded(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        with pytest.raises(discord.NotFound):
            await bot.get_channel(world.general.id).create_invite()
    assert fake.unhandled == [("POST", f"/channels/{world.general.id}/invites")]
    fake.unhandled.clear()  # expected here; the fixture checks the rest


async def test_app_command_sync_is_stored(fake, world):
    bot = make_bot()

    @bot.hybrid_command(description="Say pong")
    async def ping(ctx):
        await ctx.send("pong")

    async with running(fake, bot):
        synced = await bot.tree.sync()
        assert [c.name for c in synced] == ["ping"]
        again = await bot.tree.fetch_commands()
        assert [c.id for c in again] == [c.id for c in synced]


# ------------------------------------------------------------------- gateway


async def test_gateway_resume_replays_missed_events(fake, world):
    bot = make_bot()
    resumed = asyncio.Event()

    @bot.event
    async def on_resumed():
        resumed.set()

    @bot.command()
    async def echo(ctx, *, text: str):
        await ctx.send(text)

    async with running(fake, bot):
        assert await fake.disconnect_gateway(4000) == 1
        # Dispatched while the bot is disconnected: buffered and replayed on RESUME.
        await fake.user_sends(world.general.id, world.alice.id, "!echo after the drop")
        await asyncio.wait_for(resumed.wait(), 5)
        await fake.wait_for_message(lambda m: m.content == "after the drop", timeout=5)
        [session] = fake.sessions
        assert session.resumes == 1
    received_ops = [entry[1] for entry in fake.gateway.log if entry[0] == "recv"]
    assert received_ops.count(2) == 1 and received_ops.count(6) == 1
    assert len(fake.gateway.connects) == 2


async def test_raw_gateway_protocol(fake, world):
    async with aiohttp.ClientSession() as http:
        async def connect():
            return await http.ws_connect(fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream")

        async def recv(ws, inflator):
            msg = await asyncio.wait_for(ws.receive(), 5)
            if msg.type != aiohttp.WSMsgType.BINARY:
                return msg
            data = msg.data
            assert data.endswith(b"\x00\x00\xff\xff")
            return json.loads(inflator.decompress(data))

        ws, inflator = await connect(), zlib.decompressobj()
        hello = await recv(ws, inflator)
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
        await ws.send_str(json.dumps({"op": 1, "d": None}))
        assert (await recv(ws, inflator))["op"] == 11
        await ws.send_str(json.dumps({"op": 2, "d": {"token": "bad", "intents": 513, "properties": {}}}))
        closed = await recv(ws, inflator)
        assert closed.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4004
        await ws.close()

        ws, inflator = await connect(), zlib.decompressobj()
        await recv(ws, inflator)
        await ws.send_str(json.dumps({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 3}}))
        assert await recv(ws, inflator) == {"op": 9, "d": False, "s": None, "t": None}
        await ws.send_str(json.dumps({"op": 2, "d": {"token": TOKEN, "intents": 1 | 512, "properties": {}}}))
        ready = await recv(ws, inflator)
        assert (ready["t"], ready["s"]) == ("READY", 1)
        assert ready["d"]["guilds"] == [{"id": str(world.guild.id), "unavailable": True}]
        assert ready["d"]["resume_gateway_url"] == fake.gateway_url
        created = await recv(ws, inflator)
        assert (created["t"], created["s"]) == ("GUILD_CREATE", 2)
        assert [m["user"]["id"] for m in created["d"]["members"]] == [str(world.bot_user.id)]
        await ws.close()

        fake.add_bot(token="limited", name="NoPortalSwitches", privileged_intents=0)
        ws = await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")  # no compression: text frames
        assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["op"] == 10
        members_intent = 1 << 1
        await ws.send_str(json.dumps({"op": 2, "d": {"token": "limited", "intents": members_intent, "properties": {}}}))
        assert (await asyncio.wait_for(ws.receive(), 5)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4014  # privileged intent not enabled "in the developer portal"
        await ws.close()


# ---------------------------------------------------------------- subprocess


BOT_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import discord
    from discord.ext import commands
    import sitecustomize

    # Refuse to run unless sitecustomize pointed discord.py at the fake.
    if not discord.http.Route.BASE.startswith("http://127.0.0.1:"):
        sys.exit(3)
    print("sitecustomize:", sitecustomize.__file__, flush=True)

    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.Bot(command_prefix="!", intents=intents)

    @bot.command()
    async def ping(ctx):
        await ctx.send("pong")

    bot.run(os.environ["DISCORD_TOKEN"])
    """
)


async def test_subprocess_bot_via_sitecustomize(fake, world, tmp_path):
    script = tmp_path / "pingbot.py"
    script.write_text(BOT_SCRIPT)
    env = {**os.environ, **fake.env(), "DISCORD_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.decode().strip() == f"sitecustomize: {SITE_DIR / 'sitecustomize.py'}", first
        await fake.wait_ready(timeout=15)
        sent = await fake.user_sends(world.general.id, world.alice.id, "!ping")
        reply = await fake.wait_for_message(lambda m: m.content == "pong", timeout=10)
        assert reply.channel_id == world.general.id and reply.id > sent.id
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # bot.run() closes cleanly on KeyboardInterrupt
            try:
                await asyncio.wait_for(proc.wait(), 30)  # generous: a loaded 2-core box is slow to unwind
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise
        output = (await proc.stdout.read()).decode()
    assert proc.returncode == 0, output
    await fake.wait_until(lambda: not fake.gateway.connections, timeout=5)  # its websocket is closed


def test_env_points_at_the_site_dir(tmp_path):
    fake = FakeDiscord()
    fake.port = 1234  # not started: only env() formatting is under test
    env = fake.env()
    assert env["FAKE_DISCORD_API"] == "http://127.0.0.1:1234/api/v10"
    assert env["FAKE_DISCORD_GATEWAY"] == "ws://127.0.0.1:1234/gateway"
    site_dir = env["PYTHONPATH"].split(os.pathsep)[0]
    assert os.path.isfile(os.path.join(site_dir, "sitecustomize.py"))
    assert set(env) == {"FAKE_DISCORD_API", "FAKE_DISCORD_GATEWAY", "PYTHONPATH"}


def test_sitecustomize_patches_lazily_and_chains_the_shadowed_one(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_SITECUSTOMIZE_RAN'] = '1'\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(other)]),
        "FAKE_DISCORD_API": "http://127.0.0.1:9/api/v10",
        "FAKE_DISCORD_GATEWAY": "ws://127.0.0.1:9/gateway",
    }
    code = (
        "import os, sys, sitecustomize\n"
        "print(sitecustomize.__file__)\n"
        "print(os.environ.get('SHADOWED_SITECUSTOMIZE_RAN'), 'discord' in sys.modules)\n"
        "import discord\n"
        "print(discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY, discord.asset.Asset.BASE)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == str(SITE_DIR / "sitecustomize.py")
    assert lines[1] == "1 False"  # the shadowed one ran; discord is not imported eagerly
    assert lines[2] == "http://127.0.0.1:9/api/v10 ws://127.0.0.1:9/gateway http://127.0.0.1:9/cdn"
