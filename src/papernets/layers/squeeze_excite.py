"""Squeeze-and-Excitation (Hu et al. 2017): global pool -> FC reduce -> act -> FC expand -> gate -> rescale."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel attention. ``rd_channels`` is the bottleneck width (SENet: channels / 16; EfficientNet: a
    quarter of the block's *input* channels, so the caller computes it). The FCs are 1x1 convolutions."""

    def __init__(
        self,
        channels: int,
        rd_channels: int,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
        gate_layer: Callable[[], nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        try:
            self.act = act_layer(inplace=True)
        except TypeError:
            self.act = act_layer()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))
