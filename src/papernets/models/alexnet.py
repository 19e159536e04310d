"""AlexNet.

Paper: "ImageNet Classification with Deep Convolutional Neural Networks", A. Krizhevsky, I. Sutskever, G. E.
Hinton, NeurIPS 2012. https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html

Key idea: a large, deep convolutional network trained on GPUs, made to work by ReLU nonlinearities, local
response normalization, overlapping max-pooling, data augmentation and dropout. The network is split over two
GPUs; some layers only see the maps on their own GPU (section 3.5, Fig. 2):

    layer  maps  kernel/stride  groups  after it
    conv1    96  11x11/4          1     ReLU, LRN, max-pool 3x3/2   (224 -> 55 -> 27)
    conv2   256   5x5/1 pad 2     2     ReLU, LRN, max-pool 3x3/2   (27 -> 13)
    conv3   384   3x3/1 pad 1     1     ReLU  (full connectivity across the GPUs)
    conv4   384   3x3/1 pad 1     2     ReLU
    conv5   256   3x3/1 pad 1     2     ReLU, max-pool 3x3/2         (13 -> 6)
    fc6 4096 -> ReLU -> dropout 0.5 -> fc7 4096 -> ReLU -> dropout 0.5 -> fc8 1000

Faithful to the paper:
- Grouped conv2, conv4 and conv5 (groups=2): the two-GPU split. conv1's two halves (48 maps each) see the
  whole image, which is an ordinary convolution with 96 filters.
- Local response normalization b = a / (k + alpha * sum a^2)^beta over n = 5 adjacent maps, k = 2, alpha =
  1e-4, beta = 0.75 (section 3.3), after the ReLU of conv1 and conv2, and on each GPU's own maps (the
  normalization runs separately over each half, as it did on the two GPUs). ``papernets.layers.lrn`` (PyTorch's
  ``LocalResponseNorm`` computed in fewer passes) divides alpha by n as PyTorch's does, so it is given alpha * n.
- Overlapping max-pooling, 3x3 windows with stride 2 (section 3.4).
- Initialization (section 5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and fc7, 0 elsewhere.
- Dropout 0.5 on the outputs of fc6 and fc7 (section 4.2). Both read ``drop_rate`` at run time.
- Parameter count at 224 px, 1000 classes: 60,965,224 (the paper says "60 million"): conv1 34,944; conv2
  307,456; conv3 885,120; conv4 663,936; conv5 442,624; fc6 37,752,832; fc7 16,781,312; fc8 4,097,000. That is
  0.724 GMACs at 224 px (measured with FlopCounterMode; the paper gives no figure).

Deviations:
- Input size: the paper says 224x224, but its 55x55 conv1 map needs 227 px without padding:
  (227 - 11) / 4 + 1 = 55. Here the default input is 224 and conv1 pads by 2, so (224 + 4 - 11) // 4 + 1 = 55
  and every later map has the paper's size (as in torchvision).
- An adaptive average pool to 6x6 sits before fc6. At 224 px the map is already 6x6 and the pool does nothing;
  at other sizes it keeps fc6's 9,216 inputs.

``init="he"`` (not the paper's): He-normal (fan-in) weights and zero biases in every hidden layer (He, Zhang, Ren,
Sun, "Delving Deep into Rectifiers", ICCV 2015, https://arxiv.org/abs/1502.01852), the last layer as the paper's.
The paper's initialization was made for SGD at lr 0.01 over 90 epochs; under Adam its biases of 1 make fc6 and
fc7's outputs large and alike for every image, and the first steps throw the loss to 5-11 (10 classes). In a short
run on Fashion-MNIST (28 px, 60 steps of 64 images, AdamW lr 5e-4 with warmup, label smoothing 0.1, 1,000
validation images) it stays at 11.1% validation accuracy and reaches 72.7% with ``init="he"``; SGD at the paper's
lr 0.01 reaches 9.3% in those 60 steps.

torchvision's ``alexnet`` is a different network: the single-GPU variant of "One weird trick for parallelizing
convolutional neural networks" (Krizhevsky 2014) with 64-192-384-256-256 maps, no LRN, no grouped
convolutions, dropout before fc6 and fc7 rather than after them, and 61,100,840 parameters. Its weights
therefore do not fit this model and no weight import is offered.

Small images (``img_size`` below 64, or ``small_input=True``): conv1 becomes a 5x5 stride-1 convolution
(padding 2), as in Krizhevsky's CIFAR-10 networks, and the three max-pools pad by 1. A 28 or 32 px input then
ends in a 4x4 map at conv5, and the 6x6 pool before fc6 becomes a 4x4 pool (4,096 inputs to fc6). Everything
else is unchanged (grouped convolutions, LRN, the 4096-4096 classifier).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, small_form
from papernets.layers.lrn import LocalResponseNorm
from papernets.registry import Paper, register_model

__all__ = ["AlexNet", "GroupedLRN"]

ALEXNET = Paper(
    "ImageNet Classification with Deep Convolutional Neural Networks",
    "Krizhevsky, Sutskever, Hinton",
    2012,
    "https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html",
)


class ConvLayer(NamedTuple):
    """One row of the architecture (section 3.5, Fig. 2)."""

    name: str
    out_chs: int
    kernel: int
    stride: int
    padding: int
    groups: int
    bias: float  # initial bias (section 5)
    lrn: bool
    pool: bool


LAYERS: tuple[ConvLayer, ...] = (
    ConvLayer("conv1", 96, 11, 4, 2, 1, 0.0, lrn=True, pool=True),
    ConvLayer("conv2", 256, 5, 1, 2, 2, 1.0, lrn=True, pool=True),
    ConvLayer("conv3", 384, 3, 1, 1, 1, 0.0, lrn=False, pool=False),
    ConvLayer("conv4", 384, 3, 1, 1, 2, 1.0, lrn=False, pool=False),
    ConvLayer("conv5", 256, 3, 1, 1, 2, 1.0, lrn=False, pool=True),
)
SMALL_CONV1 = ConvLayer("conv1", 96, 5, 1, 2, 1, 0.0, lrn=True, pool=True)
HIDDEN = 4096
GPUS = 2


class GroupedLRN(nn.Module):
    """Local response normalization run separately over each of ``groups`` equal slices of the maps.

    The paper's formula b = a / (k + alpha * sum a^2)^beta, the sum over ``size`` adjacent maps.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1):
        super().__init__()
        self.groups = groups
        self.lrn = LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.lrn(x)
        return torch.cat([self.lrn(part) for part in x.chunk(self.groups, dim=1)], dim=1)


