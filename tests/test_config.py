import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config, parse_config, read_token

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_the_example_parses_and_equals_the_built_in_defaults():
    config = load_config(EXAMPLE)
    assert dataclasses.replace(config, source="x") == dataclasses.replace(Config(), source="x")


def test_the_example_documents_every_key():
    raw = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    for section in ("bot", "engine", "caps", "cache", "styles", "web", "executor", "queue", "quotas"):
        for field in dataclasses.fields(getattr(Config(), section)):
            assert field.name in raw[section], f"{section}.{field.name} missing from config.example.toml"
    for name in ("epochs", "lr", "content_weight", "style_weight", "tv_weight", "size", "style_scale", "pool", "init", "seed"):
        assert re.search(rf"^#? ?{name} = ", text, re.M), f"defaults.{name} missing"


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"caps": {"max_epoch": 10}}, "caps.max_epoch is not a known key (did you mean max_epochs?)"),
        ({"capz": {}}, "capz is not a section of this config (did you mean caps?)"),
        ({"caps": {"max_epochs": 0}}, "caps.max_epochs must be from 1 to 100000, got 0"),
        ({"caps": {"max_epochs": "lots"}}, "caps.max_epochs must be a number"),
        ({"caps": {"job_timeout": 0.5}}, "caps.job_timeout must be from 1"),
        ({"bot": {"log_json": "yes"}}, "bot.log_json must be true or false"),
        ({"bot": {"log_level": "LOUD"}}, "bot.log_level must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"bot": {"token": "abc"}}, "bot.token tokens do not belong in config files"),
        ({"bot": {"owner_ids": ["me"]}}, "bot.owner_ids must be a list of integers"),
        ({"engine": {"devices": []}}, "engine.devices must be a non-empty list of strings"),
        ({"engine": {"precision": "fp8"}}, "engine.precision must be one of auto, fp32, bf16"),
        ({"engine": {"weights": "/nowhere/vgg.pth"}}, "engine.weights file not found: /nowhere/vgg.pth"),
        ({"defaults": {"epochs": 0}}, "defaults.epochs must be an integer from 1 to 100000, got 0"),
        ({"defaults": {"style_wieght": 1}}, "defaults.style_wieght is not a style parameter (did you mean style_weight?)"),
        ({"defaults": {"epochs": 2000}}, "defaults.epochs 2000 is above caps.max_epochs (1000)"),
        ({"defaults": {"max_frames": 10}}, "defaults.max_frames is a cap: set it in [caps] as caps.max_frames"),
        ({"caps": {"max_frames": 0}}, "caps.max_frames must be from 1 to 100000, got 0"),
        ({"caps": {"max_clip_seconds": 0.5}}, "caps.max_clip_seconds must be from 1 to 86400, got 0.5"),
        ({"web": {"port": 70000}}, "web.port must be from 0 to 65535"),
        ({"bot": {"preview_interval": 1}}, "bot.preview_interval must be 0 (off) or from 2 to 600, got 1"),
        ({"bot": {"attachment_hosts": []}}, "bot.attachment_hosts must be a non-empty list of strings"),
        ({"bot": {"command_prefix": " "}}, "bot.command_prefix must not be empty"),
        ({"caps": {"max_styles": 0}}, "caps.max_styles must be from 1 to 10, got 0"),
        ({"caps": {"max_size": 16}}, "caps.max_size must be from 32 to 4096, got 16"),  # nst's own minimum
        ({"cache": {"ttl": 1}}, "cache.ttl must be from 60 to 2.592e+06, got 1"),
        ({"executor": {"kind": "k8s"}}, "executor.kind must be one of local, celery, got 'k8s'"),
        ({"executor": {"kind": "celery", "key_ttl": 1500}},
         "executor.key_ttl 1500 s must exceed the 1510 s a dead worker's job may wait to be handed to another worker"),
        ({"bot": {"shards": 0}}, 'bot.shards must be "auto" or a whole number from 1 to 4096, got 0'),
        ({"bot": {"shards": "many"}}, 'bot.shards must be "auto" or a whole number from 1 to 4096, got \'many\''),
        ({"bot": {"shards": 2.5}}, 'bot.shards must be "auto" or a whole number from 1 to 4096, got 2.5'),
        ({"bot": {"shards": True}}, 'bot.shards must be "auto" or a whole number from 1 to 4096, got True'),
        ({"engine": {"max_memory": "2 gigs"}}, 'engine.max_memory must be "auto", "unlimited" or an amount of memory like '
                                                '"2GiB", "512MiB" or a number of bytes, got \'2 gigs\''),
        ({"engine": {"max_memory": 0}}, 'engine.max_memory must be "auto", "unlimited" or an amount of memory like '
                                        '"2GiB", "512MiB" or a number of bytes, got 0'),
        ({"engine": {"max_memory": True}}, "engine.max_memory must be \"auto\", \"unlimited\" or an amount of memory"),
        ({"engine": {"max_memory": ["2GiB"]}}, "engine.max_memory must be \"auto\", \"unlimited\" or an amount of memory"),
        ({"caps": {"max_upscale_size": 8192}}, "caps.max_upscale_size must be from 32 to 4096, got 8192"),
    ],
)
def test_bad_values_name_the_key(raw, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="config.toml")
    assert str(caught.value) == f"config.toml: {words}" or words in str(caught.value)
    assert str(caught.value).startswith("config.toml: ")


