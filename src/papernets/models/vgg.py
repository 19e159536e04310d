"""VGG.

Paper: "Very Deep Convolutional Networks for Large-Scale Image Recognition", K. Simonyan, A. Zisserman, ICLR
2015 (arXiv 2014). https://arxiv.org/abs/1409.1556

Key idea: depth with the smallest useful filter. Stacks of 3x3 convolutions (stride 1, padding 1) with 2x2/2
max-pooling between five stages, then three fully connected layers; a stack of two 3x3 layers sees 5x5, three
see 7x7, with fewer parameters and more nonlinearities. ConvNet configurations (Table 1, "conv<size>-<maps>"):

    A (vgg11):  64 | M | 128 | M | 256 256 | M | 512 512 | M | 512 512 | M
    B (vgg13):  64 64 | M | 128 128 | M | 256 256 | M | 512 512 | M | 512 512 | M
    D (vgg16):  64 64 | M | 128 128 | M | 256 256 256 | M | 512 512 512 | M | 512 512 512 | M
    E (vgg19):  64 64 | M | 128 128 | M | 256 256 256 256 | M | 512 512 512 512 | M | 512 512 512 512 | M
    then FC-4096, FC-4096, FC-1000, soft-max; ReLU after every hidden layer;
    dropout 0.5 after the first two FC layers

Faithful to the paper: configurations A, B, D, E of Table 1 (``CONFIGS`` below); no local response
normalization (configuration A-LRN is the paper's own ablation and is not provided); dropout 0.5 on the two
hidden FC layers. Parameter counts at 224 px, 1000 classes: VGG-11 132,863,336; VGG-13 133,047,848; VGG-16
138,357,544; VGG-19 143,667,240 (the paper's Table 2 rounds them to 133, 133, 138 and 144 million).

Deviations and differences to torchvision:
- ``vgg*_bn`` add batch normalization after every convolution (torchvision's ``vgg*_bn``); the 2014 paper
  predates batch normalization. Counts: 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248.
- Initialization: the paper trained configuration A from N(0, 0.01) weights and initialized the deeper nets
  from it; it notes after submission that Glorot & Bengio (2010) initialization trains all of them from
  scratch. That is used here (Glorot uniform weights, zero biases). torchvision uses He (fan-out) for the
  convolutions. ``init="he"``: He, Zhang, Ren, Sun, "Delving Deep into Rectifiers" (ICCV 2015, section 2.2,
  https://arxiv.org/abs/1502.01852), whose point is this network: Glorot's variance assumes linear units, so each
  ReLU layer halves the signal's variance, and VGG-16's 15 ReLU layers leave logits with a standard deviation of
  0.0005 at initialization (eval mode, 28 px, 10 classes, normal-noise input); He-normal (fan-in, gain sqrt(2))
  gives 1.1. The hidden layers (convolutions, fc1, fc2) take it; the last layer stays
  Glorot.
- Like torchvision, an adaptive average pool to 7x7 sits before the first FC layer. At 224 px the map is
  already 7x7 and the pool does nothing; at other sizes it keeps FC-4096's 25,088 inputs. The layers and their
  names otherwise match torchvision's (``features.<i>``), so torchvision's weights load by renaming the three
  FC layers. Imported weights build the ImageNet form at any input size (the 7x7 pool feeds FC-4096).

Small images (``img_size`` below 64, or ``small_input=True``): the usual CIFAR form of VGG. The five conv
stages are unchanged; the five max-pools round up (``ceil_mode``) so that 28 px goes 14-7-4-2-1 and 32 px goes
16-8-4-2-1; the classifier reads the 512 maps of the final 1x1 map (global average pool) through two hidden FC
layers of width 512 instead of 4096 (dropout 0.5 kept). VGG-16 at 32 px, 10 classes: 15,245,130 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["VGG", "CONFIGS"]

VGG_PAPER = Paper(
    "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    "Simonyan, Zisserman",
    2014,
    "https://arxiv.org/abs/1409.1556",
)

M = "M"  # 2x2 max-pool, stride 2

# Table 1: the number of maps of each 3x3 convolution, "M" for a max-pool.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
    "B": (64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
    "D": (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M),
    "E": (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M),
}


class VGG(ClassifierModel):
    """A VGG network from one column of Table 1."""

    def __init__(
        self,
        config: str,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.5,
        small_input: bool | None = None,
        init: str = "glorot",
    ) -> None:
        super().__init__()
        if init not in ("glorot", "he"):
            raise ValueError(f"VGG init {init!r} is not one of 'glorot' (the paper), 'he'")
        small = self.small_input = small_form(img_size, small_input)
        layers: list[nn.Module] = []
        in_chs = in_chans
        for v in CONFIGS[config]:
            if v == M:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=small))
                continue
            layers.append(nn.Conv2d(in_chs, int(v), 3, 1, 1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            in_chs = int(v)
        self.features = nn.Sequential(*layers)

        self.num_features = in_chs
        grid, hidden = (1, 512) if small else (7, 4096)
        self.head_hidden_size = hidden
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc1 = nn.Linear(in_chs * grid * grid, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc = Classifier(hidden, num_classes, drop_rate, init=_init_glorot)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _init_glorot(m) if init == "glorot" or m is self.fc else _init_he(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        x = nn.functional.dropout(torch.relu(self.fc1(x)), self.drop_rate, self.training)
        return self.fc(torch.relu(self.fc2(x)))  # fc applies the second dropout, at the same rate


def _init_glorot(m: nn.Conv2d | nn.Linear) -> None:
    """Section 3.1: Glorot & Bengio (2010) initialization, zero biases."""
    nn.init.xavier_uniform_(m.weight)
    nn.init.zeros_(m.bias)


def _init_he(m: nn.Conv2d | nn.Linear) -> None:
    """He et al. (2015) section 2.2: normal, std sqrt(2 / fan_in), zero biases."""
    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(m.bias)


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # ``features.<i>`` are the same modules in the same order; torchvision's classifier is one Sequential.
    return rename_keys(
        state, [(r"^classifier\.0\.", "fc1."), (r"^classifier\.3\.", "fc2."), (r"^classifier\.6\.", "fc.")]
    )


def _tv(name: str) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _from_torchvision)}


def _register(name: str, aliases: tuple[str, ...] = ()):
    return register_model(
        paper=VGG_PAPER,
        family="vgg",
        default_img_size=224,
        min_img_size=1,
        aliases=aliases,
        pretrained=_tv(name),
    )


@_register("vgg11")
def vgg11(**kwargs) -> VGG:
    return VGG("A", **kwargs)


@_register("vgg13")
def vgg13(**kwargs) -> VGG:
    return VGG("B", **kwargs)


@_register("vgg16", aliases=("vggnet",))
def vgg16(**kwargs) -> VGG:
    return VGG("D", **kwargs)


@_register("vgg19")
def vgg19(**kwargs) -> VGG:
    return VGG("E", **kwargs)


@_register("vgg11_bn")
def vgg11_bn(**kwargs) -> VGG:
    return VGG("A", batch_norm=True, **kwargs)


@_register("vgg13_bn")
def vgg13_bn(**kwargs) -> VGG:
    return VGG("B", batch_norm=True, **kwargs)


@_register("vgg16_bn")
def vgg16_bn(**kwargs) -> VGG:
    return VGG("D", batch_norm=True, **kwargs)


@_register("vgg19_bn")
def vgg19_bn(**kwargs) -> VGG:
    return VGG("E", batch_norm=True, **kwargs)
