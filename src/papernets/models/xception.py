"""Xception.

Paper: "Xception: Deep Learning with Depthwise Separable Convolutions", F. Chollet, CVPR 2017 (arXiv 2016).
https://arxiv.org/abs/1610.02357

Key idea: push the Inception hypothesis to its extreme: cross-channel correlations and spatial correlations
can be mapped completely separately. Every Inception module becomes a depthwise separable convolution (a 3x3
depthwise convolution, one filter per channel, then a 1x1 pointwise convolution, with no non-linearity in
between; the paper shows that an intermediate activation hurts), and the network is a linear stack of them
with residual connections. Fig. 5, for a 299 px input (every convolution is followed by batch normalization):

    entry flow    Conv 32 3x3/2, ReLU; Conv 64 3x3, ReLU                               147x147x64
                  [SepConv 128, ReLU, SepConv 128, MaxPool 3x3/2] + Conv 1x1/2          74x74x128
                  [ReLU, SepConv 256, ReLU, SepConv 256, MaxPool 3x3/2] + Conv 1x1/2    37x37x256
                  [ReLU, SepConv 728, ReLU, SepConv 728, MaxPool 3x3/2] + Conv 1x1/2    19x19x728
    middle flow   [ReLU, SepConv 728] x 3 + identity, repeated 8 times                 19x19x728
    exit flow     [ReLU, SepConv 728, ReLU, SepConv 1024, MaxPool 3x3/2] + Conv 1x1/2  10x10x1024
                  SepConv 1536, ReLU; SepConv 2048, ReLU; global average pool          2048
                  (optional fully connected layers, not used on ImageNet), logistic regression

All separable convolutions are 3x3 with depth multiplier 1. On ImageNet a dropout layer of rate 0.5 precedes
the logistic regression (the paper's regularization setup), so ``drop_rate`` defaults to 0.5.

Parameter count, 1000 classes at 299 px: 22,855,952, exactly the figure the paper gives. It counts the
convolutions (none with a bias), the BN scales and shifts, and the 2048 x 1000 + 1000 classifier; the BN
running statistics are buffers.

Faithful to the paper and to its reference implementation by the author (``keras.applications.Xception``):
- The two stem convolutions are unpadded ("valid": 299 -> 149 -> 147); all other convolutions keep the size.
- The shortcut of a strided module is a 1x1 stride-2 convolution with BN, taken from the module's input before
  the ReLU that opens the residual branch; the middle flow's shortcuts are identities.

Deviations and choices:
- Max-pooling pads one pixel on every side (PyTorch); TensorFlow's "same" padding pads only bottom/right for
  an even input, so the windows of the 74x74 -> 37x37 pool are shifted by one pixel relative to Keras.
- BatchNorm uses PyTorch's defaults (eps 1e-5, momentum 0.1); Keras' are eps 1e-3, momentum 0.99.
- The paper states no initialization; this uses Keras' default, Glorot uniform for convolutions and the
  classifier, zero biases, BN weight 1 and bias 0.

Small images (``img_size`` below 64, or ``small_input=True``): the first two stride-2 steps are dropped, as in
ResNet's CIFAR form: the stem convolutions have stride 1 and are padded, and the first entry-flow module has
no max-pool and a stride-1 1x1 shortcut. The total stride is 8, so a 32 px (28 px) input ends in a 4x4 map.

Differences to timm's ``legacy_xception`` (the port of the Keras model and its ImageNet weights): none in the
architecture; only the module names differ (timm's ``block1``..``block12`` with ``rep.<index>`` sequences,
``skip``/``skipbn``, ``conv3``/``conv4``), mapped by explicit rules, and timm initializes with He normal.
torchvision has no Xception.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["SeparableConv2d", "XceptionBlock", "Xception"]

XCEPTION = Paper(
    "Xception: Deep Learning with Depthwise Separable Convolutions",
    "Chollet",
    2016,
    "https://arxiv.org/abs/1610.02357",
)

# Fig. 5: the residual modules as (separable convolution widths, stride); a stride of 2 ends in a 3x3/2
# max-pool and gives the module a 1x1/2 convolution shortcut.
ENTRY_FLOW: tuple[tuple[tuple[int, ...], int], ...] = (((128, 128), 2), ((256, 256), 2), ((728, 728), 2))
MIDDLE_FLOW: tuple[tuple[tuple[int, ...], int], ...] = (((728, 728, 728), 1),) * 8
EXIT_FLOW: tuple[tuple[int, ...], int] = ((728, 1024), 2)
EXIT_CONVS: tuple[int, int] = (1536, 2048)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 convolution (one filter per channel), then pointwise 1x1; no activation in between."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.depthwise = nn.Conv2d(in_chs, in_chs, kernel_size, padding=pad, groups=in_chs, bias=False)
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """[ReLU, SepConv, BN] per width, a 3x3 max-pool if strided, plus a shortcut (1x1 conv + BN, or identity).

    ``start_with_relu=False`` for the first module, whose input has just been through the stem's ReLU.
    """

    def __init__(
        self, in_chs: int, widths: tuple[int, ...], stride: int = 1, start_with_relu: bool = True
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chs = in_chs
        for i, out_chs in enumerate(widths, 1):
            if i > 1 or start_with_relu:
                # The first ReLU must not overwrite the input: the shortcut reads it.
                layers[f"act{i}"] = nn.ReLU(inplace=i > 1)
            layers[f"sep{i}"] = SeparableConv2d(chs, out_chs)
            layers[f"bn{i}"] = nn.BatchNorm2d(out_chs)
            chs = out_chs
        if stride > 1:
            layers["pool"] = nn.MaxPool2d(3, stride, 1)
        self.branch = nn.Sequential(layers)
        if stride > 1 or in_chs != chs:
            self.shortcut: nn.Module = ConvNormAct(in_chs, chs, 1, stride, act_layer=None)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        out += self.shortcut(x)  # in place, as timm: one tensor fewer per module
        return out


class Xception(ClassifierModel):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 299,
        drop_rate: float = 0.5,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        stem_stride, stem_pad = (1, 1) if small else (2, 0)
        entry: OrderedDict[str, nn.Module] = OrderedDict()
        entry["conv1"] = ConvNormAct(in_chans, 32, 3, stem_stride, stem_pad)
        entry["conv2"] = ConvNormAct(32, 64, 3, 1, stem_pad)
        chs = 64
        for i, (widths, stride) in enumerate(ENTRY_FLOW):
            stride = 1 if small and i == 0 else stride
            entry[f"block{i + 1}"] = XceptionBlock(chs, widths, stride, start_with_relu=i > 0)
            chs = widths[-1]
        self.entry_flow = nn.Sequential(entry)
        self.middle_flow = nn.Sequential(*[XceptionBlock(chs, w, s) for w, s in MIDDLE_FLOW])
        exit_widths, exit_stride = EXIT_FLOW
        exit_flow: OrderedDict[str, nn.Module] = OrderedDict()
        exit_flow["block"] = XceptionBlock(chs, exit_widths, exit_stride)
        chs = exit_widths[-1]
        for i, out_chs in enumerate(EXIT_CONVS, 1):
            exit_flow[f"sep{i}"] = SeparableConv2d(chs, out_chs)
            exit_flow[f"bn{i}"] = nn.BatchNorm2d(out_chs)
            exit_flow[f"act{i}"] = nn.ReLU(inplace=True)
            chs = out_chs
        self.exit_flow = nn.Sequential(exit_flow)
        self.num_features = chs
        self.fc = Classifier(chs, num_classes, drop_rate, pool="avg", init=_init_xavier)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _init_xavier(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_flow(self.middle_flow(self.entry_flow(x)))


def _init_xavier(m: nn.Conv2d | nn.Linear) -> None:
    nn.init.xavier_uniform_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _timm_rules() -> list[tuple[str, str]]:
    rules = [
        (r"^conv([12])\.weight$", r"entry_flow.conv\1.conv.weight"),
        (r"^bn([12])\.", r"entry_flow.conv\1.bn."),
        # timm's block1 has no leading ReLU, so its rep indices are one lower than the other blocks'.
        (r"^block1\.rep\.0\.", "block1.sep1."),
        (r"^block1\.rep\.1\.", "block1.bn1."),
        (r"^block1\.rep\.3\.", "block1.sep2."),
        (r"^block1\.rep\.4\.", "block1.bn2."),
    ]
    # Other blocks: rep = [ReLU, SeparableConv2d, BatchNorm2d] per separable convolution.
    for j in range(3):
        rules += [
            (rf"^(block\d+)\.rep\.{3 * j + 1}\.", rf"\1.sep{j + 1}."),
            (rf"^(block\d+)\.rep\.{3 * j + 2}\.", rf"\1.bn{j + 1}."),
        ]
    rules += [
        (r"^(block\d+)\.(sep\d|bn\d)\.", r"\1.branch.\2."),
        (r"\.conv1\.weight$", ".depthwise.weight"),
        (r"^(block\d+)\.skip\.", r"\1.shortcut.conv."),
        (r"^(block\d+)\.skipbn\.", r"\1.shortcut.bn."),
        (r"^block([123])\.", r"entry_flow.block\1."),
        *[(rf"^block{n}\.", f"middle_flow.{n - 4}.") for n in range(4, 12)],
        (r"^block12\.", "exit_flow.block."),
        (r"^conv3\.", "exit_flow.sep1."),
        (r"^bn3\.", "exit_flow.bn1."),
        (r"^conv4\.", "exit_flow.sep2."),
        (r"^bn4\.", "exit_flow.bn2."),
    ]
    return rules


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return rename_keys(state, _timm_rules())


@register_model(
    paper=XCEPTION,
    family="xception",
    default_img_size=299,
    min_img_size=8,
    pretrained={"timm": PretrainedSource("timm", "legacy_xception", _from_timm)},
)
def xception(**kwargs) -> Xception:
    return Xception(**kwargs)
