"""The Gatys et al. objective: content, style (Gram matrices) and total-variation losses.

Everything here runs in fp32 even when the network ran in bf16: Gram matrices sum H×W products
per entry, and bf16's 8-bit mantissa would swamp the small style differences.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F


class _Gram(torch.autograd.Function):
    """G = Fᵀ F / norm for F of shape (N, H·W, C): fp32 (or wider) result, one-matmul backward.

    The forward widens F to at least fp32, so a Gram of bf16 features is exact to fp32 accumulation.
    The backward uses G's symmetry, dL/dF = F (gᵀ + g) / norm: one matmul instead of autograd's two,
    done in F's own dtype (bf16 features get the bf16 gradient the network's backward uses anyway).
    Gram matmuls were ~15% of a step at 300 px on the CPU.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, norm: float) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.norm = norm
        wide = flat.to(torch.promote_types(flat.dtype, torch.float32))
        return torch.bmm(wide.transpose(1, 2), wide) / norm

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        symmetric = ((grad + grad.transpose(1, 2)) / ctx.norm).to(flat.dtype)
        return torch.bmm(flat, symmetric), None


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices in fp32 (or wider), normalised by the element count C×H×W."""
    n, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        flat = features.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of channels_last memory
    else:
        flat = features.reshape(n, c, h * w).transpose(1, 2)  # a view of NCHW memory
    return _Gram.apply(flat, float(c * h * w))


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the generated image's and the content image's features."""
    return F.mse_loss(features.float(), target.float())


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    weights: Sequence[float],
) -> torch.Tensor:
    """Sum over layers of weight × MSE between the generated Gram and the style image's Gram."""
    total = None
    for layer, weight in zip(layers, weights):
        term = weight * F.mse_loss(gram(features[layer]), target_grams[layer])
        total = term if total is None else total + term
    return total


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between neighbouring pixels (image in 0..1)."""
    image = image.float()
    vertical = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    horizontal = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return vertical + horizontal
