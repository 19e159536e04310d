"""Build an optimizer from the ``optim`` config section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from papernets.config import ConfigError, OptimConfig
from papernets.optim.optimizers import Lamb, RMSpropTF

__all__ = ["create_optimizer", "param_groups", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "lamb")


def param_groups(model: nn.Module, weight_decay: float, no_decay_1d: bool, lr: float | None = None,
                 norm_bias_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """One group, or with ``no_decay_1d`` two: matrices and kernels with ``weight_decay``, 1-D parameters (biases,
    normalization scales and shifts, layer scales) and scalars without it. A ``norm_bias_lr_scale`` other than 1
    puts the batch-norm biases in a group of their own at ``lr`` x the scale, with the weight decay divided by it
    (so that the decay's step, lr x weight decay, stays that of the other weights), as airbench does for the
    biases of its batch norms, whose scales it does not train (Jordan 2024, arXiv:2404.00498)."""
    params = [p for p in model.parameters() if p.requires_grad]
    scaled: list[nn.Parameter] = []
    if norm_bias_lr_scale != 1.0:
        ids = {id(m.bias) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None and m.bias.requires_grad}
        scaled = [p for p in params if id(p) in ids]
        params = [p for p in params if id(p) not in ids]
    if not no_decay_1d:
        groups = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if scaled:
        if lr is None:
            raise ValueError("param_groups: norm_bias_lr_scale needs the base lr")
        groups.append({"params": scaled, "lr": lr * norm_bias_lr_scale,
                       "weight_decay": 0.0 if no_decay_1d else weight_decay / norm_bias_lr_scale})
    return [g for g in groups if g["params"]]


def create_optimizer(params: Iterable[nn.Parameter] | nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam, AdamW, RMSprop (PyTorch's or TensorFlow's form) or LAMB.

    Raises ConfigError for SGD with ``nesterov`` and no momentum (Nesterov's method is a form of momentum)."""
    if isinstance(params, nn.Module):
        groups: Any = param_groups(params, cfg.weight_decay, cfg.no_weight_decay_norm_bias, cfg.lr,
                                   cfg.norm_bias_lr_scale)
    else:
        groups = list(params)
    name, wd = cfg.name, cfg.weight_decay
    if name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError(
                f"optim.nesterov=true needs optim.momentum > 0 (got {cfg.momentum}): Nesterov's method is a form of "
                f"momentum; set optim.momentum (e.g. 0.9) or optim.nesterov=false."
            )
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)
    if name == "rmsprop":
        cls = RMSpropTF if cfg.tf_style_eps else torch.optim.RMSprop
        return cls(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, weight_decay=wd)
    if name == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}.")
