"""VGG-19 feature extractor: named layers, truncation, pooling choice, weights from real sources.

Weight sources (``load_vgg19(weights=...)``):
- ``"torchvision"``: ``VGG19_Weights.IMAGENET1K_V1`` through torchvision's own cache
  (``$TORCH_HOME/hub/checkpoints``), downloading it there once when missing, hash-checked;
- a path: torchvision's full VGG-19 state_dict or the compact features-only file that
  ``export_features`` writes (``python -m nst export-weights``);
- ``"random"``: randomly initialised weights, only when asked for; the output will not look stylized.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import socket
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ParamError, WeightsError
from .params import VGG19_LAYERS, layer_channels

log = logging.getLogger(__name__)

# Deepest layer the compact file keeps: the reference algorithm's deepest layer.
COMPACT_LAST_LAYER = "conv5_1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT_S = 60.0

OFFLINE_HELP = (
    "VGG-19 weights are not available: {reason}. Style transfer needs them. Choose one of: "
    "(1) connect this machine to the internet once so torchvision can download "
    "VGG19_Weights.IMAGENET1K_V1 (548 MB) into its cache ({cache}); "
    "(2) point --weights (or weights in the bot config) at a local file: torchvision's vgg19-dcbb9e9d.pth "
    "or the compact features-only file that 'python -m nst export-weights' writes; "
    "(3) for an offline smoke test only, use --weights random (the output will not look stylized)."
)


# --------------------------------------------------------------------------- devices and precision


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; a named device must exist."""
    text = str(name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ParamError("device", f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamError("device", "CUDA was asked for but no CUDA GPU is available")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ParamError("device", f"cuda:{index} does not exist ({torch.cuda.device_count()} GPUs)")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise ParamError("device", "MPS was asked for but this machine has no Apple GPU available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ParamError("device", f"{text!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def compute_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype the VGG forward/backward runs in, or None for plain fp32.

    'auto' uses bf16 where the hardware runs it fast and fp32 elsewhere (MPS stays fp32: its bf16
    support is uneven). The optimised pixels, Grams and losses are always fp32 (see losses.py).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def preferred_memory_format(device: torch.device) -> torch.memory_format:
    """channels_last is faster for oneDNN (CPU) and cuDNN convolutions; MPS gains nothing from it."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


# --------------------------------------------------------------------------- the network


def _conv_layout(last_layer: str) -> list[tuple[int, str, int, int]]:
    """(index in vgg19().features, name, in_channels, out_channels) for each conv up to last_layer."""
    layout, in_ch = [], 3
    for index, name in enumerate(VGG19_LAYERS[: VGG19_LAYERS.index(last_layer) + 1]):
        if name.startswith("conv"):
            out_ch = layer_channels(name)
            layout.append((index, name, in_ch, out_ch))
            in_ch = out_ch
    return layout


class VGGFeatures(nn.Module):
    """Frozen VGG-19 trunk in eval mode returning the activations of named layers.

    The forward pass stops after the deepest requested layer, so one loaded model serves any job.
    ``dtype=torch.bfloat16`` runs the convolutions on a bf16 copy of the weights, made once: autocast
    would re-cast the frozen fp32 weights on every forward pass (it caches casts only for weights that
    require grad), which cost about 20 ms a step at 300 px on the CPU.
    """

    def __init__(self, features: nn.Sequential, source: str):
        super().__init__()
        for module in features:
            if isinstance(module, nn.ReLU):
                # Captured conv outputs must not be overwritten by an in-place ReLU.
                module.inplace = False
        self.features = features
        self.source = source
        self.available: tuple[str, ...] = VGG19_LAYERS[: len(features)]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._low_precision: dict[torch.dtype, nn.Sequential] = {}
        self.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def check_layers(self, layers: Sequence[str]) -> None:
        for name in layers:
            if name not in self.available:
                raise ParamError(
                    "layers",
                    f"{name} is deeper than the loaded weights reach (they end at {self.available[-1]})",
                )

    def _layers_for(self, dtype: torch.dtype | None) -> nn.Sequential:
        if dtype is None or dtype == self.mean.dtype:
            return self.features
        if dtype not in self._low_precision:
            self._low_precision[dtype] = copy.deepcopy(self.features).to(dtype)
        return self._low_precision[dtype]

    def forward(
        self, image: torch.Tensor, layers: Sequence[str], pool: str = "max", dtype: torch.dtype | None = None,
        start_after: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """image: (N, 3, H, W) in 0..1 (fp32). Returns {layer name: activation} for the requested layers,
        in ``dtype`` (None: the weights' own fp32).

        ``start_after`` (a layer name): ``image`` is instead that layer's activation (in ``dtype``, as
        this method returns it) and the network runs from the next layer on; tiling cuts the network
        there (nst/tiling.py). Requested layers must then come after it."""
        wanted = set(layers)
        last = max(self.available.index(name) for name in wanted)
        network = self._layers_for(dtype)
        if start_after is None:
            first = 0
            x = (image - self.mean) / self.std
            if dtype is not None:
                x = x.to(dtype)
        else:
            if start_after not in self.available:
                raise ParamError("start_after", f"{start_after!r} is not a layer of the loaded network")
            first = self.available.index(start_after) + 1
            if min(self.available.index(name) for name in wanted) < first:
                raise ParamError("layers", f"every requested layer must come after {start_after}")
            x = image
        out: dict[str, torch.Tensor] = {}
        for index in range(first, last + 1):
            module = network[index]
            if pool == "avg" and isinstance(module, nn.MaxPool2d):
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
            else:
                x = module(x)
            name = self.available[index]
            if name in wanted:
                out[name] = x
        return out


def _empty_features(last_layer: str) -> nn.Sequential:
    """torchvision's vgg19 feature definition, truncated after last_layer, with uninitialised weights."""
    from torchvision.models import vgg19

    with torch.device("meta"):
        full = vgg19(weights=None).features
    return full[: VGG19_LAYERS.index(last_layer) + 1].to_empty(device="cpu")


def _state_from_torchvision(progress: bool) -> dict[str, torch.Tensor]:
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    previous = socket.getdefaulttimeout()
    # torch.hub's download has no timeout of its own: a black-holed network would hang forever.
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(
            url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
        )
    except (OSError, RuntimeError) as exc:  # URLError, timeouts, hash mismatch, truncated cache file
        reason = f"downloading {url} failed ({_short(exc)})"
        raise WeightsError(OFFLINE_HELP.format(reason=reason, cache=cache)) from None
    finally:
        socket.setdefaulttimeout(previous)


def _state_from_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        # weights_only: a weights file must never be able to run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors, unpickling refusals, EOF: all mean "not a weights file"
        raise WeightsError(f"{path} is not a readable PyTorch weights file ({_short(exc)})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _features_state(state: Mapping[str, torch.Tensor], last_layer: str, origin: str) -> dict[str, torch.Tensor]:
    """Pick and check the conv weights up to last_layer; accepts 'features.N.*' or bare 'N.*' keys."""
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    picked: dict[str, torch.Tensor] = {}
    layout = _conv_layout(last_layer)
    for index, name, in_ch, out_ch in layout:
        for part, shape in (("weight", (out_ch, in_ch, 3, 3)), ("bias", (out_ch,))):
            key = f"{prefix}{index}.{part}"
            tensor = state.get(key)
            if tensor is None:
                have = [n for i, n, _, _ in layout if f"{prefix}{i}.weight" in state]
                reach = f"it ends at {have[-1]}" if have else "it has no VGG-19 conv weights at all"
                raise WeightsError(f"{origin} lacks {name} ({key}): {reach}, and {last_layer} is needed")
            if tuple(tensor.shape) != shape:
                raise WeightsError(
                    f"{origin}: {key} ({name}) has shape {tuple(tensor.shape)}, VGG-19 expects {shape}; "
                    "this is not a VGG-19 weights file"
                )
            if not torch.is_floating_point(tensor) or not bool(torch.isfinite(tensor).all()):
                raise WeightsError(f"{origin}: {key} ({name}) holds non-finite or non-float values")
            picked[f"{index}.{part}"] = tensor.float()
    return picked


def _random_state(last_layer: str) -> dict[str, torch.Tensor]:
    """torchvision's VGG initialisation (Kaiming normal, zero bias) with a fixed seed, so every process
    (CLI, bot workers, tests) gets the same "random" network."""
    features = _empty_features(last_layer)
    generator = torch.Generator().manual_seed(0)
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=generator)
                module.bias.zero_()
    return dict(features.state_dict())


def load_state(weights: str | os.PathLike, *, last_layer: str = COMPACT_LAST_LAYER, progress: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The checked conv weights up to last_layer from a source, and a label naming that source."""
    if last_layer not in VGG19_LAYERS:
        raise ParamError("last_layer", f"{last_layer!r} is not a VGG-19 layer")
    text = os.fspath(weights)
    if text == "random":
        log.warning("using RANDOM VGG-19 weights: fine for tests and smoke runs, but the output will not look stylized")
        return _random_state(last_layer), "random"
    if text == "torchvision":
        state, label = _state_from_torchvision(progress), "torchvision:IMAGENET1K_V1"
    else:
        path = Path(text).expanduser()
        state, label = _state_from_file(path), f"file:{path}"
    return _features_state(state, last_layer, label), label


def load_vgg19(
    weights: str | os.PathLike = "torchvision",
    *,
    device: str | torch.device | None = "auto",
    last_layer: str = COMPACT_LAST_LAYER,
    progress: bool = False,
) -> VGGFeatures:
    """Load the frozen feature extractor once; reuse it for every job on that device."""
    target = device if isinstance(device, torch.device) else resolve_device(device)
    state, label = load_state(weights, last_layer=last_layer, progress=progress)
    features = _empty_features(last_layer)
    # strict: the checked state covers every conv parameter of the truncated network, nothing else.
    features.load_state_dict(state, strict=True)
    model = VGGFeatures(features, label)
    return model.to(device=target, memory_format=preferred_memory_format(target))


def export_features(
    weights: str | os.PathLike, out_path: str | os.PathLike, *, last_layer: str = COMPACT_LAST_LAYER, progress: bool = True
) -> tuple[Path, str, int]:
    """Write the compact features-only file (conv layers up to last_layer, fp32).

    Keys are torchvision's ('features.N.weight'), so the file also loads into torchvision's vgg19
    with strict=False. Written atomically. Returns (path, sha256 hex digest, size in bytes).
    """
    state, _ = load_state(weights, last_layer=last_layer, progress=progress)
    out = Path(out_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    torch.save({f"features.{key}": tensor.contiguous() for key, tensor in state.items()}, tmp)
    os.replace(tmp, out)
    digest = hashlib.sha256()
    with open(out, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return out, digest.hexdigest(), out.stat().st_size