def test_defaults_section_takes_strings_and_numbers():
    config = parse_config({"defaults": {"style_weight": "1e9", "epochs": 300, "pool": "avg"}, "engine": {"precision": "fp32"}})
    assert (config.defaults.style_weight, config.defaults.epochs, config.defaults.pool) == (1e9, 300, "avg")
    assert config.defaults.precision == "fp32"


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bot\nprefix = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_token_from_environment_or_file_never_from_config(tmp_path):
    config = parse_config({"bot": {"token_file": str(tmp_path / "token")}})
    (tmp_path / "token").write_text("file-token\n")
    assert read_token(config, {"DISCORD_TOKEN": "env-token"}) == "env-token"
    assert read_token(config, {}) == "file-token"
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(config, {})
    with pytest.raises(ConfigError, match="no Discord token: DISCORD_TOKEN is not set and bot.token_file .*nope does not exist"):
        read_token(parse_config({"bot": {"token_file": str(tmp_path / "nope")}}), {})
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(parse_config({"bot": {"token_file": str(tmp_path)}}), {})  # a directory
    with pytest.raises(ConfigError, match="set the DISCORD_TOKEN environment variable or bot.token_file"):
        read_token(Config(), {})


def test_each_key_is_declared_once_with_its_rule_beside_it():
    """The ranges live in the field metadata: no separate table to forget a new key in."""
    import bot.config as module

    assert not hasattr(module, "_RANGES")
    for section in (module.BotSection, module.EngineSection, module.CapsSection, module.CacheSection,
                    module.WebSection, module.ExecutorSection):
        for field in dataclasses.fields(section):
            assert set(field.metadata) == {"low", "high", "off", "choices", "nonempty", "auto", "memory"}, f"{section.__name__}.{field.name}"


def test_new_keys_and_their_defaults():
    config = parse_config({"bot": {"log_level": "debug", "preview_interval": 0, "message_content": False,
                                   "attachment_hosts": ["CDN.example.org "]}, "cache": {"max_bytes": 0}})
    assert config.bot.log_level == "DEBUG" and config.bot.preview_interval == 0 and not config.bot.message_content
    assert config.bot.attachment_hosts == ("CDN.example.org",) and config.cache.max_bytes == 0
    default = Config()
    assert default.bot.attachment_hosts == ("cdn.discordapp.com", "media.discordapp.net")
    assert (default.bot.preview_interval, default.caps.max_styles, default.cache.ttl) == (5.0, 3, 86400.0)
    assert default.cache.max_bytes == 512 * 1024 * 1024 and default.bot.message_content
    assert default.bot.shards is None  # "auto": the count Discord recommends
    assert parse_config({"bot": {"shards": "Auto"}}).bot.shards is None and parse_config({"bot": {"shards": 3}}).bot.shards == 3


def test_the_memory_budget_takes_auto_an_amount_or_unlimited():
    def budget(value):
        return parse_config({"engine": {"max_memory": value}}).engine.max_memory

    assert Config().engine.max_memory is None  # auto: the engine's default for each worker's device
    assert budget("auto") is None and budget("AUTO") is None
    assert budget("2GiB") == 2 * 1024**3 and budget("512MiB") == 512 * 1024**2 and budget("1.5G") == 3 * 1024**3 // 2
    assert budget(1_000_000) == 1_000_000
    assert budget("unlimited") == "unlimited"  # no budget: never tiled, never refused for memory
    assert Config().caps.max_upscale_size == 2048


def test_queue_and_quotas_sections():
    from bot.core import scheduling, usage

    config = parse_config({"queue": {"policy": "Round-Robin"},
                           "quotas": {"user_daily": 3600, "server_daily": 36000.5, "over_quota": "refuse"}})
    assert config.queue.policy == "round-robin"
    assert (config.quotas.user_daily, config.quotas.server_daily, config.quotas.over_quota) == (3600.0, 36000.5, "refuse")
    defaults = Config()
    assert (defaults.queue.policy, defaults.quotas.user_daily, defaults.quotas.over_quota) == ("fair-share", 0.0, "slow-lane")
    # the config restates the core's choices (the core imports the config): they must not drift apart
    from bot import config as config_module

    assert config_module.POLICIES == scheduling.POLICIES and defaults.queue.policy == scheduling.DEFAULT_POLICY
    assert config_module.OVER_QUOTA_MODES == usage.OVER_QUOTA_MODES
    for raw, words in [
        ({"queue": {"policy": "lottery"}}, "queue.policy must be one of fair-share, round-robin, least-usage, fcfs"),
        ({"quotas": {"user_daily": -5}}, "quotas.user_daily must be 0 (off) or from 1 to 864000, got -5"),
        ({"quotas": {"server_daily": "2h"}}, "quotas.server_daily must be a number, got '2h'"),
        ({"quotas": {"over_quota": "queue"}}, "quotas.over_quota must be one of slow-lane, refuse"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse_config(raw)
