"""How a job's numbers read: progress and result lines, the options that differ from the defaults, the
commands that reproduce a job (prefix and slash), and the Details text. Text only, no I/O."""

from __future__ import annotations

from typing import Any, Sequence

from nst.params import FIELDS

from bot.core.limits import USER_FIELDS
from bot.core.options import option_name, shown_value
from bot.executor.base import Progress


def progress_line(event: Progress) -> str:
    """``🎨 level 2/3 · 40% · step …`` for a still, ``🎞️ frame 3/24 · 40% · step …`` (steps and time
    over the whole clip) for an animation."""
    line = (
        f"{event.step / event.total:.0%} · step {event.step}/{event.total} · "
        f"{seconds(event.elapsed)} elapsed · about {seconds(event.eta)} left"
    )
    frames = getattr(event, "frames", 0) or 0
    if frames:
        return f"🎞️ frame {event.frame}/{frames} · " + line
    levels = getattr(event, "levels", 1) or 1
    if levels > 1:
        line = f"level {getattr(event, 'level', 1)}/{levels} · " + line
    return "🎨 " + line


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
    if "frames" in stats:
        line = animation_line(stats)
    else:
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


def animation_line(stats: dict[str, Any]) -> str:
    """e.g. ``🎞️ 24 frames · 256×192 · 2.4 s a loop · 95.0 s on cpu (GIF: colours 256→64, frames 24→12 to fit
    the upload limit)``: what the encoder gave up to fit the upload, said."""
    width, height = stats["size"]
    playing = sum(stats.get("durations") or ()) / 1000
    line = f"🎞️ {stats['frames']} frames · {width}×{height}"
    if playing:
        line += f" · {playing:g} s a loop"
    line += f" · {stats['seconds']:.1f} s on {stats['device']}"
    given_up = stats.get("given_up") or ()
    if given_up:
        line += f" (GIF: {', '.join(given_up)} to fit the upload limit)"
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
        frames = f" over {stats['frames']} frames" if "frames" in stats else ""
        lines.append(
            f"**Ran** {stats['steps']} steps{frames} at {width}×{height} in {stats['seconds']:.1f} s "
            f"on {stats['device']} ({stats.get('dtype', '?')})"
        )
        losses = [f"{key.replace('_', ' ')} {float(stats[key]):.4g}" for key in ("content_loss", "style_loss", "total_loss") if key in stats]
        if losses:
            lines.append(f"**Final losses{' (first frame)' if frames else ''}** " + " · ".join(losses))
    else:
        lines.append("_The run's statistics are no longer kept._")
    lines.append("**Again, exactly:**")
    lines.append(f"```\n{prefix_line(params, defaults, prefix, named)}\n```")
    lines.append(f"```\n{slash_line(params, defaults, max(styles, len(labels)), named)}\n```")
    return "\n".join(lines)


def seconds(value: float) -> str:
    value = max(0.0, value)
    return f"{value:.0f} s" if value < 120 else f"{value // 60:.0f} min {value % 60:02.0f} s"
