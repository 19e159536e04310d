"""Speed defaults chosen by measurement (see the README's "Speed" section for the figures behind them)."""

from __future__ import annotations

import torch

# Families whose training step measured at least 5% faster in channels_last on the CPU, by
# `python benchmarks/memory_format.py --out docs/results/memory_format.md` (batch 128 at 28x28x1, small-image
# forms; figures in that file). Every convolutional family but AlexNet gained (x1.12 to x1.82, depthwise networks
# the most); AlexNet (x0.98), ViT (x0.98), MLP-Mixer (x1.01) and gMLP (x0.95) did not. ResMLP measured x1.06.
CHANNELS_LAST_CPU_FAMILIES: frozenset[str] = frozenset({
    "darknet", "densenet", "efficientnet", "efficientnet_v2", "googlenet", "inception", "lenet", "mobilenet", "nin",
    "resmlp", "resnet", "resnext", "senet", "shufflenet", "squeezenet", "vgg", "xception",
})


def use_channels_last(family: str, device: torch.device) -> bool:
    """Whether to train and profile a model family in channels_last memory format on ``device``."""
    if device.type == "cuda":
        return True
    return family in CHANNELS_LAST_CPU_FAMILIES
