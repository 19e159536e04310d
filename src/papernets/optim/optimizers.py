"""Optimizers that PyTorch does not ship in the papers' form: LAMB and TensorFlow's RMSprop.

``Lamb`` follows You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"
(https://arxiv.org/abs/1904.00962), Algorithm 2: Adam's bias-corrected moments, weight decay added to the
update, and a layer-wise trust ratio ||w|| / ||update|| scaling each parameter tensor's step (phi = identity;
the ratio is 1 where either norm is 0). ResMLP trains with it.

``RMSpropTF`` is TensorFlow 1's ``tf.train.RMSPropOptimizer``, with which Inception-v3, MobileNet and
EfficientNet were trained. It differs from ``torch.optim.RMSprop`` in three ways that matter with those
papers' settings (epsilon 1.0 or 1e-3 and momentum 0.9):

- epsilon is added inside the square root: ``g / sqrt(ms + eps)``, not ``g / (sqrt(ms) + eps)``;
- the mean square starts at 1, not 0 (TF initializes the ``rms`` slot with ones);
- the learning rate is applied inside the momentum buffer: ``mom = momentum * mom + lr * g / sqrt(ms + eps)``,
  ``w -= mom`` (equal to PyTorch's order while the lr is constant, different while it changes).

Weight decay in both is L2 added to the gradient (``g + wd * w``) for RMSpropTF, as the papers' TF code added an
L2 loss; for Lamb it is part of the update before the trust ratio, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Lamb", "RMSpropTF"]


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019, Algorithm 2)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss


class RMSpropTF(torch.optim.Optimizer):
    """RMSprop as TensorFlow 1 computes it (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.9,
        eps: float = 1e-10,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if group["momentum"] > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms = state["square_avg"]
                ms.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                step = g / (ms + group["eps"]).sqrt()
                if group["momentum"] > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(step, alpha=group["lr"])
                    p.sub_(buf)
                else:
                    p.sub_(step, alpha=group["lr"])
        return loss