class AlexNet(ClassifierModel):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.5,
        small_input: bool | None = None,
        init: str = "paper",
    ) -> None:
        super().__init__()
        if init not in ("paper", "he"):
            raise ValueError(f"AlexNet init {init!r} is not one of 'paper', 'he'")
        small = self.small_input = small_form(img_size, small_input)
        layers = (SMALL_CONV1, *LAYERS[1:]) if small else LAYERS
        pool_padding = 1 if small else 0

        features: OrderedDict[str, nn.Module] = OrderedDict()
        in_chs = in_chans
        self._bias_init: dict[str, float] = {}
        for i, row in enumerate(layers, start=1):
            conv = nn.Conv2d(in_chs, row.out_chs, row.kernel, row.stride, row.padding, groups=row.groups)
            features[row.name] = conv
            features[f"act{i}"] = nn.ReLU(inplace=True)
            if row.lrn:
                features[f"norm{i}"] = GroupedLRN(groups=GPUS)
            if row.pool:
                features[f"pool{i}"] = nn.MaxPool2d(3, 2, padding=pool_padding)
            self._bias_init[row.name] = row.bias
            in_chs = row.out_chs
        self.features = nn.Sequential(features)

        self.num_features = in_chs
        self.head_hidden_size = HIDDEN
        grid = 4 if small else 6
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc6 = nn.Linear(in_chs * grid * grid, HIDDEN)
        self.fc7 = nn.Linear(HIDDEN, HIDDEN)
        self.fc = Classifier(HIDDEN, num_classes, drop_rate, init=_init_fc8)
        self._bias_init.update(fc6=1.0, fc7=1.0, fc=0.0)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        # Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere.
        # "he": He-normal (fan-in) weights and zero biases in the hidden layers; the last layer as the paper's.
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if init == "paper" or m is self.fc:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.constant_(m.bias, self._bias_init[name.split(".")[-1]])
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        x = nn.functional.dropout(torch.relu(self.fc6(x)), self.drop_rate, self.training)
        return self.fc(torch.relu(self.fc7(x)))  # fc applies the second dropout, at the same rate


def _init_fc8(m: nn.Linear) -> None:
    """Section 5 for the last layer: weights N(0, 0.01), bias 0."""
    nn.init.normal_(m.weight, 0.0, 0.01)
    nn.init.zeros_(m.bias)


@register_model(paper=ALEXNET, family="alexnet", default_img_size=224, min_img_size=1)
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(**kwargs)
