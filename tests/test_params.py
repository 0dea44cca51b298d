import math

import pytest

from nst.errors import ParamError
from nst.params import FIELDS, VGG19_LAYERS, StyleParams, blend_weights, check_value, parse_value


def test_defaults_are_the_reference_numbers():
    p = StyleParams()
    assert p.style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    assert p.style_layer_weights == (1.0, 0.8, 0.4, 0.2, 0.1)
    assert p.content_layer == "conv4_2"
    assert (p.content_weight, p.style_weight, p.epochs) == (100.0, 1e8, 500)
    assert (p.init, p.pool, p.tv_weight, p.size) == ("content", "max", 0.0, 512)
    # the schedule picks the learning rate unless one is given; reference = the seed's 0.007
    assert (p.lr, p.schedule, p.optimizer, p.colors, p.style_blend) == (None, "pyramid", "adam", "style", ())


def test_layer_names_are_vgg19s():
    assert len(VGG19_LAYERS) == 37  # len(torchvision.models.vgg19().features)
    assert VGG19_LAYERS[0] == "conv1_1" and VGG19_LAYERS[28] == "conv5_1" and VGG19_LAYERS[21] == "conv4_2"
    assert VGG19_LAYERS[-1] == "pool5"


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("epochs", 0, "from 1 to 100000"),
        ("epochs", 100_001, "from 1 to 100000"),
        ("epochs", 2.5, "integer"),
        ("lr", 0.0, "greater than 0"),
        ("lr", -0.1, "greater than 0"),
        ("lr", math.inf, "greater than 0"),
        ("content_weight", -1.0, "from 0"),
        ("style_weight", math.nan, "nan"),
        ("tv_weight", -0.5, "from 0"),
        ("size", 8, "from 32 to 4096"),
        ("size", 31, "from 32 to 4096"),
        ("schedule", "fast", "one of pyramid, single, reference"),
        ("optimizer", "sgd", "one of adam, lbfgs"),
        ("colors", "sepia", "one of style, content, match"),
        ("style_blend", (1.0, -0.5), "≥ 0"),
        ("style_blend", (0.0, 0.0), "at least one weight must be above 0"),
        ("style_blend", "0.7,0.3", "must be a list"),
        ("stop_tolerance", 0.9, "from 0 to 0.5"),
        ("style_scale", 0.0, "from 0.1 to 4"),
        ("pool", "min", "one of max, avg"),
        ("init", "zeros", "one of content, style, noise"),
        ("seed", -1, "from 0"),
        ("precision", "fp8", "one of auto, fp32, bf16"),
        ("content_layer", "conv6_1", "not a VGG-19 layer"),
        ("style_layers", ("conv1_1", "fc7"), "not a VGG-19 layer"),
        ("epochs", True, "integer"),
        ("lr", "0.1", "greater than 0"),  # typed construction does not parse strings
    ],
)
def test_invalid_values_name_the_field_and_range(field, value, words):
    with pytest.raises(ParamError) as caught:
        if field == "style_layers":
            StyleParams(style_layers=value, style_layer_weights=(1.0,) * len(value))
        else:
            StyleParams(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


def test_cross_field_rules():
    with pytest.raises(ParamError, match="3 weights given for 2 style layers"):
        StyleParams(style_layers=("conv1_1", "conv2_1"), style_layer_weights=(1.0, 1.0, 1.0))
    with pytest.raises(ParamError, match="cannot both be 0"):
        StyleParams(content_weight=0, style_weight=0)
    with pytest.raises(ParamError, match="listed twice"):
        StyleParams(style_layers=("conv1_1", "conv1_1"), style_layer_weights=(1.0, 1.0))
    with pytest.raises(ParamError, match="unknown parameter"):
        StyleParams().replace(colour="blue")


def test_numbers_are_normalised():
    p = StyleParams(content_weight=50, epochs=300.0, seed=7)
    assert isinstance(p.content_weight, float) and p.epochs == 300 and isinstance(p.epochs, int)


@pytest.mark.parametrize(
    "field, text, expected",
    [
        ("epochs", "300", 300),
        ("epochs", "1e3", 1000),
        ("style_weight", "1e9", 1e9),
        ("lr", " 0.01 ", 0.01),
        ("seed", "none", None),
        ("seed", "42", 42),
        ("pool", "AVG", "avg"),
        ("style_layers", "conv1_1, conv2_1", ("conv1_1", "conv2_1")),
        ("style_layer_weights", "1,0.5", (1.0, 0.5)),
        ("lr", "auto", None),
        ("schedule", "Reference", "reference"),
        ("colors", "content", "content"),
        ("style_blend", "0.7, 0.3", (0.7, 0.3)),
        ("style_blend", "", ()),
    ],
)
def test_parse_value_from_text(field, text, expected):
    assert parse_value(field, text) == expected


@pytest.mark.parametrize(
    "field, text",
    [("epochs", "12.5"), ("epochs", "many"), ("style_weight", "lots"), ("nope", "1"), ("style_blend", "0.7,x"),
     ("lr", "fast")],
)
def test_parse_value_refuses_with_the_field_named(field, text):
    with pytest.raises(ParamError) as caught:
        parse_value(field, text)
    assert caught.value.field == field


def test_from_mapping_and_back():
    p = StyleParams.from_mapping({"epochs": "250", "style_weight": "1e9", "init": "noise", "seed": "3"})
    assert (p.epochs, p.style_weight, p.init, p.seed) == (250, 1e9, "noise", 3)
    assert StyleParams.from_mapping(p.as_dict()) == p


def test_every_field_has_help_and_a_describable_range():
    for spec in FIELDS.values():
        assert spec.help and spec.describe_range()


def test_every_new_kind_checks_from_text_like_the_bot_does():
    # the bot's options and !settings go through check_value with the user's text
    assert check_value("schedule", "reference") == "reference"
    assert check_value("lr", "auto") is None and check_value("lr", "0.05") == 0.05
    assert check_value("style_blend", "2,1") == (2.0, 1.0)
    for field, text in (("schedule", "quick"), ("style_blend", "1,-1"), ("colors", "red"), ("lr", "0")):
        with pytest.raises(ParamError) as caught:
            check_value(field, text)
        assert caught.value.field == field


def test_blend_weights_are_normalised_and_must_match_the_styles():
    assert blend_weights(StyleParams(), 2) == (0.5, 0.5)
    assert blend_weights(StyleParams(style_blend=(3, 1)), 2) == (0.75, 0.25)
    assert blend_weights(StyleParams(style_blend=(1, 0)), 2) == (1.0, 0.0)
    with pytest.raises(ParamError) as caught:
        blend_weights(StyleParams(style_blend=(0.7, 0.3)), 3)
    assert caught.value.field == "style_blend" and "2 weights given for 3 style images" in str(caught.value)


def test_blend_is_an_option_but_not_a_saved_setting():
    # its length depends on the attachments of one command, so a saved default makes no sense
    spec = FIELDS["style_blend"]
    assert spec.user_option and not spec.user_setting
    assert all(FIELDS[name].user_setting for name in ("schedule", "colors", "optimizer", "epochs"))


@pytest.mark.parametrize("name, text", [("epochs", "٣٠٠"), ("size", "1_024"), ("style_weight", "１e8"), ("tv_weight", "²")])
def test_numbers_are_written_with_the_digits_0_9(name, text):
    """int() and float() read other scripts' digits and underscores; a value shown back must be the one typed."""
    with pytest.raises(ParamError, match="digits 0-9"):
        check_value(name, text)
