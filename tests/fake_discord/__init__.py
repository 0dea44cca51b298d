"""A fake Discord (REST API v10 + gateway websocket) on 127.0.0.1 for end-to-end tests.

The REAL discord.py client (``commands.Bot``) runs against it, in-process or
in a subprocess; nothing ever contacts discord.com.

In-process (pytest-asyncio)::

    import asyncio, discord
    from discord.ext import commands
    from fake_discord import FakeDiscord

    async def test_echo():
        async with FakeDiscord() as fake:
            bot_user = fake.add_bot(token="test-token", name="StyleBot")
            guild = fake.add_guild(name="Test Server")          # bots join new guilds automatically
            channel = fake.add_text_channel(guild.id, "general")
            alice = fake.add_user("alice")
            fake.add_member(guild.id, alice.id)

            intents = discord.Intents.default()
            intents.message_content = True
            bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.2)

            @bot.command()
            async def echo(ctx, *, text):
                await ctx.reply(text)

            with fake.patch_client():                           # Route.BASE / DEFAULT_GATEWAY -> fake
                async with bot:
                    task = asyncio.create_task(bot.start("test-token"))
                    await asyncio.wait_for(bot.wait_until_ready(), 5)
                    sent = await fake.user_sends(channel.id, alice.id, "!echo hello")
                    reply = await fake.wait_for_message(lambda m: m.content == "hello", timeout=5)
                    assert reply.message_reference == sent.id
                    await bot.close()
                    await asyncio.wait_for(task, 5)
            fake.assert_clean()                                # no unimplemented route was called

Subprocess (the bot started exactly as users start it)::

    env = {**os.environ, **fake.env(), "DISCORD_TOKEN": "test-token"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "--config", cfg, env=env)
    await fake.wait_ready(timeout=15)

``fake.env()`` puts ``tests/fake_discord/site`` (holding ``sitecustomize.py``)
first on PYTHONPATH and sets FAKE_DISCORD_API / FAKE_DISCORD_GATEWAY; the
child's discord.py is patched when it imports it.  Stop the child with
SIGINT (``bot.run`` then closes cleanly) and wait for it with a timeout.

Modules: ``fake`` (FakeDiscord: lifecycle, patching, waiting, inspection),
``world`` (add_bot/add_user/add_guild/add_text_channel/add_role/add_member/
update_member/update_role/set_overwrite/open_dm), ``messaging`` (user_sends/
user_edits/user_deletes/user_reacts + message storage), ``server`` (REST routes),
``gateway`` (websocket protocol), ``state`` (payloads, permission maths),
``models`` (data classes, permission/intent bits), ``interactions`` (users invoking
commands/components/modals, FakeInteraction), ``commands`` (command registry, visibility), ``interaction_routes``
(callback + interaction webhook routes), ``components`` (Discord's validation of components,
modals, choices and commands), ``errors`` (error bodies), ``ratelimits``,
``site/sitecustomize.py``.

Things worth knowing:

* ``wait_ready`` is server-side (READY + GUILD_CREATEs written).  discord.py's
  own ``on_ready`` comes ``guild_ready_timeout`` (default 2 s) later; pass
  ``guild_ready_timeout=0.2`` to in-process bots to keep tests fast.
* ``wait_for_message``/``wait_until``/``wait_ready`` are woken by the fake's own
  state changes (no polling).  For CLIENT-side conditions use discord.py's
  ``bot.wait_for(...)``/an ``asyncio.Event`` (or ``wait_until(..., poll=0.05)``).
* Intents are honoured like on Discord: guild messages need GUILD_MESSAGES,
  DMs need DIRECT_MESSAGES, and without MESSAGE_CONTENT the bot receives empty
  content/attachments/embeds (except in DMs, its own messages, and messages
  mentioning it).  Without GUILD_MEMBERS, GUILD_CREATE lists only the bot's own
  member (``ctx.author`` still comes with roles, from the message's ``member``).
* Permissions are enforced: no VIEW_CHANNEL -> 403/50001, no SEND_MESSAGES /
  ATTACH_FILES / READ_MESSAGE_HISTORY (replies, history) -> 403/50013; a file over
  the upload limit (10 MiB; 50/100 MiB for premium tier 2/3) -> 413/40005;
  content over 2000 chars -> 400/50035; empty message -> 400/50006; DM to a user
  with ``accepts_dms=False`` -> 403/50007.  Guild owners have every permission.
* discord.py 2.7.1 + aiohttp 3.14 close the gateway with code 4000 (not 1000)
  on ``bot.close()``, so the session stays resumable in ``fake.sessions``
  (disconnected); ``fake.gateway.connections`` tells who is connected.
* The fake never answers 5xx (discord.py would retry with sleeps).  Check
  ``fake.unhandled`` (unknown routes) and ``fake.server_errors`` - or call
  ``fake.assert_clean()`` - in a fixture's teardown.
* Interactions (``interactions``, ``interaction_routes``, ``components``): users act with
  ``slash``/``autocomplete``/``context_menu``/``user_menu``/``press_button``/``select``/
  ``submit_modal`` (each returns a ``FakeInteraction`` recording callbacks, the original response,
  follow-ups, the modal or choices the bot sent, and refused calls).  Only registered commands can
  be invoked (``bot.tree.sync()`` through the routes, or ``fake.register_tree(bot)`` without a
  recorded sync); options are checked as the Discord client checks them (``ValueError``), command
  visibility as Discord computes it (``PermissionError``).  The callback's 3 s deadline and the
  token's 15 min lifetime run on ``fake.clock`` (injectable); errors are Discord's: 40060 second
  acknowledgement, 10062 unknown interaction, 10015 unknown webhook.  Ephemeral messages carry
  ``ephemeral_to`` and are invisible to channel routes and the gateway (``fake.visible_to``).
  Components, modals, choices and commands are validated (400/50035 with Discord's errors tree).
  ``fake.set_rate_limit("edit", limit, per)`` adds rate limits per channel (``"send"``, ``"edit"``) or
  per interaction (``"interaction-edit"``) (429, X-RateLimit-*);
  ``fake.edit_log`` times every edit.
* Import as ``fake_discord`` (pytest puts ``tests/`` on sys.path while
  ``tests/`` has no ``__init__.py``) or as ``tests.fake_discord``; do not mix.
"""

from .commands import CommandSync
from .fake import SITE_DIR, FakeDiscord, RequestRecord
from .gateway import GatewaySession
from .interactions import Callback, FakeInteraction, ManualClock
from .models import (
    DEFAULT_EVERYONE_PERMISSIONS,
    UPLOAD_LIMIT_BY_TIER,
    FakeAttachment,
    FakeBot,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Intent,
    MessageVersion,
    Overwrite,
    P,
)

__all__ = [
    "FakeDiscord",
    "RequestRecord",
    "SITE_DIR",
    "GatewaySession",
    "Callback",
    "CommandSync",
    "FakeInteraction",
    "ManualClock",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "UPLOAD_LIMIT_BY_TIER",
    "FakeAttachment",
    "FakeBot",
    "FakeChannel",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "Intent",
    "MessageVersion",
    "Overwrite",
    "P",
]
