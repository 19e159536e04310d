"""The classifier at the end of most papers' networks: global average pooling, dropout, a linear layer.

``Classifier`` is that layer; ``ClassifierModel`` gives a model whose head is one ``Classifier`` its
``forward_head``, ``reset_classifier`` and a settable ``drop_rate``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from papernets.layers.interface import ModelBase

__all__ = ["Classifier", "ClassifierModel"]

# The dimensions each kind of pooling averages: "avg" the height and width of (N, C, H, W) maps (global average
# pooling), "avg_tokens" the tokens of (N, L, C) sequences; None takes (N, C) vectors as they are.
POOL_DIMS: dict[str | None, tuple[int, ...]] = {"avg": (2, 3), "avg_tokens": (1,), None: ()}


class Classifier(nn.Linear):
    """Pool (``pool``: "avg", "avg_tokens" or None, see ``POOL_DIMS``) -> dropout -> linear.

    ``drop_rate`` is a plain attribute read at every call, so it may change between calls (progressive
    learning). ``init`` is the model's classifier initialization, which ``reset_classifier`` applies after
    PyTorch's default one (None: the default only); the layer a model builds is initialized by the model with
    its other layers. A subclass of ``nn.Linear`` with its ``weight`` and ``bias``: state dicts hold a plain
    linear layer under the model's name for it.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        drop_rate: float = 0.0,
        pool: str | None = None,
        init: Callable[[nn.Linear], None] | None = None,
    ) -> None:
        if pool not in POOL_DIMS:
            raise ValueError(f"pool must be one of {list(POOL_DIMS)}, got {pool!r}")
        super().__init__(in_features, num_classes)
        self.drop_rate = float(drop_rate)
        self.pool = pool
        self.init = init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x.mean(POOL_DIMS[self.pool])
        return super().forward(nn.functional.dropout(x, self.drop_rate, self.training))

    def reset_classifier(self, num_classes: int) -> None:
        """New weights for ``num_classes`` outputs, on the same device and of the same dtype, freshly initialized."""
        like = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.out_features = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, self.in_features, **like))
        self.bias = nn.Parameter(torch.empty(num_classes, **like))
        self.reset_parameters()
        if self.init is not None:
            self.init(self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, drop_rate={self.drop_rate}, pool={self.pool}"


class ClassifierModel(ModelBase):
    """A model whose head is one ``Classifier``, in the attribute ``classifier_name`` ("fc" unless the class
    says otherwise). ``forward_head`` is that classifier, ``reset_classifier`` resets it and ``drop_rate`` is its
    dropout rate. Build the classifier with the model's ``drop_rate``; do not set ``self.drop_rate`` before it
    exists."""

    classifier_name: str = "fc"

    def get_classifier(self) -> Classifier:
        return getattr(self, self.classifier_name)

    @property
    def drop_rate(self) -> float:
        """The dropout rate before the classifier, read at every forward pass."""
        return self.get_classifier().drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        self.get_classifier().drop_rate = float(value)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.get_classifier().reset_classifier(num_classes)
