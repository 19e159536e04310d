"""EfficientNet (B0-B7) and EfficientNetV2 (S, M, L).

Papers:
- "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", M. Tan, Q. V. Le, ICML 2019.
  https://arxiv.org/abs/1905.11946
- "EfficientNetV2: Smaller Models and Faster Training", M. Tan, Q. V. Le, ICML 2021.
  https://arxiv.org/abs/2104.00298

Key idea (V1): find a small baseline by architecture search (B0, built from MobileNetV2's inverted bottleneck
with squeeze-and-excitation, "MBConv"), then scale width, depth and resolution together with one compound
coefficient: B1-B7 multiply the channels by ``width``, the repeats by ``depth`` and the input size by
``resolution`` (section 3.3). Key idea (V2): search for training speed too; early stages use Fused-MBConv
(the 1x1 expansion and the depthwise kxk of MBConv fused into one regular kxk convolution, Fig. 2), which is
faster on accelerators at high resolution, and train with progressive learning (image size, RandAugment,
mixup and dropout grow together, Table 6; the trainer drives it through ``drop_rate`` and
``set_drop_path_rate``).

EfficientNet-B0 (V1 Table 1), input 224x224; MBConv{e} = expansion e, every MBConv with SE 0.25:

    stage  operator            resolution  channels  layers
    1      conv3x3 /2          224         32        1
    2      MBConv1, k3x3       112         16        1
    3      MBConv6, k3x3 /2    112         24        2
    4      MBConv6, k5x5 /2    56          40        2
    5      MBConv6, k3x3 /2    28          80        3
    6      MBConv6, k5x5       14          112       3
    7      MBConv6, k5x5 /2    14          192       4
    8      MBConv6, k3x3       7           320       1
    9      conv1x1, pool, FC   7           1280      1

Compound scaling (the reference implementation's table; the paper gives the rule, section 3.3 and 4):

    model  width  depth  resolution  dropout      model  width  depth  resolution  dropout
    B0     1.0    1.0    224         0.2          B4     1.4    1.8    380         0.4
    B1     1.0    1.1    240         0.2          B5     1.6    2.2    456         0.4
    B2     1.1    1.2    260         0.3          B6     1.8    2.6    528         0.5
    B3     1.2    1.4    300         0.3          B7     2.0    3.1    600         0.5

Channels are ``make_divisible(c * width, 8)`` (stem 32 and head 1280 included), repeats ``ceil(r * depth)``.

EfficientNetV2-S (V2 Table 4), trained at up to 300 px, evaluated at 384:

    stage  operator                  stride  channels  layers
    0      conv3x3                   2       24        1
    1      Fused-MBConv1, k3x3       1       24        2
    2      Fused-MBConv4, k3x3       2       48        4
    3      Fused-MBConv4, k3x3       2       64        4
    4      MBConv4, k3x3, SE0.25     2       128       6
    5      MBConv6, k3x3, SE0.25     1       160       9
    6      MBConv6, k3x3, SE0.25     2       256       15
    7      conv1x1 & pooling & FC    -       1280      1

V2-M and V2-L are not tabulated in the paper; their stage tables (below, ``V2_M`` and ``V2_L``) are those of
the official code (google/automl ``effnetv2_configs.py``), which torchvision and timm use too. They add a
seventh, stride-1 MBConv6 stage (512 x5 for M, 640 x7 for L); L's stem is 32 channels. Evaluated at 480 px.

Blocks as the papers and the reference code build them:
- MBConv: 1x1 expansion (absent when the expansion is 1) -> depthwise kxk -> SE -> linear 1x1 projection;
  BN after every convolution, SiLU ("Swish") after all but the projection. SE: global average pool ->
  1x1 conv to ``max(1, int(block_input_channels * 0.25))`` -> SiLU -> 1x1 conv -> sigmoid gate.
- Fused-MBConv: kxk conv to ``e * in`` channels -> BN -> SiLU -> linear 1x1 projection -> BN; with e = 1 a
  single kxk conv -> BN -> SiLU (no 1x1 projection).
- A block has an identity shortcut when its stride is 1 and its input and output channels are equal; then
  its branch gets stochastic depth. Block i (0-based) of all N blocks drops its branch with probability
  ``drop_path_rate * i / N``, ``drop_path_rate = 0.2`` (the papers' "survival probability 0.8", as the TF
  reference code and torchvision/timm apply it: the rate grows linearly and the last block gets 0.2 (N-1)/N).
- Initialization of the TF reference: conv weights normal(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups,
  classifier uniform(+-1/sqrt(num_classes)), biases zero, BN weight one.
- ``head_init="zero"`` (not the papers'): the classifier starts at zero, as Fixup does (Zhang, Dauphin, Ma,
  "Fixup Initialization", ICLR 2019, section 3: "initialize the classification layer ... to 0") and as the ViT and
  MLP-Mixer reference code does. The reference bound 1/sqrt(num_classes) was set for 1,000 classes (+-0.032); at 10
  classes it is +-0.32, ten times wider, and the first logits are far from uniform: at initialization, on 64
  Fashion-MNIST training images in training mode, B0's logits have standard deviation 2.4 and its loss is 4.36,
  V2-S's 3.0 and 3.64, where a uniform prediction costs ln 10 = 2.30. The budget benchmark uses it (see
  docs/benchmark.md).

Deviations and choices (every difference to the papers, torchvision and timm):
- Padding: PyTorch's symmetric ``(k - 1) / 2``. The TF reference pads "SAME", which for a stride-2 conv puts
  the extra pixel at the bottom/right; the outputs have the same size at even inputs, but the convolution
  windows are shifted by one pixel. torchvision pads symmetrically as we do. ``tf_padding=True`` reproduces
  TF's SAME padding exactly (used to import timm's ``tf_efficientnet*`` ports of the official weights).
- BatchNorm: the TF reference's eps 1e-3; momentum 0.01 for V1 (TF decay 0.99) and 0.1 for V2 (TF decay
  0.9). torchvision's B0-B4 use PyTorch's defaults (eps 1e-5, momentum 0.1), its B5-B7 eps 1e-3 and momentum
  0.01, its V2 eps 1e-3 and momentum 0.1. ``bn_eps``/``bn_momentum`` select torchvision's B0-B4 variant
  (eps 1e-5, momentum 0.1) for its weights. timm's ``tf_`` models use eps 1e-3 (momentum 0.1).
- Dropout before the classifier: V1 0.2-0.5 per the table above. V2: 0.2 / 0.3 / 0.4 for S / M / L, the
  official configs' values (torchvision's too). The paper's progressive learning (Table 6) instead ramps it
  from 0.1 to 0.3 / 0.4 / 0.5 while the image grows; that is the trainer's job (``model.drop_rate``).
- Fig. 2 of the V2 paper draws an SE module inside Fused-MBConv; no V2 model uses one (Table 4 and the
  official configs), so Fused-MBConv is built without it.
- Initialization differs from torchvision, whose kaiming fan_out does not divide by the groups of the
  depthwise convolutions (timm's matches TF). Initialization is not part of a state dict, so weight import
  is unaffected.
- Module names are our own (``stem``, ``stages.<i>.<j>.conv_pw/conv_dw/se/conv_pwl``, ``head``,
  ``classifier``); torchvision names blocks by position (``features.<i>.<j>.block.<k>``) and timm by its block
  classes (``DepthwiseSeparableConv`` for MBConv1, ``ConvBnAct`` for Fused-MBConv1, ``EdgeResidual`` for
  Fused-MBConv); the converters below rename explicitly.
- SE width: ``int(in * 0.25)`` as the reference code; timm rounds instead (the same numbers for these models).

Small images (``img_size`` below 64, or ``small_input=True``): the stem convolution has stride 1 instead of
2, and the first stride-2 stage runs at stride 1 (V1: stage 3, MBConv6 k3x3 24 channels; V2: stage 2,
Fused-MBConv4 48 channels). Total stride 8 instead of 32: 32 px and 28 px inputs end in a 4x4 map (28 -> 14
-> 7 -> 4), and 8 px (the minimum) in 1x1. Nothing else changes, so weights load into either form.

Parameters at 1000 classes (input size does not change them): B0 5,288,548; B1 7,794,184; B2 9,109,994;
B3 12,233,232; B4 19,341,616; B5 30,389,784; B6 43,040,704; B7 66,347,960; V2-S 21,458,488;
V2-M 54,139,356; V2-L 118,515,272 (all equal to torchvision's and timm's ``tf_`` models).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from papernets.layers import (
    Classifier,
    ClassifierModel,
    ConvNormAct,
    DropPath,
    SqueezeExcite,
    make_divisible,
    small_form,
)
from papernets.layers.weight_init import zero_init_
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["EfficientNet", "FusedMBConv", "MBConv", "Stage", "conv_bn"]

EFFICIENTNET = Paper(
    "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    "Tan, Le",
    2019,
    "https://arxiv.org/abs/1905.11946",
)
EFFICIENTNET_V2 = Paper(
    "EfficientNetV2: Smaller Models and Faster Training",
    "Tan, Le",
    2021,
    "https://arxiv.org/abs/2104.00298",
)

SE_RATIO = 0.25  # every MBConv of both papers: SE bottleneck = a quarter of the block's input channels


class Conv2dSame(nn.Conv2d):
    """A strided convolution with TensorFlow's "SAME" padding: output ceil(in / stride), the odd pixel of
    padding at the bottom/right. Built with ``padding=0``; the padding is computed per input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                                 reversed(self.dilation), strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def conv_bn(
    in_chs: int,
    out_chs: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
    bn_eps: float = 1e-3,
    bn_momentum: float = 0.01,
    tf_padding: bool = False,
) -> ConvNormAct:
    """Conv (no bias) -> BN -> SiLU (no activation with ``act=False``): the unit of every EfficientNet box."""
    layer = ConvNormAct(
        in_chs,
        out_chs,
        kernel_size,
        stride,
        groups=groups,
        norm_layer=partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum),
        act_layer=nn.SiLU if act else None,
    )
    if tf_padding and stride > 1:  # stride 1 with an odd kernel: SAME is the symmetric padding
        layer.conv = Conv2dSame(in_chs, out_chs, kernel_size, stride, padding=0, groups=groups, bias=False)
    return layer


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE: 1x1 expand -> depthwise kxk -> SE -> linear 1x1 project."""

    def __init__(
        self, in_chs: int, out_chs: int, expand: int, kernel: int, stride: int, conv: Callable[..., nn.Module]
    ) -> None:
        super().__init__()
        mid = in_chs * expand
        self.out_chs = out_chs
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = conv(in_chs, mid, 1) if expand != 1 else nn.Identity()
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.se = SqueezeExcite(mid, max(1, int(in_chs * SE_RATIO)), act_layer=nn.SiLU)
        self.conv_pwl = conv(mid, out_chs, 1, act=False)
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return self.drop_path(out) + x if self.has_skip else out


class FusedMBConv(nn.Module):
    """Fused-MBConv (V2 Fig. 2): regular kxk expand -> linear 1x1 project; expansion 1: the kxk conv alone."""

    def __init__(
        self, in_chs: int, out_chs: int, expand: int, kernel: int, stride: int, conv: Callable[..., nn.Module]
    ) -> None:
        super().__init__()
        self.out_chs = out_chs
        self.has_skip = stride == 1 and in_chs == out_chs
        if expand == 1:
            self.conv = conv(in_chs, out_chs, kernel, stride)
            self.conv_pwl = nn.Identity()
        else:
            self.conv = conv(in_chs, in_chs * expand, kernel, stride)
            self.conv_pwl = conv(in_chs * expand, out_chs, 1, act=False)
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_pwl(self.conv(x))
        return self.drop_path(out) + x if self.has_skip else out


class Stage(NamedTuple):
    """A row of a stage table: block type, expansion, kernel, stride of its first block, channels, layers."""

    block: type[MBConv] | type[FusedMBConv]
    expand: int
    kernel: int
    stride: int
    channels: int
    layers: int


# V1 Table 1 (B0), stages 2-8. Stem 32 channels, head 1280.
B0 = (
    Stage(MBConv, 1, 3, 1, 16, 1),
    Stage(MBConv, 6, 3, 2, 24, 2),
    Stage(MBConv, 6, 5, 2, 40, 2),
    Stage(MBConv, 6, 3, 2, 80, 3),
    Stage(MBConv, 6, 5, 1, 112, 3),
    Stage(MBConv, 6, 5, 2, 192, 4),
    Stage(MBConv, 6, 3, 1, 320, 1),
)
B0_STEM, B0_HEAD = 32, 1280

# width, depth, resolution, dropout
COMPOUND_SCALING: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

# V2 Table 4 (S) and the official configs (M, L), stages 1-6/7. Head 1280 for all three.
V2_S = (
    Stage(FusedMBConv, 1, 3, 1, 24, 2),
    Stage(FusedMBConv, 4, 3, 2, 48, 4),
    Stage(FusedMBConv, 4, 3, 2, 64, 4),
    Stage(MBConv, 4, 3, 2, 128, 6),
    Stage(MBConv, 6, 3, 1, 160, 9),
    Stage(MBConv, 6, 3, 2, 256, 15),
)
V2_M = (
    Stage(FusedMBConv, 1, 3, 1, 24, 3),
    Stage(FusedMBConv, 4, 3, 2, 48, 5),
    Stage(FusedMBConv, 4, 3, 2, 80, 5),
    Stage(MBConv, 4, 3, 2, 160, 7),
    Stage(MBConv, 6, 3, 1, 176, 14),
    Stage(MBConv, 6, 3, 2, 304, 18),
    Stage(MBConv, 6, 3, 1, 512, 5),
)
V2_L = (
    Stage(FusedMBConv, 1, 3, 1, 32, 4),
    Stage(FusedMBConv, 4, 3, 2, 64, 7),
    Stage(FusedMBConv, 4, 3, 2, 96, 7),
    Stage(MBConv, 4, 3, 2, 192, 10),
    Stage(MBConv, 6, 3, 1, 224, 19),
    Stage(MBConv, 6, 3, 2, 384, 25),
    Stage(MBConv, 6, 3, 1, 640, 7),
)
V2_HEAD = 1280

# stages, stem channels, evaluation resolution, dropout
V2_CONFIGS: dict[str, tuple[tuple[Stage, ...], int, int, float]] = {
    "s": (V2_S, 24, 384, 0.2),
    "m": (V2_M, 24, 480, 0.3),
    "l": (V2_L, 32, 480, 0.4),
}


def scale_stages(stages: Sequence[Stage], width: float, depth: float) -> tuple[Stage, ...]:
    """Compound scaling: channels ``make_divisible(c * width, 8)``, layers ``ceil(l * depth)``."""
    return tuple(
        s._replace(channels=make_divisible(s.channels * width, 8), layers=math.ceil(s.layers * depth))
        for s in stages
    )


class EfficientNet(ClassifierModel):
    """Stem conv3x3 -> the stages of a stage table -> conv1x1 head -> global pool -> dropout -> FC.

    ``drop_rate`` (dropout before the FC) and ``set_drop_path_rate`` (stochastic depth) can change between
    calls, as progressive learning needs. ``bn_eps``/``bn_momentum`` are PyTorch's BN arguments (momentum =
    1 - TF decay); ``tf_padding`` pads strided convolutions as TensorFlow's "SAME" (see the module docstring).
    """

    classifier_name = "classifier"

    def __init__(
        self,
        stages: Sequence[Stage],
        stem_chs: int,
        head_chs: int,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        small_input: bool | None = None,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        tf_padding: bool = False,
        head_init: str = "paper",
    ) -> None:
        super().__init__()
        if head_init not in HEAD_INITS:
            raise ValueError(f"EfficientNet head_init {head_init!r} is not one of {', '.join(map(repr, HEAD_INITS))}")
        small = self.small_input = small_form(img_size, small_input)
        conv = partial(conv_bn, bn_eps=bn_eps, bn_momentum=bn_momentum, tf_padding=tf_padding)
        self.stem = conv(in_chans, stem_chs, 3, 1 if small else 2)

        first_stride2 = next(i for i, s in enumerate(stages) if s.stride == 2)
        in_chs = stem_chs
        self.stages = nn.Sequential()
        for index, stage in enumerate(stages):
            stride = 1 if small and index == first_stride2 else stage.stride
            blocks = []
            for _ in range(stage.layers):
                blocks.append(stage.block(in_chs, stage.channels, stage.expand, stage.kernel, stride, conv))
                in_chs, stride = stage.channels, 1
            self.stages.append(nn.Sequential(*blocks))
        self.head = conv(in_chs, head_chs, 1)
        self.num_features = head_chs
        self.classifier = Classifier(head_chs, num_classes, drop_rate, pool="avg", init=HEAD_INITS[head_init])
        self.set_drop_path_rate(drop_path_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.classifier.init(self.classifier)

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth: block i (0-based) of N drops its residual branch with probability rate*i/N."""
        blocks = [block for stage in self.stages for block in stage]
        for i, block in enumerate(blocks):
            block.drop_path.drop_prob = rate * i / len(blocks)
        self.drop_path_rate = rate

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _init_classifier(m: nn.Linear) -> None:
    bound = 1.0 / math.sqrt(m.out_features)
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


