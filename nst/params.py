"""Every knob of a style-transfer job, with its default, range and help, in one validated object.

The field table (``FIELDS``) is the single source for validation, for the CLI's options and for the
bot's command options and user settings, so a value is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import ParamError

# VGG-19's feature layers in torchvision's order (``vgg19().features[i]``), named as in the paper.
_VGG19_BLOCKS = (2, 2, 4, 4, 4)


def _vgg19_layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, convs in enumerate(_VGG19_BLOCKS, start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYERS: tuple[str, ...] = _vgg19_layer_names()
_VGG19_CHANNELS = (64, 128, 256, 512, 512)  # each block's output channels


def layer_channels(layer: str) -> int:
    """Channels of a VGG-19 layer's output (a conv, ReLU or pooling of its block)."""
    return _VGG19_CHANNELS[int(layer[4]) - 1]

# VGG-19 pools four times before conv5_1: a side shorter than 16 px vanishes before the last style layer.
MIN_SIDE = 16
# The smallest `size` (longer side) accepted at all: 2:1 pictures still keep 16 px on the short side.
# Whether a given picture can run at a given size is decided by nst.schedule.check_runnable.
MIN_SIZE = 32
# Early stop compares the best loss now with the best loss this many steps ago.
STOP_WINDOW = 10

POOLING = ("max", "avg")
INITS = ("content", "style", "noise")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("pyramid", "single", "reference")
OPTIMIZERS = ("adam", "lbfgs")
COLORS = ("style", "content", "match")
EFFORTS = ("standard", "high")

# Tuple fields holding numbers rather than layer names.
_NUMBER_TUPLES = ("style_layer_weights", "style_blend")


@dataclass(frozen=True)
class FieldSpec:
    """How one parameter is typed, bounded and explained."""

    name: str
    kind: type  # int, float, str, or tuple for layer lists
    help: str
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False  # True: the minimum itself is not allowed (e.g. lr > 0)
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None allowed (seed, lr)
    none_word: str = "random"  # how None is typed and shown ("random" seed, "auto" learning rate)
    user_option: bool = True  # offered to Discord users as a !stylize option
    user_setting: bool = True  # may be saved as a per-user default (!settings); needs user_option

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.name == "style_blend":
            return "comma-separated weights ≥ 0, one per style image (e.g. 0.7,0.3)"
        if self.kind is tuple:
            return "comma-separated VGG-19 layer names (e.g. conv1_1,conv2_1)"
        low = "" if self.minimum is None else format_number(self.minimum)
        high = "" if self.maximum is None else format_number(self.maximum)
        kind = "an integer" if self.kind is int else "a number"
        if self.optional and self.none_word != "random":
            kind = f"{self.none_word} or {kind}"
        if self.minimum is not None and self.maximum is not None:
            if self.min_exclusive:
                return f"{kind} greater than {low} and at most {high}"
            return f"{kind} from {low} to {high}"
        if self.minimum is not None:
            return f"{kind} {'greater than' if self.min_exclusive else 'at least'} {low}"
        return kind


