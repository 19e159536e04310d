"""MobileNetV1 and MobileNetV2.

MobileNetV1. Paper: "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam, 2017.
https://arxiv.org/abs/1704.04861

Key idea: factor every standard convolution into a depthwise 3x3 convolution (one filter per channel) and a
pointwise 1x1 convolution that mixes channels: about 8-9 times fewer multiply-adds (section 3.1). Two global
hyper-parameters trade accuracy for cost: the width multiplier alpha thins every layer (section 3.3), the
resolution multiplier rho (section 3.4) is simply the input size (here ``img_size``; 224, 192, 160 or 128).
Table 1 (alpha = 1, 224 px); every convolution is followed by BN and ReLU (Fig. 3):

    conv 3x3/2, 32                                           -> 112x112x32
    dw 3x3/1 + pw 1x1, 64                                    -> 112x112x64
    dw 3x3/2 + pw 128;  dw 3x3/1 + pw 128                    -> 56x56x128
    dw 3x3/2 + pw 256;  dw 3x3/1 + pw 256                    -> 28x28x256
    dw 3x3/2 + pw 512;  5 x (dw 3x3/1 + pw 512)              -> 14x14x512
    dw 3x3/2 + pw 1024; dw 3x3/1 + pw 1024                   -> 7x7x1024
    avg pool 7x7 -> FC 1000 -> softmax

Parameters at 224 px, 1000 classes (BN's gamma and beta included): alpha 1.0 4,231,976 (paper 4.2M),
0.75 2,585,560 (2.6M), 0.5 1,331,592 (1.3M), 0.25 470,072 (0.5M). MACs 568.7M / 325.4M / 149.5M / 41.0M
(paper Table 6: 569M / 325M / 149M / 41M, FC layer included).

Deviations and notes (V1):
- Table 1 prints the second-to-last depthwise layer as "Conv dw / s2" although its input and output are both
  7x7x1024; it has stride 1 here, as the table's sizes and every reference implementation say.
- Channels are ``max(int(alpha * c), 8)``, the rule of the official TF-slim code; for the four registered
  widths every channel count is an exact integer multiple, so this is plain alpha * c.
- The paper trains without dropout to speak of (TF-slim: keep probability 0.999); ``drop_rate`` defaults to 0.
- Initialization: He normal (fan-out) for convolutions, N(0, 0.01) for the classifier (TF-slim uses a
  truncated normal with std 0.09).
- ``relu6=True`` uses ReLU6, as the official TF-slim implementation and timm's ``mobilenetv1_100`` do; the
  paper says ReLU, which is the default. timm's ``mobilenetv1_100`` is otherwise identical to the paper
  (no residual connections, no head convolution), so its weights load into ``mobilenet_v1(relu6=True)``
  with identical logits; that keyword is applied automatically when importing them. Those weights expect
  inputs normalized with mean = std = 0.5 (timm's "inception" normalization).
- torchvision has no MobileNetV1.

MobileNetV2. Paper: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", M. Sandler, A. Howard, M. Zhu,
A. Zhmoginov, L.-C. Chen, CVPR 2018. https://arxiv.org/abs/1801.04381

Key idea: the inverted residual with linear bottleneck (Fig. 3b, Table 1): a thin block input is expanded by
t with a 1x1 convolution (ReLU6), filtered by a depthwise 3x3 (ReLU6) and projected back with a *linear* 1x1
convolution (no activation, so the low-dimensional manifold is not destroyed); the shortcut joins the thin
bottlenecks when stride is 1 and the widths match. Table 2 (t: expansion, c: channels, n: repeats,
s: stride of the first repeat):

    input       operator       t    c     n   s
    224x224x3   conv2d 3x3     -    32    1   2
    112x112x32  bottleneck     1    16    1   1
    112x112x16  bottleneck     6    24    2   2
    56x56x24    bottleneck     6    32    3   2
    28x28x32    bottleneck     6    64    4   2
    14x14x64    bottleneck     6    96    3   1
    14x14x96    bottleneck     6    160   3   2
    7x7x160     bottleneck     6    320   1   1
    7x7x320     conv2d 1x1     -    1280  1   1
    7x7x1280    avgpool 7x7    -    -     1   -
    1x1x1280    conv2d 1x1     -    k     -   -

Parameters at 224 px, 1000 classes: 1.0 3,504,872 (paper Table 4: 3.4M); MACs 300.8M (paper 300M). Width
multipliers 0.5 / 0.75 / 1.4: 1,968,680 / 2,636,424 / 6,108,776 parameters, 97.1M / 209.1M / 582.2M MACs.
(Table 4 gives 6.9M parameters and 585M MAdds for 1.4; Table 2 as written gives 6.1M, as timm's
``mobilenetv2_140``, whose weights load here, confirms.)

Deviations and notes (V2):
- Channels are rounded to a multiple of 8 (``make_divisible``), as the official TF code and torchvision do.
  The last 1x1 convolution keeps 1280 channels for width multipliers below 1 and is scaled above 1 (1792 at
  1.4), as the paper says (section 6.1).
- The final "conv2d 1x1, k" is a linear layer (the same operation on a 1x1 map), preceded by dropout 0.2
  (torchvision's recipe; the paper does not mention dropout).
- Initialization as torchvision: He normal (fan-out) for convolutions, N(0, 0.01) for the classifier.
- Identical to torchvision's ``mobilenet_v2`` and to timm's ``mobilenetv2_100``, ``mobilenetv2_050`` and
  ``mobilenetv2_140`` (only module names differ): their weights load with identical logits.

Small images (``img_size`` below 64, or ``small_input=True``), both versions: the first convolution has
stride 1 and the first downsampling stage (V1: the 128-channel depthwise layer; V2: the t=6, c=24 row) has
stride 1 too, the usual CIFAR form of these networks. The total stride falls from 32 to 8, so 32 px inputs
end in a 4x4 map (28 px: 4x4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, make_divisible, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["DepthwiseSeparableConv", "InvertedResidual", "MobileNetV1", "MobileNetV2"]

MOBILENET_V1 = Paper(
    "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    "Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    2017,
    "https://arxiv.org/abs/1704.04861",
)
MOBILENET_V2 = Paper(
    "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    "Sandler, Howard, Zhu, Zhmoginov, Chen",
    2018,
    "https://arxiv.org/abs/1801.04381",
)

# Table 1 of MobileNetV1: (depthwise stride, pointwise output channels) of the 13 separable layers.
MOBILENET_V1_STEM = 32
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (1, 64),
    (2, 128), (1, 128),
    (2, 256), (1, 256),
    (2, 512), (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
    (2, 1024), (1, 1024),
)

# Table 2 of MobileNetV2: (expansion t, output channels c, repeats n, first stride s).
MOBILENET_V2_STEM = 32
MOBILENET_V2_LAST = 1280
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class DepthwiseSeparableConv(nn.Sequential):
    """Fig. 3 (right) of MobileNetV1: depthwise 3x3 -> BN -> ReLU, pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_chs, in_chs, 3, stride, groups=in_chs, act_layer=act_layer)
        self.pw = ConvNormAct(in_chs, out_chs, 1, act_layer=act_layer)