HEAD_INITS: dict[str, Callable[[nn.Linear], None]] = {"paper": _init_classifier, "zero": zero_init_}


def _efficientnet_v1(variant: str, **kwargs: Any) -> EfficientNet:
    width, depth, resolution, dropout = COMPOUND_SCALING[variant]
    kwargs = {"img_size": resolution, "drop_rate": dropout, **kwargs}
    stem, head = make_divisible(B0_STEM * width, 8), make_divisible(B0_HEAD * width, 8)
    return EfficientNet(scale_stages(B0, width, depth), stem, head, **kwargs)


def _efficientnet_v2(variant: str, **kwargs: Any) -> EfficientNet:
    stages, stem, resolution, dropout = V2_CONFIGS[variant]
    kwargs = {"img_size": resolution, "drop_rate": dropout, "bn_momentum": 0.1, **kwargs}
    return EfficientNet(stages, stem, V2_HEAD, **kwargs)


# Weight import. Each block's weighted parts, in the order torchvision numbers them (``block.<k>``).
def _parts(block: nn.Module) -> list[str]:
    return [name for name, child in block.named_children() if any(True for _ in child.parameters())]


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    head = len(model.stages) + 1
    rules = [
        (r"^features\.0\.0\.", "stem.conv."),
        (r"^features\.0\.1\.", "stem.bn."),
        (rf"^features\.{head}\.0\.", "head.conv."),
        (rf"^features\.{head}\.1\.", "head.bn."),
        (r"^classifier\.1\.", "classifier."),
    ]
    for s, stage in enumerate(model.stages):
        for k, part in enumerate(_parts(stage[0])):
            prefix = rf"^features\.{s + 1}\.(\d+)\.block\.{k}\."
            if part == "se":
                rules.append((prefix, rf"stages.{s}.\1.se."))
            else:
                rules += [(prefix + r"0\.", rf"stages.{s}.\1.{part}.conv."),
                          (prefix + r"1\.", rf"stages.{s}.\1.{part}.bn.")]
    return rename_keys(state, rules)