def format_number(value: float) -> str:
    """Numbers as people type them: 1e8, 0.007, 500."""
    if isinstance(value, float) and (abs(value) >= 1e5 or (value and abs(value) < 1e-3)):
        mantissa, _, exponent = f"{value:g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("epochs", int, "most optimisation steps over all levels (the schedule stops earlier: see effort)", 1, 100_000),
        FieldSpec(
            "lr", float, "Adam learning rate (pixel scale 0..1); auto = the schedule's own (0.007 for reference)",
            0.0, 1.0, min_exclusive=True, optional=True, none_word="auto",
        ),
        FieldSpec("content_weight", float, "weight of the content loss (keeps the picture)", 0.0, 1e12),
        FieldSpec("style_weight", float, "weight of the style loss (takes the look)", 0.0, 1e15),
        FieldSpec("tv_weight", float, "total-variation weight (smooths noise; 0 = off)", 0.0, 1e12),
        FieldSpec("size", int, "longer side of the output in pixels (never upscales)", MIN_SIZE, 4096),
        FieldSpec("style_scale", float, "style image size relative to the output", 0.1, 4.0),
        FieldSpec("pool", str, "pooling in VGG-19", choices=POOLING),
        FieldSpec("init", str, "starting image", choices=INITS),
        FieldSpec("seed", int, "random seed for a reproducible run", 0, 2**32 - 1, optional=True),
        FieldSpec(
            "schedule", str, "pyramid = coarse to fine with early stop (fast); single = one scale with early stop; "
            "reference = the original loop (one scale, Adam, every step, no early stop)", choices=SCHEDULES,
        ),
        FieldSpec(
            "optimizer", str, "adam (measured faster to the objective), or lbfgs (fp32, strong-Wolfe line "
            "search); reference always uses adam", choices=OPTIMIZERS,
        ),
        FieldSpec(
            "colors", str, "style = take the style's colours; content = keep the content's colours (luminance "
            "transfer); match = recolour the style to the content's palette first", choices=COLORS,
        ),
        FieldSpec(
            "style_blend", tuple, "weight of each style image when several are given (normalised; empty = equal)",
            user_setting=False,
        ),
        FieldSpec(
            "effort", str, "standard = stop once more steps stop paying (the original 500-step loop's "
            "objective in about a tenth of its time); high = refine until the loss is flat (a 20-30% lower objective "
            "for about 3x the time); the reference schedule ignores it", choices=EFFORTS,
        ),
        FieldSpec(
            "stop_tolerance", float, "end a level once the loss improved by less than this fraction over "
            f"{STOP_WINDOW} steps (auto = the effort's own; 0 = run every step)", 0.0, 0.5,
            optional=True, none_word="auto", user_option=False,
        ),
        FieldSpec("style_layers", tuple, "layers whose Gram matrices carry style", user_option=False),
        FieldSpec("style_layer_weights", tuple, "weight of each style layer", user_option=False),
        FieldSpec("content_layer", str, "layer whose features carry content", user_option=False),
        FieldSpec(
            "precision", str, "auto = bf16 where the device is fast at it", choices=PRECISIONS, user_option=False
        ),
        # Animations (nst.animation): the size of their frames, the later frames' budget, the temporal term, the caps.
        FieldSpec("animation_size", int, "longer side of an animation's frames in pixels (stills use size)", MIN_SIZE, 4096, user_option=False),
        FieldSpec(
            "frame_steps", int, "most steps for each frame of an animation after the first (it starts from the "
            "previous stylized frame and stops once it reaches the first frame's level)", 1, 1000, user_option=False,
        ),
        FieldSpec(
            "temporal_weight", float, "how strongly the parts of an animation that do not move keep the previous "
            "frame's picture (0 = off)", 0.0, 1e6, user_option=False,
        ),
        FieldSpec("max_frames", int, "most frames an animation may have", 1, 100_000, user_option=False),
        FieldSpec("max_clip_seconds", float, "longest animation in seconds of playing time", 0.0, 86_400, min_exclusive=True, user_option=False),
        FieldSpec(
            "max_clip_pixels", int, "most frames × pixels per frame (at the animation size) one animation may cost",
            1, 10**12, user_option=False,
        ),
    )
}


@dataclass(frozen=True)
class StyleParams:
    """A complete, validated job description. Construct with keywords; invalid values raise ParamError."""

    epochs: int = 500
    lr: float | None = None
    content_weight: float = 100.0
    style_weight: float = 1e8
    tv_weight: float = 0.0
    size: int = 512
    style_scale: float = 1.0
    pool: str = "max"
    init: str = "content"
    seed: int | None = None
    schedule: str = "pyramid"
    optimizer: str = "adam"
    colors: str = "style"
    style_blend: tuple[float, ...] = ()
    effort: str = "standard"
    stop_tolerance: float | None = None
    style_layers: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    style_layer_weights: tuple[float, ...] = (1.0, 0.8, 0.4, 0.2, 0.1)
    content_layer: str = "conv4_2"
    precision: str = "auto"
    animation_size: int = 256
    frame_steps: int = 20  # bench/animation.py at 128 px: 15 left the worst frame 1.12x a still's objective
    temporal_weight: float = 30.0
    max_frames: int = 120
    max_clip_seconds: float = 30.0
    max_clip_pixels: int = 8_000_000

    def __post_init__(self) -> None:
        for spec in FIELDS.values():
            value = _check(spec, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)
        if len(self.style_layer_weights) != len(self.style_layers):
            raise ParamError(
                "style_layer_weights",
                f"{len(self.style_layer_weights)} weights given for {len(self.style_layers)} style layers",
            )
        if len(set(self.style_layers)) != len(self.style_layers):
            raise ParamError("style_layers", "a layer is listed twice")
        if self.content_weight == 0 and self.style_weight == 0:
            raise ParamError("style_weight", "content_weight and style_weight cannot both be 0")

    def replace(self, **changes: Any) -> "StyleParams":
        """A copy with some fields changed, validated again."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ParamError(sorted(unknown)[0], "unknown parameter")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "StyleParams":
        """Build from a mapping whose values may be strings (config files, chat options)."""
        return cls().replace(**{name: parse_value(name, value) for name, value in values.items()})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (tuples become lists)."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the loss reads, style and content."""
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def gram_layers(self) -> tuple[str, ...]:
        """The layers whose Gram matrices the loss computes: the style layers, none at style_weight 0."""
        return tuple(self.style_layers) if self.style_weight else ()


