"""ResNet, the CIFAR ResNets, ResNeXt and SE-ResNet / SE-ResNeXt.

Papers:
- "Deep Residual Learning for Image Recognition", K. He, X. Zhang, S. Ren, J. Sun, CVPR 2016.
  https://arxiv.org/abs/1512.03385
- "Aggregated Residual Transformations for Deep Neural Networks", S. Xie, R. Girshick, P. Dollar, Z. Tu,
  K. He, CVPR 2017. https://arxiv.org/abs/1611.05431
- "Squeeze-and-Excitation Networks", J. Hu, L. Shen, S. Albanie, G. Sun, E. Wu, CVPR 2018 / TPAMI 2019.
  https://arxiv.org/abs/1709.01507

Key ideas. ResNet: let each stack of layers learn a residual F(x) and add the input back, y = F(x) + x
(Fig. 2), so that very deep networks are as easy to optimize as shallow ones. ResNeXt: make the residual
branch an aggregation of C parallel paths of the same topology (the "cardinality"), implemented as a grouped
3x3 convolution in the bottleneck (Fig. 3c). SE: recalibrate the channels of the residual branch with a
gate computed from their global average (squeeze -> FC C/16 -> ReLU -> FC C -> sigmoid -> excite), placed on
the residual branch before the addition (Fig. 3 of the SE paper).

ImageNet ResNets (ResNet Table 1), 224 px:

    conv1 7x7/2, 64 -> 3x3 max-pool/2 -> conv2_x (64) -> conv3_x (128, /2) -> conv4_x (256, /2)
    -> conv5_x (512, /2) -> global average pool -> 1000-d FC

    layers      block                               blocks per stage    params        GMACs
    18          [3x3, w; 3x3, w]                    2, 2, 2, 2          11,689,512    1.814
    34          [3x3, w; 3x3, w]                    3, 4, 6, 3          21,797,672    3.664
    50          [1x1, w; 3x3, w; 1x1, 4w]           3, 4, 6, 3          25,557,032    3.858 (v1.5: 4.089)
    101         [1x1, w; 3x3, w; 1x1, 4w]           3, 4, 23, 3         44,549,160    7.570 (v1.5: 7.801)
    152         [1x1, w; 3x3, w; 1x1, 4w]           3, 8, 36, 3         60,192,808    11.282 (v1.5: 11.514)

with w = 64, 128, 256, 512 in conv2_x .. conv5_x (the paper's "FLOPs", multiply-adds: 1.8, 3.6, 3.8, 7.6,
11.3 x 10^9). Shortcuts are identity, and projections (1x1 conv + BN, option B of section 3.3) where the
shape changes. BN after every convolution, before the ReLU (section 3.4).
In the paper's networks (and its Caffe models) a bottleneck downsamples with the stride of its first 1x1
convolution ("v1", the default here); ``stride_in_3x3=True`` moves the stride to the 3x3 convolution
("v1.5", torchvision's ResNet-50/101/152, and the ResNeXt/fb.resnet.torch form): same parameters, more MACs.

CIFAR ResNets (ResNet section 4.2), 32 px: a 3x3 conv with 16 filters, then three stages of n basic blocks
with 16, 32, 64 filters on 32x32, 16x16, 8x8 maps (the first conv of stages 2 and 3 has stride 2), global
average pool, FC: 6n + 2 weighted layers. Shortcuts are all identity (option A): where the number of channels
doubles, the input is subsampled by the stride and zero channels are appended, so they have no parameters.

    name        n     params (10 classes)   GMACs     paper
    resnet20    3     269,722               0.0406    0.27M
    resnet32    5     464,154               0.0689    0.46M
    resnet44    7     658,586               0.0972    0.66M
    resnet56    9     853,018               0.1255    0.85M
    resnet110   18    1,727,962             0.2529    1.7M

ResNeXt-50 (32x4d) (ResNeXt Table 1): the ResNet-50 layout with [1x1, 128; 3x3, 128, C=32; 1x1, 256] in
conv2 (the group widths double at each stage, as do the outputs), 25,028,904 params, 4.230 GMACs (paper:
25.0M, 4.2e9 FLOPs). Downsampling is "done by stride-2 convolutions in the 3x3 layer of the first block in
each stage" (ResNeXt section 5.1; its fb.resnet.torch code), so for ResNeXt ``stride_in_3x3=True`` is the
default and equals torchvision's ``resnext50_32x4d``. ResNeXt-101 (32x8d), 88,791,336 params, 16.414 GMACs,
is not in the paper (which reports 32x4d and 64x4d): it is torchvision's model, built by the paper's
template rule.

CIFAR ResNeXt-29 (ResNeXt section 5.3, and ``models/resnext.lua`` of facebookresearch/ResNeXt): a 3x3 conv
with 64 filters, then three stages of three bottleneck blocks whose outputs are 256, 512, 1024 (stride 2 in
the 3x3 of the first block of stages 2 and 3), global average pool, FC. "8x64d" is cardinality 8 with 64
channels per group in the first stage (group width 512, then 1024, 2048). Shortcuts are projections where
the shape changes (the code's default option B).

    name               params (10 classes)   GMACs    paper (CIFAR-10)
    resnext29_8x64d    34,426,698            5.387    34.4M
    resnext29_16x64d   68,155,210            10.689   68.1M (68.16M, truncated)

SE-ResNet / SE-ResNeXt (SE paper Table 1): an SE block (``papernets.layers.SqueezeExcite``, reduction r = 16,
rd = channels // 16) on the residual branch of every block, after its last BN and before the addition.
SE-ResNet-50 has 28,088,024 params and 3.861 GMACs (paper: 3.87 GFLOPs, i.e. multiply-adds); SE-ResNeXt-50
(32x4d) 27,559,896 and 4.233 (paper: 4.25). SE-ResNet-18/34 (11,778,592 and 21,958,868 params) follow the
same rule. As in the SE paper's Caffe models, SE-ResNet bottlenecks keep the stride in the 1x1 conv (v1) and
SE-ResNeXt bottlenecks in the grouped 3x3.

Deviations from the papers, and differences to torchvision and timm:
- Stem max-pool: 3x3/2 with padding 1 (torchvision, timm). The papers' Caffe models pool without padding and
  round up (ceil mode); the map sizes are the same (56x56 at 224 px), the windows are shifted by one pixel.
- The SE FCs have biases, as in the SE paper's Caffe models and timm (the paper's Eq. 3 omits them); they are
  1x1 convolutions.
- torchvision's ResNet-50/101/152 and timm's SE-ResNet-50 are v1.5 (``stride_in_3x3=True``); ours default to
  the papers' v1. The v1 and v1.5 parameter counts are equal.
- timm's ``seresnet18/34`` round the SE width up to a multiple of 8 (8 instead of 64 // 16 = 4 in the first
  stage); timm's ``legacy_seresnet18/34`` put a ReLU before the SE block of the basic block and pool in ceil
  mode. Neither equals ours, so SE-ResNet-18/34 import no weights (timm has none for its own form either).
  timm's ``legacy_seresnet50`` is the paper's v1 but pools in ceil mode; its ``seresnet50`` (v1.5) is used.
- ``senet`` (the classic repo's SENet, a small SE-ResNet) is an alias of ``seresnet18``.
- Stochastic depth (``drop_path_rate``, Huang et al. 2016, linear decay over the blocks) and
  ``zero_init_last`` (zero gamma of the last BN of every block, Goyal et al. 2017) are options (off).
- Convolutions have no bias (BN follows); weights use He initialization (fan-out), as in the papers' code.

Small images (``img_size`` below 64, or ``small_input=True``): the ImageNet networks (ResNet, ResNeXt,
SE-ResNet) replace the 7x7/2 conv and the max-pool by one 3x3 stride-1 convolution, the usual CIFAR form of
the ImageNet ResNets, so a 28 or 32 px input keeps a 4x4 map at the last stage. The CIFAR networks (resnet20
.. resnet110, resnext29_*) are the papers' own CIFAR architectures at every input size: ``small_input`` and
``img_size`` do not change them (a 224 px input gives a 56x56 last map). Minimum image size: the smallest
input whose last map is 1x1 with every stride acting on at least 2x2 pixels, 8 px for the ImageNet networks
(small form: 8, 4, 2, 1) and 4 px for the CIFAR networks (4, 2, 1); smaller inputs run, on 1x1 maps.

Module names follow torchvision (``conv1``, ``bn1``, ``layer1``.., ``fc``, ``downsample``) and timm
(``se.fc1``, ``se.fc2``), so their weights load without renaming.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, DropPath, SqueezeExcite, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "ResNet", "CifarResNet", "se_layer"]

RESNET = Paper(
    "Deep Residual Learning for Image Recognition",
    "He, Zhang, Ren, Sun",
    2015,
    "https://arxiv.org/abs/1512.03385",
)
RESNEXT = Paper(
    "Aggregated Residual Transformations for Deep Neural Networks",
    "Xie, Girshick, Dollar, Tu, He",
    2016,
    "https://arxiv.org/abs/1611.05431",
)
SENET = Paper(
    "Squeeze-and-Excitation Networks",
    "Hu, Shen, Albanie, Sun, Wu",
    2017,
    "https://arxiv.org/abs/1709.01507",
)

AttnLayer = Callable[[int], nn.Module]


def se_layer(channels: int) -> SqueezeExcite:
    """The SE block of SE-ResNet/SE-ResNeXt: reduction ratio r = 16, as in all the SE paper's models."""
    return SqueezeExcite(channels, channels // 16)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; ReLU after the first and after the addition (ResNet Fig. 2, left)."""

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        drop_path_rate: float = 0.0,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = attn_layer(planes) if attn_layer is not None else None
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        out = self.drop_path(out)
        out += shortcut  # in place, as torchvision: one tensor fewer per block
        return self.act2(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand x4, BN after each, ReLU but after the last
    (ResNet Fig. 5, right; ResNeXt Fig. 3c). The group width is ``planes * base_width / 64 * groups``: ResNet
    has groups 1 and base width 64 (width = planes); ResNeXt-50 32x4d has 32 groups of 4 in conv2_x."""

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        drop_path_rate: float = 0.0,
        attn_layer: AttnLayer | None = None,
        groups: int = 1,
        base_width: int = 64,
        stride_in_3x3: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_chs = planes * self.expansion
        stride_1x1, stride_3x3 = (1, stride) if stride_in_3x3 else (stride, 1)
        self.conv1 = nn.Conv2d(in_chs, width, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride_3x3, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.se = attn_layer(out_chs) if attn_layer is not None else None
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        out = self.drop_path(out)
        out += shortcut  # in place, as torchvision: one tensor fewer per block
        return self.act3(out)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut (ResNet section 3.3): the identity, subsampled by the stride, with zero channels
    appended for the increased dimension (as fb.resnet.torch: 1x1 stride-s sampling, then concat zeros).
    It has no parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.pad, self.stride = out_chs - in_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.pad))


def _projection(in_chs: int, out_chs: int, stride: int) -> nn.Sequential:
    """Option B shortcut: 1x1 convolution (with the block's stride) + BN."""
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))


class _ResNetBase(ClassifierModel):
    """Stages built from a block type and a stage table, the stem, head and initialization they share.

    Subclasses build ``conv1``, ``bn1``, ``act1``, ``maxpool`` and then call ``_build``.
    """

    def _build(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        in_chs: int,
        shortcut: str,
        num_classes: int,
        drop_rate: float,
        drop_path_rate: float,
        block_args: dict,
    ) -> None:
        total, index = sum(layers), 0
        for stage, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                out_chs = planes * block.expansion
                downsample = None
                if stride != 1 or in_chs != out_chs:
                    make = ZeroPadShortcut if shortcut == "A" else _projection
                    downsample = make(in_chs, out_chs, stride)
                dpr = drop_path_rate * index / max(total - 1, 1)
                blocks.append(block(in_chs, planes, stride, downsample, dpr, **block_args))
                in_chs = out_chs
                index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg")

    def _init_weights(self, zero_init_last: bool) -> None:
        # He et al. 2015 ("Delving deep into rectifiers") initialization, section 3.4 of the ResNet paper.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return x


class ResNet(_ResNetBase):
    """An ImageNet ResNet / ResNeXt / SE-ResNet from a block type and the blocks per stage (ResNet Table 1).

    ``groups`` and ``base_width`` shape the bottleneck's grouped 3x3 (ResNeXt), ``stride_in_3x3`` moves a
    bottleneck's downsampling stride from its first 1x1 to its 3x3 conv (v1.5; basic blocks always stride in
    their first 3x3), ``attn_layer`` builds a channel-attention module for the residual branch (SE).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
        groups: int = 1,
        base_width: int = 64,
        stride_in_3x3: bool = False,
        attn_layer: AttnLayer | None = None,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        if small:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        block_args: dict = {"attn_layer": attn_layer}
        if block is Bottleneck:
            block_args.update(groups=groups, base_width=base_width, stride_in_3x3=stride_in_3x3)
        elif groups != 1 or base_width != 64:
            raise ValueError("basic blocks have no grouped convolution: groups must be 1 and base_width 64")
        widths = (64, 128, 256, 512)
        self._build(block, layers, widths, 64, "B", num_classes, drop_rate, drop_path_rate, block_args)
        self._init_weights(zero_init_last)


class CifarResNet(_ResNetBase):
    """The CIFAR networks of the ResNet paper (section 4.2) and the ResNeXt paper (section 5.3).

    A 3x3 stride-1 stem with ``widths[0]`` filters, no max-pool, then one stage per entry of ``widths`` and
    ``layers``; ``shortcut`` is "A" (zero-padded identity, ResNet) or "B" (projection, ResNeXt). The network
    is the same at every input size: ``img_size`` and ``small_input`` are accepted for the common interface.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, ...],
        widths: tuple[int, ...],
        shortcut: str,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 32,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
        groups: int = 1,
        base_width: int = 64,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.small_input = True
        stem = widths[0]
        self.conv1 = nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        block_args: dict = {}
        if block is Bottleneck:
            block_args.update(groups=groups, base_width=base_width, stride_in_3x3=True)
        elif groups != 1 or base_width != 64:
            raise ValueError("basic blocks have no grouped convolution: groups must be 1 and base_width 64")
        self._build(block, layers, widths, stem, shortcut, num_classes, drop_rate, drop_path_rate, block_args)
        self._init_weights(zero_init_last)


