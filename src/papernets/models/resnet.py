"""ResNet.

Paper: "Deep Residual Learning for Image Recognition", K. He, X. Zhang, S. Ren, J. Sun, CVPR 2016.
https://arxiv.org/abs/1512.03385

Key idea: let each stack of layers learn a residual F(x) and add the input back, y = F(x) + x (Fig. 2), so that
very deep networks are as easy to optimize as shallow ones. ImageNet networks (Table 1):

    conv1 7x7/2, 64 -> 3x3 max-pool/2 -> conv2_x (64) -> conv3_x (128, /2) -> conv4_x (256, /2)
    -> conv5_x (512, /2) -> global average pool -> 1000-d FC

ResNet-18/34 use basic blocks (two 3x3 convolutions); shortcuts are identity, and projection (1x1 conv + BN,
option B of section 3.3) where the shape changes. BN after every convolution, before the ReLU (section 3.4).

Small images (``img_size`` below 64, or ``small_input=True``): the stem is a single 3x3 stride-1 convolution
without max-pool, the usual CIFAR form of the ImageNet ResNets, so a 28 or 32 px input keeps a 4x4 map at the
last stage. (The paper's own CIFAR networks, 6n+2 layers with 16-32-64 channels, are ``resnet20`` etc.)

Module names follow torchvision (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``), so torchvision's weights
load without renaming. Parameter counts at 224 px, 1000 classes: ResNet-18 11,689,512; ResNet-34 21,797,672.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from papernets.layers import DropPath
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["BasicBlock", "ResNet"]

RESNET = Paper(
    "Deep Residual Learning for Image Recognition",
    "He, Zhang, Ren, Sun",
    2015,
    "https://arxiv.org/abs/1512.03385",
)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN; ReLU after the first and after the addition (Fig. 2, left)."""

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        drop_path_rate: float = 0.0,
        attn_layer: Callable[[int], nn.Module] | None = None,
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
        return self.act2(self.drop_path(out) + shortcut)


class ResNet(nn.Module):
    """A ResNet from a block type and the number of blocks per stage (the rows of Table 1)."""

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
        zero_init_last: bool = False,
        block_kwargs: dict | None = None,
        widths: tuple[int, ...] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        small = img_size < 64 if small_input is None else small_input
        self.small_input = small
        stem = widths[0]
        if small:
            self.conv1 = nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, stem, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.ReLU(inplace=True)

        total = sum(layers)
        index = 0
        in_chs = stem
        for stage, (planes, depth) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                out_chs = planes * block.expansion
                downsample = None
                if stride != 1 or in_chs != out_chs:
                    downsample = nn.Sequential(
                        nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs)
                    )
                dpr = drop_path_rate * index / max(total - 1, 1)
                blocks.append(block(in_chs, planes, stride, downsample, dpr, **(block_kwargs or {})))
                in_chs = out_chs
                index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.drop_rate = drop_rate
        self.fc = nn.Linear(in_chs, num_classes)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        # He et al. 2015 ("Delving deep into rectifiers") initialization, section 3.4 of the paper.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # Same module names; torchvision calls the shortcut "downsample" too. Only the ReLUs differ (no weights).
    return rename_keys(state, [])


def _tv(name: str) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _from_torchvision)}


@register_model(paper=RESNET, family="resnet", min_img_size=8, aliases=("resnet",), pretrained=_tv("resnet18"))
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model(paper=RESNET, family="resnet", min_img_size=8, pretrained=_tv("resnet34"))
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)
