"""Named styles and presets end to end: the real discord.py client against the fake Discord, a real
SQLite store and style files on disk, a real worker; everything across a full restart."""

from __future__ import annotations

import io

from PIL import Image

from bot.core.styles import CELL
from bot_harness import CONTENT_PNG, IMAGES, STYLE_PNG, command, make_config, png, reply_to, running_bot, time_budget
from conftest import make_content, make_style

CONTENT = ("content.png", CONTENT_PNG, "image/png")
STYLE = ("starry.png", STYLE_PNG, "image/png")
OTHER = ("other.png", png(make_style(40).rotate(90)), "image/png")
LONG = "--epochs 2000 --size 64 --schedule reference"  # runs until cancelled: keeps the one worker busy


def is_result(message) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.startswith("stylized")


async def ask(fake, channel, user, text, attachments=(), predicate=lambda m: True, timeout=30, reply=None):
    request = await command(fake, channel, user, text, attachments, reply_to=reply)
    return await reply_to(fake, request, predicate, timeout=timeout)


async def answer(ix, timeout: float = 60):
    """The bot's private answer to an interaction (after a defer: its follow-up or the edited original)."""
    await ix.wait_until(lambda i: i.followups or (i.original is not None and i.original.content), timeout=timeout)
    message = ix.followups[-1] if ix.followups else ix.original
    assert message.ephemeral_to == ix.user_id, "the answer should be private"
    return message


def style_files(tmp_path) -> list:
    root = tmp_path / "data" / "styles"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def builtin_dir(tmp_path):
    folder = tmp_path / "builtin"
    folder.mkdir()
    (folder / "waves.png").write_bytes(png(make_content(48, 48)))
    return str(folder)


async def test_a_servers_style_library(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, styles={"builtin_dir": builtin_dir(tmp_path), "max_per_server": 3})
    g, alice, bob, boss = world.general, world.alice, world.bob, world.boss
    budget = time_budget(20, weights_file)
    async with running_bot(fake, config) as bot:
        refused = await ask(fake, g, alice, "!style add starry", [STYLE])
        assert "only members with the Manage Server permission can add" in refused.content
        added = await ask(fake, g, boss, "!style add Starry", [STYLE])
        assert added.content.startswith("✅ Added the style `starry` (64×64")
        assert "already has a style named `starry`" in (await ask(fake, g, boss, "!style add STARRY", [OTHER])).content
        assert "style names are" in (await ask(fake, g, boss, "!style add no!good", [OTHER])).content
        spaced = (await ask(fake, g, boss, "!style add two words", [OTHER])).content
        assert "too many words (a name has no spaces); usage: `!style add <name>`" in spaced, spaced
        assert "built-in" in (await ask(fake, g, boss, "!style add waves", [OTHER])).content
        assert "attach exactly one image" in (await ask(fake, g, boss, "!style add two", IMAGES)).content
        # replying to a message that has the image; the same picture again is the same file
        posted = await command(fake, g, bob, "look at this one", [STYLE])
        assert "Added the style `night`" in (await ask(fake, g, boss, "!style add night", reply=posted)).content
        assert len(style_files(tmp_path)) == 1
        # the contact sheet: one cell per style, the built-in after the server's
        listed = await ask(fake, g, alice, "!style list", predicate=lambda m: m.attachments)
        sheet = Image.open(io.BytesIO(listed.attachments[0].data))
        assert sheet.size == (3 * CELL[0], CELL[1])
        assert "`night`, `starry`" in listed.content and "**Built-in**" in listed.content and "`waves`" in listed.content
        shown = await ask(fake, g, alice, "!style show starry", predicate=lambda m: m.attachments)
        assert f"added by <@{boss.id}>" in shown.content and Image.open(io.BytesIO(shown.attachments[0].data)).size == (64, 64)
        # used with only the content image; a name that is not there gets the close ones
        result = await ask(fake, g, alice, "!stylize --style starry --epochs 2 --seed 4", [CONTENT], is_result, budget)
        assert result.content.startswith(f"<@{alice.id}> 2 epochs") and "· `--style starry`" in result.content
        assert "did you mean `starry`?" in (await ask(fake, g, alice, "!stylize --style stary", [CONTENT])).content
        blended = await ask(fake, g, alice, "!stylize --style waves --epochs 2 --style-blend 0.5,0.5", IMAGES, is_result, budget)
        assert "`--style-blend 0.5,0.5`" in blended.content  # an attached style and a built-in, blended
        # the limit opens editing to everyone; the library's cap holds
        assert "style_editors is now everyone" in (await ask(fake, g, boss, "!limits set style_editors everyone")).content
        assert "must be admins or everyone" in (await ask(fake, g, boss, "!limits set style_editors nobody")).content
        assert "Renamed the style `night` to `ocean`" in (await ask(fake, g, alice, "!style rename night ocean")).content
        assert "Added" in (await ask(fake, g, alice, "!style add third", [OTHER])).content
        assert "library is full (3 of 3 styles)" in (await ask(fake, g, alice, "!style add fourth", [OTHER])).content
        # removed while a job that uses it waits in the queue: the job still completes
        busy = await command(fake, g, bob, f"!stylize {LONG}", IMAGES)
        await reply_to(fake, busy, lambda m: "%" in m.content, timeout=60)
        waiting = await command(fake, g, alice, "!stylize --style starry --epochs 2", [CONTENT])
        await reply_to(fake, waiting, lambda m: "Queued, position" in m.content, timeout=30)
        assert "Removed the style `starry`" in (await ask(fake, g, alice, "!style remove starry")).content
        assert len(style_files(tmp_path)) == 2  # `ocean` still uses the picture `starry` had
        assert "Removed the style `ocean`" in (await ask(fake, g, alice, "!style remove ocean")).content
        assert len(style_files(tmp_path)) == 1  # nothing refers to it: gone (only `third` is left)
        await ask(fake, g, bob, "!cancel")
        done = await reply_to(fake, waiting, is_result, timeout=budget)
        assert done.content.startswith(f"<@{alice.id}> 2 epochs")
        # and its Again still works: the job's own copy of the picture is in the image cache
        assert "Queued" in (await answer(await fake.press_button(alice, done, fake.button(done, label="Again")["custom_id"]))).content
        again = await reply_to(fake, done, is_result, timeout=budget)
        details = (await answer(await fake.press_button(alice, again, fake.button(again, label="Details")["custom_id"]))).content
        assert "**Style** `starry`" in details and "`epochs` 2 (the earlier job)" in details
        assert bot.executor.jobs() == []
    async with running_bot(fake, config):  # a full restart: the library is the database and the files
        listed = await ask(fake, g, bob, "!style list", predicate=lambda m: m.attachments)
        assert Image.open(io.BytesIO(listed.attachments[0].data)).size == (2 * CELL[0], CELL[1])  # third, waves
        assert "`third`" in listed.content
        assert "did you mean" in (await ask(fake, g, bob, "!style show thrid")).content
        assert "is not a style command" in (await ask(fake, g, bob, "!style lsit")).content


