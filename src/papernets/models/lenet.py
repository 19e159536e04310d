"""LeNet-5.

Paper: "Gradient-Based Learning Applied to Document Recognition", Y. LeCun, L. Bottou, Y. Bengio, P. Haffner,
Proceedings of the IEEE, 1998. http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf

Key idea: learn the feature extractor. Convolutions with shared weights, then sub-sampling, twice, then fully
connected layers, trained end to end by back-propagation (section II.B, Fig. 2):

    input 32x32 -> C1: 6@28x28 (5x5) -> S2: 6@14x14 -> C3: 16@10x10 (5x5, partial connections, Table I)
    -> S4: 16@5x5 -> C5: 120 (5x5 over the whole S4 map) -> F6: 84 -> output (10 classes)

Faithful to the paper:
- Squashing function f(a) = A tanh(S a) with A = 1.7159, S = 2/3 (Appendix A).
- Sub-sampling layers S2/S4: the sum of a 2x2 window times a trainable coefficient plus a trainable bias, per
  map, followed by the squashing function (section II.B).
- C3's sparse connection table (Table I): 1,516 trainable parameters, not the 2,416 of a full convolution.
- Parameter count at 32x32, 10 classes: 60,850 = the paper's 60,000 trainable parameters of C1..F6
  plus a linear output layer of 84 x 10 + 10 = 850.
Deviations:
- The output layer is a linear layer trained with softmax cross-entropy instead of the paper's Euclidean RBF
  units with fixed 7x12 bitmap weights, and no MAP loss term: standard practice and what every trainer here uses.
- Small images are LeNet-5's home: there is no separate small-image form. At 28x28 (MNIST, Fashion-MNIST)
  C1 pads by 2, which is the paper's placement of the 28x28 digit in a 32x32 field. At
  other sizes C5's kernel covers the whole S4 map, so C5 stays fully connected to S4 as in the paper.
- ``lenet5_bn`` adds batch normalization (Ioffe and Szegedy 2015) after C1, C3, C5 and F6: the classic lesson
  that normalization makes the same network train faster and to higher accuracy. It is not in the 1998 paper.
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel
from papernets.registry import Paper, register_model

__all__ = ["LeNet5"]

LENET = Paper(
    "Gradient-Based Learning Applied to Document Recognition",
    "LeCun, Bottou, Bengio, Haffner",
    1998,
    "http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf",
)

# Table I: which S2 maps (columns) feed each C3 map (rows).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class ScaledTanh(nn.Module):
    """f(a) = 1.7159 tanh(2a/3), the squashing function of Appendix A."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: sum of each 2x2 window times a trainable per-map coefficient, plus a trainable per-map bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = nn.functional.avg_pool2d(x, 2) * 4.0
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SparseConv(nn.Module):
    """C3: each output map sees only the input maps that Table I connects to it.

    The inputs each map needs are gathered once (6 x 3 + 9 x 4 + 1 x 6 = 60 channels); maps with the same
    number of inputs are then one grouped convolution, one group per map. Trainable parameters: 1,516.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int = 5) -> None:
        super().__init__()
        sizes = [len(inputs) for inputs in table]
        runs: list[tuple[int, int]] = []  # (inputs per map, number of maps), in table order
        for size in sizes:
            if runs and runs[-1][0] == size:
                runs[-1] = (size, runs[-1][1] + 1)
            else:
                runs.append((size, 1))
        self.register_buffer("gather", torch.tensor([i for inputs in table for i in inputs]), persistent=False)
        self.convs = nn.ModuleList(nn.Conv2d(k * n, n, kernel_size, groups=n) for k, n in runs)
        self.splits = [k * n for k, n in runs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.index_select(1, self.gather).split(self.splits, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts, strict=True)], 1)


class LeNet5(ClassifierModel):
    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 32,
        drop_rate: float = 0.0,
        batch_norm: bool = False,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        del small_input  # accepted for the common interface; LeNet-5 has one form
        pad = 2 if img_size == 28 else 0
        s4 = ((img_size + 2 * pad - 4) // 2 - 4) // 2
        if s4 < 1:
            raise ValueError(f"LeNet-5 needs an image of at least 16 px, got {img_size}")

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        c1_maps = 6
        self.features = nn.Sequential()
        self.features.add_module("c1", nn.Conv2d(in_chans, c1_maps, 5, padding=pad))
        self.features.add_module("c1_norm", norm(c1_maps))
        self.features.add_module("c1_act", ScaledTanh())
        self.features.add_module("s2", Subsampling(c1_maps))
        self.features.add_module("s2_act", ScaledTanh())
        self.features.add_module("c3", SparseConv(C3_TABLE))
        self.features.add_module("c3_norm", norm(16))
        self.features.add_module("c3_act", ScaledTanh())
        self.features.add_module("s4", Subsampling(16))
        self.features.add_module("s4_act", ScaledTanh())
        self.features.add_module("c5", nn.Conv2d(16, 120, s4))
        self.features.add_module("c5_norm", norm(120))
        self.features.add_module("c5_act", ScaledTanh())
        self.f6 = nn.Linear(120, 84)
        self.f6_norm = nn.BatchNorm1d(84) if batch_norm else nn.Identity()
        self.f6_act = ScaledTanh()
        self.num_features = 84
        self.fc = Classifier(84, num_classes, drop_rate, init=_init_lecun)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                _init_lecun(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.f6_act(self.f6_norm(self.f6(self.features(x).flatten(1))))


def _init_lecun(m: nn.Conv2d | nn.Linear) -> None:
    """Appendix C: weights uniform in +-2.4 / fan_in (biases zero)."""
    fan_in = m.weight[0].numel()
    nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
    nn.init.zeros_(m.bias)


@register_model(paper=LENET, family="lenet", default_img_size=32, min_img_size=16, aliases=("lenet",))
def lenet5(**kwargs) -> LeNet5:
    return LeNet5(**kwargs)


@register_model(paper=LENET, family="lenet", default_img_size=32, min_img_size=16, aliases=("bn_convnet",))
def lenet5_bn(**kwargs) -> LeNet5:
    return LeNet5(batch_norm=True, **kwargs)

