"""Each server's library of named styles, and the operator's built-ins.

A style is added from an image a member sends: it is checked like an upload (nst.images.decode_image
under caps.max_pixels), shrunk to styles.max_side, re-encoded (nst.images.encode_image: PNG when it
fits caps.max_attachment_bytes) and stored **content addressed**: the file is named by the SHA-256 of
its bytes, ``<data_dir>/styles/ab/abcdef….png``, written to a temporary file and renamed into place,
so a reader sees a whole file or none. The name, who added it, when, the pixel and byte size are a row
of the store's ``styles`` table. Two names (in one server or in two) for the same picture share one
file; a file is deleted when the last name using it goes (and a sweep at start-up removes files that
no row names, left behind by a crash between the file and the row).

A job reads the style's bytes at admission (the job service): from then on the job, its image-cache
entry (Again, Vary) and the executor hold their own copy, so removing or renaming the style later never
breaks a job already queued.

Built-ins: every image file in ``styles.builtin_dir`` (read-only, never written), named after the file
(``swirls.jpg`` -> ``swirls``), seen by every server. A server's own style of the same name wins; a
new one cannot take a built-in's name.

File work and image decoding run in threads (asyncio.to_thread); the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from nst import images
from nst.errors import ImageError, ParamError

from bot.core.errors import UserError
from bot.core.limits import NAME_RULE, check_name
from bot.core.text import did_you_mean, quote
from bot.core.store import StyleRecord

if TYPE_CHECKING:
    from bot.config import Config
    from bot.core.store import Store

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")

log = logging.getLogger(__name__)

COLUMNS, ROWS = 4, 3  # a contact sheet: 4 × 3 = 12 styles
PER_SHEET = COLUMNS * ROWS
THUMB = 128  # px, the longer side of a thumbnail
PAD = 8
LABEL = 18  # px of text under a thumbnail
CELL = (THUMB + 2 * PAD, THUMB + 2 * PAD + LABEL)
BACKGROUND, INK, BUILTIN_INK = (32, 34, 37), (230, 230, 230), (240, 190, 60)


@dataclass(frozen=True)
class Entry:
    """One style as listed: a server's own or a built-in."""

    name: str
    path: Path
    builtin: bool
    record: StyleRecord | None = None


def style_name(text: str) -> str:
    try:
        return check_name(text, "style")
    except ParamError as error:
        raise UserError(f"style names are {NAME_RULE}: {error.reason.split(' is not')[0]} is not one") from None


def describe_bytes(count: int) -> str:
    if count < 1024 * 1024:
        return f"{max(1, round(count / 1024))} KB"
    return f"{count / (1024 * 1024):.1f} MB"