def _cifar_resnet(depth: int, **kwargs) -> CifarResNet:
    """6n + 2 layers: three stages of n basic blocks, 16-32-64 filters, option A shortcuts."""
    n = (depth - 2) // 6
    return CifarResNet(BasicBlock, (n, n, n), (16, 32, 64), "A", **kwargs)


def _resnext29(cardinality: int, **kwargs) -> CifarResNet:
    """29 layers: three stages of three bottlenecks, outputs 256-512-1024, 64 channels per group at first."""
    widths = (64, 128, 256)
    return CifarResNet(Bottleneck, (3, 3, 3), widths, "B", groups=cardinality, base_width=64, **kwargs)


def _same_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # torchvision's and timm's ResNets use our parameter names; only the ReLU modules differ (no weights).
    return rename_keys(state, [])


def _tv(name: str, **kwargs) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _same_keys, kwargs=kwargs)}


def _timm(name: str, **kwargs) -> dict[str, PretrainedSource]:
    return {"timm": PretrainedSource("timm", name, _same_keys, kwargs=kwargs)}


_V15 = {"stride_in_3x3": True}


# ResNet (ImageNet, Table 1). Bottleneck networks are the paper's v1; torchvision's weights are v1.5.
@register_model(
    paper=RESNET, family="resnet", min_img_size=8, aliases=("resnet",), pretrained=_tv("resnet18")
)
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(paper=RESNET, family="resnet", min_img_size=8, pretrained=_tv("resnet34"))
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model(paper=RESNET, family="resnet", min_img_size=8, pretrained=_tv("resnet50", **_V15))
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model(paper=RESNET, family="resnet", min_img_size=8, pretrained=_tv("resnet101", **_V15))
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model(paper=RESNET, family="resnet", min_img_size=8, pretrained=_tv("resnet152", **_V15))
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


