"""Local response normalization (AlexNet section 3.3, GoogLeNet), computed in fewer passes over memory.

b_c = a_c / (k + alpha / n * sum_{c' in window(c)} a_{c'}^2)^beta, the window n adjacent maps (``size``), zero
beyond the first and last map: exactly ``torch.nn.LocalResponseNorm``'s definition (the same arguments, no
parameters, the same state dict).

Why not PyTorch's: ``F.local_response_norm`` builds the window sum with an unsqueeze, a pad and a 3-D average pool,
and autograd keeps every intermediate of ``(k + ...)^beta`` and a division; at 28 px, where GoogLeNet's and
AlexNet's small forms normalize large maps, that was most of GoogLeNet's training step
(``benchmarks/op_breakdown.py``: elementwise, pooling and copies). Here the window sum is ``size`` shifted slices of
the squares, ``d^-beta`` is one power (two square roots for beta = 0.75), and the backward pass is written out:

    dL/da = g * d^-beta - (2 * beta * alpha / n) * a * W'(g * a * d^(-beta - 1))

with W' the window sum mirrored (the same window for odd ``size``). It runs in fp32 (fp64 for fp64 inputs) whatever
the input's dtype, as autocast runs normalizations, and returns the input's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalResponseNorm", "local_response_norm"]


def _window_sum(s: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Sum over channel windows [c - before, c + after] of ``s`` (dim 1), zero outside the channels."""
    c = s.shape[1]
    pad = [0, 0] * (s.dim() - 2) + [before, after]
    padded = F.pad(s, pad)
    out = padded.narrow(1, 0, c).clone()
    for i in range(1, before + after + 1):
        out += padded.narrow(1, i, c)
    return out


def _neg_pow(d: torch.Tensor, beta: float) -> torch.Tensor:
    """d ** -beta, with square roots for the papers' beta = 0.75 (and 0.5)."""
    if beta == 0.75:
        r = torch.rsqrt(d)
        return r * torch.sqrt(r)
    if beta == 0.5:
        return torch.rsqrt(d)
    return d.pow(-beta)


def _forward(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> tuple[torch.Tensor, ...]:
    """(output, input in the compute dtype, d, d^-beta)."""
    a = x if x.dtype == torch.float64 else x.float()
    d = _window_sum(a * a, size // 2, (size - 1) // 2).mul(alpha / size).add(k)
    scale = _neg_pow(d, beta)
    return (a * scale).to(x.dtype), a, d, scale


class _LRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        out, a, d, scale = _forward(x, size, alpha, beta, k)
        ctx.save_for_backward(a, d, scale)
        ctx.args = (size, alpha, beta, size // 2, (size - 1) // 2)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        a, d, scale = ctx.saved_tensors
        size, alpha, beta, before, after = ctx.args
        g = grad.to(a.dtype)
        t = g * a * scale / d
        grad_in = g * scale - (2 * beta * alpha / size) * a * _window_sum(t, after, before)
        return grad_in.to(grad.dtype), None, None, None, None


def local_response_norm(x: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> torch.Tensor:
    """``torch.nn.functional.local_response_norm``, computed as this module's docstring says."""
    if x.dim() < 3:
        raise ValueError(f"local response normalization needs an input of 3 or more dimensions, got {x.dim()}")
    if torch.is_grad_enabled() and x.requires_grad:
        return _LRN.apply(x, size, alpha, beta, k)
    return _forward(x, size, alpha, beta, k)[0]  # inference, export: plain operators


class LocalResponseNorm(nn.LocalResponseNorm):
    """Drop-in for ``torch.nn.LocalResponseNorm`` (a subclass: the same arguments, with ``alpha`` divided by
    ``size``, and the same repr and empty state dict), computed as this module's docstring says."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)
