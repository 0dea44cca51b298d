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
    for section in ("bot", "engine", "caps", "web", "executor"):
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
        ({"web": {"port": 70000}}, "web.port must be from 0 to 65535"),
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
