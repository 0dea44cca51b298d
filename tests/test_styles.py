"""The style library and presets below Discord: the schema migration from version 1 (nothing lost),
content-addressed files, caps, removal, built-ins, the contact sheet, and preset validation."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from bot.config import parse_config
from bot.core.errors import UserError
from bot.core.limits import SOURCE_BOT, SOURCE_OPTION, SOURCE_USER, resolve
from bot.core.presets import check_preset
from bot.core.store import MIGRATIONS, SCHEMA_VERSION, JobRecord, Store, _statements
from bot.core.styles import CELL, COLUMNS, PER_SHEET, StyleLibrary, render_sheet
from conftest import make_content, make_style


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def config(tmp_path: Path, **styles):
    return parse_config({"bot": {"data_dir": str(tmp_path / "data")}, "styles": styles})


@pytest.fixture
async def store(tmp_path):
    opened = await Store.open(tmp_path / "data" / "bot.sqlite3")
    yield opened
    await opened.close()


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_the_migration_from_version_1_keeps_settings_limits_and_jobs(tmp_path):
    original = tmp_path / "v1.sqlite3"
    with sqlite3.connect(original) as db:  # a database as the released version 1 left it
        for statement in _statements(MIGRATIONS[0]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO user_settings VALUES (1, 'epochs', '300', 1.0), (1, 'pool', '\"avg\"', 2.0)")
        db.execute("INSERT INTO guild_limits VALUES (9, 'max_size', '256', 3.0, 5), (9, 'channels', '[4,5]', 3.0, NULL)")
        db.execute("INSERT INTO jobs VALUES ('a' , 1, 9, 4, 6, NULL, '{\"epochs\": 300}', 'done', 'ok', 0, 1.0, 2.0, 3.0)")
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(original, copy)
    store = await Store.open(copy)
    try:
        assert await store.user_settings(1) == {"epochs": 300, "pool": "avg"}
        assert await store.guild_limits(9) == {"max_size": 256, "channels": [4, 5]}
        job = await store.get_job("a")
        assert job.params == {"epochs": 300} and job.state == "done" and job.info == {}
        assert await store.guild_styles(9) == [] and await store.presets("user", 1) == {}
    finally:
        await store.close()
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2  # every later migration ran too


async def test_jobs_keep_their_info(store):
    record = JobRecord("b" * 32, 1, None, 2, 3, None, {"epochs": 4}, "queued", None, 0, 1.0, 1.0, None,
                       info={"styles": ["starry"], "sources": {"epochs": "preset fast"}})
    await store.add_job(record)
    assert (await store.get_job("b" * 32)).info == record.info


async def test_the_same_image_twice_is_one_file_deleted_with_its_last_name(tmp_path, store):
    library = StyleLibrary(config(tmp_path), store)
    image = png(make_style(64))
    first = await library.add(1, "Starry", image, user_id=7)
    second = await library.add(2, "waves", image, user_id=8)  # another server, the same picture
    third = await library.add(1, "again", image, user_id=7)
    assert first.name == "starry" and first.sha256 == second.sha256 == third.sha256
    stored = files(library.root)
    assert len(stored) == 1 and stored[0].name == f"{first.sha256}.png" and stored[0].parent.name == first.sha256[:2]
    assert (first.width, first.height, first.added_by) == (64, 64, 7)
    assert await store.style_usage(1) == (2, first.bytes)  # a shared file counts once
    await library.remove(1, "starry")
    await library.remove(2, "waves")
    assert files(library.root) == stored  # "again" still uses it
    await library.remove(1, "again")
    assert files(library.root) == []


async def test_two_adds_of_one_name_at_once_and_a_removal_racing_a_read(tmp_path, store):
    library = StyleLibrary(config(tmp_path), store)
    outcomes = await asyncio.gather(library.add(1, "twin", png(make_style(48)), 7),
                                    library.add(1, "TWIN", png(make_content(40, 30)), 8), return_exceptions=True)
    added = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, UserError)]
    assert len(added) == 1 and len(refused) == 1 and "already has a style named `twin`" in str(refused[0])
    assert [p.name for p in files(library.root)] == [added[0].filename]  # the refused one stored nothing
    # the style goes between a job's lookup and its read: a plain "no such style", not "tell an admin"
    entry = await library.get(1, "twin")
    real_get = library.get

    async def removed_meanwhile(guild_id, name):
        await library.remove(1, "twin")
        return entry

    library.get = removed_meanwhile
    with pytest.raises(UserError) as caught:
        await library.load(1, ["twin"])
    library.get = real_get
    assert "there is no style named `twin`" in str(caught.value)


async def test_refusals_duplicates_names_caps(tmp_path, store):
    library = StyleLibrary(config(tmp_path, max_per_server=2, max_bytes_per_server=20_000), store)
    await library.add(1, "one", png(make_style(64)), 7)
    for name, data, words in [
        ("ONE", png(make_style(48)), "already has a style named `one`"),
        ("bad name!", png(make_style(48)), "style names are 1 to 32 letters"),
        ("x" * 33, png(make_style(48)), "is not one"),
        ("notes", b"just text", "is not an image"),
    ]:
        with pytest.raises(UserError, match=".*") as caught:
            await library.add(1, name, data, 7)
        assert words in str(caught.value), (name, caught.value)
    noisy = Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3))  # 30 KB as PNG: above the 20 KB
    with pytest.raises(UserError) as caught:
        await library.add(1, "big", png(noisy), 7)
    assert "does not fit: the server's styles use" in str(caught.value)
    await library.add(1, "two", png(make_content(40, 30)), 7)
    with pytest.raises(UserError) as caught:
        await library.add(1, "three", png(make_style(32)), 7)
    assert "library is full (2 of 2 styles)" in str(caught.value)
    assert len(files(library.root)) == 2  # nothing half-stored by the refusals


async def test_a_large_style_is_stored_shrunk(tmp_path, store):
    library = StyleLibrary(config(tmp_path, max_side=64), store)
    record = await library.add(1, "wide", png(make_content(200, 100)), 7)
    assert (record.width, record.height) == (64, 32)
    assert Image.open(library.path(record)).size == (64, 32)


async def test_builtins_the_sweep_and_lookup(tmp_path, store):
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "Swirls.jpg").write_bytes(Path("examples/style.jpg").read_bytes() if Path("examples/style.jpg").exists()
                                         else png(make_style(32)))
    (builtin / "not a name.png").write_bytes(png(make_style(32)))
    (builtin / "readme.txt").write_text("not an image")
    library = StyleLibrary(config(tmp_path, builtin_dir=str(builtin)), store)
    assert list(library.builtins()) == ["swirls"]
    with pytest.raises(UserError) as caught:
        await library.add(1, "swirls", png(make_style(32)), 7)
    assert "built-in" in str(caught.value)
    await library.add(1, "starry", png(make_style(32)), 7)
    assert (await library.find(None, "swirls")).builtin and await library.find(None, "starry") is None  # DMs
    with pytest.raises(UserError) as caught:
        await library.load(1, ["stary"])
    assert "no style named `stary` here; did you mean `starry`?" in str(caught.value)
    stray = library.root / "ab" / ("ab" + "0" * 62 + ".png")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left by a crash")
    assert await library.sweep() == 1 and not stray.exists() and len(files(library.root)) == 1
    missing = StyleLibrary(config(tmp_path, builtin_dir=str(tmp_path / "nowhere")), store)
    assert missing.builtins() == {}  # logged once, not an error


def test_the_contact_sheet_is_a_grid_with_names(tmp_path):
    from bot.core.styles import Entry

    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        make_style(40 + i).save(path)
        paths.append(path)
    entries = [Entry("a-very-long-name-that-cannot-fit-under-one-thumb" if i == 0 else f"s{i}", p, i == 4) for i, p in enumerate(paths)]
    sheet = Image.open(io.BytesIO(render_sheet(entries, 10**7)))
    assert sheet.size == (COLUMNS * CELL[0], 2 * CELL[1])  # 4 + 1
    assert PER_SHEET == 12
    one = Image.open(io.BytesIO(render_sheet(entries[:2], 10**7)))
    assert one.size == (2 * CELL[0], CELL[1])
    # each cell shows its picture: the thumbnail's centre is the style's colours, not the background
    for column in range(2):
        pixel = one.getpixel((column * CELL[0] + CELL[0] // 2, CELL[0] // 2))
        assert pixel != (32, 34, 37)


def test_presets_are_checked_like_options_and_rank_between_command_and_defaults(tmp_path):
    cfg = parse_config({})
    assert check_preset({"epochs": "30", "style": "Starry,waves"}, cfg) == {"epochs": 30, "style": ["starry", "waves"]}
    for values, words in [({"epochs": "0"}, "`--epochs`: must be"), ({"style_blend": "1,2"}, "cannot be saved in a preset"),
                          ({"preset": "x"}, "cannot hold another preset"), ({}, "at least one option"),
                          ({"content_weight": "0", "style_weight": "0"}, "cannot both be 0")]:
        with pytest.raises(UserError) as caught:
            check_preset(values, cfg)
        assert words in str(caught.value), values
    resolved = resolve(cfg.defaults, {"epochs": 6, "size": 40, "style_weight": 1e9}, {"size": 32},
                       {"max_epochs": 20}, cfg.caps, preset={"epochs": 30, "size": 64, "style": ["starry"]},
                       preset_source="preset fast")
    assert (resolved.params.epochs, resolved.params.size, resolved.params.style_weight) == (20, 32, 1e9)
    assert resolved.styles == ("starry",)
    assert resolved.explain("epochs") == "preset fast 30, lowered by this server's limit"
    assert resolved.explain("size") == SOURCE_OPTION and resolved.explain("style_weight") == SOURCE_USER
    assert resolved.explain("content_weight") == SOURCE_BOT and resolved.explain("style") == "preset fast"


async def test_an_unknown_preset_suggests_the_close_names(tmp_path):
    from bot.core.presets import find_preset

    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        await store.save_preset("user", 1, "fast", {"epochs": 5})
        with pytest.raises(UserError, match=r"no preset named `fsat`; did you mean `fast`\?"):
            await find_preset(store, 1, None, "fsat")
        with pytest.raises(UserError, match=r"no preset named `zzz`; see `preset list`"):
            await find_preset(store, 1, None, "zzz")
    finally:
        await store.close()
