"""Neural style transfer (Gatys et al.) on a pretrained VGG-19, in pure PyTorch.

    from PIL import Image
    import nst
    model = nst.load_vgg19("torchvision")          # or a path, or "random" for smoke tests
    result = nst.stylize(Image.open("content.jpg"), Image.open("style.jpg"),
                         nst.StyleParams(epochs=300, size=384), model=model)
    result.image.save("out.png"); print(result.stats)
"""

from .errors import Cancelled, ImageError, NSTError, ParamError, WeightsError
from .model import VGGFeatures, export_features, load_vgg19, resolve_device
from .params import FIELDS, StyleParams
from .transfer import Progress, Result, Stats, stylize

__all__ = [
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
    "export_features",
    "load_vgg19",
    "resolve_device",
    "stylize",
]
