"""Interactions in tests/fake_discord, exercised with the REAL discord.py client: slash commands with
typed options and attachments, subcommands, autocomplete, message/user context menus, buttons
(DynamicItem), selects, modals (action rows and labels), the callback route with its 3 s deadline and
40060/10062 errors, follow-ups and @original through the token (15 min, 10015), ephemeral visibility,
component validation, command sync routes, the Message Content intent, and edit rate limits.

Everything runs in-process on pytest-asyncio's loop; clocks are injected instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from types import SimpleNamespace
from typing import Literal

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

try:
    from fake_discord import FakeDiscord, Intent, ManualClock, P
except ImportError:  # tests/ became a package
    from tests.fake_discord import FakeDiscord, Intent, ManualClock, P

TOKEN = "test-token"


def png_bytes(size=(32, 24), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot, token: str = TOKEN):
    with fake.patch_client():
        async with bot:
            task = asyncio.create_task(bot.start(token))
            ready = asyncio.create_task(bot.wait_until_ready())
            try:
                done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    task.result()
                assert ready in done, "bot did not reach on_ready within 5 s"
                yield bot
            finally:
                ready.cancel()
                await bot.close()
                finished, _ = await asyncio.wait({task}, timeout=5)
                assert task in finished, "bot.start() did not return after close()"
            task.result()


@pytest.fixture
async def fake():
    async with FakeDiscord() as server:
        server.clock = ManualClock()  # the 3 s deadline and 15 min tokens never depend on this machine's speed
        yield server
        server.assert_clean()


@pytest.fixture
def world(fake: FakeDiscord) -> SimpleNamespace:
    bot_user = fake.add_bot(token=TOKEN, name="StyleBot")
    guild = fake.add_guild(name="Art Club")
    general = fake.add_text_channel(guild.id, "general")
    admin_role = fake.add_role(guild.id, "Admin", permissions=discord.Permissions(manage_guild=True).value)
    alice, bob, boss = fake.add_user("alice"), fake.add_user("bob"), fake.add_user("boss")
    fake.add_member(guild.id, alice.id)
    fake.add_member(guild.id, bob.id)
    fake.add_member(guild.id, boss.id, roles=[admin_role])
    return SimpleNamespace(bot_user=bot_user, guild=guild, general=general, alice=alice, bob=bob, boss=boss)


class Again(discord.ui.DynamicItem[discord.ui.Button], template=r"again:(?P<job>[0-9]+)"):
    """A persistent button, as the bot's Again button: the job id lives in the custom id."""

    def __init__(self, job: int) -> None:
        super().__init__(discord.ui.Button(label="Again", style=discord.ButtonStyle.primary, custom_id=f"again:{job}"))
        self.job = job

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(Again(self.job + 1))
        await interaction.response.edit_message(content=f"again pressed for job {self.job}", view=view)


class OptionsModal(discord.ui.Modal, title="Stylize options"):
    epochs = discord.ui.TextInput(label="Epochs", default="10", max_length=4)
    seed = discord.ui.TextInput(label="Seed", required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"epochs={self.epochs.value} seed={self.seed.value!r}",
                                                ephemeral=True)


