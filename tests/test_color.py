"""Colour preservation helpers (nst.color): YCbCr, luminance transfer, colour matching."""

import torch

from nst import color, images
from tests.conftest import make_content, make_style


def test_ycbcr_round_trip_and_grey_has_neutral_chroma():
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(color.ycbcr_to_rgb(color.rgb_to_ycbcr(image)), image, atol=1e-5)
    grey = color.luminance(image)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    assert torch.allclose(color.rgb_to_ycbcr(grey)[:, 1:], torch.full_like(grey[:, 1:], 0.5), atol=1e-5)


def test_with_chroma_keeps_the_luma_of_one_and_the_chroma_of_the_other():
    content = images.to_tensor(make_content())
    result = color.luminance(images.to_tensor(make_style(64).resize(content.shape[-1:-3:-1])))
    mixed = color.with_chroma(result, content)
    ycc_mixed, ycc_content, ycc_result = (color.rgb_to_ycbcr(t) for t in (mixed, content, result))
    inside = (mixed > 0.001).all(dim=1, keepdim=True) & (mixed < 0.999).all(dim=1, keepdim=True)  # not clipped
    assert inside.float().mean() > 0.5
    assert torch.allclose(ycc_mixed[:, 1:][inside.expand(-1, 2, -1, -1)], ycc_content[:, 1:][inside.expand(-1, 2, -1, -1)], atol=1e-4)
    assert torch.allclose(ycc_mixed[:, :1][inside], ycc_result[:, :1][inside], atol=1e-4)


def test_match_luminance_moves_mean_and_spread():
    style, content = torch.rand(1, 3, 16, 16) * 0.3, torch.rand(1, 3, 16, 16) * 0.5 + 0.25
    matched = color.match_luminance(color.luminance(style), color.luminance(content))
    target = color.luminance(content)
    assert abs(matched.mean() - target.mean()) < 1e-3 and abs(matched.std() - target.std()) < 1e-3


def test_match_colors_moves_the_style_mean_and_covariance_to_the_content():
    content = images.to_tensor(make_content(64, 48))
    style = images.to_tensor(make_style(64)) * 0.6 + 0.2  # inside the gamut after matching, mostly
    matched = color.match_colors(style, content)
    mean = lambda t: t.reshape(3, -1).mean(dim=1)  # noqa: E731
    assert (mean(matched) - mean(content)).abs().max() < 0.03
    assert (mean(style) - mean(content)).abs().max() > 0.05  # it really moved
    cov = lambda t: torch.cov(t.reshape(3, -1))  # noqa: E731
    assert (cov(matched) - cov(content)).abs().max() < 0.2 * cov(content).abs().max()
    assert matched.min() >= 0 and matched.max() <= 1
