"""Inception-v3.

Paper: "Rethinking the Inception Architecture for Computer Vision", C. Szegedy, V. Vanhoucke, S. Ioffe, J.
Shlens, Z. Wojna, CVPR 2016 (arXiv 2015). https://arxiv.org/abs/1512.00567

Key idea: make Inception cheaper without losing capacity. Factorize convolutions (a 5x5 into two 3x3, an nxn
into 1xn followed by nx1; sections 3.1, 3.2), shrink the grid with parallel stride-2 convolution and pooling
branches instead of a pool before an expansion (section 5, Fig. 10), batch-normalize every convolution, use
one auxiliary classifier as a regularizer (section 4) and train with label smoothing (section 7, a loss, not
part of the model). The network at 299x299 (Table 1, as released by Google):

    stem      conv 3x3/2, 32 -> conv 3x3, 32 -> conv 3x3 pad 1, 64 -> max-pool 3x3/2
              -> conv 1x1, 80 -> conv 3x3, 192 -> max-pool 3x3/2                          299 -> 35x35x192
    Mixed_5b..5d  3 x 35x35 modules (Fig. 5)                                               35x35x288
    Mixed_6a      grid reduction (Fig. 10)                                                 17x17x768
    Mixed_6b..6e  4 x 17x17 modules with 1x7/7x1 factorization (Fig. 6, n = 7)             17x17x768
    (auxiliary classifier on 6e: avg-pool 5x5/3, conv 1x1 128, conv 5x5 768, FC classes)
    Mixed_7a      grid reduction                                                           8x8x1280
    Mixed_7b, 7c  2 x 8x8 modules with expanded filter banks (Fig. 7)                      8x8x2048
    global average pool -> dropout -> linear 1000

Parameter count at 299 px, 1000 classes: 23,834,568 without the auxiliary classifier, 27,161,264 with it
(``aux_logits=True``, the default, as in the paper); 5.713 GMACs at 299 px.

This is the network Google released and torchvision's ``inception_v3`` reproduces, module for module (module
names are theirs, under ``stem`` and ``blocks``). It departs from the paper's text where the paper is
inconsistent with its own released model:
- Table 1's stem lists "conv 3x3/1 80, conv 3x3/2 192, conv 3x3/1 288"; the released model (and its 35x35x192
  output) uses a 1x1 conv with 80 maps, a 3x3 conv with 192 maps and a max-pool.
- The 35x35 modules keep a 5x5 branch (48 -> 64 maps) beside the two-3x3 branch that Fig. 5 draws instead of
  it.
- The paper batch-normalizes the auxiliary classifier's fully connected layer too ("BN-auxiliary", section
  10); the released model does not, and neither does this one.
- BatchNorm eps = 0.001 (TensorFlow's value in the released model).

The paper does not give the auxiliary loss weight or the dropout rate. ``aux_weight=0.4`` and
``drop_rate=0.2`` are those of Google's reference training code (tensorflow/models inception: aux loss weight
0.4, ``dropout_keep_prob=0.8``); torchvision's model defaults to dropout 0.5. Initialization as in Google's
code: truncated normal (at 2 std) with std 0.1, 0.01 for the auxiliary 5x5 convolution and 0.001 for the
auxiliary classifier, zero biases.

In training mode with ``aux_logits`` on, ``forward`` returns ``(logits, [aux_logits])``; in evaluation mode
the logits only. ``aux_logits=False`` builds the network without the auxiliary classifier (and its
``aux_weight`` is then 0).

Deviations for sizes other than 299 px:
- Global average pooling (as in torchvision) so that any size of at least 75 px works.
- The auxiliary classifier pools with the paper's 5x5/3 window where the 17x17 map is at least 17 px wide, and
  otherwise with an adaptive average pool to the 5x5 grid its 5x5 convolution needs.

Small images: the ImageNet form needs 75 px, so here the small-image form is used below 75 px (not below 64 px
as for the other models), or with ``small_input=True``. Its stem has fewer strides: the first convolution has
stride 1, the three unpadded 3x3 stem convolutions pad by 1, and the second max-pool is removed; the layers
and their parameters are unchanged. 32 px reaches the 35x35 modules at 15x15 and ends in a 3x3 map (28 px:
13x13 and 2x2).

Weights from torchvision: their ImageNet weights expect the input transform torchvision switches on with them
(``transform_input=True``: it maps ImageNet-normalized inputs to [-1, 1] per channel). The converter folds
that per-channel affine map into the first convolution (scaled weights) and its batch norm (shifted running
mean); the first convolution is unpadded, so the result is exact and the model takes the usual ImageNet
normalization. Imported weights build the ImageNet form, so they need inputs of at least 75 px.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, small_form
from papernets.layers.weight_init import trunc_normal_
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = [
    "InceptionV3",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionAux",
]

INCEPTION_V3 = Paper(
    "Rethinking the Inception Architecture for Computer Vision",
    "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna",
    2015,
    "https://arxiv.org/abs/1512.00567",
)

IMAGENET_MIN_SIZE = 75


def conv_bn(in_chs: int, out_chs: int, kernel_size: int | tuple[int, int], stride: int = 1, padding=0) -> ConvNormAct:
    """Convolution without bias -> BatchNorm (eps 1e-3) -> ReLU; unpadded unless ``padding`` is given."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, padding, norm_layer=partial(nn.BatchNorm2d, eps=1e-3))


