"""What a job looks like in its channel, whichever front-end it came from: a status message (queue
position, progress, a live preview, a Cancel button) and then the result with Again / Vary /
Details / Delete under it. Ordinary channel messages, so a job outlives any interaction token."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import discord

from nst.params import FIELDS

from ..executor.base import CANCELLED, Done, Failed, Preview, Progress, StyleJob
from ..limits import USER_FIELDS
from ..options import option_name, shown_value
from ..replies import fit
from ..status import StatusMessage

if TYPE_CHECKING:
    from ..app import StyleBot
    from ..jobs import Destination

log = logging.getLogger(__name__)


class JobMessages:
    def __init__(
        self,
        bot: "StyleBot",
        job: StyleJob,
        where: "Destination",
        notes: Sequence[str],
        *,
        existing_status: discord.PartialMessage | None = None,
        on_status: Callable[[discord.Message], Awaitable[None]] | None = None,
        named: Sequence[str] = (),
    ):
        from .buttons import cancel_view

        self.bot = bot
        self.job = job
        self.where = where
        self.named = tuple(named)  # the named styles the job uses, for the result line
        self.notes = "".join(f"\n⚠️ {note}" for note in notes)
        # Not a reply (slash command): say whose job it is (status messages never ping anyone).
        self.who = "" if where.reply_to is not None else f"<@{job.user_id}> "
        self.status = StatusMessage(
            where.channel,
            bot.pacer,
            bot.config.bot.status_interval,
            reply_to=where.reply_to,
            existing=existing_status,
            on_created=on_status,
            view=cancel_view(job.job_id),
            preview_interval=bot.config.bot.preview_interval,
        )

    async def queued(self, position: int) -> None:
        await self.status.show(f"{self.who}⏳ Queued, position {position}. **Cancel** withdraws it.{self.notes}")

    async def started(self, device: str) -> None:
        await self.status.show(f"{self.who}🎨 Started on {device}…{self.notes}", now=True)

    async def progress(self, event: Progress) -> None:
        await self.status.show(f"{self.who}🎨 {progress_line(event)}{self.notes}")

    def preview(self, event: Preview) -> None:
        self.status.preview(event.image, event.filename)

    async def failed(self, event: Failed, *, retry: bool = False) -> None:
        """``retry``: offer an Again button (a job lost in a restart whose images are still cached)."""
        from .buttons import again_view

        icon = "🛑" if event.kind == CANCELLED else "❌"
        view = again_view(self.job.job_id) if retry else None
        await self.status.finish(f"{self.who}{icon} Your job did not finish: {event.reason}", view=view)

    async def detached(self, reason: str) -> None:
        await self.status.finish(f"{self.who}⏸️ {reason}{self.notes}")

    def summary(self, stats: dict[str, Any]) -> str:
        return result_line(stats, self.job.params, self.bot.config.defaults, self.named)

    async def deliver(self, done: Done) -> str | None:
        """Post the result with its buttons; the reason for the user when Discord refused it. On success
        the status message stays until ``delivered()``, so the outcome is recorded first."""
        from .buttons import result_view

        file = discord.File(io.BytesIO(done.image), filename=done.filename)
        reply_to = self.where.reply_to
        try:
            await self.where.channel.send(
                fit(f"<@{self.job.user_id}> {self.summary(done.stats)}{self.notes}"),
                file=file,
                reference=reply_to.to_reference(fail_if_not_exists=False) if reply_to is not None else None,
                view=result_view(self.job.job_id),
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(self.job.user_id)], replied_user=False),
            )
        except discord.HTTPException as error:
            log.error("could not deliver job %s: %s", self.job.job_id, error)
            reason = "the result was made, but Discord refused the upload; please try a smaller --size"
            if error.status == 403:
                reason = "the result was made, but I am no longer allowed to post it in this channel"
            await self.status.finish(f"{self.who}❌ {reason}")
            return reason
        return None

    async def delivered(self) -> None:
        """The result is posted (and recorded): the status message goes."""
        await self.status.finish()


def progress_line(event: Progress) -> str:
    line = (
        f"{event.step / event.total:.0%} · step {event.step}/{event.total} · "
        f"{seconds(event.elapsed)} elapsed · about {seconds(event.eta)} left"
    )
    levels = getattr(event, "levels", 1) or 1
    if levels > 1:
        line = f"level {getattr(event, 'level', 1)}/{levels} · " + line
    return line


def changed_options(params: dict[str, Any], defaults) -> dict[str, Any]:
    """The user options of a job that differ from the bot's defaults (the seed apart)."""
    out = {}
    for name in USER_FIELDS:
        if name == "seed" or name not in params:
            continue
        value = params[name]
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            out[name] = value
    return out


