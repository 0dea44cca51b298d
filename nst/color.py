"""Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

``content``: transfer the style on luminance only, then put the content's chroma back: both images
become grey (their BT.601 luma), the style's luma is matched to the content's mean and spread, and the
result's luma is recombined with the content's Cb/Cr. ``match``: recolour the style image first so its
RGB mean and covariance equal the content's (x -> A (x - mu_s) + mu_c with A = C_c^1/2 C_s^-1/2).

Tensors are (1, 3, H, W) fp32 in 0..1; YCbCr is JPEG's full-range BT.601.
"""

from __future__ import annotations

import torch

_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)
_FROM_YCBCR = torch.linalg.inv(_TO_YCBCR)
_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(image), image)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    return _apply(_TO_YCBCR, image) + _OFFSET.to(image).view(1, 3, 1, 1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(_FROM_YCBCR, image - _OFFSET.to(image).view(1, 3, 1, 1))


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The image's luma as a grey RGB image (three equal channels)."""
    return rgb_to_ycbcr(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_grey: torch.Tensor, content_grey: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luma to the content's mean and standard deviation (clamped to 0..1)."""
    mean_s, std_s = style_grey.mean(), style_grey.std().clamp_min(1e-6)
    mean_c, std_c = content_grey.mean(), content_grey.std()
    return ((style_grey - mean_s) / std_s * std_c + mean_c).clamp_(0.0, 1.0)


def with_chroma(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """``result``'s luma with ``content``'s Cb/Cr (content resized to the result's size beforehand)."""
    y = rgb_to_ycbcr(result)[:, :1]
    chroma = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, chroma], dim=1)).clamp_(0.0, 1.0)


def _sqrt_and_inverse(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values, vectors = torch.linalg.eigh(covariance)
    values = values.clamp_min(1e-8)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    inverse_root = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return root, inverse_root


def _mean_and_covariance(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / max(1, centred.shape[1] - 1)


def match_colors(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image recoloured to the content's RGB mean and covariance (clamped to 0..1)."""
    mean_s, cov_s = _mean_and_covariance(style)
    mean_c, cov_c = _mean_and_covariance(content)
    root_c, _ = _sqrt_and_inverse(cov_c)
    _, inverse_root_s = _sqrt_and_inverse(cov_s + 1e-6 * torch.eye(3, dtype=torch.float64))
    transform = root_c @ inverse_root_s
    pixels = style.reshape(3, -1).double()
    matched = transform @ (pixels - mean_s) + mean_c
    return matched.reshape(style.shape).to(style.dtype).clamp_(0.0, 1.0)