def _tf_init_(m: nn.Conv2d | nn.Linear, std: float = 0.1) -> None:
    """Google's initialization: TensorFlow's ``truncated_normal`` (at 2 std) for the weight, zero bias."""
    trunc_normal_(m.weight, std, -2.0 * std, 2.0 * std)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.avg_pool2d(x, 3, 1, 1)


class InceptionA(nn.Module):
    """35x35 module (Fig. 5, with the released model's extra 5x5 branch)."""

    def __init__(self, in_chs: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(in_chs, 64, 1)
        self.branch5x5_1 = conv_bn(in_chs, 48, 1)
        self.branch5x5_2 = conv_bn(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = conv_bn(in_chs, 64, 1)
        self.branch3x3dbl_2 = conv_bn(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv_bn(96, 96, 3, padding=1)
        self.branch_pool = conv_bn(in_chs, pool_features, 1)
        self.out_chs = 64 + 64 + 96 + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Fig. 10): stride-2 convolutions beside a stride-2 max-pool."""

    def __init__(self, in_chs: int) -> None:
        super().__init__()
        self.branch3x3 = conv_bn(in_chs, 384, 3, stride=2)
        self.branch3x3dbl_1 = conv_bn(in_chs, 64, 1)
        self.branch3x3dbl_2 = conv_bn(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = conv_bn(96, 96, 3, stride=2)
        self.out_chs = 384 + 96 + in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, nn.functional.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    """17x17 module with 7x7 convolutions factorized into 1x7 and 7x1 (Fig. 6, n = 7)."""

    def __init__(self, in_chs: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = conv_bn(in_chs, 192, 1)
        self.branch7x7_1 = conv_bn(in_chs, c7, 1)
        self.branch7x7_2 = conv_bn(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = conv_bn(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = conv_bn(in_chs, c7, 1)
        self.branch7x7dbl_2 = conv_bn(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv_bn(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv_bn(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv_bn(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = conv_bn(in_chs, 192, 1)
        self.out_chs = 4 * 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(avg_pool_3x3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8."""

    def __init__(self, in_chs: int) -> None:
        super().__init__()
        self.branch3x3_1 = conv_bn(in_chs, 192, 1)
        self.branch3x3_2 = conv_bn(192, 320, 3, stride=2)
        self.branch7x7x3_1 = conv_bn(in_chs, 192, 1)
        self.branch7x7x3_2 = conv_bn(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_bn(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_bn(192, 192, 3, stride=2)
        self.out_chs = 320 + 192 + in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, nn.functional.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks: parallel 1x3 and 3x1 outputs (Fig. 7)."""

    def __init__(self, in_chs: int) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(in_chs, 320, 1)
        self.branch3x3_1 = conv_bn(in_chs, 384, 1)
        self.branch3x3_2a = conv_bn(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = conv_bn(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = conv_bn(in_chs, 448, 1)
        self.branch3x3dbl_2 = conv_bn(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = conv_bn(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv_bn(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = conv_bn(in_chs, 192, 1)
        self.out_chs = 320 + 2 * 384 + 2 * 384 + 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(avg_pool_3x3(x))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the last 17x17 map (Fig. 8): avg-pool 5x5/3, conv 1x1 128, conv 5x5 768, FC."""

    grid = 5

    def __init__(self, in_chs: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = conv_bn(in_chs, 128, 1)
        self.conv1 = conv_bn(128, 768, self.grid)
        self.fc = Classifier(768, num_classes, init=partial(_tf_init_, std=0.001))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 17:
            x = nn.functional.avg_pool2d(x, 5, 3)
        else:
            x = nn.functional.adaptive_avg_pool2d(x, self.grid)
        x = self.conv1(self.conv0(x)).mean((2, 3))
        return self.fc(x)


# The stem: (name, maps, kernel, stride, padding) in the ImageNet form, "pool" for a 3x3/2 max-pool.
STEM: tuple[tuple[str, int, int, int, int] | str, ...] = (
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    "maxpool1",
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
    "maxpool2",
)
SMALL_STEM_DROPS = ("maxpool2",)

# The Inception modules, in order: (name, module type, keywords).
BLOCKS: tuple[tuple[str, type[nn.Module], dict[str, int]], ...] = (
    ("Mixed_5b", InceptionA, {"pool_features": 32}),
    ("Mixed_5c", InceptionA, {"pool_features": 64}),
    ("Mixed_5d", InceptionA, {"pool_features": 64}),
    ("Mixed_6a", InceptionB, {}),
    ("Mixed_6b", InceptionC, {"channels_7x7": 128}),
    ("Mixed_6c", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6d", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6e", InceptionC, {"channels_7x7": 192}),
    ("Mixed_7a", InceptionD, {}),
    ("Mixed_7b", InceptionE, {}),
    ("Mixed_7c", InceptionE, {}),
)
AUX_AFTER = "Mixed_6e"


class InceptionV3(ClassifierModel):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 299,
        drop_rate: float = 0.2,
        small_input: bool | None = None,
        aux_logits: bool = True,
        aux_weight: float = 0.4,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input, below=IMAGENET_MIN_SIZE)
        if not small and img_size < IMAGENET_MIN_SIZE:
            raise ValueError(
                f"Inception-v3's ImageNet form needs at least {IMAGENET_MIN_SIZE} px, got {img_size}; "
                "use small_input=True (or leave it unset) for smaller images."
            )
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        in_chs = in_chans
        for row in STEM:
            if isinstance(row, str):
                if not (small and row in SMALL_STEM_DROPS):
                    stem[row] = nn.MaxPool2d(3, 2)
                continue
            name, out_chs, kernel, stride, padding = row
            if small and kernel == 3:
                stride, padding = 1, 1
            stem[name] = conv_bn(in_chs, out_chs, kernel, stride, padding)
            in_chs = out_chs
        self.stem = nn.Sequential(stem)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for name, block, kwargs in BLOCKS:
            blocks[name] = block(in_chs, **kwargs)
            in_chs = blocks[name].out_chs
            if name == AUX_AFTER:
                aux_chs = in_chs
        self.blocks = nn.ModuleDict(blocks)
        self.AuxLogits = InceptionAux(aux_chs, num_classes) if aux_logits else None
        self.aux_weight = aux_weight if aux_logits else 0.0

        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg", init=_tf_init_)
        self._init_weights()

    def _init_weights(self) -> None:
        # Google's reference code: truncated normal (2 std), std 0.1; auxiliary conv 0.01, classifier 0.001.
        std = {}
        if self.AuxLogits is not None:
            std = {self.AuxLogits.conv1.conv: 0.01, self.AuxLogits.fc: 0.001}
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _tf_init_(m, std.get(m, 0.1))

    def _forward(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        aux_logits = []
        for name, block in self.blocks.items():
            x = block(x)
            if with_aux and name == AUX_AFTER:
                aux_logits.append(self.AuxLogits(x))
        return x, aux_logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, with_aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if self.training and self.AuxLogits is not None:
            x, aux_logits = self._forward(x, with_aux=True)
            return self.forward_head(x), aux_logits
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.AuxLogits is not None:
            self.AuxLogits.fc.reset_classifier(num_classes)


# torchvision's ImageNet weights expect inputs mapped from ImageNet normalization to [-1, 1] per channel:
# x' = x * std / 0.5 + (mean - 0.5) / 0.5 (their ``transform_input``).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(("Conv2d_", "Mixed_")):
            key = ("stem." if key.startswith("Conv2d_") else "blocks.") + key
        out[key] = value
    # Fold the input transform into Conv2d_1a_3x3 (unpadded, so exact) and its BatchNorm's running mean:
    # conv(a * x + b) = conv_{W * a}(x) + sum(W * b), a per-output-channel constant the BN mean absorbs.
    weight = out["stem.Conv2d_1a_3x3.conv.weight"]
    mean = out["stem.Conv2d_1a_3x3.bn.running_mean"]
    w64 = weight.double()
    scale = w64.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1) / 0.5
    shift = (w64.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1) - 0.5) / 0.5
    out["stem.Conv2d_1a_3x3.conv.weight"] = (w64 * scale).to(weight.dtype)
    out["stem.Conv2d_1a_3x3.bn.running_mean"] = (mean.double() - (w64 * shift).sum((1, 2, 3))).to(mean.dtype)
    return out


@register_model(
    paper=INCEPTION_V3,
    family="inception",
    default_img_size=299,
    min_img_size=15,
    aliases=("inceptionv3",),
    pretrained={
        "torchvision": PretrainedSource(
            "torchvision",
            "inception_v3",
            _from_torchvision,
            ref_kwargs={"transform_input": True},
        )
    },
)
def inception_v3(**kwargs) -> InceptionV3:
    return InceptionV3(**kwargs)
