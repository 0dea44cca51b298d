import pytest

from bot.config import CapsSection
from bot.core.limits import (
    REASON_BOT,
    REASON_SERVER,
    SOURCE_BOT,
    SOURCE_OPTION,
    SOURCE_USER,
    LimitError,
    check_guild_limit,
    effective_limits,
    parse_guild_limit,
    resolve,
)
from nst.errors import ParamError
from nst.params import StyleParams

CAPS = CapsSection(max_epochs=1000, max_size=1024, max_jobs_per_user=2)
DEFAULTS = StyleParams(epochs=500, size=512)


# (user default, command option, server limit) -> (epochs used, source, note)
@pytest.mark.parametrize(
    "user, option, server, expected, source, note",
    [
        (None, None, None, 500, SOURCE_BOT, None),
        (300, None, None, 300, SOURCE_USER, None),
        (300, 200, None, 200, SOURCE_OPTION, None),
        (None, 2000, None, 1000, SOURCE_OPTION, f"epochs 2000 → 1000: {REASON_BOT}"),
        (None, 2000, 300, 300, SOURCE_OPTION, f"epochs 2000 → 300: {REASON_SERVER}"),
        (800, None, 300, 300, SOURCE_USER, f"epochs 800 → 300: {REASON_SERVER}"),
        (800, 100, 300, 100, SOURCE_OPTION, None),
        (None, None, 300, 300, SOURCE_BOT, f"epochs 500 → 300: {REASON_SERVER}"),
        (None, 1200, 1500, 1000, SOURCE_OPTION, f"epochs 1200 → 1000: {REASON_BOT}"),  # a stale server limit above the cap
    ],
)
def test_precedence_options_user_server_caps(user, option, server, expected, source, note):
    resolved = resolve(
        DEFAULTS,
        {} if user is None else {"epochs": user},
        {} if option is None else {"epochs": str(option)},
        {} if server is None else {"max_epochs": server},
        CAPS,
    )
    assert resolved.params.epochs == expected
    assert resolved.sources["epochs"] == source
    assert list(resolved.notes) == ([] if note is None else [note])


def test_size_is_limited_the_same_way_and_other_fields_merge():
    resolved = resolve(DEFAULTS, {"style_weight": 1e9, "size": 900}, {"seed": "7"}, {"max_size": 384}, CAPS)
    assert (resolved.params.size, resolved.params.style_weight, resolved.params.seed) == (384, 1e9, 7)
    assert resolved.sources["style_weight"] == SOURCE_USER and resolved.sources["seed"] == SOURCE_OPTION
    assert resolved.notes == (f"size 900 → 384: {REASON_SERVER}",)


def test_direct_messages_have_no_server_limits():
    assert resolve(DEFAULTS, {}, {"epochs": "900"}, None, CAPS).params.epochs == 900


def test_invalid_options_name_the_field_and_stale_saved_values_are_skipped():
    with pytest.raises(ParamError) as caught:
        resolve(DEFAULTS, {}, {"lr": "-1"}, None, CAPS)
    assert caught.value.field == "lr"
    with pytest.raises(ParamError, match="cannot both be 0"):
        resolve(DEFAULTS, {"content_weight": 0}, {"style_weight": "0"}, None, CAPS)
    resolved = resolve(DEFAULTS, {"epochs": -5, "pool": "median"}, {}, None, CAPS)
    assert resolved.params.epochs == 500 and len(resolved.notes) == 2
    assert "your saved epochs is no longer valid" in resolved.notes[0]


def test_effective_limits():
    assert effective_limits(None, CAPS).max_epochs == (1000, REASON_BOT)
    limits = effective_limits({"max_epochs": 300, "max_jobs_per_user": 5, "cooldown": 30, "channels": [1, 2]}, CAPS)
    assert limits.max_epochs == (300, REASON_SERVER)
    assert limits.max_jobs_per_user == 2  # never above the cap
    assert limits.cooldown == 30 and limits.channels == (1, 2)
    assert effective_limits({}, CapsSection(min_cooldown=10)).cooldown == 10


