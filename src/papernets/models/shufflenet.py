"""ShuffleNet (v1) and ShuffleNet V2.

ShuffleNet v1. Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
X. Zhang, X. Zhou, M. Lin, J. Sun, CVPR 2018. https://arxiv.org/abs/1707.01083

Key idea: make the 1x1 convolutions, which dominate a bottleneck's cost, group convolutions (g groups), and
shuffle the channels between them (reshape to (g, n), transpose, flatten; Fig. 1) so information still flows
across groups. The ShuffleNet unit (Fig. 2b): 1x1 GConv -> BN -> ReLU -> channel shuffle -> 3x3 depthwise
conv -> BN -> 1x1 GConv -> BN, added to the input, then ReLU. The downsampling unit (Fig. 2c) uses stride 2 in
the depthwise conv and concatenates the branch with a 3x3/2 average pool of the input, then ReLU. The
bottleneck has a quarter of the unit's output channels. Table 1 (ShuffleNet 1x, output channels per g):

    layer      out size  kernel  stride  repeat   g=1   g=2   g=3   g=4   g=8
    conv1      112       3x3     2       1        24    24    24    24    24
    maxpool    56        3x3     2
    stage2     28                2 / 1   1 / 3    144   200   240   272   384
    stage3     14                2 / 1   1 / 7    288   400   480   544   768
    stage4     7                 2 / 1   1 / 3    576   800   960   1088  1536
    global pool 7x7, FC 1000     complexity (MFLOPs): 143   140   137   133   137

"ShuffleNet s x" scales the number of filters by s (section 3.3). The first pointwise layer of stage 2 is not
a group convolution: its input has only 24 channels (section 3.3).

Parameters at 224 px, 1000 classes, 1x (BN's gamma and beta included): g=1 1,531,936; g=2 1,733,848;
g=3 1,865,728 (the paper's 1.9M); g=4 1,968,344; g=8 2,434,768. MACs (the paper's "FLOPs" are multiply-adds):
143.1M / 140.8M / 137.5M / 134.3M / 138.4M (Table 1: 143 / 140 / 137 / 133 / 137). g=3 at 0.5x / 1.5x / 2x:
718,324 / 3,442,168 / 5,450,776 parameters, 37.6M / 292.4M / 524.0M MACs (the paper: 38M / 292M / 524M).
These MACs are exactly those of the convolutions and the FC layer of Table 1 (the tests derive them by hand).
The paper's figures agree within 1% except two: 0.5x, whose 37.6M the paper rounds to 38M (1.1%), and g=4,
whose 133M is 1.0% below the count of its own channel table, which rounding does not explain (the paper
gives no counting rules, and the authors' released models are g=3 and g=8 only). The tests check these two
against the exact count of Table 1 instead.

Deviations and notes (v1):
- Channels at other scales. Stages: s times Table 1, rounded to a multiple of 4g so that the bottleneck (a
  quarter) splits into g groups; this changes nothing for g=3 and g=8, whose multiples of s are exact. conv1:
  12 / 24 / 24 / 48 filters at 0.5x / 1x / 1.5x / 2x, rounded up to a multiple of g (so that stage 2's
  downsampling branch, stage width minus conv1 width, splits into g groups: 16 for g=8 at 0.5x). 1.5x keeps
  24 rather than 36: the paper's own 292 MFLOPs for 1.5x (g=3) match 24 (36 gives 299.6M), and the
  authors' released code (megvii-model/ShuffleNet-Series) uses these conv1 widths.
- That released code also has no bias in the classifier (here one) and permutes channels with the inverse of
  the paper's shuffle; here the shuffle is the paper's reshape (g, n) -> transpose -> flatten.
- The average pool of the downsampling shortcut counts the zero padding (``count_include_pad``), as the
  released code does. No dropout (the paper has none); ``drop_rate`` defaults to 0.
- Initialization: He normal (fan-out) for convolutions, N(0, 0.01) for the classifier.
- Neither torchvision nor timm has ShuffleNet v1, so there are no weights to import.

ShuffleNet V2. Paper: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", N. Ma,
X. Zhang, H.-T. Zheng, J. Sun, ECCV 2018. https://arxiv.org/abs/1807.11164

Key idea: FLOPs are not speed; four guidelines (equal channel widths minimize memory access, few groups, few
fragments, few element-wise ops) lead to the channel split (Fig. 3c): half the channels pass through
untouched, the other half go through 1x1 conv -> BN -> ReLU -> 3x3 depthwise -> BN -> 1x1 conv -> BN -> ReLU
with equal widths and no group convolution; the halves are concatenated and channel-shuffled. The downsampling
unit (Fig. 3d) drops the split, gives both branches a stride-2 depthwise conv and so doubles the width.
Table 5:

    layer      out size  kernel  stride  repeat   0.5x  1x    1.5x  2x
    conv1      112       3x3     2       1        24    24    24    24
    maxpool    56        3x3     2
    stage2     28                2 / 1   1 / 3    48    116   176   244
    stage3     14                2 / 1   1 / 7    96    232   352   488
    stage4     7                 2 / 1   1 / 3    192   464   704   976
    conv5      7         1x1     1       1        1024  1024  1024  2048
    global pool 7x7, FC 1000     FLOPs 41M / 146M / 299M / 591M, weights 1.4M / 2.3M / 3.5M / 7.4M

Parameters at 224 px, 1000 classes: 1,366,792 / 2,278,604 / 3,503,624 / 7,393,996; MACs 40.5M / 144.9M /
295.8M / 583.3M (exactly those of torchvision's same networks). Table 5's FLOPs are 1.3% / 0.8% / 1.1% / 1.3%
higher. They count the authors' released network (megvii-model/ShuffleNet-Series), whose first unit of stage
2 splits its output as 24 + (c - 24) channels (the shortcut branch keeps its 24 input channels) rather than
c/2 + c/2 as torchvision and this implementation do; the paper leaves that split open (its downsampling unit
doubles the width, which stage 2's first unit, 24 -> c, does not). That network has 40.5M / 145.8M / 299.0M /
590.8M MACs, which Table 5 rounds up to whole millions; at 0.5x (48 - 24 = 48 / 2) the two splits coincide and
the 1.3% is the rounding. The tests check the exact count and torchvision's instead of Table 5 where the two
differ by more than 1%.

Deviations and notes (V2): none in the architecture; identical to torchvision's ``shufflenet_v2_x*`` (only
module names differ), whose weights load with identical logits. The concatenation and the 2-group shuffle are
fused into one interleaving copy, which gives the same result. Initialization: He normal (fan-out) for
convolutions, N(0, 0.01) for the classifier (torchvision keeps PyTorch's defaults). No dropout.

Small images (``img_size`` below 64, or ``small_input=True``), both versions: conv1 has stride 1 and there is
no max-pool. The total stride falls from 32 to 8: 32 px inputs end in a 4x4 map (28 px: 4x4).
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, make_divisible, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["ShuffleNetV1", "ShuffleNetV2", "ShuffleUnit", "ShuffleV2Block", "channel_shuffle"]

SHUFFLENET_V1 = Paper(
    "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    "Zhang, Zhou, Lin, Sun",
    2017,
    "https://arxiv.org/abs/1707.01083",
)
SHUFFLENET_V2 = Paper(
    "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    "Ma, Zhang, Zheng, Sun",
    2018,
    "https://arxiv.org/abs/1807.11164",
)

# Table 1 of ShuffleNet v1: output channels of stages 2-4 for each number of groups g (ShuffleNet 1x), and
# conv1's filters for each scale factor s (24 at 1x; see the module docstring for 1.5x).
SHUFFLENET_V1_STEM: dict[float, int] = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
SHUFFLENET_V1_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
# Both tables: units per stage, the first of which downsamples (1 + 3, 1 + 7, 1 + 3).
SHUFFLENET_REPEATS = (4, 8, 4)

# Table 5 of ShuffleNet V2: output channels of conv1, stages 2-4 and conv5 for each width.
SHUFFLENET_V2_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Fig. 1 of ShuffleNet: reshape the channels to (groups, n), transpose to (n, groups), flatten."""
    return torch.channel_shuffle(x, groups)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class ShuffleUnit(nn.Module):
    """Fig. 2 (b) (stride 1: add) and (c) (stride 2: concatenate with a 3x3/2 average pool of the input)."""

    def __init__(self, in_chs: int, out_chs: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        mid = out_chs // 4
        branch_out = out_chs - in_chs if stride == 2 else out_chs
        self.groups = groups
        self.gconv1 = ConvNormAct(in_chs, mid, 1, groups=groups if group_first else 1)
        self.dwconv = ConvNormAct(mid, mid, 3, stride, groups=mid, act_layer=None)
        self.gconv2 = ConvNormAct(mid, branch_out, 1, groups=groups, act_layer=None)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gconv1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.gconv2(self.dwconv(out))
        if self.pool is None:
            return self.act(out + x)
        return self.act(torch.cat((self.pool(x), out), 1))


class ShuffleNetV1(ClassifierModel):
    """ShuffleNet v1 from Table 1: ``groups`` in {1, 2, 3, 4, 8}; ``width_mult`` is the scale factor s of
    "ShuffleNet s x", one of 0.5, 1, 1.5, 2."""

    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        if groups not in SHUFFLENET_V1_CHANNELS:
            raise ValueError(f"ShuffleNet v1 has g in {sorted(SHUFFLENET_V1_CHANNELS)}, got groups={groups}")
        if width_mult not in SHUFFLENET_V1_STEM:
            raise ValueError(f"ShuffleNet v1 scales are {sorted(SHUFFLENET_V1_STEM)}, got {width_mult}")
        small = self.small_input = small_form(img_size, small_input)
        stem = -(-SHUFFLENET_V1_STEM[width_mult] // groups) * groups  # rounded up to a multiple of g
        self.conv1 = ConvNormAct(in_chans, stem, 3, 1 if small else 2)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        in_chs = stem
        table = zip(SHUFFLENET_V1_CHANNELS[groups], SHUFFLENET_REPEATS, strict=True)
        for stage, (channels, repeats) in enumerate(table):
            out_chs = make_divisible(channels * width_mult, 4 * groups)
            units = []
            for i in range(repeats):
                group_first = not (stage == 0 and i == 0)
                units.append(ShuffleUnit(in_chs, out_chs, groups, 2 if i == 0 else 1, group_first))
                in_chs = out_chs
            self.add_module(f"stage{stage + 2}", nn.Sequential(*units))
        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg", init=_init_weights)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.stage4(self.stage3(self.stage2(x)))


def _concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``channel_shuffle(cat((a, b), 1), 2)`` in one copy: output channel 2i is a's i, 2i + 1 is b's i.

    ``b`` (a convolution's output) tells the memory format; in channels_last the channels are interleaved
    along the innermost axis so that the result stays channels_last.
    """
    if b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous():
        nhwc = torch.stack((a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)), dim=-1)
        return nhwc.flatten(3).permute(0, 3, 1, 2)
    return torch.stack((a, b), dim=2).flatten(1, 2)


class ShuffleV2Block(nn.Module):
    """ShuffleNet V2, Fig. 3 (c) (stride 1: channel split) and (d) (stride 2: two branches, double width)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        half = out_chs // 2
        if stride == 2:
            self.branch1 = nn.Sequential(
                ConvNormAct(in_chs, in_chs, 3, 2, groups=in_chs, act_layer=None),
                ConvNormAct(in_chs, half, 1),
            )
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            ConvNormAct(in_chs if stride == 2 else half, half, 1),
            ConvNormAct(half, half, 3, stride, groups=half, act_layer=None),
            ConvNormAct(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            return _concat_shuffle(x1, self.branch2(x2))
        return _concat_shuffle(self.branch1(x), self.branch2(x))


class ShuffleNetV2(ClassifierModel):
    """ShuffleNet V2 from Table 5 at width ``width_mult`` in {0.5, 1.0, 1.5, 2.0}."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        if width_mult not in SHUFFLENET_V2_CHANNELS:
            raise ValueError(f"ShuffleNet V2 has widths {sorted(SHUFFLENET_V2_CHANNELS)}, got {width_mult}")
        small = self.small_input = small_form(img_size, small_input)
        stem, *stages, last = SHUFFLENET_V2_CHANNELS[width_mult]
        self.conv1 = ConvNormAct(in_chans, stem, 3, 1 if small else 2)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        in_chs = stem
        for stage, (out_chs, repeats) in enumerate(zip(stages, SHUFFLENET_REPEATS, strict=True)):
            units = []
            for i in range(repeats):
                units.append(ShuffleV2Block(in_chs, out_chs, 2 if i == 0 else 1))
                in_chs = out_chs
            self.add_module(f"stage{stage + 2}", nn.Sequential(*units))
        self.conv5 = ConvNormAct(in_chs, last, 1)
        self.num_features = last
        self.fc = Classifier(last, num_classes, drop_rate, pool="avg", init=_init_weights)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


def _from_torchvision_v2(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # torchvision's branches are flat Sequentials of Conv2d/BatchNorm2d/ReLU; ours group them in ConvNormAct.
    # The lookahead (a parameter name ends the key) keeps a renamed key from matching a later rule.
    end = r"(?=[a-z_]+$)"
    rules = [
        (r"^conv1\.0\.", "conv1.conv."),
        (r"^conv1\.1\.", "conv1.bn."),
        (r"^conv5\.0\.", "conv5.conv."),
        (r"^conv5\.1\.", "conv5.bn."),
    ]
    for branch, layers in (("branch1", ((0, 1), (2, 3))), ("branch2", ((0, 1), (3, 4), (5, 6)))):
        for ours, (conv, bn) in enumerate(layers):
            rules.append((rf"\.{branch}\.{conv}\.{end}", f".{branch}.{ours}.conv."))
            rules.append((rf"\.{branch}\.{bn}\.{end}", f".{branch}.{ours}.bn."))
    return rename_keys(state, rules)


def _tv(name: str) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _from_torchvision_v2)}


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g1(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(1, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g2(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(2, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8, aliases=("shufflenet",))
def shufflenet_v1_g3(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(3, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g4(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(4, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g8(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(8, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g3_x0_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(3, 0.5, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g3_x1_5(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(3, 1.5, **kwargs)


@register_model(paper=SHUFFLENET_V1, family="shufflenet", min_img_size=8)
def shufflenet_v1_g3_x2_0(**kwargs) -> ShuffleNetV1:
    return ShuffleNetV1(3, 2.0, **kwargs)


@register_model(
    paper=SHUFFLENET_V2, family="shufflenet", min_img_size=8, pretrained=_tv("shufflenet_v2_x0_5")
)
def shufflenet_v2_x0_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(0.5, **kwargs)


@register_model(
    paper=SHUFFLENET_V2, family="shufflenet", min_img_size=8, pretrained=_tv("shufflenet_v2_x1_0")
)
def shufflenet_v2_x1_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(1.0, **kwargs)


@register_model(
    paper=SHUFFLENET_V2, family="shufflenet", min_img_size=8, pretrained=_tv("shufflenet_v2_x1_5")
)
def shufflenet_v2_x1_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(1.5, **kwargs)


@register_model(
    paper=SHUFFLENET_V2, family="shufflenet", min_img_size=8, pretrained=_tv("shufflenet_v2_x2_0")
)
def shufflenet_v2_x2_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2(2.0, **kwargs)
