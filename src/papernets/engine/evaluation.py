"""Evaluation: loss, top-1 and top-5 accuracy of a model over a split, optionally with flip test-time
augmentation, summed across processes under ``torchrun``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from papernets.data import TensorLoader
from papernets.engine import distributed as dist_utils
from papernets.engine.runtime import autocast
from papernets.engine.step import split_output

__all__ = ["evaluate", "first_nonfinite"]


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


def first_nonfinite(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer of ``model`` holding a NaN or an infinity, or None."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None