# timm's names for each of our block layouts: (their block class) -> {their name: our name}.
_TIMM_BLOCKS: dict[tuple[str, ...], dict[str, str]] = {
    ("conv_dw", "se", "conv_pwl"): {  # DepthwiseSeparableConv (MBConv1)
        "conv_dw": "conv_dw.conv", "bn1": "conv_dw.bn",
        "se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2",
        "conv_pw": "conv_pwl.conv", "bn2": "conv_pwl.bn",
    },
    ("conv_pw", "conv_dw", "se", "conv_pwl"): {  # InvertedResidual (MBConv)
        "conv_pw": "conv_pw.conv", "bn1": "conv_pw.bn",
        "conv_dw": "conv_dw.conv", "bn2": "conv_dw.bn",
        "se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2",
        "conv_pwl": "conv_pwl.conv", "bn3": "conv_pwl.bn",
    },
    ("conv",): {"conv": "conv.conv", "bn1": "conv.bn"},  # ConvBnAct (Fused-MBConv1)
    ("conv", "conv_pwl"): {  # EdgeResidual (Fused-MBConv)
        "conv_exp": "conv.conv", "bn1": "conv.bn", "conv_pwl": "conv_pwl.conv", "bn2": "conv_pwl.bn",
    },
}


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    rules = [
        (r"^conv_stem\.", "stem.conv."),
        (r"^bn1\.", "stem.bn."),
        (r"^conv_head\.", "head.conv."),
        (r"^bn2\.", "head.bn."),
    ]
    for s, stage in enumerate(model.stages):
        for theirs, ours in _TIMM_BLOCKS[tuple(_parts(stage[0]))].items():
            rules.append((rf"^blocks\.{s}\.(\d+)\.{theirs}\.", rf"stages.{s}.\1.{ours}."))
    return rename_keys(state, rules)