# ResNet (CIFAR, section 4.2): 6n + 2 layers.
@register_model(paper=RESNET, family="resnet", default_img_size=32, min_img_size=4)
def resnet20(**kwargs) -> CifarResNet:
    return _cifar_resnet(20, **kwargs)


@register_model(paper=RESNET, family="resnet", default_img_size=32, min_img_size=4)
def resnet32(**kwargs) -> CifarResNet:
    return _cifar_resnet(32, **kwargs)


@register_model(paper=RESNET, family="resnet", default_img_size=32, min_img_size=4)
def resnet44(**kwargs) -> CifarResNet:
    return _cifar_resnet(44, **kwargs)


@register_model(paper=RESNET, family="resnet", default_img_size=32, min_img_size=4)
def resnet56(**kwargs) -> CifarResNet:
    return _cifar_resnet(56, **kwargs)


@register_model(paper=RESNET, family="resnet", default_img_size=32, min_img_size=4)
def resnet110(**kwargs) -> CifarResNet:
    return _cifar_resnet(110, **kwargs)


# ResNeXt (ImageNet, Table 1): stride in the grouped 3x3, as in the paper's code and torchvision.
@register_model(
    paper=RESNEXT, family="resnext", min_img_size=8, aliases=("resnext",), pretrained=_tv("resnext50_32x4d")
)
def resnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4, **(_V15 | kwargs))