class StyleLibrary:
    def __init__(self, config: "Config", store: "Store"):
        self.config = config
        self.store = store
        self.root = config.styles_dir
        self.builtin_dir = Path(config.styles.builtin_dir).expanduser() if config.styles.builtin_dir else None
        self._lock = asyncio.Lock()  # adds and removes one at a time: a file is never unlinked under a new name
        self._warned: set[str] = set()  # each warning about the built-in folder is logged once

    # ------------------------------------------------------------------ built-ins

    def builtins(self) -> dict[str, Path]:
        """The operator's built-in styles, ``{name: file}`` (the folder is read each time: cheap, and a
        file the operator adds shows up without a restart)."""
        if self.builtin_dir is None:
            return {}
        found: dict[str, Path] = {}
        try:
            files = sorted(self.builtin_dir.iterdir())
        except OSError as error:
            self._warn_once(f"styles.builtin_dir {self.builtin_dir}: cannot read it ({error.strerror or error}); "
                            "no built-in styles")
            return {}
        for path in files:
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            try:
                found.setdefault(check_name(path.stem), path)
            except ParamError:
                self._warn_once(f"styles.builtin_dir: {path.name} skipped: a style's name must be {NAME_RULE}")
        if not found:
            self._warn_once(f"styles.builtin_dir {self.builtin_dir} has no image files; no built-in styles")
        return found

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            log.warning("%s", text)

    # ------------------------------------------------------------------ reading

    def path(self, record: StyleRecord) -> Path:
        return self.root / record.sha256[:2] / record.filename

    async def entries(self, guild_id: int | None) -> tuple[list[Entry], list[Entry]]:
        """(the server's own styles, the built-ins), each by name."""
        own = [Entry(r.name, self.path(r), False, r) for r in await self.store.guild_styles(guild_id)] if guild_id else []
        builtin = [Entry(name, path, True) for name, path in (await asyncio.to_thread(self.builtins)).items()]
        return own, builtin

    async def find(self, guild_id: int | None, name: str) -> Entry | None:
        """The style of that name here (the server's own first), or None."""
        name = name.strip().lower()
        if guild_id is not None:
            record = await self.store.get_style(guild_id, name)
            if record is not None:
                return Entry(name, self.path(record), False, record)
        path = (await asyncio.to_thread(self.builtins)).get(name)
        return Entry(name, path, True) if path is not None else None

    async def get(self, guild_id: int | None, name: str) -> Entry:
        """Like find(), but refusing an unknown name with the close ones."""
        entry = await self.find(guild_id, name)
        if entry is None:
            raise UserError(await self.unknown(guild_id, name))
        return entry

    async def unknown(self, guild_id: int | None, name: str) -> str:
        own, builtin = await self.entries(guild_id)
        names = [e.name for e in own + builtin]
        suggestion = did_you_mean(name.strip().lower(), names)
        where = "here" if guild_id else "in direct messages (only the built-in styles are)"
        text = f"there is no style named `{quote(name, 40)}` {where}"
        if suggestion:
            return text + suggestion
        return text + ("; see `style list`" if names else "; this server has no named styles yet")

    async def load(self, guild_id: int | None, names: Sequence[str]) -> list[bytes]:
        """The stored bytes of each named style, in order (read now: the job keeps this copy)."""
        out = []
        for name in names:
            entry = await self.get(guild_id, name)
            try:
                out.append(await asyncio.to_thread(entry.path.read_bytes))
            except OSError as error:
                if await self.find(guild_id, name) is None:  # removed between the lookup and the read
                    raise UserError(await self.unknown(guild_id, name)) from None
                log.error("style %r (%s): cannot read %s: %s", name, "built-in" if entry.builtin else f"server {guild_id}",
                          entry.path, error)
                raise UserError(f"the image of style `{name}` cannot be read right now; please tell a server admin") from None
        return out

    # ------------------------------------------------------------------ changing

    async def add(self, guild_id: int, name: str, data: bytes, user_id: int) -> StyleRecord:
        """Validate, re-encode and store an image as the server's style ``name``. The image is decoded
        and encoded before the lock (other servers' adds and removals never wait on it); the checks
        are made again under the lock, with the file and the row."""
        name = await self.check_room(guild_id, name)
        data, sha, ext, width, height = await asyncio.to_thread(self._prepare, data)
        styles = self.config.styles
        async with self._lock:
            name = await self.check_room(guild_id, name)
            _, used = await self.store.style_usage(guild_id)
            shared = any(r.sha256 == sha for r in await self.store.guild_styles(guild_id))
            if not shared and used + len(data) > styles.max_bytes_per_server:
                raise UserError(
                    f"this style ({describe_bytes(len(data))} as stored) does not fit: the server's styles use "
                    f"{describe_bytes(used)} of {describe_bytes(styles.max_bytes_per_server)}; remove one first"
                )
            record = StyleRecord(guild_id, name, sha, ext, len(data), width, height, user_id, time.time())
            await asyncio.to_thread(self._write, self.path(record), data)
            try:
                await self.store.add_style(record)
            except ValueError:  # taken since check_free (another process on the same database): the file may be orphaned
                raise UserError(f"this server already has a style named `{name}`; choose another name") from None
        log.info("style %r added to server %s by %s (%s, %d bytes)", name, guild_id, user_id, sha[:12], len(data))
        return record

    async def check_room(self, guild_id: int, name: str) -> str:
        """check_free(), and a place left in the library."""
        name = await self.check_free(guild_id, name)
        count, _ = await self.store.style_usage(guild_id)
        if count >= self.config.styles.max_per_server:
            raise UserError(f"this server's style library is full ({count} of {self.config.styles.max_per_server} "
                            "styles); remove one first")
        return name

    async def check_free(self, guild_id: int, name: str) -> str:
        """The canonical name, if the server may give it to a new style; else the refusal."""
        name = style_name(name)
        if await self._is_builtin(name):
            raise UserError(f"`{name}` is the name of a built-in style; choose another name")
        if await self.store.get_style(guild_id, name) is not None:
            raise UserError(f"this server already has a style named `{name}`; choose another name, or remove that one first")
        return name

    async def rename(self, guild_id: int, old: str, new: str) -> str:
        old_name, new_name = style_name(old), await self.check_free(guild_id, new)
        try:
            renamed = await self.store.rename_style(guild_id, old_name, new_name)
        except ValueError:
            raise UserError(f"this server already has a style named `{new_name}`") from None
        if not renamed:
            raise UserError(await self.unknown(guild_id, old_name) if not await self._is_builtin(old_name)
                            else f"`{old_name}` is a built-in style; the bot's operator manages those")
        return new_name

    async def remove(self, guild_id: int, name: str) -> StyleRecord:
        name = style_name(name)
        async with self._lock:
            record, still_used = await self.store.remove_style(guild_id, name)
            if record is None:
                raise UserError(await self.unknown(guild_id, name) if not await self._is_builtin(name)
                                else f"`{name}` is a built-in style; the bot's operator manages those")
            if not still_used:  # jobs already queued hold their own copy of the bytes
                await asyncio.to_thread(self._unlink, self.path(record))
        log.info("style %r removed from server %s", name, guild_id)
        return record

    async def sweep(self) -> int:
        """Delete files no style names (a crash between a file and its row) and stale temporary files."""
        async with self._lock:
            used = await self.store.style_files()
            return await asyncio.to_thread(self._sweep, used)

    async def _is_builtin(self, name: str) -> bool:
        return name in await asyncio.to_thread(self.builtins)

    # ------------------------------------------------------------------ in a thread

    def _prepare(self, data: bytes) -> tuple[bytes, str, str, int, int]:
        """Decode like an upload, shrink to max_side, re-encode, hash: (bytes, sha256, extension, width, height)."""
        try:
            image = images.decode_image(data, max_pixels=self.config.caps.max_pixels, name="style image")
            image = images.fit_within(image, self.config.styles.max_side)
            encoded = images.encode_image(image, max_bytes=self.config.caps.max_attachment_bytes)
        except ImageError as error:
            raise UserError(str(error)) from None
        width, height = encoded.size
        return encoded.data, hashlib.sha256(encoded.data).hexdigest(), encoded.extension.lstrip("."), width, height

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.is_file() and path.stat().st_size == len(data):
            return  # content addressed: the same name is the same bytes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".incoming-", dir=path.parent)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
            folder = os.open(path.parent, os.O_RDONLY)
            try:  # the rename itself on disk before the row that names the file is committed
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as error:
            log.error("cannot store a style in %s: %s", path.parent, error)
            raise UserError("the bot cannot store styles right now (its disk refused); please tell the bot's operator") from None

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as error:  # left for the next sweep
            log.warning("cannot delete the unused style file %s: %s", path, error)

    def _sweep(self, used: set[str]) -> int:
        removed = 0
        now = time.time()
        try:
            folders = [folder for folder in self.root.iterdir() if folder.is_dir()] if self.root.is_dir() else []
            for folder in folders:
                for path in folder.iterdir():
                    try:
                        stale = path.name.startswith(".incoming-") and now - path.stat().st_mtime > 3600
                    except OSError:
                        continue
                    if stale or (not path.name.startswith(".") and path.name not in used):
                        self._unlink(path)
                        removed += 1
        except OSError as error:  # a sweep is housekeeping: it never stops the bot from starting
            log.warning("styles: cannot sweep %s: %s", self.root, error)
        if removed:
            log.info("styles: removed %d file(s) that no style uses", removed)
        return removed

    # ------------------------------------------------------------------ contact sheet

    async def sheet(self, guild_id: int | None, page: int) -> tuple[bytes | None, int, int, list[Entry], list[Entry]]:
        """(PNG of the page's grid, the page shown, the number of pages, own, built-in). Server styles
        come first, then the built-ins (labelled in gold); None when there is nothing to show."""
        own, builtin = await self.entries(guild_id)
        everything = own + builtin
        pages = max(1, math.ceil(len(everything) / PER_SHEET))
        page = min(max(1, page), pages)
        shown = everything[(page - 1) * PER_SHEET : page * PER_SHEET]
        if not shown:
            return None, page, pages, own, builtin
        image = await asyncio.to_thread(render_sheet, shown, self.config.caps.max_pixels)
        return image, page, pages, own, builtin


