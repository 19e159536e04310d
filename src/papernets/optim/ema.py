"""An exponential moving average of a model's weights (EfficientNet, MobileNet and GoogLeNet's "Polyak averaging").

After every optimizer step ``t`` (counted from 0): ``ema = d * ema + (1 - d) * w`` for every parameter, with
``d = ema_decay``, or with ``warmup`` ``d = min(ema_decay, (1 + t) / (10 + t))``: TensorFlow's
``ExponentialMovingAverage(decay, num_updates=step)``, which the papers' TPU code used. The warmup lets a short
run (thousands of steps, not the papers' hundreds of thousands) average over a sensible window. Buffers (batch-norm
running statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """Holds the averaged copy of ``model`` (in eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup = decay, warmup

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the weights after optimizer step ``step`` (0-based) into the average."""
        d = self.decay_at(step)
        ema_p = [p for p in self.module.parameters()]
        new_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, new_p, 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