def make_bot(*, message_content: bool = False) -> commands.Bot:
    """A small bot with every kind of application command; no Message Content intent by default."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.2)
    bot.seen = {}  # what handlers observed, for assertions
    bot.release = asyncio.Event()  # handlers that wait for the test

    @bot.tree.command(name="stylize", description="Stylize an image")
    @app_commands.describe(content="Content image", style="Style image", epochs="Steps")
    async def stylize(interaction: discord.Interaction, content: discord.Attachment, style: discord.Attachment,
                      epochs: app_commands.Range[int, 1, 500] = 10, weight: float = 1.0, keep_color: bool = False,
                      preset: Literal["fast", "good"] = "fast", style_name: str = ""):
        await interaction.response.defer(thinking=True)
        data = await content.read()
        bot.seen["stylize"] = dict(content=(content.filename, content.size, content.ephemeral), style=style.filename,
                                   epochs=epochs, weight=weight, keep_color=keep_color, preset=preset,
                                   limit=interaction.filesize_limit, perms=interaction.permissions.manage_guild,
                                   app_perms=interaction.app_permissions.send_messages, data=data)
        await interaction.edit_original_response(content=f"done {content.filename} x{epochs}",
                                                 attachments=[discord.File(io.BytesIO(data), "result.png")])

    @stylize.autocomplete("style_name")
    async def style_names(interaction: discord.Interaction, current: str):
        names = ["monet", "munch", "hokusai", "mondrian"]
        return [app_commands.Choice(name=n.title(), value=n) for n in names if n.startswith(current)]

    @bot.tree.command(name="private", description="Answer only the user")
    async def private(interaction: discord.Interaction):
        response = await interaction.response.send_message("only you", ephemeral=True)
        bot.seen["callback"] = (response.message_id, response.is_ephemeral())

    @bot.tree.command(name="slow", description="Answer when the test says so")
    async def slow(interaction: discord.Interaction):
        await bot.release.wait()
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            bot.seen["slow"] = (exc.status, exc.code)

    @bot.tree.command(name="later", description="Defer, then follow up when the test says so")
    async def later(interaction: discord.Interaction):
        await interaction.response.defer()
        await bot.release.wait()
        try:
            await interaction.followup.send("result")
        except discord.HTTPException as exc:
            bot.seen["later"] = (exc.status, exc.code)
            await interaction.channel.send("result, posted in the channel")

    @bot.tree.command(name="form", description="Open the options form")
    async def form(interaction: discord.Interaction):
        await interaction.response.send_modal(OptionsModal())

    @bot.tree.command(name="post", description="Post a message with a persistent button")
    async def post(interaction: discord.Interaction):
        view = discord.ui.View(timeout=None)
        view.add_item(Again(1))
        await interaction.response.send_message("posted", ephemeral=True)
        await interaction.channel.send("job 1 done", view=view)

    @bot.tree.command(name="file", description="Answer with a file")
    async def file(interaction: discord.Interaction):
        await interaction.response.send_message("here", file=discord.File(io.BytesIO(b"abc"), "a.txt"))
        sent = await interaction.followup.send("and a secret", ephemeral=True, wait=True,
                                               file=discord.File(io.BytesIO(b"xyz"), "b.txt"))
        await sent.edit(content="and an edited secret")
        bot.seen["file"] = (interaction.context.guild, interaction.context.dm_channel, interaction.guild_id)

    @bot.tree.command(name="hold", description="Autocomplete that answers when the test says so")
    async def hold(interaction: discord.Interaction, name: str):
        await interaction.response.send_message(name)

    @hold.autocomplete("name")
    async def hold_names(interaction: discord.Interaction, current: str):
        await bot.release.wait()
        return [app_commands.Choice(name="late", value="late")]

    @bot.tree.command(name="limits", description="Server limits (admins)")
    @app_commands.default_permissions(manage_guild=True)
    async def limits(interaction: discord.Interaction):
        await interaction.response.send_message("limits", ephemeral=True)

    settings = app_commands.Group(name="settings", description="Your defaults")

    @settings.command(name="set", description="Set a default")
    async def settings_set(interaction: discord.Interaction, epochs: int):
        await interaction.response.send_message(f"epochs set to {epochs}", ephemeral=True)

    bot.tree.add_command(settings)

    @bot.tree.context_menu(name="Stylize")
    async def stylize_menu(interaction: discord.Interaction, message: discord.Message):
        bot.seen["menu"] = (message.content, [a.filename for a in message.attachments], message.author.id)
        await interaction.response.send_message(f"{len(message.attachments)} images", ephemeral=True)

    @bot.tree.context_menu(name="Profile")
    async def profile(interaction: discord.Interaction, member: discord.Member):
        await interaction.response.send_message(f"profile of {member.name}", ephemeral=True)

    async def on_message(message: discord.Message):
        meta = message.interaction_metadata
        bot.seen.setdefault("messages", []).append((message.id, message.type, meta and meta.user.id))

    bot.add_listener(on_message)

    async def setup_hook():
        bot.add_dynamic_items(Again)

    bot.setup_hook = setup_hook
    return bot


async def call_raw(fake: FakeDiscord, method: str, path: str, **kwargs):
    """A request the way a client outside discord.py would make it; returns (status, json)."""
    async with aiohttp.ClientSession() as http:
        async with http.request(method, fake.api_base + path, **kwargs) as resp:
            return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


# ------------------------------------------------------------------- command sync


async def test_sync_routes_store_validate_and_count(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        assert fake.command_syncs == [] and fake.commands() == []  # nothing syncs by itself
        synced = await bot.tree.sync()
        assert sorted(c.name for c in synced) == ["Profile", "Stylize", "file", "form", "hold", "later", "limits", "post",
                                                  "private", "settings", "slow", "stylize"]
        first = {c["name"]: c["id"] for c in fake.commands()}
        assert fake.command_creates == 12 and [s.method for s in fake.command_syncs] == ["PUT"]
        await bot.tree.sync()  # unchanged names keep their ids and create nothing
        assert {c["name"]: c["id"] for c in fake.commands()} == first and fake.command_creates == 12
        limits = next(c for c in fake.commands() if c["name"] == "limits")
        assert limits["default_member_permissions"] == str(P.MANAGE_GUILD)
        bot.tree.copy_global_to(guild=world.guild)
        await bot.tree.sync(guild=world.guild)
        assert len(fake.commands(world.guild.id)) == 12 and fake.command_syncs[-1].guild_id == world.guild.id
        fetched = await bot.tree.fetch_commands(guild=world.guild)
        assert {c.name for c in fetched} == {c["name"] for c in fake.commands(world.guild.id)}
        # Discord's validation: bad name, too long description, too many options, required after optional.
        bad = [
            {"name": "Bad Name", "description": "x", "type": 1},
            {"name": "long", "description": "d" * 101, "type": 1},
            {"name": "many", "description": "x", "type": 1,
             "options": [{"name": f"o{i}", "description": "x", "type": 3} for i in range(26)]},
            {"name": "order", "description": "x", "type": 1, "options": [
                {"name": "a", "description": "x", "type": 3},
                {"name": "b", "description": "x", "type": 3, "required": True}]},
        ]
        with pytest.raises(discord.HTTPException) as err:
            await bot.http.bulk_upsert_global_commands(bot.application_id, bad)
        assert err.value.status == 400 and err.value.code == 50035
        errors = err.value.text  # discord.py flattens Discord's error tree into "In <path>: <message>"
        assert "In 0.name: Command name is invalid" in errors
        assert "In 1.description: Must be between 1 and 100 in length." in errors
        assert "In 2.options: Must be 25 or fewer in length." in errors
        assert "In 3.options.1.required: Required options must be placed before" in errors
        assert len(fake.commands()) == 12  # a refused overwrite changes nothing
        # Single-command routes.
        created = await bot.http.upsert_global_command(bot.application_id, {"name": "extra", "description": "x"})
        assert fake.command_creates == 25 and fake.command_syncs[-1].method == "POST"  # 12 global, 12 guild, 1
        edited = await bot.http.edit_global_command(bot.application_id, created["id"], {"description": "y"})
        assert edited["id"] == created["id"] and edited["description"] == "y"
        assert fake.command_syncs[-1].method == "PATCH" and fake.command_creates == 25
        with pytest.raises(discord.HTTPException) as err:
            await bot.http.edit_global_command(bot.application_id, created["id"], {"name": "Extra Cmd"})
        assert err.value.code == 50035
        await bot.http.delete_global_command(bot.application_id, created["id"])
        assert "extra" not in [c["name"] for c in fake.commands()]


# ------------------------------------------------------------------- slash commands


async def test_slash_typed_options_attachment_defer_and_edit_original(fake, world):
    bot = make_bot()
    content = png_bytes((32, 24))
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "stylize",
                              options={"content": ("cat.png", content), "style": ("s.png", png_bytes(), "image/png"),
                                       "epochs": 20, "weight": 2.5, "keep_color": True, "preset": "good"})
        await ix.wait_until(lambda i: i.original is not None and not i.original.loading, timeout=5)
    seen = bot.seen["stylize"]
    assert seen["content"] == ("cat.png", len(content), True) and seen["style"] == "s.png"
    assert (seen["epochs"], seen["weight"], seen["keep_color"], seen["preset"]) == (20, 2.5, True, "good")
    assert seen["data"] == content and seen["limit"] == 10 * 1024 * 1024
    assert seen["perms"] is False and seen["app_perms"] is True  # member permissions computed per channel
    assert ix.response_type == 5 and ix.deferred and not ix.ephemeral
    msg = ix.original
    assert msg.content == "done cat.png x20" and msg.attachment_names == ["result.png"]
    assert msg.attachments[0].data == content and msg.type == 20 and msg.webhook_id == world.bot_user.id
    assert msg.edits[0].content == "" and msg.interaction_metadata["user"]["id"] == str(world.alice.id)
    assert fake.public_messages(world.general) == [msg]
    # The bot got MESSAGE_CREATE for the (public) thinking message and parsed its interaction metadata.
    assert bot.seen["messages"] == [(msg.id, discord.MessageType.chat_input_command, world.alice.id)]


async def test_client_side_option_checks_and_visibility(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        with pytest.raises(ValueError, match="no slash command"):
            await fake.slash(world.alice, world.general, "stylize", options={})  # not registered yet
        fake.register_tree(bot)
        image = ("a.png", png_bytes())
        for options, why in [({"style": image}, "required"),
                             ({"content": image, "style": image, "epochs": 501}, "outside"),
                             ({"content": image, "style": image, "epochs": "5"}, "integer"),
                             ({"content": image, "style": image, "preset": "best"}, "choices"),
                             ({"content": image, "style": image, "colour": 1}, "no option")]:
            with pytest.raises(ValueError, match=why):
                await fake.slash(world.alice, world.general, "stylize", options=options)
        assert fake.interactions == []  # nothing reached the bot
        # default_member_permissions hides /limits from plain members; admins and the owner see it.
        assert "limits" not in fake.visible_commands(world.alice, world.general)
        assert "limits" in fake.visible_commands(world.boss, world.general)
        with pytest.raises(PermissionError):
            await fake.slash(world.alice, world.general, "limits")
        ix = await fake.slash(world.boss, world.general, "limits")
        await ix.wait_acknowledged()
        assert ix.original.content == "limits"
        fake.set_overwrite(world.general.id, world.guild.id, deny=P.USE_APPLICATION_COMMANDS)
        assert fake.visible_commands(world.alice, world.general) == []


async def test_subcommand_and_user_menu(fake, world):
    bot = make_bot()
    admin = app_commands.Group(name="admin", description="Admin commands")
    limits = app_commands.Group(name="limits", description="Server limits", parent=admin)

    @limits.command(name="set", description="Set a limit")
    async def limits_set(interaction: discord.Interaction, max_size: app_commands.Range[int, 32, 4096]):
        await interaction.response.send_message(f"max_size={max_size}")

    @bot.tree.command(name="where", description="Channel and role options")
    async def where(interaction: discord.Interaction, channel: discord.TextChannel, role: discord.Role,
                    who: discord.Member):
        await interaction.response.send_message(f"{channel.name} {role.name} {who.name}")

    bot.tree.add_command(admin)
    async with running(fake, bot):
        fake.register_tree(bot)
        with pytest.raises(ValueError, match="needs a subcommand"):
            await fake.slash(world.alice, world.general, "settings")
        ix = await fake.slash(world.alice, world.general, "settings set", options={"epochs": 42})
        await ix.wait_acknowledged()
        assert ix.data["options"] == [{"name": "set", "type": 1, "options": [{"name": "epochs", "type": 4,
                                                                             "value": 42}]}]
        assert ix.original.content == "epochs set to 42" and ix.original.ephemeral_to == world.alice.id
        nested = await fake.slash(world.boss, world.general, "admin limits set", options={"max_size": 512})
        await nested.wait_acknowledged()
        assert nested.original.content == "max_size=512" and 0 <= nested.response_delay < 3
        assert nested.data["options"][0]["options"][0]["options"] == [{"name": "max_size", "type": 4, "value": 512}]
        with pytest.raises(ValueError, match="no subcommand"):
            await fake.slash(world.boss, world.general, "admin limits get")
        role = fake.state.guilds[world.guild.id].everyone_role
        where = await fake.slash(world.alice, world.general, "where",
                                 options={"channel": world.general, "role": role.id, "who": world.bob})
        await where.wait_acknowledged()
        assert where.original.content == "general @everyone bob"
        menu = await fake.user_menu(world.alice, world.bob, world.general, "Profile")
        await menu.wait_acknowledged()
        assert menu.original.content == "profile of bob" and menu.original.type == 23


async def test_autocomplete_choices(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.autocomplete(world.alice, world.general, "stylize", options={"style_name": "mo"},
                                     focused="style_name")
        await ix.wait_acknowledged()
    assert ix.type == 4 and ix.response_type == 8
    assert ix.choices == [{"name": "Monet", "value": "monet"}, {"name": "Mondrian", "value": "mondrian"}]
    assert ix.original is None and fake.public_messages(world.general) == []


async def test_files_through_the_callback_and_followups_in_guild_and_dm(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        for channel, context in ((world.general, (True, False, world.guild.id)), (fake.open_dm(world.alice), None)):
            bot.seen.pop("file", None)
            ix = await fake.slash(world.alice, channel, "file")
            await fake.wait_until(lambda: "file" in bot.seen, timeout=5)
            assert ix.original.attachments[0].data == b"abc" and ix.original.content == "here"
            [secret] = ix.followups
            assert secret.attachments[0].data == b"xyz" and secret.content == "and an edited secret"
            assert secret.ephemeral_to == world.alice.id
            if context is not None:
                assert bot.seen["file"] == context and "member" in ix.payload
            else:  # a DM: `user` instead of `member`, context BOT_DM, app permissions of a bot DM
                assert bot.seen["file"] == (False, True, None) and "member" not in ix.payload
                assert ix.payload["context"] == 1 and int(ix.payload["app_permissions"]) & P.ATTACH_FILES


# --------------------------------------------------------------------- ephemeral


async def test_ephemeral_reply_is_seen_only_by_the_user(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "private")
        await fake.wait_until(lambda: "callback" in bot.seen, timeout=5)
        msg = ix.original
        assert bot.seen["callback"] == (msg.id, True)  # with_response: the callback response object
        assert ix.ephemeral and msg.flags & 64 and msg.ephemeral_to == world.alice.id
        assert msg in fake.visible_to(world.alice, world.general)
        assert msg not in fake.visible_to(world.bob, world.general) and fake.public_messages(world.general) == []
        assert [m async for m in world_channel(bot, world).history()] == []  # not in channel history
        with pytest.raises(discord.NotFound) as err:  # nor reachable by channel routes
            await world_channel(bot, world).get_partial_message(msg.id).edit(content="x")
        assert err.value.code == 10008


def world_channel(bot, world) -> discord.TextChannel:
    return bot.get_channel(world.general.id)


# -------------------------------------------------------------- deadlines / tokens


async def test_three_second_deadline_and_double_acknowledgement(fake, world):
    clock = fake.clock
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "slow")
        await asyncio.sleep(0)
        clock.advance(3.5)
        bot.release.set()
        await fake.wait_until(lambda: "slow" in bot.seen, timeout=5)
        assert bot.seen["slow"] == (404, 10062) and not ix.acknowledged and ix.expired
        assert fake.unanswered_interactions == [ix]
        assert ix.errors == [("POST", "/api/v10/interactions/{interaction_id}/{token}/callback", 404, 10062)]
        # A prompt answer, then a second acknowledgement (discord.py itself refuses a second response,
        # so it is sent as a raw HTTP client would).
        ok = await fake.slash(world.alice, world.general, "private")
        await ok.wait_acknowledged()
        status, body = await call_raw(fake, "POST", f"/interactions/{ok.id}/{ok.token}/callback",
                                      json={"type": 4, "data": {"content": "again"}})
        assert (status, body["code"], body["message"]) == (400, 40060, "Interaction has already been acknowledged.")
        status, body = await call_raw(fake, "POST", f"/interactions/{ok.id}/not-the-token/callback",
                                      json={"type": 4, "data": {"content": "x"}})
        assert (status, body["code"]) == (404, 10062)


async def test_followup_after_token_expiry_fails_and_channel_message_still_delivers(fake, world):
    clock = fake.clock
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "later")
        await ix.wait_acknowledged()
        assert ix.original.loading and ix.deferred
        clock.advance(15 * 60 + 1)  # the job outlived the interaction token
        bot.release.set()
        posted = await fake.wait_for_message(lambda m: m.content == "result, posted in the channel", timeout=5)
    assert bot.seen["later"] == (404, 10015)
    assert posted.interaction_id is None and posted.webhook_id is None  # an ordinary channel message
    assert ix.errors and ix.errors[0][2:] == (404, 10015)


async def test_webhook_routes_followups_and_original(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "later")
        app = world.bot_user.id
        # Before the bot answers, the webhook does not exist yet.
        status, body = await call_raw(fake, "GET", f"/webhooks/{app}/{ix.token}/messages/@original")
        assert status in (200, 404)  # the bot may already have deferred
        await ix.wait_acknowledged()
        base = f"/webhooks/{app}/{ix.token}"
        # First follow-up after a defer edits the loading message (documented, deprecated behaviour).
        status, first = await call_raw(fake, "POST", base, json={"content": "finished", "flags": 64})
        assert status == 200 and int(first["id"]) == ix.original_id and not ix.original.loading
        assert not ix.original.ephemeral  # the defer's visibility is kept
        status, second = await call_raw(fake, "POST", base, json={"content": "secret", "flags": 64})
        assert status == 200 and int(second["id"]) in ix.followup_ids
        follow = ix.followups[0]
        assert follow.ephemeral_to == world.alice.id and follow.message_reference == ix.original_id
        status, got = await call_raw(fake, "GET", f"{base}/messages/{follow.id}")
        assert status == 200 and got["content"] == "secret" and got["flags"] & 64
        status, edited = await call_raw(fake, "PATCH", f"{base}/messages/@original", json={"content": "v2"})
        assert status == 200 and ix.original.content == "v2" and [v.content for v in ix.original.edits] == ["", "finished"]
        status, _ = await call_raw(fake, "GET", f"{base}/messages/{world.general.id}")
        assert status == 404  # not a message of this token
        status, _ = await call_raw(fake, "DELETE", f"{base}/messages/{follow.id}")
        assert status == 204 and follow.deleted
        fake.expire_interaction(ix)
        status, body = await call_raw(fake, "PATCH", f"{base}/messages/@original", json={"content": "v3"})
        assert (status, body["code"], body["message"]) == (404, 10015, "Unknown Webhook")
        bot.release.set()
        await fake.wait_until(lambda: "later" in bot.seen, timeout=5)


async def test_unanswered_interaction_has_no_webhook(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "slow")  # waits for bot.release
        status, body = await call_raw(fake, "POST", f"/webhooks/{world.bot_user.id}/{ix.token}",
                                      json={"content": "too early"})
        assert (status, body["code"]) == (404, 10015)
        status, body = await call_raw(fake, "POST", f"/interactions/{ix.id}/{ix.token}/callback",
                                      json={"type": 6})
        assert status == 400 and body["code"] == 50035  # DEFERRED_UPDATE is for components only
        bot.release.set()
        await ix.wait_acknowledged()
        assert ix.original.content == "late"


async def test_invalid_responses_are_refused_and_leave_the_interaction_open(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "slow")  # the bot waits for bot.release
        callback = f"/interactions/{ix.id}/{ix.token}/callback"
        refused = [
            ({"type": 9, "data": {"custom_id": "m", "title": "t" * 46, "components": [
                {"type": 18, "label": "L", "component": {"type": 4, "custom_id": "a", "style": 1}}]}},
             ["data", "title"], "BASE_TYPE_BAD_LENGTH"),
            ({"type": 9, "data": {"custom_id": "m", "title": "t", "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "a", "style": 3, "label": "x"}]}]}},
             ["data", "components", "0", "components", "0", "style"], "BASE_TYPE_CHOICES"),
            ({"type": 4, "data": {"content": "x" * 2001}}, ["data", "content"], "BASE_TYPE_MAX_LENGTH"),
            ({"type": 8, "data": {"choices": []}}, ["type"], "INTERACTION_CALLBACK_TYPE_INVALID"),
        ]
        for body, path, code in refused:
            status, answer = await call_raw(fake, "POST", callback, json=body)
            node = answer["errors"]
            for part in path:
                node = node[part]
            assert (status, answer["code"], node["_errors"][0]["code"]) == (400, 50035, code)
        status, answer = await call_raw(fake, "POST", callback, json={"type": 4, "data": {}})
        assert (status, answer["code"]) == (400, 50006)
        assert not ix.acknowledged and len(ix.errors) == 5
        status, _ = await call_raw(fake, "POST", callback, json={"type": 4, "data": {"content": "first"}})
        assert status == 204 and ix.original.content == "first"
        bot.release.set()  # now the bot answers too: Discord refuses the second acknowledgement
        await fake.wait_until(lambda: "slow" in bot.seen, timeout=5)
        assert bot.seen["slow"] == (400, 40060)

        bot.release.clear()
        auto = await fake.autocomplete(world.alice, world.general, "hold", options={"name": "x"}, focused="name")
        status, answer = await call_raw(fake, "POST", f"/interactions/{auto.id}/{auto.token}/callback",
                                        json={"type": 8, "data": {"choices": [{"name": str(i), "value": str(i)}
                                                                              for i in range(26)]}})
        assert (status, answer["errors"]["data"]["choices"]["_errors"][0]["code"]) == (400, "BASE_TYPE_MAX_LENGTH")
        bot.release.set()
        await auto.wait_acknowledged()
        assert auto.choices == [{"name": "late", "value": "late"}]


# -------------------------------------------------------- context menu, intent


async def test_message_context_menu_delivers_target_without_message_content(fake, world):
    bot = make_bot(message_content=False)
    async with running(fake, bot):
        fake.register_tree(bot)
        sent = await fake.user_sends(world.general.id, world.alice.id, "my two pictures",
                                     attachments=[("c.png", png_bytes()), ("s.png", png_bytes(color=(0, 0, 255)))])
        ix = await fake.context_menu(world.bob, sent, "Stylize")
        await ix.wait_acknowledged()
    # Documented exception: the target of a message command carries its content without the intent.
    assert bot.seen["menu"] == ("my two pictures", ["c.png", "s.png"], world.alice.id)
    assert ix.data["target_id"] == str(sent.id) and ix.original.content == "2 images"
    assert ix.original.ephemeral_to == world.bob.id


async def test_message_content_intent_refused_at_identify(fake, world):
    fake.state.bots[world.bot_user.id].privileged_intents = Intent.GUILD_MEMBERS  # portal switch off
    bot = make_bot(message_content=True)
    with fake.patch_client():
        async with bot:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.start(TOKEN), 10)
    # discord.py raises PrivilegedIntentsRequired only for close code 4014.
    # Without the intent the same bot starts and still gets interactions.
    bot = make_bot(message_content=False)
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "private")
        await ix.wait_acknowledged()
        assert not fake.sessions[0].has_intent(Intent.MESSAGE_CONTENT)


# ------------------------------------------------------ buttons, selects, modals


async def test_dynamic_item_button_updates_message_and_survives_restart(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "post")
        posted = await fake.wait_for_message(lambda m: m.content == "job 1 done", timeout=5)
        button = fake.button(posted, label="Again")
        assert button["custom_id"] == "again:1" and button["style"] == 1 and isinstance(button["id"], int)
        assert ix.original.ephemeral
    # A fresh process: only the DynamicItem registered in setup_hook knows the button.
    bot = make_bot()
    async with running(fake, bot):
        press = await fake.press_button(world.bob, posted, "again:1")
        await press.wait_acknowledged()
        assert press.response_type == 7 and press.original_id == posted.id
        assert posted.content == "again pressed for job 1" and fake.buttons(posted)[0]["custom_id"] == "again:2"
        assert press.payload["message"]["id"] == str(posted.id)
        with pytest.raises(ValueError, match="no such component"):
            await fake.press_button(world.bob, posted, "again:1")  # that button is gone now


async def test_modal_from_slash_command_and_label_modal_from_button(fake, world):
    bot = make_bot()

    class LabelModal(discord.ui.Modal, title="Vary"):
        steps = discord.ui.Label(text="Steps", description="How long", component=discord.ui.TextInput(
            default="30", min_length=1, max_length=3))

        async def on_submit(self, interaction):
            await interaction.response.edit_message(content=f"vary steps={self.steps.component.value}")

    class Vary(discord.ui.View):
        @discord.ui.button(label="Vary", custom_id="vary")
        async def vary(self, interaction, button):
            await interaction.response.send_modal(LabelModal())

    @bot.tree.command(name="vary", description="A message with a Vary button")
    async def vary(interaction: discord.Interaction):
        await interaction.response.send_message("result", view=Vary())

    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "form")
        await ix.wait_acknowledged()
        assert ix.response_type == 9 and ix.modal["title"] == "Stylize options" and ix.original is None
        with pytest.raises(ValueError, match="at most|outside"):
            await fake.submit_modal(world.alice, ix, {"Epochs": "12345"})  # fields by label or custom_id
        with pytest.raises(ValueError, match="only the user"):
            await fake.submit_modal(world.bob, ix, {"Epochs": "5"})
        with pytest.raises(ValueError, match="no field"):
            await fake.submit_modal(world.alice, ix, {"Steps": "5"})
        sub = await fake.submit_modal(world.alice, ix, {"Seed": "7"})  # Epochs keeps its pre-filled "10"
        await sub.wait_acknowledged()
        assert sub.type == 5 and sub.original.content == "epochs=10 seed='7'" and sub.original.ephemeral
        assert sub.data["components"][0]["components"][0]["value"] == "10"
        meta = sub.original.interaction_metadata
        assert meta["type"] == 5 and meta["triggering_interaction_metadata"]["id"] == str(ix.id)

        cmd = await fake.slash(world.alice, world.general, "vary")
        await cmd.wait_acknowledged()
        press = await fake.press_button(world.alice, cmd.original, "vary")
        await press.wait_acknowledged()
        assert press.modal["components"][0]["type"] == 18  # discord.py 2.7 Label
        custom_id = press.modal["components"][0]["component"]["custom_id"]
        done = await fake.submit_modal(world.alice, press, {custom_id: "55"})
        await done.wait_acknowledged()
        assert done.response_type == 7 and cmd.original.content == "vary steps=55"


async def test_select_and_ephemeral_buttons_are_private(fake, world):
    bot = make_bot()

    class Pick(discord.ui.View):
        @discord.ui.select(custom_id="preset", options=[discord.SelectOption(label="Fast", value="fast"),
                                                        discord.SelectOption(label="Good", value="good")])
        async def preset(self, interaction, select):
            await interaction.response.send_message(f"picked {select.values[0]}", ephemeral=True)

        @discord.ui.button(label="Hide", custom_id="hide")
        async def hide(self, interaction, button):
            await interaction.response.defer()
            await interaction.delete_original_response()

    @bot.tree.command(name="pick", description="Ephemeral picker")
    async def pick(interaction: discord.Interaction):
        await interaction.response.send_message("pick one", view=Pick(), ephemeral=True)

    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "pick")
        await ix.wait_acknowledged()
        with pytest.raises(ValueError, match="ephemeral"):
            await fake.press_button(world.bob, ix.original, "hide")
        with pytest.raises(ValueError, match="pick"):
            await fake.select(world.alice, ix.original, "preset", ["best"])
        picked = await fake.select(world.alice, ix.original, "preset", ["good"])
        await picked.wait_acknowledged()
        assert picked.original.content == "picked good" and picked.original.type == 19
        hide = await fake.press_button(world.alice, ix.original, "hide")
        await fake.wait_until(lambda: ix.original.deleted, timeout=5)
        assert hide.response_type == 6


# --------------------------------------------------------- component validation


async def test_components_on_channel_messages_are_validated(fake, world):
    bot = make_bot()
    async with running(fake, bot):
        channel = world_channel(bot, world)
        route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel.id)
        good = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "go"},
                                          {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"}]}
        data = await bot.http.request(route, json={"content": "ok", "components": [good]})
        assert [c["id"] for c in data["components"][0]["components"]] == [2, 3]  # Discord numbers them
        cases = [
            ([{"type": 2, "style": 1, "label": "x", "custom_id": "x"}], "components.0", "UNION_TYPE_CHOICES"),
            ([{"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": "c" * 101}]}],
             "components.0.components.0.custom_id", "BASE_TYPE_BAD_LENGTH"),
            ([{"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": "a"},
                                         {"type": 2, "style": 2, "label": "y", "custom_id": "a"}]}],
             "components.0.components.1.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED"),
            ([{"type": 1, "components": [{"type": 2, "style": 5, "label": "x", "custom_id": "a"}]}],
             "components.0.components.0.url", "BASE_TYPE_REQUIRED"),
            ([good] * 6, "components", "BASE_TYPE_MAX_LENGTH"),
            ([{"type": 1, "components": [{"type": 2, "style": 2, "custom_id": "e", "label": "x", "emoji": {}}]}],
             "components.0.components.0.emoji.name", "BUTTON_COMPONENT_INVALID_EMOJI"),
            ([{"type": 1, "components": [{"type": 2, "style": 2, "custom_id": "e"}]}],
             "components.0.components.0", "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED"),
            ([{"type": 1, "components": [{"type": 3, "custom_id": "s", "options": [{"label": "a", "value": "a"}]},
                                         {"type": 2, "style": 1, "label": "x", "custom_id": "b"}]}],
             "components.0.components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED"),
            ([{"type": 1, "components": [{"type": 2, "style": 1, "label": "l" * 81, "custom_id": "a"}]}],
             "components.0.components.0.label", "BASE_TYPE_BAD_LENGTH"),
        ]
        for components, path, code in cases:
            with pytest.raises(discord.HTTPException) as err:
                await bot.http.request(route, json={"content": "x", "components": components})
            assert err.value.status == 400 and err.value.code == 50035
            assert f"In {path}: " in err.value.text, (path, err.value.text)
            status, body = await call_raw(fake, "POST", f"/channels/{channel.id}/messages",
                                          json={"content": "x", "components": components},
                                          headers={"Authorization": f"Bot {TOKEN}"})
            node = body["errors"]
            for part in path.split("."):
                node = node[part]
            assert status == 400 and node["_errors"][0]["code"] == code
        # A valid message's buttons can be pressed; a disabled one cannot.
        view = discord.ui.View()
        view.add_item(discord.ui.Button(label="Off", custom_id="off", disabled=True))
        msg = await channel.send("disabled", view=view)
        with pytest.raises(ValueError, match="disabled"):
            await fake.press_button(world.alice, msg.id, "off")


async def test_message_bodies_over_discords_limits_are_refused(fake, world):
    """allowed_mentions, nonce, embeds, attachment descriptions (developers/resources/message.mdx) and a
    modal's pre-filled values (developers/components/reference.mdx, Text Input) as Discord refuses them."""
    bot = make_bot()
    async with running(fake, bot):
        channel = world_channel(bot, world)
        route = f"/channels/{channel.id}/messages"
        auth = {"Authorization": f"Bot {TOKEN}"}
        user = str(world.alice.id)
        embed = {"title": "t"}
        refused = [
            ({"allowed_mentions": {"parse": ["users"], "users": [user]}}, "allowed_mentions",
             "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"),
            ({"allowed_mentions": {"parse": ["roles"], "roles": [user]}}, "allowed_mentions",
             "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"),
            ({"allowed_mentions": {"parse": ["members"]}}, "allowed_mentions.parse.0", "BASE_TYPE_CHOICES"),
            ({"allowed_mentions": {"users": [str(i) for i in range(1, 102)]}}, "allowed_mentions.users",
             "BASE_TYPE_MAX_LENGTH"),
            ({"nonce": "n" * 26}, "nonce", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"title": "t" * 257}]}, "embeds.0.title", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"description": "d" * 4097}]}, "embeds.0.description", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"footer": {"text": "f" * 2049}}]}, "embeds.0.footer.text", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"author": {"name": "a" * 257}}]}, "embeds.0.author.name", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]}, "embeds.0.fields.0.value",
             "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]}, "embeds.0.fields.0.name",
             "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, "embeds.0.fields", "BASE_TYPE_MAX_LENGTH"),
            ({"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]}, "embeds",
             "MAX_EMBED_SIZE_EXCEEDED"),
            ({"attachments": [{"id": 0, "description": "d" * 1025}]}, "attachments.0.description",
             "BASE_TYPE_MAX_LENGTH"),
        ]
        for extra, path, code in refused:
            status, body = await call_raw(fake, "POST", route, json={"content": "x", **extra}, headers=auth)
            node = body["errors"]
            for part in path.split("."):
                node = node[part]
            assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body"), extra
            assert node["_errors"][0]["code"] == code, (extra, body)
        with pytest.raises(discord.HTTPException) as err:  # discord.py shows the path, as from Discord
            await channel.send("x", embed=discord.Embed(title="ok", description="d").set_footer(text="f" * 2049))
        assert err.value.code == 50035 and "In embeds.0.footer.text: " in err.value.text
        accepted = [  # the documented valid shapes
            {"allowed_mentions": {"parse": ["everyone"], "users": [user]}},
            {"allowed_mentions": {"parse": ["users", "roles"], "users": []}},
            {"nonce": "n" * 25, "embeds": [embed, {"footer": {"text": "f" * 2048}}]},
        ]
        for extra in accepted:
            status, body = await call_raw(fake, "POST", route, json={"content": "x", **extra}, headers=auth)
            assert status == 200, (extra, body)

        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "slow")  # the bot waits for bot.release
        callback = f"/interactions/{ix.id}/{ix.token}/callback"

        def modal(**text_input):
            box = {"type": 4, "custom_id": "a", "style": 1, **text_input}
            return {"type": 9, "data": {"custom_id": "m", "title": "t",
                                        "components": [{"type": 18, "label": "L", "component": box}]}}

        for text_input in ({"value": ""}, {"value": "abc", "max_length": 2}, {"value": "a", "min_length": 2},
                           {"value": "v" * 4001}):
            status, body = await call_raw(fake, "POST", callback, json=modal(**text_input))
            node = body["errors"]["data"]["components"]["0"]["component"]["value"]
            assert (status, node["_errors"][0]["code"]) == (400, "BASE_TYPE_BAD_LENGTH"), text_input
        status, _ = await call_raw(fake, "POST", callback, json=modal(value="ab", min_length=2, max_length=2))
        assert status == 204 and ix.modal is not None
        bot.release.set()
        await fake.wait_until(lambda: "slow" in bot.seen, timeout=5)