@register_model(paper=RESNEXT, family="resnext", min_img_size=8, pretrained=_tv("resnext101_32x8d"))
def resnext101_32x8d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), groups=32, base_width=8, **(_V15 | kwargs))


# ResNeXt (CIFAR, section 5.3).
@register_model(paper=RESNEXT, family="resnext", default_img_size=32, min_img_size=4)
def resnext29_8x64d(**kwargs) -> CifarResNet:
    return _resnext29(8, **kwargs)


@register_model(paper=RESNEXT, family="resnext", default_img_size=32, min_img_size=4)
def resnext29_16x64d(**kwargs) -> CifarResNet:
    return _resnext29(16, **kwargs)


# SE-ResNet / SE-ResNeXt: SE (r = 16) on every residual branch. timm's weights are v1.5.
@register_model(paper=SENET, family="senet", min_img_size=8, aliases=("senet",))
def seresnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), attn_layer=se_layer, **kwargs)


@register_model(paper=SENET, family="senet", min_img_size=8)
def seresnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), attn_layer=se_layer, **kwargs)


@register_model(paper=SENET, family="senet", min_img_size=8, pretrained=_timm("seresnet50", **_V15))
def seresnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), attn_layer=se_layer, **kwargs)


@register_model(paper=SENET, family="senet", min_img_size=8, pretrained=_timm("seresnext50_32x4d"))
def seresnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, base_width=4, attn_layer=se_layer, **(_V15 | kwargs))