def parse_value(name: str, value: Any) -> Any:
    """Turn text (or an already typed value) into the field's type; raise ParamError naming the field."""
    spec = FIELDS.get(name)
    if spec is None:
        raise ParamError(name, f"unknown parameter; known: {', '.join(FIELDS)}")
    if not isinstance(value, str):
        return value
    text = value.strip()
    if spec.optional and text.lower() in ("", "none", spec.none_word):
        return None
    if spec.kind is tuple:
        parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
        return tuple(parts) if name not in _NUMBER_TUPLES else tuple(_to_float(spec, p) for p in parts)
    if spec.kind is int:
        return _to_int(spec, text)
    if spec.kind is float:
        return _to_float(spec, text)
    return text.lower() if spec.choices else text


def check_value(name: str, value: Any) -> Any:
    """Parse (when text) and validate one field on its own; returns the typed value or raises ParamError."""
    return _check(FIELDS[name], parse_value(name, value))


def _plain_number(spec: FieldSpec, text: str) -> None:
    """Refuse ``text`` unless written with ASCII digits only: Python's int() and float() also take other scripts'
    digits ("٣" is 3) and "1_000", which a user reading the value back would not recognise."""
    if not text.isascii() or "_" in text:
        raise ParamError(spec.name, f"must be {spec.describe_range()} written with the digits 0-9, got {text!r}")


def _to_float(spec: FieldSpec, text: str) -> float:
    _plain_number(spec, text)  # outside the try: ParamError is a ValueError
    try:
        return float(text)
    except ValueError:
        raise ParamError(spec.name, f"must be {spec.describe_range()}, got {text!r}") from None


def _to_int(spec: FieldSpec, text: str) -> int:
    _plain_number(spec, text)
    try:
        return int(text)
    except ValueError:
        # Accept "1e3"-style integers that users type for epochs, but not 12.5.
        number = _to_float(spec, text)
        if not math.isfinite(number) or not number.is_integer():
            raise ParamError(spec.name, f"must be {spec.describe_range()}, got {text!r}") from None
        return int(number)


def _check(spec: FieldSpec, value: Any) -> Any:
    """Validate one value against its spec and return it normalised (e.g. int 5 -> 5.0 for floats)."""
    if value is None:
        if spec.optional:
            return None
        raise ParamError(spec.name, f"must be {spec.describe_range()}, got nothing")
    if spec.kind is tuple:
        return _check_tuple(spec, value)
    if spec.kind is str:
        if not isinstance(value, str):
            raise ParamError(spec.name, f"must be {spec.describe_range()}, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise ParamError(spec.name, f"must be {spec.describe_range()}, got {value!r}")
        if spec.name == "content_layer":
            _check_layer(spec.name, value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(spec.name, f"must be {spec.describe_range()}, got {value!r}")
    if spec.kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ParamError(spec.name, f"must be {spec.describe_range()}, got {value!r}")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(spec.name, f"must be {spec.describe_range()}, got {value!r}")
    too_low = spec.minimum is not None and (
        value <= spec.minimum if spec.min_exclusive else value < spec.minimum
    )
    too_high = spec.maximum is not None and value > spec.maximum
    if too_low or too_high:
        raise ParamError(spec.name, f"must be {spec.describe_range()}, got {format_number(value)}")
    return value


def _check_tuple(spec: FieldSpec, value: Any) -> tuple:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ParamError(spec.name, f"must be a list, got {value!r}")
    items = tuple(value)
    if spec.name == "style_blend":
        return _check_blend(items)
    if not items:
        raise ParamError(spec.name, "must not be empty")
    if spec.name == "style_layer_weights":
        weights = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item < 0:
                raise ParamError(spec.name, f"each weight must be a finite number ≥ 0, got {item!r}")
            weights.append(float(item))
        return tuple(weights)
    for item in items:
        _check_layer(spec.name, item)
    return items


def _check_blend(items: tuple) -> tuple[float, ...]:
    """Blend weights as given (empty = equal weights); normalised where they are used (blend_weights)."""
    weights = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item < 0:
            raise ParamError("style_blend", f"each weight must be a finite number ≥ 0, got {item!r}")
        weights.append(float(item))
    if weights and not any(weights):
        raise ParamError("style_blend", "at least one weight must be above 0")
    return tuple(weights)


def blend_weights(params: StyleParams, count: int) -> tuple[float, ...]:
    """The normalised weight of each of ``count`` style images; ParamError (style_blend) on a count mismatch."""
    if count < 1:
        raise ParamError("style_blend", "at least one style image is needed")
    weights = params.style_blend or (1.0,) * count
    if len(weights) != count:
        raise ParamError(
            "style_blend",
            f"{len(weights)} weight{'s' if len(weights) != 1 else ''} given for {count} style image"
            f"{'s' if count != 1 else ''}; give one weight per style image",
        )
    total = sum(weights)
    return tuple(w / total for w in weights)


def _check_layer(field_name: str, name: Any) -> None:
    if name not in VGG19_LAYERS:
        raise ParamError(
            field_name,
            f"{name!r} is not a VGG-19 layer; use conv/relu names such as conv4_2 or relu3_1 "
            f"(conv1_1 … conv5_4, pool1 … pool5)",
        )
