import urllib.error

import pytest
import torch

from nst import model as model_module
from nst.errors import ParamError, WeightsError
from nst.model import compute_dtype, export_features, load_vgg19, resolve_device

LAYERS = ["conv1_1", "relu1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]


def test_loaded_model_is_frozen_eval_and_truncated(model):
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert model.available[-1] == "conv5_1" and len(model.features) == 29
    assert model.source.startswith("file:")


def test_named_layers_have_vggs_shapes(model):
    out = model(torch.rand(1, 3, 64, 96), LAYERS)
    assert set(out) == set(LAYERS)
    assert out["conv1_1"].shape == (1, 64, 64, 96)
    assert out["conv2_1"].shape == (1, 128, 32, 48)
    assert out["conv4_2"].shape == (1, 512, 8, 12)
    assert out["conv5_1"].shape == (1, 512, 4, 6)
    # conv outputs are captured before the ReLU: they keep their negative values
    assert (out["conv1_1"] < 0).any() and (out["relu1_1"] >= 0).all()


def test_forward_stops_after_the_deepest_requested_layer(model):
    calls = []
    handle = model.features[5].register_forward_hook(lambda *a: calls.append(1))  # conv2_1
    try:
        model(torch.rand(1, 3, 32, 32), ["conv1_1"])
        assert calls == []
        model(torch.rand(1, 3, 32, 32), ["conv2_1"])
        assert calls == [1]
    finally:
        handle.remove()


def test_the_network_can_run_on_from_a_cut(model):
    image = torch.rand(1, 3, 64, 96)
    whole = model(image, ["pool3", "conv4_2", "conv5_1"], pool="avg")
    rest = model(whole["pool3"], ["conv4_2", "conv5_1"], pool="avg", start_after="pool3")
    assert set(rest) == {"conv4_2", "conv5_1"}
    for name in rest:
        torch.testing.assert_close(rest[name], whole[name], rtol=0, atol=0)
    with pytest.raises(ParamError, match="after pool3"):
        model(whole["pool3"], ["conv3_1", "conv5_1"], start_after="pool3")
    with pytest.raises(ParamError, match="not a layer"):
        model(whole["pool3"], ["conv5_1"], start_after="pool9")


def test_average_pooling_changes_deeper_features_only(model):
    x = torch.rand(1, 3, 32, 32)
    a, b = model(x, ["conv1_1", "conv2_1"], "max"), model(x, ["conv1_1", "conv2_1"], "avg")
    assert torch.equal(a["conv1_1"], b["conv1_1"])
    assert not torch.allclose(a["conv2_1"], b["conv2_1"])


def test_layers_deeper_than_the_weights_are_refused(model):
    with pytest.raises(ParamError, match="conv5_2 is deeper than the loaded weights reach"):
        model.check_layers(["conv1_1", "conv5_2"])


@pytest.fixture(scope="module")
def full_state_file(tmp_path_factory):
    """A file with the layout of torchvision's vgg19-dcbb9e9d.pth (features + classifier), random values."""
    from torchvision.models import vgg19

    with torch.random.fork_rng():
        torch.manual_seed(1)
        state = vgg19(weights=None).state_dict()
    path = tmp_path_factory.mktemp("full") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path, state


def test_full_torchvision_state_dict_loads_and_exports_a_compact_file_with_identical_features(full_state_file, tmp_path):
    path, state = full_state_file
    full = load_vgg19(path, device="cpu")
    assert torch.equal(full.features[0].weight, state["features.0.weight"])
    out, digest, size = export_features(path, tmp_path / "compact.pth", progress=False)
    assert len(digest) == 64 and 45e6 < size < 60e6  # conv1_1..conv5_1 in fp32: ~52 MB, not 548 MB
    compact = load_vgg19(out, device="cpu")
    x = torch.rand(1, 3, 48, 64)
    a, b = full(x, LAYERS), compact(x, LAYERS)
    for layer in LAYERS:
        assert torch.equal(a[layer], b[layer]), layer
    # torchvision's own keys: the compact file also loads into torchvision's vgg19 (non-strict)
    from torchvision.models import vgg19

    missing, unexpected = vgg19(weights=None).load_state_dict(torch.load(out, weights_only=True), strict=False)
    assert not unexpected and all(k.startswith(("features.", "classifier.")) for k in missing)


def test_torchvision_source_uses_torchvisions_cache(full_state_file, tmp_path, monkeypatch):
    path, state = full_state_file
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg19-dcbb9e9d.pth").symlink_to(path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    loaded = load_vgg19("torchvision", device="cpu")
    assert loaded.source == "torchvision:IMAGENET1K_V1"
    assert torch.equal(loaded.features[28].weight, state["features.28.weight"])


def test_offline_without_weights_gives_the_three_options(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(WeightsError) as caught:
        load_vgg19("torchvision", device="cpu")
    message = str(caught.value)
    assert "name resolution" in message and "(1)" in message and "(2)" in message and "(3)" in message
    assert "--weights random" in message and "\n" not in message


def test_random_weights_warn_visibly(caplog):
    model = load_vgg19("random", device="cpu")
    assert model.source == "random"
    assert "will not look stylized" in caplog.text


def test_random_weights_are_the_same_in_every_process(weights_file):
    again = load_vgg19("random", device="cpu")
    from_file = load_vgg19(weights_file, device="cpu")
    assert torch.equal(again.features[0].weight, from_file.features[0].weight)


def _save(tmp_path, obj, name="w.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_corrupt_file(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"PK\x03\x04 this is not really a zip" * 10)
    with pytest.raises(WeightsError, match="is not a readable PyTorch weights file"):
        load_vgg19(path, device="cpu")


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        load_vgg19(tmp_path / "nope.pth", device="cpu")


def test_wrong_shape_names_key_layer_and_expected_shape(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    state["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    with pytest.raises(WeightsError) as caught:
        load_vgg19(_save(tmp_path, state), device="cpu")
    assert "features.0.weight (conv1_1) has shape (32, 3, 3, 3), VGG-19 expects (64, 3, 3, 3)" in str(caught.value)


def test_file_that_stops_too_early(tmp_path, weights_file):
    state = {k: v for k, v in torch.load(weights_file, weights_only=True).items() if int(k.split(".")[1]) <= 10}
    with pytest.raises(WeightsError, match=r"lacks conv3_2 \(features.12.weight\): it ends at conv3_1"):
        load_vgg19(_save(tmp_path, state), device="cpu")


def test_not_a_state_dict(tmp_path):
    with pytest.raises(WeightsError, match="does not hold a state_dict"):
        load_vgg19(_save(tmp_path, [1, 2, 3]), device="cpu")
    with pytest.raises(WeightsError, match="no VGG-19 conv weights at all"):
        load_vgg19(_save(tmp_path, {"linear.weight": torch.zeros(2, 2)}), device="cpu")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    with pytest.raises(WeightsError, match="is not a readable PyTorch weights file"):
        load_vgg19(_save(tmp_path, {"features.0.weight": _Payload()}), device="cpu")
    assert "must never run" not in capsys.readouterr().out


def test_bare_keys_and_nested_state_dict_are_accepted(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    bare = {k.removeprefix("features."): v for k, v in state.items()}
    assert load_vgg19(_save(tmp_path, bare, "bare.pth"), device="cpu").available[-1] == "conv5_1"
    assert load_vgg19(_save(tmp_path, {"state_dict": state}, "nested.pth"), device="cpu")


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ParamError, match="not a device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParamError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_precision_policy(monkeypatch):
    cpu = torch.device("cpu")
    assert compute_dtype(cpu, "fp32") is None
    assert compute_dtype(cpu, "bf16") is torch.bfloat16
    assert compute_dtype(torch.device("mps"), "auto") is None
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: False)
    assert compute_dtype(cpu, "auto") is None
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: True)
    assert compute_dtype(cpu, "auto") is torch.bfloat16