_TV_V1_COMPAT = {"bn_eps": 1e-5, "bn_momentum": 0.1}  # torchvision's B0-B4: PyTorch's BN defaults


def _v1_weights(variant: str) -> dict[str, PretrainedSource]:
    compat = _TV_V1_COMPAT if variant in ("b0", "b1", "b2", "b3", "b4") else {}
    return {
        "torchvision": PretrainedSource("torchvision", f"efficientnet_{variant}", _from_torchvision, compat),
        "timm": PretrainedSource("timm", f"tf_efficientnet_{variant}", _from_timm, {"tf_padding": True}),
    }


def _v2_weights(variant: str) -> dict[str, PretrainedSource]:
    return {
        "torchvision": PretrainedSource("torchvision", f"efficientnet_v2_{variant}", _from_torchvision),
        "timm": PretrainedSource("timm", f"tf_efficientnetv2_{variant}", _from_timm, {"tf_padding": True}),
    }


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=224, min_img_size=8,
                aliases=("efficientnet",), pretrained=_v1_weights("b0"))
def efficientnet_b0(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b0", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=240, min_img_size=8,
                pretrained=_v1_weights("b1"))
def efficientnet_b1(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b1", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=260, min_img_size=8,
                pretrained=_v1_weights("b2"))
def efficientnet_b2(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b2", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=300, min_img_size=8,
                pretrained=_v1_weights("b3"))
