"""Animations through Discord (issue 22, the bot side): the real discord.py client, real SQLite and a
real worker process against the fake Discord. Clips are tiny (48×40, 3-4 frames, a few steps each).

An animated GIF as the content runs as one animation job: the status says which frame it is on, the
result is a GIF with the clip's frames and durations. Clips over a cap (the bot's or a server's
lower one) are refused before anything is queued, with the numbers; a video without PyAV is refused
from its content type; a clip can be cancelled between its frames."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageSequence

from nst.params import StyleParams

from bot_harness import IMAGES, command, make_config, reply_to, run_scenarios, running_bot, submitted_jobs, time_budget
from test_bot_e2e import result_of, status_of, versions
from test_buttons_e2e import press, private_answer

DURATIONS = [60, 70, 80, 90]
# The clips' own settings: frames at 48 px, two steps a later frame; one bot for the quick scenarios.
CLIP_DEFAULTS = {"epochs": 8, "animation_size": 48, "frame_steps": 2}


def clip_budget(bot) -> float:
    """A wall-time bound for one clip job of CLIP_DEFAULTS (4 frames: the first frame's epochs, then
    frame_steps each) from this machine's measured step time, with room for the frames' set-up."""
    steps = CLIP_DEFAULTS["epochs"] + 3 * CLIP_DEFAULTS["frame_steps"]
    return time_budget(2 * steps, Path(bot.config.engine.weights))


def clip_frames(count: int, size=(48, 40)) -> list[Image.Image]:
    """A disc moving over a striped, static background."""
    frames = []
    for i in range(count):
        frame = Image.new("RGB", size, (60, 110, 170))
        draw = ImageDraw.Draw(frame)
        for x in range(0, size[0], 4):
            draw.line([(x, 0), (x, size[1])], fill=(40 + 5 * x % 200, 140, 90), width=2)
        draw.ellipse([4 + 6 * i, 10, 18 + 6 * i, 24], fill=(250, 200, 30))
        frames.append(frame)
    return frames


def gif(count: int = 4, durations=None) -> bytes:
    frames = clip_frames(count)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=durations or DURATIONS[:count], loop=0)
    return buffer.getvalue()


def mp4(count: int = 4) -> bytes:
    """A tiny clip through PyAV (the engine's own MP4 writer)."""
    from nst import images

    clip = images.Animation(tuple(clip_frames(count)), tuple(DURATIONS[:count]), 0)
    return images.encode_animation(clip, "mp4").data


def gif_attachments(count: int = 4, durations=None) -> list:
    return [("clip.gif", gif(count, durations), "image/gif"), IMAGES[1]]


def frames_of(data: bytes) -> list[int]:
    """The durations of a GIF's frames, as a player reads them."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "GIF"
        return [frame.info["duration"] for frame in ImageSequence.Iterator(image)]


async def refusal(fake, world, user, text: str, files) -> str:
    request = await command(fake, world.general, user, text, files)
    reply = await reply_to(fake, request)
    assert reply.content.startswith("⚠️ ") and not reply.attachments, reply.content
    return reply.content


async def test_animations_through_discord(fake, world, tmp_path, weights_file, monkeypatch):
    """One bot for the quick scenarios (a start loads a worker: seconds); the bot's frame cap is 6."""
    config = make_config(tmp_path, weights_file, defaults=CLIP_DEFAULTS,
                         caps={"max_frames": 6, "max_clip_seconds": 2.0}, bot={"status_interval": 0.2})
    async with running_bot(fake, config) as bot:
        await run_scenarios(fake, world, bot, (
            an_animated_gif_gives_an_animated_gif, the_buttons_under_an_animated_result,
            an_animated_style_gives_its_first_frame_and_says_so,
            clips_over_the_bots_caps_are_refused_before_queueing, a_server_limit_lowers_the_frames_cap,
        ))
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "av", None)  # `import av` fails, as without the video extra
            await a_video_without_pyav_is_refused_naming_the_extra(fake, world, bot)
        if "av" in sys.modules or _has_pyav():
            await a_video_with_pyav_gives_an_animated_gif(fake, world, bot)


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


