"""A job's input images, whichever front-end received them: how each is named in messages, and the
engine's rule on what it can process, checked before anything is queued."""

from __future__ import annotations

import asyncio
from typing import Sequence

from nst import images
from nst.errors import ImageError, ParamError

from bot.core.errors import UserError
from bot.core.options import option_refusal


def roles(count: int) -> list[str]:
    """How each of ``count`` images is named in messages: the content first, then the style(s)."""
    if count <= 2:
        return ["content image", "style image"][:count]
    return ["content image", *(f"style image {i}" for i in range(1, count))]


async def check_runnable(content: bytes, styles: Sequence[bytes], params, *, max_pixels: int) -> None:
    """Refuse, before queueing, images VGG-19 cannot process at ``params`` (too small, too elongated,
    a style scaled below the minimum): nst.check_runnable's rule, the same as the CLI's and the
    library's, with its message naming the image, its size and the minimum."""
    from nst import check_runnable as engine_check  # lazily: it loads the engine

    def sizes() -> list[tuple[int, int]]:
        names = roles(1 + len(styles))
        return [images.decode_image(data, max_pixels=max_pixels, name=name).size for data, name in zip([content, *styles], names)]

    try:
        found = await asyncio.to_thread(sizes)
        engine_check(found[0], found[1:], params)
    except ImageError as error:
        raise UserError(str(error)) from None
    except ParamError as error:
        raise option_refusal(error) from None
