"""The two images of a ``!stylize`` request: found, checked before download, downloaded, decoded.

Every refusal is a UserError with a short, specific message; nothing is queued until both images
decode. Decoding runs in a thread: a large JPEG takes tens of milliseconds, too long for the loop.
"""

from __future__ import annotations

import asyncio
import os

import discord

from nst import images
from nst.errors import ImageError

from .errors import UserError

ROLES = ("content image", "style image")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
DOWNLOAD_TIMEOUT = 60.0


async def find_images(message: discord.Message) -> list[discord.Attachment]:
    """The command's own attachments, or those of the message it replies to."""
    if message.attachments:
        return list(message.attachments)
    reference = message.reference
    if reference is None or reference.message_id is None:
        return []
    replied = reference.resolved if isinstance(reference.resolved, discord.Message) else None
    if replied is None:
        try:
            replied = await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            raise UserError("I cannot read the message you replied to; attach the two images to your command instead") from None
    return list(replied.attachments)


def check_attachments(attachments: list[discord.Attachment], *, max_bytes: int, max_pixels: int) -> None:
    """Refuse from the metadata alone: count, type, byte size, declared pixel size."""
    if len(attachments) != 2:
        raise UserError(
            f"attach exactly two images, the content first and the style second (I found {len(attachments)}); "
            "or reply to a message that has them"
        )
    for attachment, role in zip(attachments, ROLES):
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        extension = os.path.splitext(attachment.filename)[1].lower()
        if not (kind.startswith("image/") or (not kind and extension in IMAGE_EXTENSIONS)):
            raise UserError(f"the {role} ({attachment.filename}) is not an image ({kind or 'unknown type'})")
        if attachment.size > max_bytes:
            raise UserError(f"the {role} ({attachment.filename}) is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}")
        if attachment.width and attachment.height and attachment.width * attachment.height > max_pixels:
            raise UserError(
                f"the {role} is {attachment.width}×{attachment.height} = "
                f"{images.describe_pixels(attachment.width * attachment.height)}; "
                f"the limit is {images.describe_pixels(max_pixels)}"
            )


async def download(attachments: list[discord.Attachment], *, max_bytes: int, max_pixels: int) -> tuple[bytes, bytes]:
    """Both files' bytes, each checked to decode (in a thread) before anything is queued."""

    async def fetch(attachment: discord.Attachment, role: str) -> bytes:
        try:
            data = await asyncio.wait_for(attachment.read(), DOWNLOAD_TIMEOUT)
        except (discord.HTTPException, asyncio.TimeoutError, OSError):
            raise UserError(f"I could not download the {role} from Discord; please try again") from None
        if len(data) > max_bytes:  # the metadata said otherwise: trust the bytes
            raise UserError(f"the {role} is {_mb(len(data))}; the limit is {_mb(max_bytes)}")
        try:
            await asyncio.to_thread(images.decode_image, data, max_pixels=max_pixels, name=role)
        except ImageError as error:
            raise UserError(str(error)) from None
        return data

    content, style = await asyncio.gather(*(fetch(a, r) for a, r in zip(attachments, ROLES)))
    return content, style


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 100 * 1024 else f"{size / 1024:.0f} KB"