def test_server_limits_are_validated_and_never_above_the_cap():
    assert parse_guild_limit("max_epochs", "300", CAPS) == 300
    assert parse_guild_limit("cooldown", "12.5", CAPS) == 12.5
    assert check_guild_limit("channels", [3, 1, 3], CAPS) == [1, 3]
    with pytest.raises(LimitError, match="above the bot operator's cap of 1000; the most you can set is 1000"):
        parse_guild_limit("max_epochs", "5000", CAPS)
    for name, text, words in [
        ("max_epochs", "0", "at least 1"),
        ("max_size", "12.5", "whole number"),
        ("max_size", "big", "must be a number"),
        ("cooldown", "-1", "at least 0"),
        ("cooldown", "100000", "at most 86400 seconds"),
        ("max_size", "16", "at least 32"),  # below what VGG-19 can run: every job would fail (defect 1)
        ("max_colour", "1", "unknown limit"),
    ]:
        with pytest.raises(LimitError, match=words):
            parse_guild_limit(name, text, CAPS)


def test_an_animations_caps_come_from_the_caps_and_a_server_may_only_lower_them():
    caps = CapsSection(max_size=1024, max_frames=60, max_clip_seconds=20.0, max_clip_pixels=5_000_000)
    params = resolve(DEFAULTS.replace(animation_size=256), {}, {}, None, caps).params
    assert (params.max_frames, params.max_clip_seconds, params.max_clip_pixels, params.animation_size) == (60, 20.0, 5_000_000, 256)
    server = {"max_frames": 24, "max_clip_seconds": 8.0, "max_size": 128}
    params = resolve(DEFAULTS.replace(animation_size=256), {}, {}, server, caps).params
    assert (params.max_frames, params.max_clip_seconds, params.animation_size) == (24, 8.0, 128)  # the size limit too
    assert resolve(DEFAULTS.replace(animation_size=256), {"size": 64}, {}, None, caps).params.animation_size == 256
    assert resolve(DEFAULTS.replace(animation_size=256), {}, {"size": 96}, None, caps).params.animation_size == 96
    assert resolve(DEFAULTS.replace(animation_size=256), {}, {"size": 900}, None, caps).params.animation_size == 256
    limits = effective_limits(server, caps)
    assert limits.reason_of("max_frames") == REASON_SERVER and effective_limits({}, caps).reason_of("max_frames") == REASON_BOT
    stale = effective_limits({"max_frames": 500}, caps)  # a server limit set before the operator lowered the cap
    assert stale.max_frames == (60, REASON_BOT)
    assert parse_guild_limit("max_clip_seconds", "12.5", caps) == 12.5
    with pytest.raises(LimitError, match="above the bot operator's cap of 60"):
        parse_guild_limit("max_frames", "61", caps)
    with pytest.raises(ParamError):
        resolve(DEFAULTS, {}, {"max_frames": 1000}, None, caps)  # caps are not users' options


def test_the_upscale_limit_is_its_own_cap_which_a_servers_max_size_lowers():
    from bot.core.limits import effective_limits, resolve, upscaled_side

    caps = CapsSection(max_size=1024, max_upscale_size=2048)
    assert upscaled_side((768, 1024)) == 2048
    assert effective_limits(None, caps).max_upscale_size == (2048, "the bot's limit")
    assert effective_limits({"max_size": 512}, caps).max_upscale_size == (512, "this server's limit")
    assert effective_limits(None, caps).upscale_refusal((1024, 768)) is None  # 2048: at the cap, allowed
    assert effective_limits(None, caps).upscale_refusal((1025, 768)) == (
        "upscaling this 1025×768 picture ×2 would make it 2050 px on its longer side; the bot's limit for upscaled "
        "pictures is 2048 px")
    # an upscale's size is bounded by the upscale limit, not max_size; any other job's by max_size
    assert resolve(StyleParams(), {}, {"size": 2048}, None, caps, upscale=True).params.size == 2048
    assert resolve(StyleParams(), {}, {"size": 2048}, None, caps).params.size == 1024
