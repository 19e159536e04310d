"""Darknet-53.

Paper: "YOLOv3: An Incremental Improvement", J. Redmon, A. Farhadi, arXiv 2018 (tech report).
https://arxiv.org/abs/1804.02767

Key idea: the YOLOv3 backbone. Darknet-19's plain stack of 3x3 and 1x1 convolutions gets ResNet's shortcut
connections: each residual unit halves the channels with a 1x1 convolution and restores them with a 3x3 one,
and stride-2 3x3 convolutions (no pooling) downsample between stages. 53 convolutional layers (52 + the
classifier). Table 1, for a 256 px input:

    Convolutional      32  3x3      256x256
    Convolutional      64  3x3/2    128x128
    1x [Convolutional  32  1x1, Convolutional  64  3x3, Residual]     128x128
    Convolutional     128  3x3/2     64x64
    2x [Convolutional  64  1x1, Convolutional 128  3x3, Residual]      64x64
    Convolutional     256  3x3/2     32x32
    8x [Convolutional 128  1x1, Convolutional 256  3x3, Residual]      32x32
    Convolutional     512  3x3/2     16x16
    8x [Convolutional 256  1x1, Convolutional 512  3x3, Residual]      16x16
    Convolutional    1024  3x3/2      8x8
    4x [Convolutional 512  1x1, Convolutional 1024 3x3, Residual]       8x8
    Avgpool global, Connected 1000, Softmax

Every "Convolutional" is convolution (no bias) -> batch normalization -> leaky ReLU with slope 0.1 (the
darknet framework's ``batch_normalize=1, activation=leaky``; the keyword ``leaky_slope`` sets the slope); the
residual is a plain addition after the second unit's activation (darknet's ``[shortcut] activation=linear``).
The classification head is global average pooling and a 1000-way fully connected layer with bias ("Connected
1000"; in darknet's ``darknet53.cfg`` a 1x1 convolution on the pooled map, which is the same layer); the
softmax is in the loss.

Parameter count, 1000 classes at 256 px: 41,609,928 = 40,584,928 in the 52 convolutions with their BN scales
and shifts + 1,025,000 (1024 x 1000 + 1000) in the classifier. Counted per Table 1: a unit with c_in -> c_out
channels and a k x k kernel has k*k*c_in*c_out + 2*c_out parameters. The paper's "18.7 Bn Ops" at 256 px
(Table 2) count 2 operations per multiply-accumulate; this implementation counts 9.285 GMACs (18.57 GFLOPs) of
convolutions and the classifier, 0.7% fewer.

Deviations and choices:
- The paper does not state an initialization; this uses darknet's own: every convolution and the classifier
  uniform in +-sqrt(2 / fan_in), biases zero; BN weight 1, bias 0.
- BatchNorm uses PyTorch's defaults (eps 1e-5, running-average momentum 0.1); darknet's batchnorm layer
  updates its rolling statistics with momentum 0.01 (and has its own epsilon).
- ``drop_rate`` (dropout before the classifier) is not in the paper and defaults to 0.

Small images (``img_size`` below 64, or ``small_input=True``): the downsampling convolutions of the first two
stages have stride 1 instead of 2, like ResNet's CIFAR stem drops the first two stride-2 steps; the total
stride is 8, so a 32 px (28 px) input ends in a 4x4 map.

Weights: timm's ``darknet53`` (in ``timm/models/cspnet.py``) has the same layers, channels and parameter
count (41,609,928), but its units use leaky ReLU with PyTorch's default slope 0.01, not the paper's 0.1, and
its weights were trained with 0.01. ``pretrained="timm"`` therefore builds ``darknet53(leaky_slope=0.01)``,
which gives timm's logits exactly; only the module names differ. timm's configuration for those weights
(``darknet53.c2ns_in1k``): 256 px inputs normalized with the usual ImageNet mean and std. torchvision has no
Darknet.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["DarkBlock", "DarkStage", "Darknet"]

YOLOV3 = Paper(
    "YOLOv3: An Incremental Improvement",
    "Redmon, Farhadi",
    2018,
    "https://arxiv.org/abs/1804.02767",
)

# Table 1: (output channels of the stride-2 convolution, number of residual units) per stage.
DARKNET53_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))



def conv_bn_leaky(
    in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, leaky_slope: float = 0.1
) -> ConvNormAct:
    """A darknet "Convolutional" layer: convolution, batch normalization, leaky ReLU (the paper: slope 0.1)."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, act_layer=partial(nn.LeakyReLU, leaky_slope))


class DarkBlock(nn.Module):
    """Residual unit: 1x1 convolution to half the channels, 3x3 convolution back, plus the input."""

    def __init__(self, chs: int, leaky_slope: float = 0.1) -> None:
        super().__init__()
        self.conv1 = conv_bn_leaky(chs, chs // 2, 1, leaky_slope=leaky_slope)
        self.conv2 = conv_bn_leaky(chs // 2, chs, 3, leaky_slope=leaky_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class DarkStage(nn.Module):
    """A 3x3 downsampling convolution followed by ``depth`` residual units."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, stride: int = 2, leaky_slope: float = 0.1) -> None:
        super().__init__()
        self.downsample = conv_bn_leaky(in_chs, out_chs, 3, stride, leaky_slope)
        self.blocks = nn.Sequential(*[DarkBlock(out_chs, leaky_slope) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Darknet(ClassifierModel):
    """Darknet from a stem width and a table of (channels, residual units) per stage.

    ``leaky_slope`` is the negative slope of every leaky ReLU: 0.1 in the paper, 0.01 for timm's weights.
    """

    def __init__(
        self,
        stages: tuple[tuple[int, int], ...] = DARKNET53_STAGES,
        stem_chs: int = 32,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 256,
        drop_rate: float = 0.0,
        small_input: bool | None = None,
        leaky_slope: float = 0.1,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        self.stem = conv_bn_leaky(in_chans, stem_chs, 3, leaky_slope=leaky_slope)
        in_chs = stem_chs
        layers = []
        for i, (out_chs, depth) in enumerate(stages):
            stride = 1 if small and i < 2 else 2
            layers.append(DarkStage(in_chs, out_chs, depth, stride, leaky_slope))
            in_chs = out_chs
        self.stages = nn.Sequential(*layers)
        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg", init=_init_darknet)
        self._init_weights()

    def _init_weights(self) -> None:
        # darknet's make_convolutional_layer / make_connected_layer: uniform in +-sqrt(2 / fan_in).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _init_darknet(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def _init_darknet(m: nn.Conv2d | nn.Linear) -> None:
    bound = math.sqrt(2.0 / m.weight[0].numel())
    nn.init.uniform_(m.weight, -bound, bound)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's darknet53 -> ours: the same tensors; stem, downsampling convolution and classifier renamed."""
    rules = [(r"^stem\.conv1\.", "stem."), (r"\.conv_down\.", ".downsample."), (r"^head\.fc\.", "fc.")]
    return rename_keys(state, rules)


_TIMM = {"timm": PretrainedSource("timm", "darknet53", _from_timm, kwargs={"leaky_slope": 0.01})}


@register_model(paper=YOLOV3, family="darknet", default_img_size=256, min_img_size=8, pretrained=_TIMM)
def darknet53(**kwargs) -> Darknet:
    return Darknet(DARKNET53_STAGES, **kwargs)