class MobileNetV1(ClassifierModel):
    """MobileNetV1 with width multiplier ``width_mult`` (alpha); the resolution multiplier is ``img_size``."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        small_input: bool | None = None,
        relu6: bool = False,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        act = nn.ReLU6 if relu6 else nn.ReLU

        def width(c: int) -> int:
            return max(int(c * width_mult), 8)

        stem = width(MOBILENET_V1_STEM)
        self.stem = ConvNormAct(in_chans, stem, 3, 1 if small else 2, act_layer=act)
        layers = []
        in_chs = stem
        first_down = next(i for i, (s, _) in enumerate(MOBILENET_V1_LAYERS) if s == 2)
        for i, (stride, out) in enumerate(MOBILENET_V1_LAYERS):
            if small and i == first_down:
                stride = 1
            layers.append(DepthwiseSeparableConv(in_chs, width(out), stride, act))
            in_chs = width(out)
        self.blocks = nn.Sequential(*layers)
        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg", init=_init_weights)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class InvertedResidual(nn.Module):
    """Table 1 of MobileNetV2: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> linear 1x1 projection, plus
    the shortcut between bottlenecks when the stride is 1 and the widths match. t = 1: no expansion."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        mid = in_chs * expand_ratio
        self.expand = ConvNormAct(in_chs, mid, 1, act_layer=nn.ReLU6) if expand_ratio != 1 else None
        self.depthwise = ConvNormAct(mid, mid, 3, stride, groups=mid, act_layer=nn.ReLU6)
        self.project = ConvNormAct(mid, out_chs, 1, act_layer=None)
        self.use_shortcut = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return x + out if self.use_shortcut else out


