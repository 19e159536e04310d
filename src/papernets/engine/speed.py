"""Speed defaults chosen by measurement (see the README's "Speed" section for the figures behind them)."""

from __future__ import annotations

import torch

# Families whose training step measured faster in channels_last on CPU (depthwise-heavy networks).
CHANNELS_LAST_CPU_FAMILIES: frozenset[str] = frozenset()


def use_channels_last(family: str, device: torch.device) -> bool:
    """Whether to train and profile a model family in channels_last memory format on ``device``."""
    if device.type == "cuda":
        return True
    return family in CHANNELS_LAST_CPU_FAMILIES
