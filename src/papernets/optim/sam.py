"""Sharpness-aware minimization around any base optimizer: SAM and ASAM.

SAM (Foret et al. 2020, "Sharpness-Aware Minimization for Efficiently Improving Generalization",
https://arxiv.org/abs/2010.01412, eq. 2 and Algorithm 1) minimizes the loss at the worst point of a small
neighbourhood: with the gradient ``g`` at ``w``,

    e(w) = rho * g / ||g||                                  (SAM)
    e(w) = rho * T_w^2 g / ||T_w g||,  T_w = |w| + eta      (ASAM, Kwon et al. 2021, https://arxiv.org/abs/2102.11600)

the weights move in place to ``w + e(w)``, the gradient is taken again there, the weights go back to ``w``, and
the base optimizer steps with that second gradient. ``||.||`` is the norm over all parameters together. ``T_w``
applies to every parameter here (the ASAM code exempts biases; with ``eta`` they keep a neighbourhood anyway).

This module holds the perturbation; the trainer's step (``engine/trainer.py``) runs the two passes, handles the
gradient scaler of mixed precision, gradient clipping, and keeps batch-norm statistics to the first pass
(``frozen_bn_stats``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["SAM", "frozen_bn_stats"]


class SAM:
    """The ascent step of SAM/ASAM over ``params``: ``perturb`` moves them to ``w + e(w)``, ``restore`` back."""

    def __init__(self, params: list[nn.Parameter], rho: float | None = None, adaptive: bool = False,
                 eta: float = 0.01) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.rho = rho if rho is not None else (0.5 if adaptive else 0.05)
        self.adaptive, self.eta = adaptive, eta
        self._e: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._w: list[torch.Tensor] = []

    @torch.no_grad()
    def perturb(self, grad_scale: float = 1.0) -> bool:
        """Move each parameter with a gradient to ``w + e(w)`` (gradients divided by ``grad_scale`` first, for
        a scaled loss). Returns False, and moves nothing, if a gradient is not finite."""
        ps = [p for p in self.params if p.grad is not None]
        grads = [p.grad.float() / grad_scale for p in ps]
        if self.adaptive:
            scales = [p.detach().float().abs() + self.eta for p in ps]
            scaled = [s * g for s, g in zip(scales, grads, strict=True)]
        else:
            scaled = grads
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled])) if ps else None
        if norm is None or not torch.isfinite(norm):
            return False
        factor = self.rho / (norm + 1e-12)
        self._e, self._w = [], []
        for i, p in enumerate(ps):
            e = (scales[i] * scaled[i] if self.adaptive else grads[i]) * factor
            e = e.to(p.dtype)
            self._w.append(p.detach().clone())
            p.add_(e)
            self._e.append((p, e))
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the saved ``w`` back (bit-exact, not ``w + e - e``)."""
        for (p, _), w in zip(self._e, self._w, strict=True):
            p.copy_(w)
        self._e, self._w = [], []

    @property
    def perturbation(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """The (parameter, e(w)) pairs of the current perturbation (empty when restored)."""
        return list(self._e)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch normalization uses the batch statistics but leaves its running statistics (and counter) alone.

    In training mode with ``track_running_stats=False`` PyTorch's batch norm normalizes with the batch
    statistics and neither reads nor updates the running buffers, which is what SAM's second pass needs."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True
