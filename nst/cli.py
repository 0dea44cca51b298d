"""Command line: ``python -m nst CONTENT STYLE... -o OUT [options]`` and ``python -m nst export-weights OUT``.

Exit codes: 0 done, 1 the run failed (e.g. out of memory), 2 bad input (named on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from . import images
from .errors import NSTError
from .params import FIELDS, StyleParams, parse_value
from .schedule import check_runnable

# A 500-step job at 512 px takes minutes on a CPU; 384 px keeps it reasonable (about 2.5x fewer pixels).
CPU_DEFAULT_SIZE = 384
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4")
ANIMATION_EXTENSIONS = (".gif", ".webp", ".mp4")  # an animated content is written as one of these
ANIMATION_ONLY_EXTENSIONS = (".gif", ".mp4")

EPILOG = """\
examples:
  python -m nst examples/content.jpg examples/style.jpg -o out.png
  python -m nst photo.jpg painting.jpg -o out.jpg --epochs 300 --style-weight 1e9 --size 512 --seed 7
  python -m nst examples/content.jpg examples/style.jpg -o smoke.png --weights random --epochs 20
  python -m nst photo.jpg a.jpg b.jpg -o blend.png --style-blend 0.7,0.3 --colors content
  python -m nst photo.jpg painting.jpg -o seed-loop.png --schedule reference   # the original 500-step loop
  python -m nst clip.gif painting.jpg -o out.gif             # every frame, held still where nothing moves
  python -m nst clip.mp4 painting.jpg -o out.mp4 --animation-size 192   # videos need: pip install ".[video]"
  python -m nst photo.jpg painting.jpg -o big.png --size 4096 --max-memory 8GiB   # tiles where it would not fit
  python -m nst photo.jpg painting.jpg -o x2.png --size 1024 --init-image out.png  # upscale a 512 px result
  python -m nst export-weights vgg19-features.pth            # compact weights file (~52 MB)