# ------------------------------------------------------------------ rate limits


async def test_edit_rate_limit_and_edit_log(fake, world):
    fake.set_rate_limit("edit", limit=2, per=0.3)
    bot = make_bot()
    async with running(fake, bot):
        msg = await world_channel(bot, world).send("v0")
        for i in range(1, 6):
            await msg.edit(content=f"v{i}")
        times = fake.edits_in(world.general.id)
    assert len(times) == 5 and fake.get_message(msg.id).content == "v5"
    # Fixed windows of 0.3 s, each opened by its first edit, hold at most 2 edits: discord.py waited for the
    # bucket (X-RateLimit headers) or retried a 429.
    assert times[2] - times[0] >= 0.3 - 0.01 and times[4] - times[2] >= 0.3 - 0.01
    assert fake.edit_log[0][:2] == (world.general.id, msg.id)


async def test_interaction_webhook_edits_have_their_own_bucket(fake, world):
    """The webhook routes' major parameter is the webhook and its token: an interaction's edits do not
    spend the channel's edits, and are limited per interaction."""
    bot = make_bot()
    async with running(fake, bot):
        fake.register_tree(bot)
        ix = await fake.slash(world.alice, world.general, "private")
        await ix.wait_acknowledged()
        fake.set_rate_limit("edit", limit=1, per=30)
        base = f"/webhooks/{world.bot_user.id}/{ix.token}/messages/@original"
        for text in ("one", "two"):
            status, _ = await call_raw(fake, "PATCH", base, json={"content": text})
            assert status == 200
        fake.set_rate_limit("interaction-edit", limit=1, per=30)
        status, _ = await call_raw(fake, "PATCH", base, json={"content": "three"})
        assert status == 200
        status, body = await call_raw(fake, "PATCH", base, json={"content": "four"})
        assert status == 429 and body["retry_after"] > 0 and ix.original.content == "three"


async def test_429_body_and_headers(fake, world):
    fake.set_rate_limit("send", limit=1, per=30)
    headers = {"Authorization": f"Bot {TOKEN}"}
    path = f"/channels/{world.general.id}/messages"
    status, _ = await call_raw(fake, "POST", path, json={"content": "1"}, headers=headers)
    assert status == 200
    async with aiohttp.ClientSession() as http:
        async with http.post(fake.api_base + path, json={"content": "2"}, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 429 and resp.headers["X-RateLimit-Remaining"] == "0" and resp.headers["Via"]
    assert body["message"] == "You are being rate limited." and 0 < body["retry_after"] <= 30
    assert body["global"] is False and fake.rate_limits.limited[0][:2] == ("send", world.general.id)
