"""An exponential moving average of a model's weights (EfficientNet, MobileNet and GoogLeNet's "Polyak averaging").

After every optimizer step ``t`` (counted from 0): ``ema = d * ema + (1 - d) * w`` for every parameter, with
``d = ema_decay``, or with ``warmup`` ``d = min(ema_decay, (1 + t) / (10 + t))``: TensorFlow's
``ExponentialMovingAverage(decay, num_updates=step)``, which the papers' TPU code used. The warmup lets a short
run (thousands of steps, not the papers' hundreds of thousands) average over a sensible window. Buffers (batch-norm
running statistics) are copied, not averaged.

Lookahead (``lookahead`` = k > 0, airbench's form of Zhang et al.'s "Lookahead Optimizer: k steps forward, 1 step
back", NeurIPS 2019; Jordan 2024, arXiv:2404.00498): after every k-th step the weights are folded
into the average with decay ``decay**k * (t / T)**3`` (t the steps taken, T the run's steps: no averaging early,
more towards the end) and the average is copied back into the model, which goes on from there; after the last step
the model takes the average. The average is also evaluated as the EMA is.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """Holds the averaged copy of ``model`` (in eval mode, no gradients)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True, lookahead: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.lookahead = decay, warmup, lookahead

    @classmethod
    def of(cls, model: nn.Module, train: Any) -> ModelEma:
        """The average a config's ``train`` section asks for (``ema``, or ``lookahead``)."""
        return cls(model, train.ema_decay, train.ema_warmup, train.lookahead)

    def decay_at(self, step: int, total: int | None = None) -> float:
        if self.lookahead:
            return self.decay ** self.lookahead * ((step + 1) / max(total or step + 1, 1)) ** 3
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, total: int | None = None) -> None:
        """Fold the weights after optimizer step ``step`` (0-based) into the average; with ``lookahead``, only
        after every k-th step, copying the average back into ``model`` (and after the last of ``total`` steps)."""
        if self.lookahead and (step + 1) % self.lookahead and (total is None or step + 1 < total):
            return
        ema_p = [p for p in self.module.parameters()]
        new_p = [p.detach() for p in model.parameters()]
        if not self.lookahead or (step + 1) % self.lookahead == 0:
            torch._foreach_lerp_(ema_p, new_p, 1.0 - self.decay_at(step, total))
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
        if self.lookahead:
            torch._foreach_copy_(new_p, ema_p)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