weights: 'torchvision' (default) downloads VGG-19 once into torchvision's cache; a path loads a local
file (torchvision's vgg19-dcbb9e9d.pth or an exported features file); 'random' is for offline smoke
tests only and does not stylize. The size defaults to 512 on a GPU and 384 on a CPU.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (exit 2) instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _quality(text: str) -> int:
    """--quality, checked with the other options: a bad value must not surface after the whole run."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {value}")
    return value


def _budget(text: str) -> int | str:
    """--max-memory, checked with the other options (exit 2 on bad text)."""
    from .memory import parse_budget

    try:
        budget = parse_budget(text)
    except NSTError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("max_memory: ")) from None
    return "unlimited" if budget is None else budget


def build_parser() -> argparse.ArgumentParser:
    defaults = StyleParams()
    parser = _Parser(
        prog="python -m nst",
        description="Neural style transfer: repaint CONTENT in the style of STYLE (Gatys et al., VGG-19).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("content", help="image whose content (shapes, layout) to keep")
    parser.add_argument(
        "style", nargs="+", help="image(s) whose style (colours, strokes, texture) to take; several are blended"
    )
    parser.add_argument(
        "-o", "--output", required=True,
        help="where to write the result (.png, .jpg, .webp; an animation: .gif, .webp or .mp4)",
    )
    for name, spec in FIELDS.items():
        default = getattr(defaults, name)
        if name == "size":
            shown = f"{default} on a GPU, {CPU_DEFAULT_SIZE} on a CPU"
        elif name == "style_blend":
            shown = "equal weights"
        elif isinstance(default, tuple):
            shown = ",".join(str(v) for v in default)
        else:
            shown = spec.none_word if default is None else default
        parser.add_argument(
            _option(name),
            dest=name,
            metavar=spec.choices and "{" + ",".join(spec.choices) + "}" or name.upper(),
            default=None,
            # argparse treats "%" in help as a format directive; the table's text is plain prose.
            help=f"{spec.help}; {spec.describe_range()} (default: {shown})".replace("%", "%%"),
        )
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--weights", default="torchvision", help="torchvision (default), a path to a weights file, or random"
    )
    parser.add_argument(
        "--max-memory", type=_budget, default=None, metavar="BYTES",
        help="most memory one step may take beyond the model, e.g. 2GiB, 512MiB, 1.5G or unlimited; larger "
        "pictures run in tiles (same result, slower) (default: half the available RAM on a CPU, 85%% of the free GPU memory)",
    )
    parser.add_argument(
        "--init-image", default=None, metavar="PREVIOUS",
        help="continue from a previous result (e.g. with --size twice its size): only the final level runs, from it upsampled",
    )
    parser.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality of the output, 1 to 100 (default: 95)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m nst export-weights",
        description="Write the compact VGG-19 features-only weights file (conv1_1..conv5_1, ~52 MB) "
        "that the bot and the container load.",
    )
    parser.add_argument("output", help="path of the file to write, e.g. weights/vgg19-features.pth")
    parser.add_argument(
        "--weights", default="torchvision", help="source: torchvision (default), a full VGG-19 .pth file, or random"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if args[:1] == ["export-weights"]:
            return _export(build_export_parser().parse_args(args[1:]))
        return _run(build_parser().parse_args(args))
    except NSTError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _params(args: argparse.Namespace, device_type: str) -> StyleParams:
    given = {name: parse_value(name, getattr(args, name)) for name in FIELDS if getattr(args, name) is not None}
    if "size" not in given and device_type == "cpu":
        given["size"] = CPU_DEFAULT_SIZE
    return StyleParams().replace(**given)


def _run(args: argparse.Namespace) -> int:
    # torch loads only once a run is really going to happen: --help and usage errors answer at once.
    import torch
    from tqdm import tqdm

    from .memory import default_budget
    from .model import load_vgg19, resolve_device
    from .transfer import stylize

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5 lacks the former

    device = resolve_device(args.device)
    params = _params(args, device.type)
    output = Path(args.output)
    if output.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise NSTError(f"output: {output.name} must end in one of {', '.join(OUTPUT_EXTENSIONS)}")
    if not output.parent.is_dir():
        raise NSTError(f"output: the folder {output.parent} does not exist")
    clip = images.decode_animation(args.content, name="content image", max_frames=params.max_frames)
    if clip.animated and args.init_image:
        raise NSTError("init image: --init-image continues a still picture; the content is an animation")
    if clip.animated:
        return _run_animation(args, params, clip, output, device)
    if output.suffix.lower() in ANIMATION_ONLY_EXTENSIONS:
        raise NSTError(f"output: {output.name}: the content is a still picture, written as .png, .jpg or .webp")
    content = clip.frames[0]  # a still: decode_animation decoded it with decode_image
    styles = _styles(args)
    init_image = images.decode_image(args.init_image, name="init image") if args.init_image else None
    budget = args.max_memory if args.max_memory is not None else default_budget(device)
    # before loading anything heavy; a budget too small even for tiles is refused here (exit 2)
    check_runnable(content.size, [s.size for s in styles], params, max_memory=budget)
    model = load_vgg19(args.weights, device=device, progress=not args.quiet)

    bar = tqdm(
        total=params.epochs, unit="step", disable=args.quiet, dynamic_ncols=True, leave=False,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]",
    )

    def on_progress(progress) -> None:
        if bar.total != progress.total:
            bar.total = progress.total  # a level stopped early: fewer steps left
        level = f"level {progress.level}/{progress.levels} · " if progress.levels > 1 else ""
        bar.set_postfix_str(f"{level}ETA {_duration(progress.eta)} · loss {progress.total_loss:.4g}", refresh=False)
        bar.update(progress.step - bar.n)

    try:
        result = stylize(
            content, styles, params, model=model, on_progress=on_progress, max_memory=budget, init_image=init_image
        )
    except out_of_memory:
        print(f"error: out of memory at size {params.size} on {device}; try a smaller --size", file=sys.stderr)
        return 1
    finally:
        bar.close()
    images.write_image(result.image, output, quality=args.quality)  # ImageError (exit 2) if unwritable
    s = result.stats
    levels = f" ({'+'.join(map(str, s.level_steps))} over {s.levels} levels)" if s.levels > 1 else ""
    early = ", stopped early" if s.stopped_early else ""
    tiled = f", {s.tiles[-1]} tiles" if s.tiles and s.tiles[-1] > 1 else ""
    print(
        f"done: {s.steps} steps{levels}{early}{tiled} · {s.size[0]}×{s.size[1]} · {s.seconds:.1f} s "
        f"({s.steps_per_second:.2f} steps/s) on {s.device} ({s.dtype}) · seed {s.seed} → {output}"
    )
    return 0


def _run_animation(args: argparse.Namespace, params: StyleParams, clip, output: Path, device) -> int:
    import torch
    from tqdm import tqdm

    from .animation import stylize_animation
    from .model import load_vgg19

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if output.suffix.lower() not in ANIMATION_EXTENSIONS:
        raise NSTError(f"output: an animation is written as .gif, .webp or .mp4, not {output.suffix}")
    if args.size is not None and args.animation_size is None:
        params = params.replace(animation_size=params.size)  # --size alone sizes the animation too
    styles = _styles(args)
    images.check_animation(clip.size, len(clip.frames), clip.duration_ms, [s.size for s in styles], params)
    model = load_vgg19(args.weights, device=device, progress=not args.quiet)
    bar = tqdm(
        total=1, unit="step", disable=args.quiet, dynamic_ncols=True, leave=False,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]",
    )

    shown_frame = [0]

    def on_progress(progress) -> None:
        bar.total = progress.total
        # A new frame is shown at once; within a frame tqdm paces the redraws (a fast CPU would
        # otherwise finish a frame between two of them and the bar would skip it).
        new_frame = progress.frame != shown_frame[0]
        shown_frame[0] = progress.frame
        bar.set_postfix_str(
            f"frame {progress.frame}/{progress.frames} · ETA {_duration(progress.eta)} · loss {progress.total_loss:.4g}",
            refresh=new_frame,
        )
        bar.update(progress.step - bar.n)

    try:
        result = stylize_animation(clip, styles, params, model=model, on_progress=on_progress)
    except out_of_memory:
        print(f"error: out of memory at animation size {params.animation_size} on {device}; try a smaller --animation-size", file=sys.stderr)
        return 1
    finally:
        bar.close()
    encoded = images.write_animation(result.animation, output, quality=args.quality)
    first = result.first.stats
    given_up = f" · to fit: {', '.join(encoded.given_up)}" if encoded.given_up else ""
    print(
        f"done: {encoded.frames} frames · {sum(result.frame_steps)} steps ({result.frame_steps[0]} for the first frame) · "
        f"{encoded.size[0]}×{encoded.size[1]} · {result.seconds:.1f} s on {first.device} ({first.dtype}) · "
        f"seed {first.seed}{given_up} → {output}"
    )
    return 0


def _styles(args: argparse.Namespace) -> list:
    names = ["style image"] if len(args.style) == 1 else [f"style image {i + 1}" for i in range(len(args.style))]
    return [images.decode_image(path, name=name) for path, name in zip(args.style, names)]


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _export(args: argparse.Namespace) -> int:
    from .model import export_features

    path, digest, size = export_features(args.weights, args.output)
    print(f"wrote {path} ({size / 1e6:.1f} MB)\nsha256 {digest}")
    return 0
