"""Evaluation: loss, top-1 and top-5 accuracy of a model over a split, optionally with flip test-time
augmentation, summed across processes under ``torchrun``."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from papernets.data import TensorLoader
from papernets.engine import distributed as dist_utils
from papernets.engine.runtime import autocast
from papernets.engine.step import split_output

__all__ = ["evaluate", "first_nonfinite", "recompute_bn_stats"]


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: TensorLoader, info: dist_utils.DistInfo, amp_dtype: torch.dtype | None = None,
    flip: bool = False,
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over a split (summed across processes). ``flip``: test-time augmentation,
    the logits of each image averaged with those of its mirror image."""
    model.eval()
    loss_sum = correct = correct5 = seen = 0.0
    for x, y in loader.batches(0):
        with autocast(x.device, amp_dtype):
            logits = split_output(model(x))[0].float()
            if flip:
                logits = (logits + split_output(model(x.flip(-1)))[0].float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
    loss_sum, correct, correct5, seen = dist_utils.all_reduce_sum([loss_sum, correct, correct5, seen], info)
    seen = max(seen, 1.0)
    return {"loss": loss_sum / seen, "acc": correct / seen, "top5": correct5 / seen, "images": seen}


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                       amp_dtype: torch.dtype | None = None) -> int:
    """Precise batch norm: replace every BatchNorm layer's running mean and variance by their exact average over
    ``batches`` (training images), instead of the exponential average that training left. After n steps a layer
    with PyTorch momentum m still holds (1 - m)^n of the statistics it started with, which in a short run (or with
    EfficientNet's m = 0.01) is far from those of its current weights. Only the BatchNorm layers run in training
    mode (dropout and stochastic depth stay off); the weights do not change. Returns the batches used (0 when the
    model has no BatchNorm layer: nothing is run)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches that follow
        m.train()
    used = 0
    try:
        for x, _ in batches:
            with autocast(x.device, amp_dtype):
                model(x)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used


def first_nonfinite(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer of ``model`` holding a NaN or an infinity, or None."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None
