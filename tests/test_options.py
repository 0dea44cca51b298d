import pytest

from bot.core.limits import OPTION_NAMES, USER_FIELDS
from bot.core.options import OptionError, normalise, options_help
from nst.params import StyleParams


def test_the_options_are_exactly_the_user_fields_and_the_bots_options():
    assert OPTION_NAMES == ("style", "preset", *USER_FIELDS)
    assert {"epochs", "lr", "content_weight", "style_weight", "tv_weight", "size", "style_scale", "pool", "init",
            "seed"} <= set(USER_FIELDS)
    assert not {"precision", "style_layers", "content_layer"} & set(USER_FIELDS)  # the operator's, not users'


@pytest.mark.parametrize(
    "text, expected",
    [
        ("--epochs 300 --style-weight 1e9", "--epochs 300 --style_weight 1e9"),
        ("--Style-Weight=1e9 --seed 3", "--style_weight 1e9 --seed 3"),
        ("--content_weight 50", "--content_weight 50"),
        ("--lr 1e-3 --size 384", "--lr 1e-3 --size 384"),
        ("--Style starry,waves --PRESET=fast", "--style starry,waves --preset fast"),
        ("", ""),
    ],
)
def test_normalise_accepts_hyphens_underscores_and_equals(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("--epochs 300 --foo 3", "unknown option `--foo`"),
        ("hello --epochs 3", "unexpected text 'hello'"),
        ("hello", "unexpected text 'hello'"),
        ("--epochs", "`--epochs` needs a value, e.g. `--epochs 500`"),
        ("--epochs 3 --seed", "`--seed` needs a value"),
        ("--style", "`--style` needs a value, e.g. `--style starry`"),
        ("--style-weight= --epochs 3", "`--style-weight` needs a value"),
    ],
)
def test_normalise_refuses_with_a_reason(text, words):
    with pytest.raises(OptionError) as caught:
        normalise(text)
    assert words in str(caught.value)


def test_help_lists_every_option_with_the_operators_defaults():
    text = options_help(StyleParams(epochs=250, style_weight=1e9))
    for option in ("--epochs", "--lr", "--content-weight", "--style-weight", "--tv-weight", "--size",
                   "--style-scale", "--pool", "--init", "--seed"):
        assert option in text
    assert "(default 250)" in text and "(default 1e9)" in text and "(default random)" in text
