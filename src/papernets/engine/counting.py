"""Parameters and multiply-accumulates of a model, counted without running it for real.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, linear layers, matmuls and
attention) as FLOPs / 2: the convention of torchvision's ``_ops`` field and of most papers' "FLOPs". PyTorch's
CPU kernel for ``scaled_dot_product_attention`` has no FLOP formula of its own, so one is registered here: the
attention matmuls are counted whatever kernel runs them. The trainer (a run's ``summary.json``), the bench and
``papernets models``/``profile`` all count with this module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter

from papernets.registry import create_model, get_entry

__all__ = ["count_params", "count_macs", "meta_model_stats"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Sum of ``numel`` over parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of PyTorch's fused CPU attention kernel: the two matmuls (Q K^T and A V), as for the
    generic SDPA op. ``FlopCounterMode`` hands custom entries the argument shapes, not tensors."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict:
    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_flops
    return mapping


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``x`` (works on the meta device)."""
    was_training = model.training
    model.eval()
    try:
        counter = flop_counter.FlopCounterMode(display=False, custom_mapping=_custom_mapping())
        with counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def meta_model_stats(name: str, img_size: int | None = None, **kwargs) -> tuple[int, int]:
    """Params and MACs of a registered model for one image, without allocating its weights (meta device)."""
    entry = get_entry(name)
    size = img_size or entry.default_img_size
    in_chans = kwargs.pop("in_chans", 3)
    with torch.device("meta"):
        model = create_model(name, img_size=size, in_chans=in_chans, **kwargs)
        x = torch.empty(1, in_chans, size, size)
        return count_params(model), count_macs(model, x)