async def test_presets_apply_between_the_command_and_the_defaults(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file, caps={"max_presets": 2})
    g, alice, boss = world.general, world.alice, world.boss
    budget = time_budget(12, weights_file)
    async with running_bot(fake, config) as bot:
        fake.register_tree(bot)
        await ask(fake, g, boss, "!style add starry", [STYLE])
        await ask(fake, g, boss, "!limits set max_epochs 3")
        await ask(fake, g, alice, "!settings set epochs 2")
        await ask(fake, g, alice, "!settings set style_weight 1e9")
        assert "Saved: style = starry" in (await ask(fake, g, alice, "!settings set style starry")).content
        assert "no style named `nope`" in (await ask(fake, g, alice, "!settings set style nope")).content
        saved = await ask(fake, g, alice, "!preset save Fast --epochs 5 --size 40 --tv-weight 1e-3")
        assert "Saved your preset `fast`: --epochs 5 --size 40 --tv-weight 0.001" in saved.content
        assert "`--epochs`: must be" in (await ask(fake, g, alice, "!preset save bad --epochs 0")).content
        assert "no style named `stary`" in (await ask(fake, g, alice, "!preset save bad --style stary")).content
        assert "Saved your preset `spare`" in (await ask(fake, g, alice, "!preset save spare --size 40")).content
        full = (await ask(fake, g, alice, "!preset save third --size 40")).content
        assert "You have 2 presets, the most the bot keeps (2); remove one first" in full
        assert "Replaced your preset `spare`" in (await ask(fake, g, alice, "!preset save spare --size 36")).content
        assert "Removed your preset `spare`" in (await ask(fake, g, alice, "!preset remove spare")).content
        assert "Manage Server" in (await ask(fake, g, alice, "!preset save --server house --epochs 3")).content
        assert "Saved this server's preset `house`" in (await ask(fake, g, boss, "!preset save --server house --pool avg")).content
        shown = (await ask(fake, g, alice, "!settings")).content
        assert "style" in shown and "starry  (your default)" in shown and "1e9  (your default)" in shown
        # command > preset > her defaults > the bot's; then the server's limit (epochs 5 -> 3)
        result = await ask(fake, g, alice, "!stylize --preset fast --size 32 --seed 5", [CONTENT], is_result, budget)
        assert result.content.startswith(f"<@{alice.id}> 3 epochs · 32×24") and "seed 5" in result.content
        assert "`--style starry`" in result.content  # her default style, named on the result line
        details = (await answer(await fake.press_button(alice, result, fake.button(result, label="Details")["custom_id"]))).content
        for words in ("**Style** `starry` (your default)", "**Preset** `fast` (yours)",
                      "`epochs` 3 (preset fast 5, lowered by this server's limit)", "`size` 32 (this command)",
                      "`tv_weight` 0.001 (preset fast)", "`style_weight` 1e9 (your default)",
                      "`content_weight` 100 (bot default)", "!stylize --style starry"):
            assert words in details, (words, details)
        assert "no preset named `fsat`" in (await ask(fake, g, alice, "!stylize --preset fsat", [CONTENT])).content
        await command(fake, g, alice, "!help preset")
        await fake.wait_for_message(lambda m: "Named sets of stylize options" in m.content, channel_id=g.id, timeout=30)
        await command(fake, g, alice, "!help style")
        await fake.wait_for_message(lambda m: "style add NAME" in m.content and "style_editors" in m.content,
                                    channel_id=g.id, timeout=30)
        ix = await fake.slash(alice, g, "stylize", options={"content": CONTENT, "preset": "house", "epochs": 2, "size": 32})
        assert "Queued" in (await answer(ix)).content
        await fake.wait_for_message(lambda m: is_result(m) and m.id != result.id, channel_id=g.id, timeout=budget)
        # the message menu on a message with one picture: her default style does the rest
        photo = await command(fake, g, world.bob, "my cat", [CONTENT])
        assert "Queued" in (await answer(await fake.context_menu(alice, photo, "Stylize"))).content
        menu = await reply_to(fake, photo, is_result, timeout=budget)
        assert menu.content.startswith(f"<@{alice.id}> 2 epochs")  # her default epochs, under the limit
    async with running_bot(fake, config) as bot:  # presets survive a restart
        listed = (await ask(fake, g, alice, "!preset list")).content
        assert "`fast`: --epochs 5 --size 40 --tv-weight 0.001" in listed and "`house`: --pool avg" in listed
        fake.register_tree(bot)
        ix = await fake.autocomplete(alice, g, "preset remove", options={"name": "fa"}, focused="name")
        await ix.wait_acknowledged()
        assert [c["value"] for c in ix.choices] == ["fast"]  # her own; the server's only with server:True
        ix = await fake.autocomplete(alice, g, "preset remove", options={"name": "", "server": True}, focused="name")
        await ix.wait_acknowledged()
        assert [c["value"] for c in ix.choices] == ["house"]
        assert "Removed your preset `fast`" in (await ask(fake, g, alice, "!preset remove fast")).content
        assert "no preset `fast`" in (await ask(fake, g, alice, "!preset remove fast")).content


