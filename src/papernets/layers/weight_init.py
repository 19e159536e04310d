"""Weight initializers of the reference code of ViT, MLP-Mixer, gMLP (JAX/Flax), ResMLP (timm/DeiT) and
Inception-v3 (TensorFlow)."""

from __future__ import annotations

import math

import torch

# Standard deviation of a unit normal truncated to [-2, 2]: dividing by it restores the requested variance.
_TRUNC_STD = 0.87962566103423978


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> torch.Tensor:
    """Normal(0, std) truncated to [a, b], by the inverse CDF (one pass; PyTorch's version rejection-samples)."""
    if tensor.is_meta:
        return tensor

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    tensor.uniform_(2 * cdf(a / std) - 1, 2 * cdf(b / std) - 1)
    tensor.erfinv_().mul_(std * math.sqrt(2.0))
    return tensor.clamp_(a, b)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Flax's default kernel init ``variance_scaling(1, fan_in)``: truncated normal of variance 1 / fan_in."""
    std = math.sqrt(1.0 / weight[0].numel()) / _TRUNC_STD
    return trunc_normal_(weight, std, -2.0 * std, 2.0 * std)


def zero_init_(layer: torch.nn.Linear) -> None:
    """Weight and bias zero: the head of ViT, MLP-Mixer and gMLP in their official code."""
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
