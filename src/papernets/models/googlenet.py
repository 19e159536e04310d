"""GoogLeNet (Inception-v1).

Paper: "Going Deeper with Convolutions", C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D.
Erhan, V. Vanhoucke, A. Rabinovich, CVPR 2015 (arXiv 2014). https://arxiv.org/abs/1409.4842

Key idea: the Inception module. Parallel 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool, concatenated, with
1x1 "reduce" convolutions in front of the 3x3 and 5x5 branches and behind the pool, so that the network grows
wide and deep (22 layers) at a fixed computational budget (section 4, Fig. 2b). Table 1:

    conv 7x7/2, 64 -> max-pool 3x3/2 -> LRN -> conv 1x1, 64 -> conv 3x3, 192 -> LRN -> max-pool 3x3/2
    inception   #1x1  #3x3 reduce  #3x3  #5x5 reduce  #5x5  pool proj    output
    3a            64       96       128       16        32       32     28x28x256
    3b           128      128       192       32        96       64     28x28x480
    max-pool 3x3/2
    4a           192       96       208       16        48       64     14x14x512
    4b           160      112       224       24        64       64     14x14x512
    4c           128      128       256       24        64       64     14x14x512
    4d           112      144       288       32        64       64     14x14x528
    4e           256      160       320       32       128      128     14x14x832
    max-pool 3x3/2
    5a           256      160       320       32       128      128      7x7x832
    5b           384      192       384       48       128      128      7x7x1024
    avg-pool 7x7 -> dropout 0.4 -> linear 1000

Every convolution, including those inside the modules, is followed by a ReLU. Two auxiliary classifiers sit on
the outputs of 4a and 4d (section 5): average pool 5x5/3 (14x14 -> 4x4), 1x1 conv with 128 maps and ReLU, FC
1024 with ReLU, dropout 0.7, linear classifier. Their losses are added with weight 0.3 (``aux_weight``) during
training; at inference they are discarded. In training mode ``forward`` returns ``(logits, [aux_4a,
aux_4d])``, in evaluation mode the logits only; ``aux_logits=False`` builds the network without them (and
its ``aux_weight`` is then 0).

Details the paper leaves open come from the authors' reference Caffe model (BVLC GoogLeNet,
https://github.com/BVLC/caffe/tree/master/models/bvlc_googlenet): LRN over 5 maps with alpha = 1e-4 (divided
by 5, Caffe's and PyTorch's convention), beta = 0.75, k = 1; max-pools that round up (``ceil_mode``: 112 -> 56
-> 28 -> 14 -> 7); Xavier initialization (uniform, +-sqrt(3 / fan_in)) with biases 0.2 and zero biases in the
classifiers.

Parameter count at 224 px, 1000 classes: 6,998,552 without the auxiliary classifiers (6,990,272 weights and
8,280 biases), 13,378,280 with them; 1.5827 GMACs at 224 px. Table 1's "params" column sums to about 6.8M: it
counts weights only, in units of 1,024, and some of its entries disagree with the filter numbers of the same
table (conv1 2.7K against 9.2K, 4c 463K against 497.5K, 5a 1072K against 1018K); the network follows the
filter numbers.

torchvision's ``googlenet`` differs: batch normalization after every convolution, no LRN, a 3x3 convolution
where the paper's branch has 5x5 (kept there for weight compatibility), auxiliary heads with an adaptive 4x4
average pool, main dropout 0.2, and an input transform; 6,624,904 parameters without the auxiliary heads. Its
weights do not fit this network and no weight import is offered.

Deviations:
- Global average pooling instead of the fixed 7x7 average pool (identical at 224 px) so that other sizes work.
- The auxiliary heads pool with the paper's 5x5/3 window wherever the map is at least 14 px wide, then with an
  adaptive average pool to the 4x4 grid their FC layer expects. At 224 px (14x14 -> 4x4) the adaptive pool
  does nothing; on smaller maps (the small-image form, or smaller ImageNet-form inputs) only the adaptive
  pool runs.

Small images (``img_size`` below 64, or ``small_input=True``): the 7x7/2 stem convolution becomes a 3x3
stride-1 convolution (padding 1) and the first max-pool is removed; everything else is unchanged. 32 px then
reaches the inception modules at 16x16 and ends in a 4x4 map (28 px: 14x14 and 3x3), and the auxiliary heads
average-pool their 8x8 (7x7) maps to 4x4.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, ConvNormAct, small_form
from papernets.layers.lrn import LocalResponseNorm
from papernets.registry import Paper, register_model

__all__ = ["GoogLeNet", "Inception", "AuxClassifier"]

GOOGLENET = Paper(
    "Going Deeper with Convolutions",
    "Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich",
    2014,
    "https://arxiv.org/abs/1409.4842",
)


class InceptionRow(NamedTuple):
    """One row of Table 1."""

    c1x1: int
    c3x3_reduce: int
    c3x3: int
    c5x5_reduce: int
    c5x5: int
    pool_proj: int


M = "maxpool"  # 3x3/2 max-pool between stages

TABLE_1: tuple[tuple[str, InceptionRow | str], ...] = (
    ("inception3a", InceptionRow(64, 96, 128, 16, 32, 32)),
    ("inception3b", InceptionRow(128, 128, 192, 32, 96, 64)),
    ("pool3", M),
    ("inception4a", InceptionRow(192, 96, 208, 16, 48, 64)),
    ("inception4b", InceptionRow(160, 112, 224, 24, 64, 64)),
    ("inception4c", InceptionRow(128, 128, 256, 24, 64, 64)),
    ("inception4d", InceptionRow(112, 144, 288, 32, 64, 64)),
    ("inception4e", InceptionRow(256, 160, 320, 32, 128, 128)),
    ("pool4", M),
    ("inception5a", InceptionRow(256, 160, 320, 32, 128, 128)),
    ("inception5b", InceptionRow(384, 192, 384, 48, 128, 128)),
)
AUX_AFTER = ("inception4a", "inception4d")  # section 5


def conv_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> ConvNormAct:
    """A biased convolution with "same" padding followed by a ReLU (no normalization in 2014)."""
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, norm_layer=None)


def max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, 2, ceil_mode=True)


def lrn() -> LocalResponseNorm:
    return LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class Inception(nn.Module):
    """The Inception module with dimension reductions (Fig. 2b)."""

    def __init__(self, in_chs: int, row: InceptionRow) -> None:
        super().__init__()
        self.branch1 = conv_relu(in_chs, row.c1x1, 1)
        self.branch2 = nn.Sequential(conv_relu(in_chs, row.c3x3_reduce, 1), conv_relu(row.c3x3_reduce, row.c3x3, 3))
        self.branch3 = nn.Sequential(conv_relu(in_chs, row.c5x5_reduce, 1), conv_relu(row.c5x5_reduce, row.c5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_relu(in_chs, row.pool_proj, 1))
        self.out_chs = row.c1x1 + row.c3x3 + row.c5x5 + row.pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    """Auxiliary classifier (section 5): avg-pool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7, linear."""

    grid = 4
    drop_rate = 0.7

    def __init__(self, in_chs: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, 3)
        self.conv = conv_relu(in_chs, 128, 1)
        self.fc1 = nn.Linear(128 * self.grid * self.grid, 1024)
        self.fc = Classifier(1024, num_classes, init=_init_classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= 14:
            x = self.pool(x)
        x = nn.functional.adaptive_avg_pool2d(x, self.grid)
        x = torch.relu(self.fc1(self.conv(x).flatten(1)))
        return self.fc(nn.functional.dropout(x, self.drop_rate, self.training))


class GoogLeNet(ClassifierModel):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.4,
        small_input: bool | None = None,
        aux_logits: bool = True,
        aux_weight: float = 0.3,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        if small:
            stem["conv1"] = conv_relu(in_chans, 64, 3)
        else:
            stem["conv1"] = conv_relu(in_chans, 64, 7, stride=2)
            stem["pool1"] = max_pool()
        stem["norm1"] = lrn()
        stem["conv2_reduce"] = conv_relu(64, 64, 1)
        stem["conv2"] = conv_relu(64, 192, 3)
        stem["norm2"] = lrn()
        stem["pool2"] = max_pool()
        self.stem = nn.Sequential(stem)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        aux: OrderedDict[str, nn.Module] = OrderedDict()
        in_chs = 192
        for name, row in TABLE_1:
            if isinstance(row, InceptionRow):
                blocks[name] = Inception(in_chs, row)
                in_chs = blocks[name].out_chs
                if aux_logits and name in AUX_AFTER:
                    aux[name] = AuxClassifier(in_chs, num_classes)
            else:
                blocks[name] = max_pool()
        self.blocks = nn.ModuleDict(blocks)
        self.aux = nn.ModuleDict(aux) if aux_logits else None
        self.aux_weight = aux_weight if aux_logits else 0.0

        self.num_features = in_chs
        self.fc = Classifier(in_chs, num_classes, drop_rate, pool="avg", init=_init_classifier)
        self._init_weights()

    def _init_weights(self) -> None:
        # BVLC GoogLeNet: Caffe's "xavier" filler, U(+-sqrt(3 / fan_in)); biases 0.2, classifier biases 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _xavier_caffe(m)
        for fc in self._classifiers():
            nn.init.zeros_(fc.bias)

    def _classifiers(self) -> list[Classifier]:
        return [self.fc] + ([head.fc for head in self.aux.values()] if self.aux is not None else [])

    def _forward(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        aux_logits = []
        for name, block in self.blocks.items():
            x = block(x)
            if with_aux and name in self.aux:
                aux_logits.append(self.aux[name](x))
        return x, aux_logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, with_aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if self.training and self.aux is not None:
            x, aux_logits = self._forward(x, with_aux=True)
            return self.forward_head(x), aux_logits
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        for fc in self._classifiers():
            fc.reset_classifier(num_classes)


def _xavier_caffe(m: nn.Conv2d | nn.Linear) -> None:
    fan_in = m.weight[0].numel()
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.constant_(m.bias, 0.2)


def _init_classifier(m: nn.Linear) -> None:
    _xavier_caffe(m)
    nn.init.zeros_(m.bias)


@register_model(paper=GOOGLENET, family="googlenet", default_img_size=224, min_img_size=8, aliases=("inception_v1",))
def googlenet(**kwargs) -> GoogLeNet:
    return GoogLeNet(**kwargs)