async def an_animated_gif_gives_an_animated_gif(fake, world, bot):
    with submitted_jobs(bot) as jobs:
        request = await command(fake, world.general, world.alice, "!stylize --seed 5", gif_attachments())
        result = await result_of(fake, request)
    assert len(jobs) == 1
    attachment = result.attachments[0]
    assert attachment.filename == "stylized.gif" and attachment.content_type == "image/gif"
    assert frames_of(attachment.data) == DURATIONS  # every frame, with its own time
    assert Image.open(io.BytesIO(attachment.data)).size == (48, 40)
    assert f"<@{world.alice.id}> 🎞️ 4 frames · 48×40 · 0.3 s a loop ·" in result.content and " s on cpu" in result.content
    assert "seed 5" in result.content
    status = [m for m in fake.bot_messages(world.general.id) if m is not result and m.message_reference == request.id]
    shown = versions(status[0])
    frame_lines = [text for text in shown if "🎞️ frame " in text]
    assert frame_lines and all(" · step " in text and "left" in text for text in frame_lines), shown
    assert any("frame 4/4" in text for text in frame_lines) or any("frame 3/4" in text for text in frame_lines), shown


async def the_buttons_under_an_animated_result(fake, world, bot):
    """Again re-runs the whole clip from the image cache; Details says what the numbers are of."""
    result = await result_of(fake, await command(fake, world.general, world.bob, "!stylize --seed 9", gif_attachments(3)))
    assert [b["label"] for b in fake.buttons(result)] == ["Again", "Vary", "Details", "Delete"]
    details = await private_answer(await press(fake, world.bob, result, "Details"))
    assert "steps over 3 frames at 48×40" in details and "**Final losses (first frame)**" in details, details
    assert "Queued (seed" in await private_answer(await press(fake, world.bob, result, "Again"))
    again = await reply_to(fake, result, lambda m: bool(m.attachments), timeout=clip_budget(bot))
    assert again.attachments[0].filename == "stylized.gif" and frames_of(again.attachments[0].data) == DURATIONS[:3]
    assert "🎞️ 3 frames" in again.content and re.search(r"seed (\d+)", again.content).group(1) != "9"  # a new seed


async def an_animated_style_gives_its_first_frame_and_says_so(fake, world, bot):
    files = [("still.png", IMAGES[0][1], "image/png"), ("style.gif", gif(3), "image/gif")]
    request = await command(fake, world.general, world.bob, "!stylize", files)
    result = await result_of(fake, request)
    assert result.attachments[0].filename != "stylized.gif"  # a still content: a still result
    assert "⚠️ the style image is animated: its first frame is used" in result.content


async def clips_over_the_bots_caps_are_refused_before_queueing(fake, world, bot):
    with submitted_jobs(bot) as jobs:
        text = await refusal(fake, world, world.alice, "!stylize", gif_attachments(7, [50] * 7))
        assert "the content image has 7 frames; the bot's limit is 6" in text
        text = await refusal(fake, world, world.alice, "!stylize", gif_attachments(3, [1000, 1000, 500]))
        assert "the content image plays for 2.5 s; the bot's limit is 2 s" in text
        text = await refusal(fake, world, world.alice, "!stylize", [gif_attachments()[0], ("clip.mp4", b"x" * 64, "video/mp4")])
        assert "the style image (clip.mp4) is a video (MP4); a style must be a picture" in text
    assert jobs == [] and bot.executor.jobs() == []


async def a_server_limit_lowers_the_frames_cap(fake, world, bot):
    above = await command(fake, world.general, world.boss, "!limits set max_frames 50")
    assert "above the bot operator's cap of 6" in (await reply_to(fake, above)).content
    lowered = await command(fake, world.general, world.boss, "!limits set max_frames 3")
    assert "max_frames is now 3" in (await reply_to(fake, lowered)).content
    shown = await command(fake, world.general, world.boss, "!limits")
    assert "animations of at most 3 frames and 2 s" in (await reply_to(fake, shown)).content
    try:
        with submitted_jobs(bot) as jobs:
            text = await refusal(fake, world, world.alice, "!stylize", gif_attachments(4))
        assert "the content image has 4 frames; this server's limit is 3" in text and jobs == []
        request = await command(fake, world.general, world.alice, "!stylize --size 32", gif_attachments(3))
        result = (await result_of(fake, request)).attachments[0].data
        assert len(frames_of(result)) == 3  # within it: runs, its frames as small as the command asked
        assert Image.open(io.BytesIO(result)).size == (32, 27)
    finally:
        await bot.store.unset_guild_limit(world.guild.id, "max_frames")


async def a_video_without_pyav_is_refused_naming_the_extra(fake, world, bot):
    with submitted_jobs(bot) as jobs:
        text = await refusal(fake, world, world.carol, "!stylize", [("clip.mp4", b"\x00" * 64, "video/mp4"), IMAGES[1]])
    assert "the content image (clip.mp4) is a video (MP4), and this bot cannot read videos" in text
    assert 'pip install ".[video]"' in text and "send it as a GIF" in text
    assert jobs == []