def efficientnet_b3(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b3", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=380, min_img_size=8,
                pretrained=_v1_weights("b4"))
def efficientnet_b4(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b4", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=456, min_img_size=8,
                pretrained=_v1_weights("b5"))
def efficientnet_b5(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b5", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=528, min_img_size=8,
                pretrained=_v1_weights("b6"))
def efficientnet_b6(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b6", **kwargs)


@register_model(paper=EFFICIENTNET, family="efficientnet", default_img_size=600, min_img_size=8,
                pretrained=_v1_weights("b7"))
def efficientnet_b7(**kwargs) -> EfficientNet:
    return _efficientnet_v1("b7", **kwargs)


@register_model(paper=EFFICIENTNET_V2, family="efficientnet_v2", default_img_size=384, min_img_size=8,
                aliases=("efficientnetv2",), pretrained=_v2_weights("s"))
def efficientnet_v2_s(**kwargs) -> EfficientNet:
    return _efficientnet_v2("s", **kwargs)


@register_model(paper=EFFICIENTNET_V2, family="efficientnet_v2", default_img_size=480, min_img_size=8,
                pretrained=_v2_weights("m"))
def efficientnet_v2_m(**kwargs) -> EfficientNet:
    return _efficientnet_v2("m", **kwargs)


@register_model(paper=EFFICIENTNET_V2, family="efficientnet_v2", default_img_size=480, min_img_size=8,
                pretrained=_v2_weights("l"))
def efficientnet_v2_l(**kwargs) -> EfficientNet:
    return _efficientnet_v2("l", **kwargs)