async def test_slash_style_commands_and_stylize_with_only_the_content(fake, world, tmp_path, weights_file):
    config = make_config(tmp_path, weights_file)
    g, alice, boss = world.general, world.alice, world.boss
    async with running_bot(fake, config) as bot:
        fake.register_tree(bot)
        message = await answer(await fake.slash(alice, g, "style add", options={"name": "starry", "image": STYLE}))
        assert "only members with the Manage Server" in message.content
        message = await answer(await fake.slash(boss, g, "style add", options={"name": "starry", "image": STYLE}))
        assert "Added the style `starry`" in message.content
        message = await answer(await fake.slash(alice, g, "style list"))
        assert Image.open(io.BytesIO(message.attachments[0].data)).size == (CELL[0], CELL[1])
        ix = await fake.autocomplete(alice, g, "stylize", options={"content": CONTENT, "style": "sta"}, focused="style")
        await ix.wait_acknowledged()
        assert [c["value"] for c in ix.choices] == ["starry"]
        message = await answer(await fake.slash(alice, g, "stylize", options={"content": CONTENT, "epochs": 2}))
        assert "⚠️ attach" in message.content and "`--style NAME`" in message.content  # neither an image nor a name
        message = await answer(await fake.slash(alice, g, "stylize", options={"content": CONTENT, "style": "starry", "epochs": 2}))
        assert "Queued" in message.content
        result = await fake.wait_for_message(is_result, channel_id=g.id, timeout=time_budget(4, weights_file))
        assert result.content.startswith(f"<@{alice.id}> 2 epochs")
        message = await answer(await fake.slash(boss, g, "style remove", options={"name": "starry"}))
        assert "Removed the style `starry`" in message.content
        assert bot.executor.jobs() == []
        # Discord still has the /stylize published before named styles (style: an attachment): told to sync
        payloads = [cmd.to_dict(bot.tree) for cmd in bot.tree.get_commands()]
        old = next(p for p in payloads if p["name"] == "stylize")
        for option in old["options"]:
            if option["name"] == "style":
                option["type"] = 11  # ATTACHMENT
                option.pop("autocomplete", None)
        fake.register_commands(payloads)
        message = await answer(await fake.slash(alice, g, "stylize", options={"content": CONTENT, "style": STYLE}))
        assert message.content.startswith("⚠️ this command has changed") and "run `sync` again" in message.content