class MobileNetV2(ClassifierModel):
    """MobileNetV2 from Table 2 with width multiplier ``width_mult``."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.2,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        stem = make_divisible(MOBILENET_V2_STEM * width_mult)
        self.stem = ConvNormAct(in_chans, stem, 3, 1 if small else 2, act_layer=nn.ReLU6)
        blocks = []
        in_chs = stem
        first_down = next(i for i, row in enumerate(MOBILENET_V2_SETTINGS) if row[3] == 2)
        for row, (t, c, n, s) in enumerate(MOBILENET_V2_SETTINGS):
            out_chs = make_divisible(c * width_mult)
            if small and row == first_down:
                s = 1
            for i in range(n):
                blocks.append(InvertedResidual(in_chs, out_chs, s if i == 0 else 1, t))
                in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.num_features = make_divisible(MOBILENET_V2_LAST * max(1.0, width_mult))
        self.conv_head = ConvNormAct(in_chs, self.num_features, 1, act_layer=nn.ReLU6)
        self.fc = Classifier(self.num_features, num_classes, drop_rate, pool="avg", init=_init_weights)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))


def _from_timm_v1(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # timm groups the 13 separable layers into stages (blocks.<stage>.<i>); ours are one flat list.
    rules = [(r"^conv_stem\.", "stem.conv."), (r"^bn1\.", "stem.bn."), (r"^classifier\.", "fc.")]
    flat = 0
    for stage, repeats in enumerate((1, 2, 2, 6, 2)):
        for i in range(repeats):
            prefix = rf"^blocks\.{stage}\.{i}\."
            rules += [
                (prefix + r"conv_dw\.", f"blocks.{flat}.dw.conv."),
                (prefix + r"bn1\.", f"blocks.{flat}.dw.bn."),
                (prefix + r"conv_pw\.", f"blocks.{flat}.pw.conv."),
                (prefix + r"bn2\.", f"blocks.{flat}.pw.bn."),
            ]
            flat += 1
    return rename_keys(state, rules)


def _from_torchvision_v2(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # torchvision: features.0 stem, features.1..17 blocks (conv.<j> numbered through expand, depthwise,
    # projection conv, projection BN), features.18 head conv, classifier.1 the linear layer.
    last = len(model.blocks) + 1
    rules = [
        (r"^features\.0\.0\.", "stem.conv."),
        (r"^features\.0\.1\.", "stem.bn."),
        (rf"^features\.{last}\.0\.", "conv_head.conv."),
        (rf"^features\.{last}\.1\.", "conv_head.bn."),
        (r"^classifier\.1\.", "fc."),
    ]
    for i, block in enumerate(model.blocks):
        src = rf"^features\.{i + 1}\.conv\."
        names = ["depthwise"] if block.expand is None else ["expand", "depthwise"]
        for j, name in enumerate(names):
            rules.append((src + rf"{j}\.0\.", f"blocks.{i}.{name}.conv."))
            rules.append((src + rf"{j}\.1\.", f"blocks.{i}.{name}.bn."))
        j = len(names)
        rules.append((src + rf"{j}\.", f"blocks.{i}.project.conv."))
        rules.append((src + rf"{j + 1}\.", f"blocks.{i}.project.bn."))
    return rename_keys(state, rules)


def _from_timm_v2(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # timm: blocks.<row of Table 2>.<repeat>; its t = 1 block is a depthwise-separable one (conv_dw, conv_pw).
    rules = [
        (r"^conv_stem\.", "stem.conv."),
        (r"^bn1\.", "stem.bn."),
        (r"^conv_head\.", "conv_head.conv."),
        (r"^bn2\.", "conv_head.bn."),
        (r"^classifier\.", "fc."),
    ]
    flat = 0
    for row, (t, _, n, _) in enumerate(MOBILENET_V2_SETTINGS):
        if t == 1:
            parts = [("conv_dw", "bn1", "depthwise"), ("conv_pw", "bn2", "project")]
        else:
            parts = [
                ("conv_pw", "bn1", "expand"),
                ("conv_dw", "bn2", "depthwise"),
                ("conv_pwl", "bn3", "project"),
            ]
        for i in range(n):
            for conv, bn, name in parts:
                rules.append((rf"^blocks\.{row}\.{i}\.{conv}\.", f"blocks.{flat}.{name}.conv."))
                rules.append((rf"^blocks\.{row}\.{i}\.{bn}\.", f"blocks.{flat}.{name}.bn."))
            flat += 1
    return rename_keys(state, rules)


def _timm_v2(name: str) -> dict[str, PretrainedSource]:
    return {"timm": PretrainedSource("timm", name, _from_timm_v2)}


_V1_TIMM = {"timm": PretrainedSource("timm", "mobilenetv1_100", _from_timm_v1, kwargs={"relu6": True})}
_V2 = {
    "torchvision": PretrainedSource("torchvision", "mobilenet_v2", _from_torchvision_v2),
    **_timm_v2("mobilenetv2_100"),
}


@register_model(
    paper=MOBILENET_V1, family="mobilenet", min_img_size=8, aliases=("mobilenetv1",), pretrained=_V1_TIMM
)
def mobilenet_v1(**kwargs) -> MobileNetV1:
    return MobileNetV1(1.0, **kwargs)


@register_model(paper=MOBILENET_V1, family="mobilenet", min_img_size=8)
def mobilenet_v1_075(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.75, **kwargs)


@register_model(paper=MOBILENET_V1, family="mobilenet", min_img_size=8)
def mobilenet_v1_050(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.5, **kwargs)


@register_model(paper=MOBILENET_V1, family="mobilenet", min_img_size=8)
def mobilenet_v1_025(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.25, **kwargs)


@register_model(
    paper=MOBILENET_V2, family="mobilenet", min_img_size=8, aliases=("mobilenetv2",), pretrained=_V2
)
def mobilenet_v2(**kwargs) -> MobileNetV2:
    return MobileNetV2(1.0, **kwargs)


@register_model(
    paper=MOBILENET_V2, family="mobilenet", min_img_size=8, pretrained=_timm_v2("mobilenetv2_050")
)
def mobilenet_v2_050(**kwargs) -> MobileNetV2:
    return MobileNetV2(0.5, **kwargs)


@register_model(paper=MOBILENET_V2, family="mobilenet", min_img_size=8)
def mobilenet_v2_075(**kwargs) -> MobileNetV2:
    return MobileNetV2(0.75, **kwargs)


@register_model(
    paper=MOBILENET_V2, family="mobilenet", min_img_size=8, pretrained=_timm_v2("mobilenetv2_140")
)
def mobilenet_v2_140(**kwargs) -> MobileNetV2:
    return MobileNetV2(1.4, **kwargs)
