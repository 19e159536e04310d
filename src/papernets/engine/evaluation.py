"""Evaluation: loss, top-1 and top-5 accuracy of a model over a split, optionally with test-time augmentation
(mirror images, shifted views), summed across processes under ``torchrun``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from papernets.data import TensorLoader
from papernets.engine import distributed as dist_utils
from papernets.engine.runtime import autocast
from papernets.engine.step import split_output

__all__ = ["TTA", "evaluate", "first_nonfinite", "nonfinite_end", "recompute_bn_stats", "tta_logits", "tta_of"]


class TTA(NamedTuple):
    """Test-time augmentation: ``flip`` averages each view's logits with its mirror image's; ``translate`` > 0 gives
    half the weight to the image and a quarter each to it shifted that many pixels up-left and down-right
    (reflection-padded), as airbench's multi-crop evaluation (Jordan 2024, arXiv:2404.00498)."""

    flip: bool = False
    translate: int = 0


def tta_of(train: Any) -> TTA:
    """The test-time augmentation of a config's ``train`` section."""
    return TTA(bool(train.tta_flip), int(train.tta_translate))


def tta_logits(model: nn.Module, x: torch.Tensor, tta: TTA | bool) -> torch.Tensor:
    """The model's fp32 logits for ``x`` under ``tta`` (a bool: flips only)."""
    tta = tta if isinstance(tta, TTA) else TTA(bool(tta))

    def view(v: torch.Tensor) -> torch.Tensor:
        out = split_output(model(v))[0].float()
        return (out + split_output(model(v.flip(-1)))[0].float()) / 2 if tta.flip else out

    logits = view(x)
    if tta.translate:
        t, (h, w) = tta.translate, x.shape[-2:]
        padded = F.pad(x, (t, t, t, t), mode="reflect")
        shifted = view(padded[..., :h, :w]) + view(padded[..., 2 * t:, 2 * t:])
        logits = logits / 2 + shifted / 4
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: TensorLoader, info: dist_utils.DistInfo, amp_dtype: torch.dtype | None = None,
    flip: TTA | bool = False, confusion: bool = False,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy over a split (summed across processes). ``flip``: test-time augmentation, a
    ``TTA`` or a bool (the logits of each image averaged with those of its mirror image). ``confusion``: also the
    confusion matrix
    (``"confusion"``: a classes x classes tensor of counts, rows the true class, columns the top-1 prediction)."""
    model.eval()
    loss_sum = correct = correct5 = seen = 0.0
    matrix: torch.Tensor | None = None
    for x, y in loader.batches(0):
        with autocast(x.device, amp_dtype):
            logits = tta_logits(model, x, flip)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
        if confusion:
            k = logits.shape[1]
            pairs = (y.cpu() * k + top[:, 0].cpu()).bincount(minlength=k * k).view(k, k)
            matrix = pairs if matrix is None else matrix + pairs
    loss_sum, correct, correct5, seen = dist_utils.all_reduce_sum([loss_sum, correct, correct5, seen], info)
    seen = max(seen, 1.0)
    out: dict[str, Any] = {"loss": loss_sum / seen, "acc": correct / seen, "top5": correct5 / seen, "images": seen}
    if confusion and matrix is not None:
        counts = dist_utils.all_reduce_sum([float(v) for v in matrix.flatten().tolist()], info)
        out["confusion"] = torch.tensor(counts, dtype=torch.long).view_as(matrix)
    elif confusion:
        out["confusion"] = None
    return out


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


def nonfinite_end(val: dict[str, float] | None, model: nn.Module, name: str) -> str | None:
    """Why an epoch's end is not finite (a non-finite validation loss, or a weight that became NaN or infinite,
    e.g. from an fp16 overflow that slipped past the loss checks), or None when it is."""
    if val is not None and not math.isfinite(val["loss"]):
        return f"the validation loss became {val['loss']}"
    if (bad := first_nonfinite(model)) is not None:
        return f"{name}'s {bad} became non-finite"
    return None
