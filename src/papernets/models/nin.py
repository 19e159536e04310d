"""Network in Network.

Paper: "Network In Network", M. Lin, Q. Chen, S. Yan, ICLR 2014 (arXiv 2013). https://arxiv.org/abs/1312.4400

Key idea: replace the linear filter of a convolution by a small multilayer perceptron that slides over the
input: the "mlpconv" layer, a convolution followed by 1x1 convolutions (the "cascaded cross channel parametric
pooling", cccp), each with a ReLU (section 3.1, Fig. 2). The last mlpconv outputs one map per class and global
average pooling of each map gives the class scores, with no fully connected layer (section 3.2).

ImageNet model (the authors' Caffe model-zoo NiN, https://gist.github.com/mavenlin/d802a5849de39225bcc6; the
paper reports no ImageNet network). Four mlpconv layers, max-pools 3x3/2:

    conv1 11x11/4, 96  -> cccp 96 -> cccp 96         -> max-pool   (224 -> 54 -> 27)
    conv2 5x5 pad 2, 256 -> cccp 256 -> cccp 256     -> max-pool   (27 -> 13)
    conv3 3x3 pad 1, 384 -> cccp 384 -> cccp 384     -> max-pool   (13 -> 6), dropout 0.5
    conv4 3x3 pad 1, 1024 -> cccp 1024 -> cccp 1000  -> global average pool (6x6)

Small images (``img_size`` below 64, or ``small_input=True``): the paper's CIFAR-10 network (section 4.2; the
authors' cuda-convnet/Caffe definition, https://github.com/mavenlin/cuda-convnet/tree/master/NIN). Three
mlpconv layers, with dropout 0.5 after the first two:

    conv 5x5 pad 2, 192 -> cccp 160 -> cccp 96          -> max-pool 3x3/2, dropout   (32 -> 16)
    conv 5x5 pad 2, 192 -> cccp 192 -> cccp 192         -> avg-pool 3x3/2, dropout   (16 -> 8)
    conv 3x3 pad 1, 192 -> cccp 192 -> cccp num_classes -> global average pool (8x8)

At 28 px (the paper's MNIST experiment uses this network with fewer, unstated, maps) the maps are 28 -> 14 ->
7.

Faithful to the paper and the reference definitions: a ReLU follows every convolution, the last one included
(the class maps are rectified before global average pooling, as in both reference models); pools round up
(``ceil_mode``, Caffe's rule), so 224 px gives the model zoo's 54 -> 27 -> 13 -> 6 maps. Parameter counts:
7,595,176 for the ImageNet model at 224 px and 1000 classes (1.100 GMACs); 966,986 for the CIFAR-10 model with
10 classes (0.2225 GMACs at 32 px).

Layout: ``forward_features`` returns the map before the last 1x1 convolution (1024 maps for ImageNet, 192 for
CIFAR; ``num_features``). That convolution, ``fc``, is the classifier: ``forward_head`` applies it, its ReLU
and the global average pool, and ``reset_classifier`` rebuilds it. ``drop_rate`` is the dropout between
mlpconv layers (there is none right before the classifier) and is read at run time.

Deviations: the paper does not give its initialization; weights are He-normal (fan-in) with zero biases. The
paper's NiN uses no data-dependent normalization; none is added.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from papernets.layers import ModelBase, small_form
from papernets.registry import Paper, register_model

__all__ = ["NiN", "MlpConv"]

NIN = Paper("Network In Network", "Lin, Chen, Yan", 2013, "https://arxiv.org/abs/1312.4400")


class Stage(NamedTuple):
    """One mlpconv layer: a kxk convolution, then 1x1 convolutions of the given widths, then a pool."""

    out_chs: int
    kernel: int
    stride: int
    padding: int
    cccp: tuple[int, ...]
    pool: str | None  # "max" or "avg" 3x3/2, None for the last stage (global average pool)
    dropout: bool


CLASSES = 0  # placeholder for the last 1x1 convolution, which outputs num_classes maps

IMAGENET: tuple[Stage, ...] = (
    Stage(96, 11, 4, 0, (96, 96), "max", dropout=False),
    Stage(256, 5, 1, 2, (256, 256), "max", dropout=False),
    Stage(384, 3, 1, 1, (384, 384), "max", dropout=True),
    Stage(1024, 3, 1, 1, (1024, CLASSES), None, dropout=False),
)
CIFAR: tuple[Stage, ...] = (
    Stage(192, 5, 1, 2, (160, 96), "max", dropout=True),
    Stage(192, 5, 1, 2, (192, 192), "avg", dropout=True),
    Stage(192, 3, 1, 1, (192, CLASSES), None, dropout=False),
)


class MlpConv(nn.Sequential):
    """A convolution followed by 1x1 convolutions (the cccp layers), each followed by a ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, padding: int, cccp: tuple[int, ...]):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, padding)
        self.act = nn.ReLU(inplace=True)
        for i, width in enumerate(cccp, start=1):
            self.add_module(f"cccp{i}", nn.Conv2d(out_chs, width, 1))
            self.add_module(f"act{i}", nn.ReLU(inplace=True))
            out_chs = width
        self.out_chs = out_chs


def _pool(kind: str | None) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, 2, ceil_mode=True)
    if kind == "avg":
        return nn.AvgPool2d(3, 2, ceil_mode=True)
    return nn.Identity()


class NiN(ModelBase):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.5,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        stages = CIFAR if small else IMAGENET
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        self._dropout_after = tuple(s.dropout for s in stages)
        in_chs = in_chans
        for i, s in enumerate(stages):
            cccp = s.cccp[:-1] if i == len(stages) - 1 else s.cccp  # the last 1x1 conv is the classifier
            block = MlpConv(in_chs, s.out_chs, s.kernel, s.stride, s.padding, cccp)
            self.blocks.append(block)
            self.pools.append(_pool(s.pool))
            in_chs = block.out_chs
        self.num_features = in_chs
        self.drop_rate = drop_rate
        self.fc = nn.Conv2d(in_chs, num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for block, pool, dropout in zip(self.blocks, self.pools, self._dropout_after, strict=True):
            x = pool(block(x))
            if dropout:
                x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)).mean((2, 3))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)


@register_model(paper=NIN, family="nin", default_img_size=224, min_img_size=4)
def nin(**kwargs) -> NiN:
    return NiN(**kwargs)
