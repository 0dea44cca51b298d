import pytest
import torch

from nst.losses import content_loss, gram, style_loss, tv_loss


def test_gram_by_hand():
    # Two channels, 1×2 pixels: F = [[1, 2], [3, 4]]; F Fᵀ = [[5, 11], [11, 25]]; C·H·W = 4.
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    assert torch.allclose(gram(features)[0], expected)


def test_gram_is_normalised_by_element_count():
    # The same texture at twice the size gives the same Gram: the normalisation makes it scale-free.
    tile = torch.rand(1, 8, 4, 4)
    assert torch.allclose(gram(tile), gram(tile.repeat(1, 1, 2, 2)), atol=1e-6)


def test_gram_is_fp32_for_bf16_features_in_either_memory_layout():
    features = torch.rand(1, 16, 8, 8)
    reference = gram(features)
    for layout in (torch.contiguous_format, torch.channels_last):
        low = gram(features.bfloat16().contiguous(memory_format=layout))
        assert low.dtype == torch.float32
        assert torch.allclose(low, gram(features.bfloat16().float()), rtol=1e-6)
        assert torch.allclose(low, reference, rtol=2e-2)
        assert torch.allclose(gram(features.contiguous(memory_format=layout)), reference, rtol=1e-6)


def test_gram_gradient_matches_finite_differences():
    for layout in (torch.contiguous_format, torch.channels_last):
        features = torch.rand(1, 3, 2, 3, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
        assert torch.autograd.gradcheck(gram, (features,))


def test_gram_gradient_matches_autograds_own():
    features = torch.rand(2, 5, 4, 3, requires_grad=True)
    weights = torch.rand(2, 5, 5)
    (gram(features) * weights).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(2, 5, 12)
    ((flat @ flat.transpose(1, 2) / 60) * weights).sum().backward()
    assert torch.allclose(ours, features.grad, atol=1e-6)


def test_content_loss_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    b = torch.tensor([1.0, 0.0, 3.0, 8.0]).view(1, 1, 2, 2)
    assert content_loss(a, b).item() == pytest.approx((0 + 4 + 0 + 16) / 4)


def test_style_loss_is_the_weighted_sum_of_gram_mses():
    f1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # gram [[1.25, 2.75], [2.75, 6.25]]
    f2 = torch.tensor([2.0, 0.0]).view(1, 1, 1, 2)  # gram [[4 / 2]] = [[2]]
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.ones(1, 1, 1)}
    mse_a = (1.25**2 + 2.75**2 + 2.75**2 + 6.25**2) / 4
    mse_b = (2.0 - 1.0) ** 2
    got = style_loss({"a": f1, "b": f2}, targets, ["a", "b"], [0.5, 3.0])
    assert got.item() == pytest.approx(0.5 * mse_a + 3.0 * mse_b)


def test_tv_loss_by_hand():
    image = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    # vertical diffs: (0-0), (0-1) -> mean of squares 0.5; horizontal: (1-0), (0-0) -> 0.5
    assert tv_loss(image).item() == pytest.approx(1.0)
    assert tv_loss(torch.full((1, 3, 5, 5), 0.3)).item() == 0.0


def test_losses_have_gradients_for_the_image():
    image = torch.rand(1, 3, 4, 4, requires_grad=True)
    (content_loss(image, torch.zeros_like(image)) + tv_loss(image)).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
