"""Neural style transfer (Gatys et al.) on a pretrained VGG-19, in pure PyTorch.

    from PIL import Image
    import nst
    model = nst.load_vgg19("torchvision")          # or a path, or "random" for smoke tests
    result = nst.stylize(Image.open("content.jpg"), Image.open("style.jpg"),
                         nst.StyleParams(epochs=300, size=384), model=model)
    result.image.save("out.png"); print(result.stats)
    clip = nst.stylize_animation(nst.images.decode_animation("clip.gif"), Image.open("style.jpg"), model=model)
    nst.images.write_animation(clip.animation, "out.gif")   # one shared palette, the clip's timing and loop

Importing the package is cheap: ``nst.params``, ``nst.errors``, ``nst.images``, ``nst.schedule`` and
``nst.memory`` never import torch, so a process that only validates options and images (the bot's main process)
does not pay for it (measured for the bot's imports on a 2-core CPU: 2.5 s of CPU and 767 MiB peak
RSS with an eager import, 0.6 s and 69 MiB without). The torch-backed names load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import Cancelled, ImageError, NSTError, ParamError, WeightsError
from .params import FIELDS, StyleParams
from .images import Animation, check_animation
from .schedule import check_runnable
from . import memory  # no torch: budgets (parse_budget, check_fits) for a process that only validates

# name -> module that defines it; imported on first attribute access (PEP 562)
_LAZY = {
    "VGGFeatures": "model",
    "export_features": "model",
    "load_vgg19": "model",
    "resolve_device": "model",
    "AnimationProgress": "animation",
    "AnimationResult": "animation",
    "stylize_animation": "animation",
    "Progress": "transfer",
    "Result": "transfer",
    "Stats": "transfer",
    "stylize": "transfer",
}

if TYPE_CHECKING:
    from .animation import AnimationProgress, AnimationResult, stylize_animation
    from .model import VGGFeatures, export_features, load_vgg19, resolve_device
    from .transfer import Progress, Result, Stats, stylize


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nst' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Animation",
    "AnimationProgress",
    "AnimationResult",
    "Cancelled",
    "FIELDS",
    "ImageError",
    "NSTError",
    "ParamError",
    "Progress",
    "Result",
    "Stats",
    "StyleParams",
    "VGGFeatures",
    "WeightsError",
    "check_animation",
    "check_runnable",
    "export_features",
    "load_vgg19",
    "memory",
    "resolve_device",
    "stylize",
    "stylize_animation",
]
