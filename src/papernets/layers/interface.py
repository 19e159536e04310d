"""What every model offers the trainer, declared once: the ``ModelInterface`` protocol, the ``ModelBase`` class
that gives its defaults, and the small-image rule every model's ``small_input`` keyword follows."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["SMALL_IMAGE_BELOW", "ModelBase", "ModelInterface", "small_form"]

SMALL_IMAGE_BELOW = 64  # px: below this, a model builds its small-image (CIFAR / MNIST) form


@runtime_checkable
class ModelInterface(Protocol):
    """The attributes and methods the trainer and the weight import use, which every registered model has.

    - ``aux_weight``: the weight of each auxiliary classifier's loss, added to the main loss in training
      (GoogLeNet 0.3, Inception-v3 0.4); 0.0 for a model without auxiliary classifiers.
    - ``drop_rate``: the dropout rate of the classifier, read at every forward pass; progressive learning sets
      it per stage.
    - ``patch_size``: the multiple that image sizes must be: the patch size of ViT, MLP-Mixer, ResMLP and
      gMLP, 1 for convolutional networks.
    - ``forward_features`` / ``forward_head``: the network without and with its classifier;
      ``forward(x) == forward_head(forward_features(x))`` for a single output.
    - ``reset_classifier(num_classes)``: a new, freshly initialized classifier (and auxiliary classifiers)
      with ``num_classes`` outputs.
    """

    aux_weight: float
    drop_rate: float
    patch_size: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor) -> torch.Tensor: ...

    def reset_classifier(self, num_classes: int) -> None: ...


class ModelBase(nn.Module):
    """The base of every model: no auxiliary classifiers (``aux_weight = 0.0``), any image size
    (``patch_size = 1``), and ``forward`` = ``forward_head(forward_features(x))``. A model overrides what differs
    and defines ``forward_features``, ``forward_head``, ``reset_classifier`` and ``drop_rate`` itself or through
    ``ClassifierModel``."""

    aux_weight: float = 0.0
    patch_size: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def small_form(img_size: int, small_input: bool | None, below: int = SMALL_IMAGE_BELOW) -> bool:
    """Whether a model builds its small-image form: ``small_input`` when given, else ``img_size < below`` (64 px;
    Inception-v3 uses the 75 px its ImageNet form needs)."""
    return img_size < below if small_input is None else small_input
