"""Memory budget (nst/memory.py): parsing, the estimate, tiles chosen to fit, refusals before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nst import memory
from nst.errors import ParamError
from nst.params import StyleParams
from nst.schedule import check_runnable
from nst.tiling import layer_scale as tiling_layer_scale

ROOT = Path(__file__).resolve().parent.parent
LAYERS, CONTENT = StyleParams().layers, StyleParams().content_layer


@pytest.mark.parametrize(
    "text, expected",
    [("2GiB", 2 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5G", int(1.5 * 1024**3)), ("2GB", 2_000_000_000),
     ("1000", 1000), (" 64 mib ", 64 * 1024**2), (4096, 4096)],
)
def test_amounts_of_memory_parse(text, expected):
    assert memory.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "2XB", "1e3G", "", "GiB", "nan"])
def test_bad_amounts_are_refused_naming_the_field_and_the_form(text):
    with pytest.raises(ParamError) as caught:
        memory.parse_bytes(text)
    assert caught.value.field == "max_memory" and ("2GiB" in str(caught.value) or "positive" in str(caught.value))


def test_unlimited_is_no_budget():
    assert memory.parse_budget("unlimited") is None and memory.parse_budget(float("inf")) is None
    assert memory.parse_budget("1G") == 1024**3


def test_the_estimate_grows_with_the_pixels_and_shrinks_with_bf16():
    sizes = [(128, 96), (512, 384), (1024, 768), (2048, 1536)]
    estimates = [memory.step_bytes(size, LAYERS, CONTENT) for size in sizes]
    assert estimates == sorted(estimates) and estimates[-1] > 3 * estimates[-2]
    assert memory.step_bytes((1024, 768), LAYERS, CONTENT, dtype_bytes=2) < estimates[2]
    assert memory.step_bytes((1024, 768), LAYERS, CONTENT, optimizer="lbfgs") > estimates[2]
    # a shallower deepest layer keeps fewer activations
    assert memory.step_bytes((1024, 768), ("conv1_1", "conv2_1"), "conv2_1") < estimates[2]


@pytest.mark.parametrize("budget", ["1GiB", "2GiB", "8GiB"])
def test_the_chosen_tile_fits_the_budget_and_is_the_largest_that_does(budget):
    size, limit = (2048, 1536), memory.parse_bytes(budget)
    need = memory.need(size, limit, LAYERS, CONTENT)
    tiling = need.tiling
    assert tiling is not None and tiling.split is not None and need.bytes <= limit
    assert tiling.tile % tiling.grid == 0 and tiling.grid == tiling_layer_scale(tiling.split)
    if len(tiling.tiles(*size)) > 1:  # just under the untiled need (8 GiB), one tile cut at pool1 fits
        bigger = memory.Tiling.for_layers(tiling.tile + tiling.grid, LAYERS, tiling.split, tiling.boundary)
        assert memory.step_bytes(size, LAYERS, CONTENT, tiling=bigger) > limit


@pytest.mark.parametrize("size, budget", [((2048, 1536), "2GiB"), ((4096, 3072), "8GiB"), ((1024, 768), "1.5GiB")])
def test_of_the_cuts_that_fit_the_one_with_the_least_work_is_chosen(size, budget):
    limit = memory.parse_bytes(budget)
    chosen = memory.need(size, limit, LAYERS, CONTENT).tiling
    cuts = [(split, boundary) for split in memory.split_points(LAYERS)
            for boundary in (None, memory.lowest_boundary(size, LAYERS, split))]
    for split, boundary in [*cuts, (None, None)]:
        for tile in range(max(size), 63, -16):
            tiling = memory.Tiling.for_layers(tile, LAYERS, split, boundary)
            if memory.step_bytes(size, LAYERS, CONTENT, tiling=tiling) <= limit:
                assert tiling.work(*size) >= chosen.work(*size)
                break
    # cut at pool1 the deep part on the whole map is almost the untiled network: it fits 1.5 GiB at
    # 1024×768 (two tiles run conv1_x twice), not 2 GiB at 2048×1536 nor 8 GiB at 4096×3072
    assert (chosen.split == "pool1") == (size == (1024, 768))


def test_the_deep_parts_whole_map_counts_in_the_estimate():
    # Cut at pool3, a tile's shallow part is small; the deep layers on the whole picture's map are not.
    size = (4096, 3072)
    one_tile = memory.Tiling.for_layers(64, LAYERS, "pool3")
    assert memory.step_bytes(size, LAYERS, CONTENT, tiling=one_tile) > 3 * 1024**3
    assert memory.step_bytes(size, LAYERS, CONTENT, tiling=memory.Tiling.for_layers(64, LAYERS, "pool4")) < (
        memory.step_bytes(size, LAYERS, CONTENT, tiling=one_tile))


def test_recomputing_the_deep_parts_first_segment_lets_the_pool3_cut_fit_a_tighter_budget():
    # Cut at pool3 the deep part's activations on the whole 2048×1536 map take most of 1.5 GiB: whole,
    # no tile fits beside them; holding one of its two segments at a time, 20 tiles do, with far less
    # work than the next cut (pool4, which runs conv4_x in tiles twice).
    size, limit = (2048, 1536), memory.parse_bytes("1.5GiB")
    chosen = memory.need(size, limit, LAYERS, CONTENT).tiling
    assert (chosen.split, chosen.boundary) == ("pool3", "relu4_2")
    assert not any(memory.step_bytes(size, LAYERS, CONTENT, tiling=t) <= limit for t in memory._tilings(size, LAYERS, "pool3", 64))
    pool4 = next(t for t in memory._tilings(size, LAYERS, "pool4", 64) if memory.step_bytes(size, LAYERS, CONTENT, tiling=t) <= limit)
    assert chosen.work(*size) < pool4.work(*size)
    # with room for the deep part whole (2 GiB), the recomputation is not worth it
    assert memory.need(size, memory.parse_bytes("2GiB"), LAYERS, CONTENT).tiling.boundary is None


def test_without_a_pooling_to_cut_at_every_tile_runs_the_whole_depth():
    layers = ("conv1_1", "conv1_2")
    whole = memory.step_bytes((1024, 768), layers, "conv1_2")
    need = memory.need((1024, 768), whole - 1, layers, "conv1_2")
    assert need.tiling.split is None and len(need.tiling.tiles(1024, 768)) > 1 and need.bytes < whole


def test_a_picture_that_fits_runs_whole():
    assert memory.need((512, 384), memory.parse_bytes("4GiB"), LAYERS, CONTENT).tiling is None
    assert memory.need((4096, 3072), None, LAYERS, CONTENT).tiling is None


def test_refused_with_the_size_the_budget_and_the_smallest_need():
    with pytest.raises(ParamError) as caught:
        memory.need((4096, 3072), memory.parse_bytes("1GiB"), LAYERS, CONTENT)
    text = str(caught.value)
    assert caught.value.field == "max_memory"
    assert "4096×3072" in text and "1.0 GiB" in text and "smallest tiles (64 px)" in text and "needs about" in text


def test_check_runnable_refuses_a_budget_without_torch():
    code = (
        "import sys, nst\n"
        "nst.check_runnable((4000, 3000), [(800, 600)], nst.StyleParams(size=4096), max_memory='8GiB')\n"
        "try:\n"
        "    nst.check_runnable((4000, 3000), [(800, 600)], nst.StyleParams(size=4096), max_memory='512MiB')\n"
        "except nst.ParamError as error:\n"
        "    print(error)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "max_memory: a 4000×3000 picture needs about" in proc.stdout


def test_check_runnable_without_a_budget_checks_no_memory():
    check_runnable((4000, 3000), [(800, 600)], StyleParams(size=4096))
    check_runnable((4000, 3000), [(800, 600)], StyleParams(size=4096), max_memory="unlimited")


def test_the_refusal_comes_before_any_tensor_work(content_image, style_image):
    import torch

    from nst.transfer import stylize

    class Untouchable:
        """A model that fails the test if anything runs through it."""

        device = torch.device("cpu")

        def check_layers(self, layers):
            pass

        def __call__(self, *args, **kwargs):
            raise AssertionError("tensor work before the refusal")

    with pytest.raises(ParamError, match="max_memory: a 64×48 picture needs about"):
        stylize(content_image, style_image, StyleParams(epochs=2, size=64), model=Untouchable(), max_memory="1MiB")


def test_the_default_budget_on_a_cpu_is_a_share_of_the_available_ram(monkeypatch):
    import torch

    assert memory.available_ram()  # this machine can say
    # Fixed for the comparison: the available RAM moves between two reads while other tests run.
    monkeypatch.setattr(memory, "available_ram", lambda: 8 * 1024**3)
    assert memory.default_budget(torch.device("cpu")) == int(8 * 1024**3 * memory.CPU_SHARE)


def test_a_containers_memory_limit_bounds_the_available_ram(tmp_path):
    """Inside a container /proc/meminfo shows the host's RAM: the cgroup's limit minus its usage bounds it."""
    v2_max, v2_current = tmp_path / "memory.max", tmp_path / "memory.current"
    v2_max.write_text("4294967296\n")
    v2_current.write_text(str(1 << 30) + "\n")
    files = ((str(v2_max), str(v2_current)),)
    assert memory._cgroup_room(files) == 3 << 30
    v2_max.write_text("max\n")  # a group without a limit
    assert memory._cgroup_room(files) is None
    v1_limit = tmp_path / "limit_in_bytes"
    v1_limit.write_text(str(9223372036854771712))  # cgroup v1's "no limit"
    assert memory._cgroup_room(((str(v1_limit), str(v2_current)),)) is None
    assert memory._cgroup_room(((str(tmp_path / "absent"), str(v2_current)),)) is None
