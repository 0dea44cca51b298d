"""The images of a stylize request: found, checked before download, downloaded, decoded.

One content image and one or more style images (a job blends several; the front-end decides how
many it accepts, up to caps.max_styles). Every refusal is a UserError with a short, specific
message; nothing is queued until every image decodes. Downloads come only from the configured hosts
(bot.attachment_hosts: Discord's CDN), and are streamed: reading stops at the size cap whatever the
server declared. Decoding runs in a thread: a large JPEG takes tens of milliseconds, too long for
the loop.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from typing import Sequence

import aiohttp
import discord

from nst import images
from nst.errors import ImageError

from bot.config import DISCORD_CDN_HOSTS
from bot.core.errors import UserError
from bot.core.inputs import VIDEO_TYPES, check_video, roles
from bot.core.styles import IMAGE_EXTENSIONS

DOWNLOAD_TIMEOUT = 60.0
CHUNK = 64 * 1024


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
            raise UserError("I cannot read the message you replied to; attach the images to your command instead") from None
    return list(replied.attachments)


def check_attachments(
    attachments: Sequence[discord.Attachment], *, max_bytes: int, max_pixels: int, max_styles: int = 1, named_styles: int = 0,
) -> None:
    """Refuse from the metadata alone: count (a content image and 1..max_styles styles, attached or
    ``named_styles`` named), type, byte size, declared pixel size."""
    styles = len(attachments) - 1 + named_styles
    if not attachments or not 1 <= styles <= max_styles:
        if named_styles and attachments:
            raise UserError(f"a job takes at most {max_styles} style{'s' if max_styles != 1 else ''}, attached or named "
                            f"(I found {styles})")
        if max_styles == 1:
            wanted = "exactly two images, the content first and the style second"
        else:
            wanted = f"two to {1 + max_styles} images: the content first, then one to {max_styles} styles to blend"
        hint = "; or attach only the content and name a style with `--style NAME` (see `style list`)" if styles < 1 else ""
        raise UserError(f"attach {wanted} (I found {len(attachments)}); or reply to a message that has them{hint}")
    for attachment, role in zip(attachments, roles(len(attachments) + named_styles)):
        check_attachment(attachment, role, max_bytes=max_bytes, max_pixels=max_pixels)


def check_attachment(attachment: discord.Attachment, role: str, *, max_bytes: int, max_pixels: int) -> None:
    """Refuse one image from its metadata: type, byte size, declared pixel size."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    extension = os.path.splitext(attachment.filename)[1].lower()
    if kind in VIDEO_TYPES:
        check_video(kind, role, attachment.filename)  # a clip as the content: an animation job
    elif not (kind.startswith("image/") or (not kind and extension in IMAGE_EXTENSIONS)):
        raise UserError(f"the {role} ({attachment.filename}) is not an image ({kind or 'unknown type'})")
    if attachment.size > max_bytes:
        raise UserError(f"the {role} ({attachment.filename}) is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}")
    if attachment.width and attachment.height and attachment.width * attachment.height > max_pixels:
        raise UserError(
            f"the {role} is {attachment.width}×{attachment.height} = "
            f"{images.describe_pixels(attachment.width * attachment.height)}; "
            f"the limit is {images.describe_pixels(max_pixels)}"
        )


def check_host(url: str, allowed_hosts: Sequence[str], role: str) -> None:
    """Only http(s) URLs on an allowed host are ever fetched (attachment URLs come from the gateway,
    but a forged or proxied payload must not make the bot fetch arbitrary addresses)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or host not in {h.lower() for h in allowed_hosts}:
        raise UserError(f"the {role} is not hosted on Discord's CDN, so I will not download it")


async def download(
    attachments: Sequence[discord.Attachment],
    *,
    max_bytes: int,
    max_pixels: int,
    allowed_hosts: Sequence[str] = DISCORD_CDN_HOSTS,
    names: Sequence[str] | None = None,
    check_content: bool = True,
) -> tuple[bytes, ...]:
    """Every file's bytes, in order (content first, then the styles), each checked to decode (in a
    thread) before anything is queued. ``names``: how each is called in messages (default: roles()).
    ``check_content=False``: the first file is left to the caller, which decodes it as an animation
    (bot.core.inputs.check_runnable: its frames are counted before any is decoded)."""
    named = list(zip(attachments, names or roles(len(attachments))))
    for attachment, role in named:
        check_host(attachment.url, allowed_hosts, role)
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(attachment: discord.Attachment, role: str) -> bytes:
            data = await fetch_capped(session, attachment.url, max_bytes=max_bytes, role=role)
            if not check_content and attachment is attachments[0]:
                return data
            try:
                await asyncio.to_thread(images.decode_image, data, max_pixels=max_pixels, name=role)
            except ImageError as error:
                raise UserError(str(error)) from None
            return data

        return tuple(await asyncio.gather(*(fetch(a, r) for a, r in named)))


async def fetch_capped(session: aiohttp.ClientSession, url: str, *, max_bytes: int, role: str) -> bytes:
    """GET ``url``, reading at most ``max_bytes`` (+1 to know it was more): a server that declares
    less than it sends, or nothing at all, is cut off at the cap."""
    failed = UserError(f"I could not download the {role} from Discord; please try again")
    try:
        async with session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise failed
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                raise UserError(f"the {role} is {_mb(declared)}; the limit is {_mb(max_bytes)}")
            received = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK):
                received += chunk
                if len(received) > max_bytes:
                    raise UserError(f"the {role} is larger than the limit of {_mb(max_bytes)}")
            return bytes(received)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        raise failed from None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KB"