def prefix_line(params: dict[str, Any], defaults, prefix: str, named: Sequence[str] = ()) -> str:
    options = {**changed_options(params, defaults), "seed": params.get("seed")}
    flags = " ".join(f"{option_name(name)} {shown_value(value)}" for name, value in options.items() if value not in (None, (), []))
    style = f" --style {','.join(named)}" if named else ""
    return f"{prefix}stylize{style} {flags}".strip()


def slash_line(params: dict[str, Any], defaults, styles: int = 1, named: Sequence[str] = ()) -> str:
    options = {**changed_options(params, defaults), "seed": params.get("seed")}
    attached = styles - len(named)
    images = "content:<image>" + "".join(f" {slot}:<image>" for slot in style_image_slots(attached))
    if named:
        images += f" style:{','.join(named)}"
    flags = " ".join(f"{name}:{shown_value(value)}" for name, value in options.items() if value not in (None, (), []))
    return f"/stylize {images} {flags}".strip()


def style_image_slots(count: int) -> list[str]:
    """The /stylize attachment options for ``count`` style images: style_image, style_image2, ..."""
    return ["style_image"] + [f"style_image{i}" for i in range(2, count + 1)] if count > 0 else []


def result_line(stats: dict[str, Any], params: dict[str, Any], defaults, named: Sequence[str] = ()) -> str:
    """e.g. ``500 epochs · 512×384 · 41.2 s on cuda:0 · seed 7 · --style starry --style-weight 1e9``
    (``named``: the job's named styles, shown like the options that made it)."""
    width, height = stats["size"]
    line = f"{stats['steps']} epochs · {width}×{height} · {stats['seconds']:.1f} s on {stats['device']}"
    sent = stats.get("encoded_size")
    if sent and tuple(sent) != (width, height):
        line += f" (sent at {sent[0]}×{sent[1]} to fit the upload limit)"
    asked = params.get("epochs")
    if asked and stats["steps"] < asked:  # early stop is the only way a delivered job takes fewer steps
        line += f" (of {asked}: the loss had stopped improving)"
    seed = stats.get("seed", params.get("seed"))
    if seed is not None:
        line += f" · seed {seed}"
    flags = [f"`--style {','.join(named)}`"] if named else []
    flags += [f"`{option_name(name)} {shown_value(value)}`" for name, value in changed_options(params, defaults).items()]
    if flags:
        line += " · " + " ".join(flags)
    return line


def details_text(job_id: str, params: dict[str, Any], meta: dict[str, Any] | None, defaults, prefix: str, styles: int,
                 info: dict[str, Any] | None = None) -> str:
    """Everything about a job, for the Details button (ephemeral): each value with where it came from."""
    info = info or {}
    sources = info.get("sources") or {}
    lines = [f"**Job** `{job_id}`"]
    labels = info.get("styles") or []
    named = [label for label in labels if label]
    if labels:
        shown_styles = ", ".join(f"`{label}`" if label else "an attached image" for label in labels)
        lines.append(f"**Style{'s' if len(labels) > 1 else ''}** {shown_styles}"
                     + (f" ({sources['style']})" if named and "style" in sources else ""))
    preset = info.get("preset")
    if preset:
        lines.append(f"**Preset** `{preset['name']}` ({'this server' if preset['scope'] == 'guild' else 'yours'})")
    for name in FIELDS:
        if name in params:
            source = f" ({sources[name]})" if name in sources else ""
            lines.append(f"`{name}` {shown_value(params[name])}{source}")
    stats = (meta or {}).get("stats")
    if stats:
        width, height = stats["size"]
        lines.append(
            f"**Ran** {stats['steps']} steps at {width}×{height} in {stats['seconds']:.1f} s "
            f"on {stats['device']} ({stats.get('dtype', '?')})"
        )
        losses = [f"{key.replace('_', ' ')} {float(stats[key]):.4g}" for key in ("content_loss", "style_loss", "total_loss") if key in stats]
        if losses:
            lines.append("**Final losses** " + " · ".join(losses))
    else:
        lines.append("_The run's statistics are no longer kept._")
    lines.append("**Again, exactly:**")
    lines.append(f"```\n{prefix_line(params, defaults, prefix, named)}\n```")
    lines.append(f"```\n{slash_line(params, defaults, max(styles, len(labels)), named)}\n```")
    return "\n".join(lines)


def seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.0f} s" if value < 120 else f"{value // 60:.0f} min {value % 60:02.0f} s"