async def a_video_with_pyav_gives_an_animated_gif(fake, world, bot):
    request = await command(fake, world.general, world.dave, "!stylize", [("clip.mp4", mp4(3), "video/mp4"), IMAGES[1]])
    result = await result_of(fake, request)
    assert result.attachments[0].filename == "stylized.gif"
    assert len(frames_of(result.attachments[0].data)) == 3


async def test_cancel_in_the_middle_of_a_clip(fake, world, tmp_path, weights_file):
    """Later frames that never stop early (stop tolerance 0, many steps): cancelled on frame 2, the job
    ends as cancelled and no result comes."""
    config = make_config(tmp_path, weights_file, defaults={**CLIP_DEFAULTS, "frame_steps": 1000, "stop_tolerance": 0},
                         bot={"status_interval": 0.2})
    async with running_bot(fake, config) as bot:
        request = await command(fake, world.general, world.alice, "!stylize", gif_attachments())
        await status_of(fake, request, "🎞️ frame 2/4", timeout=time_budget(CLIP_DEFAULTS["epochs"] + 1, weights_file))
        cancel = await command(fake, world.general, world.alice, "!cancel")
        assert "Cancelling" in (await reply_to(fake, cancel)).content
        stopped = await status_of(fake, request, "did not finish")
        assert stopped.content == "🛑 Your job did not finish: cancelled"
        await fake.wait_until(lambda: bot.executor.jobs() == [], timeout=10, what="the worker is free")
        assert "frame 4/4" not in "".join(versions(stopped))
    assert not any(m.attachments for m in fake.bot_messages() if m.message_reference == request.id)


@pytest.mark.parametrize("kind", ["video/webm"])
def test_a_video_type_is_named_in_the_refusal(kind, monkeypatch):
    """The content type decides before any download: WebM is named as such."""
    from bot.core.errors import UserError
    from bot.core.inputs import check_video

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(UserError, match=r"the content image \(a\.webm\) is a video \(WebM\)"):
        check_video(kind, "content image", "a.webm")


def test_the_result_line_says_what_the_gif_gave_up_to_fit():
    from bot.frontend.render import result_line

    stats = {"frames": 24, "size": [256, 192], "durations": [100] * 24, "seconds": 95.04, "device": "cuda:0", "seed": 3,
             "steps": 300, "given_up": ["colours 256→64", "frames 24→12"]}
    assert result_line(stats, {"seed": 3}, StyleParams()) == (
        "🎞️ 24 frames · 256×192 · 2.4 s a loop · 95.0 s on cuda:0 (GIF: colours 256→64, frames 24→12 to fit the upload "
        "limit) · seed 3")


async def test_a_clip_through_celery_workers(tmp_path, weights_file):
    """The Celery path runs the same run_job: frame progress crosses Redis as JSON, the GIF comes back."""
    from bot.executor.base import Done, Progress, StyleJob
    from bot_harness import PRECISION
    from redis_harness import celery_config, redis_server
    from test_celery import events, executor, workers

    with redis_server() as url:
        config = celery_config(tmp_path, weights_file, url, steps=60)
        with workers(config, tmp_path):
            async with executor(config) as ex:
                params = StyleParams(epochs=6, animation_size=48, frame_steps=2, seed=1, precision=PRECISION)
                job = StyleJob(user_id=1, guild_id=1, channel_id=2, message_id=3, content=gif(3), styles=(IMAGES[1][1],),
                               params=params.as_dict(), max_result_bytes=8_000_000, max_pixels=10**7)
                handle = await ex.submit(job, max_per_user=1, max_queue=5)
                seen = await events(handle, timeout=time_budget(60, weights_file))
    frames = {(e.frame, e.frames) for e in seen if isinstance(e, Progress)}
    assert frames and all(count == 3 for _, count in frames)
    done = seen[-1]
    assert isinstance(done, Done) and done.filename == "stylized.gif" and frames_of(done.image) == DURATIONS[:3]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
async def test_the_bots_check_reads_a_clip_as_the_engine_does(fmt):
    """Frames and playing time as the worker will decode them (a frame without a delay counts as the
    engine's default), read in the bot's process one frame at a time."""
    from bot.core.inputs import check_runnable
    from nst import images

    frames = clip_frames(3)
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=[40, 50, 0], loop=0)
    data = buffer.getvalue()
    checked = await check_runnable(data, [IMAGES[1][1]], StyleParams(animation_size=48), max_pixels=10**6)
    engine = images.decode_animation(data)
    assert (checked.frames, checked.duration_ms) == (len(engine.frames), engine.duration_ms) and checked.animated
