"""Batch mixing: mixup (Zhang et al. 2017) and CutMix (Yun et al. 2019), with soft targets.

One draw per batch, as timm's default "batch" mode: with probability ``prob`` the batch is mixed; when both
are on, CutMix is chosen with probability ``switch_prob``, else mixup. The partner of image ``i`` is image
``perm[i]`` of a random permutation. ``lam`` ~ Beta(alpha, alpha):

- mixup: ``x = lam * x + (1 - lam) * x[perm]``;
- CutMix: a box of area ``(1 - lam) * H * W`` centred uniformly at random (clipped at the border) is pasted
  from ``x[perm]``, and ``lam`` becomes the share of the image left untouched.

The targets are ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` (label smoothing applied to each first), and
the loss is the cross-entropy with these soft targets (``F.cross_entropy`` takes probabilities). Every draw comes
from a ``numpy`` generator seeded by the caller with the batch's (seed, epoch, batch index), so a resumed run
mixes exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MixConfig", "mix_batch", "soft_targets"]


@dataclass
class MixConfig:
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot rows with label smoothing: ``1 - s + s / K`` on the label, ``s / K`` elsewhere (as PyTorch's
    ``cross_entropy(label_smoothing=s)``)."""
    off = smoothing / num_classes
    return torch.full((len(y), num_classes), off, device=y.device).scatter_(1, y[:, None], 1.0 - smoothing + off)


def _cutmix_box(rng: np.random.Generator, lam: float, h: int, w: int) -> tuple[int, int, int, int]:
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: MixConfig, seed: int, smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]:
    """Mix a batch. Returns the images, the soft targets (None when this batch is not mixed) and what was
    drawn (``{"kind": 0 none / 1 mixup / 2 cutmix, "lam": ...}``)."""
    if not cfg.active or len(y) < 2:
        return x, None, {"kind": 0, "lam": 1.0}
    rng = np.random.default_rng(seed)
    if rng.random() >= cfg.prob:
        return x, None, {"kind": 0, "lam": 1.0}
    use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha <= 0 or rng.random() < cfg.switch_prob)
    alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(x.device)
    if use_cutmix:
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = _cutmix_box(rng, lam, h, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x[perm] * (1.0 - lam)
    t = soft_targets(y, num_classes, smoothing)
    targets = t * lam + t[perm] * (1.0 - lam)
    return x, targets, {"kind": 2 if use_cutmix else 1, "lam": lam}

