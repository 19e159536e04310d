"""One training step: the loss of a forward pass (auxiliary heads included), and the optimizer step around it
(gradient accumulation, SAM's two passes, gradient clipping, the fp16 loss scaler).

A training step is one forward and backward pass and an optimizer step; with SAM (``optim.sam``) two passes, the
second at the perturbed weights. Batches may be mixed (mixup/cutmix, ``data/mixing.py``) with soft targets.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papernets.engine.runtime import Runtime
from papernets.errors import ConfigError
from papernets.optim.sam import SAM, frozen_bn_stats

__all__ = ["Forward", "batch_passes", "split_output", "training_loss", "training_step"]


def split_output(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and auxiliary logits (GoogLeNet, Inception-v3 return ``(logits, [aux, ...])`` in training)."""
    if isinstance(output, tuple | list):
        logits, aux = output
        return logits, list(aux)
    return output, []


def training_loss(
    output: Any, y: torch.Tensor, targets: torch.Tensor | None, aux_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The loss of a training forward pass: cross-entropy of the logits, plus ``aux_weight`` times that of each
    auxiliary head (GoogLeNet, Inception-v3). ``targets`` are a mixed batch's soft targets (label smoothing
    already in them); without them the hard labels ``y`` are smoothed by ``label_smoothing``."""
    logits, aux = split_output(output)

    def ce(z: torch.Tensor) -> torch.Tensor:
        if targets is not None:
            return F.cross_entropy(z.float(), targets)
        return F.cross_entropy(z.float(), y, label_smoothing=label_smoothing)

    loss = ce(logits)
    for a in aux:
        loss = loss + aux_weight * ce(a)
    return loss


Forward = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> (loss, logits) of a batch or micro-batch


def batch_passes(
    net: nn.Module, runtime: Runtime, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None,
    aux_weight: float, label_smoothing: float, accum_steps: int,
) -> Forward | list[Forward]:
    """The forward pass of a batch under the runtime's autocast, or of its ``accum_steps`` micro-batches (near
    equal), each returning (loss, logits); micro-batch losses are weighted by their share of the batch."""

    def forward(x=x, y=y, targets=targets, weight=1.0) -> tuple[torch.Tensor, torch.Tensor]:
        with runtime.autocast():
            output = net(x)
            loss = training_loss(output, y, targets, aux_weight, label_smoothing)
        return (loss if weight == 1.0 else loss * weight), split_output(output)[0]

    k = accum_steps
    if k == 1:
        return forward
    soft = targets.tensor_split(k) if targets is not None else [None] * k
    return [functools.partial(forward, xi, yi, ti, len(yi) / len(y))
            for xi, yi, ti in zip(x.tensor_split(k), y.tensor_split(k), soft, strict=True) if len(yi)]


def training_step(
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    forward: Forward | Sequence[Forward],
    check: Callable[[float], None],
    sam: SAM | None = None,
    grad_clip: float | None = None,
    any_process: Callable[[bool], bool] = lambda flag: flag,
) -> tuple[float, torch.Tensor]:
    """One optimizer step; ``forward()`` returns (loss, logits) of the batch, ``check(loss)`` may raise.

    Gradient accumulation (``train.accum_steps``): ``forward`` is then a sequence, one callable per micro-batch,
    each returning its loss already weighted by its share of the batch; their gradients add up (synchronized
    under DDP on the last one only) before the one optimizer step, and the returned loss is their sum, the batch
    mean. SAM takes a single callable.

    With ``sam``: the first backward pass (local to each process under DDP: SAM's per-device m-sharpness) gives
    e(w) from the unscaled gradients; the weights move to w + e(w); the second forward and backward run there with
    batch-norm running statistics frozen (the first pass updated them); the weights are restored; then the
    gradients are unscaled, clipped and stepped as usual. A non-finite first gradient (an fp16 overflow) on any
    process skips the step everywhere and lowers the gradient scale, as the scaler does for one pass. The second
    pass's loss goes through ``check`` too, so a non-finite loss there raises before any weight changes.
    ``any_process(flag)`` is true where ``flag`` is true on any process."""
    if not callable(forward):
        if sam is not None:
            raise ConfigError("optim.sam cannot be combined with train.accum_steps > 1.")
        loss_value, logits = _accumulate(net, optimizer, scaler, list(forward), check)
    else:
        loss, logits = forward()
        loss_value = loss.item()
        check(loss_value)
        optimizer.zero_grad(set_to_none=True)
        if sam is None:
            scaler.scale(loss).backward()
    if sam is not None:
        sync = net.no_sync() if isinstance(net, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()
        with sync:
            scaler.scale(loss).backward()
        perturbed = sam.perturb(grad_scale=scaler.get_scale())
        if any_process(not perturbed):
            sam.restore()
            optimizer.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
            return loss_value, logits
        optimizer.zero_grad(set_to_none=True)
        try:
            with frozen_bn_stats(model):  # the backward too: activation checkpointing recomputes in it
                loss2, _ = forward()
                check(loss2.item())
                scaler.scale(loss2).backward()
        finally:
            sam.restore()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss_value, logits


def _accumulate(
    net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    forwards: list[Forward], check: Callable[[float], None],
) -> tuple[float, torch.Tensor]:
    """Forward and backward each micro-batch, summing their (weighted) gradients; (batch loss, batch logits)."""
    optimizer.zero_grad(set_to_none=True)
    loss_value, parts = 0.0, []
    for i, forward in enumerate(forwards):
        loss, logits = forward()
        value = loss.item()
        check(value * len(forwards))  # about the unweighted micro-batch loss; only its finiteness matters
        last = i == len(forwards) - 1
        ddp = isinstance(net, nn.parallel.DistributedDataParallel)
        with net.no_sync() if ddp and not last else contextlib.nullcontext():
            scaler.scale(loss).backward()
        loss_value += value
        parts.append(logits.detach())
    return loss_value, torch.cat(parts)