def render_sheet(entries: Sequence[Entry], max_pixels: int) -> bytes:
    """A grid of thumbnails, the name under each (ellipsised to fit), as PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont

    columns = min(COLUMNS, len(entries))
    rows = math.ceil(len(entries) / columns)
    sheet = Image.new("RGB", (columns * CELL[0], rows * CELL[1]), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for index, entry in enumerate(entries):
        left, top = (index % columns) * CELL[0], (index // columns) * CELL[1]
        try:
            thumb = images.decode_image(entry.path, max_pixels=max_pixels, name=f"style {entry.name}")
            thumb.thumbnail((THUMB, THUMB))
            sheet.paste(thumb, (left + PAD + (THUMB - thumb.width) // 2, top + PAD + (THUMB - thumb.height) // 2))
        except ImageError as error:
            log.warning("contact sheet: %s", error)
            draw.rectangle([left + PAD, top + PAD, left + PAD + THUMB, top + PAD + THUMB], outline=INK)
            draw.text((left + CELL[0] // 2, top + PAD + THUMB // 2), "?", fill=INK, font=font, anchor="mm")
        colour = BUILTIN_INK if entry.builtin else INK
        if entry.builtin:
            draw.rectangle([left + 2, top + 2, left + CELL[0] - 3, top + CELL[1] - 3], outline=BUILTIN_INK)
        label = fit_text(draw, entry.name, font, CELL[0] - 2 * PAD)
        draw.text((left + CELL[0] // 2, top + 2 * PAD + THUMB + LABEL // 2 - 2), label, fill=colour, font=font, anchor="mm")
    out = io.BytesIO()
    sheet.save(out, "PNG", optimize=True)
    return out.getvalue()


def fit_text(draw, text: str, font, width: int) -> str:
    """``text``, or its start and an ellipsis, whichever fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
