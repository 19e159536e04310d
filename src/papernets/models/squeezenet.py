"""SqueezeNet.

Paper: "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size", F. N. Iandola,
S. Han, M. W. Moskewicz, K. Ashraf, W. J. Dally, K. Keutzer, 2016. https://arxiv.org/abs/1602.07360

Key idea: the Fire module (Fig. 1). A "squeeze" layer of few 1x1 filters feeds an "expand" layer that mixes
1x1 and 3x3 filters, whose outputs are concatenated: most 3x3 filters become 1x1 (9x fewer parameters) and the
3x3 filters see few input channels. Downsampling comes late (max-pools after conv1, fire4 and fire8), so
most layers work on large maps. No fully connected layers: conv10 maps to the classes, then global average
pooling. Table 1 (SqueezeNet 1.0, 224 px; Fire: squeeze s1x1, expand e1x1 + e3x3):

    conv1        96, 7x7/2        -> 111x111x96
    maxpool1     3x3/2            -> 55x55x96
    fire2        16, 64 + 64      -> 55x55x128
    fire3        16, 64 + 64      -> 55x55x128
    fire4        32, 128 + 128    -> 55x55x256
    maxpool4     3x3/2            -> 27x27x256
    fire5        32, 128 + 128    -> 27x27x256
    fire6        48, 192 + 192    -> 27x27x384
    fire7        48, 192 + 192    -> 27x27x384
    fire8        64, 256 + 256    -> 27x27x512
    maxpool8     3x3/2            -> 13x13x512
    fire9        64, 256 + 256    -> 13x13x512
    dropout 50%, conv10 1x1, 1000 -> 13x13x1000
    avgpool10    13x13            -> 1x1x1000

ReLU follows every convolution, conv10 included (the released Caffe model). Parameters at 224 px, 1000
classes: 1,248,424 (Table 1's total); MACs 0.819 G.

SqueezeNet 1.1 is not in the paper: it is the authors' later release (github.com/forresti/SqueezeNet,
"SqueezeNet_v1.1"): conv1 is 64 filters of 3x3/2 and the max-pools move earlier (after conv1, fire3, fire5),
for 2.4x less computation at the same accuracy. Parameters 1,235,496; MACs 0.349 G.

Deviations and notes:
- Max-pooling rounds up (``ceil_mode=True``), as Caffe does and as torchvision copies; at 224 px this gives
  the sizes of Table 1 either way, at other sizes the maps can be one pixel larger than with rounding down.
- Initialization as torchvision: He uniform for all convolutions except conv10, N(0, 0.01) for conv10
  (the released Caffe model uses Xavier for the former and the same Gaussian for conv10).
- The paper's bypass variants (simple and complex bypass, section 6) are not built.
- Identical to torchvision's ``squeezenet1_0`` / ``squeezenet1_1`` (only module names differ): their weights
  load with identical logits.

Small images (``img_size`` below 64, or ``small_input=True``): conv1 keeps its kernel but has stride 1 and
"same" padding; the three max-pools stay. The total stride falls from 16 (plus conv1's missing padding) to 8:
32 px inputs end in a 4x4 map, 28 px in 3x3. Smallest input: 8 px (8 -> 4 -> 2 -> 1 through the three pools;
an unpadded 3x3/2 pool needs a map of at least 2x2 even when rounding up).
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import ModelBase, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["Fire", "SqueezeNet"]

SQUEEZENET = Paper(
    "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    "Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer",
    2016,
    "https://arxiv.org/abs/1602.07360",
)

# conv1 (filters, kernel) and the layers after it: "M" a 3x3/2 max-pool, (s1x1, e1x1, e3x3) a Fire module.
# Fire modules are numbered 2..9 as in the paper.
SQUEEZENET_CFGS: dict[str, tuple[tuple[int, int], tuple]] = {
    "1_0": (
        (96, 7),
        ("M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M",
         (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)),
    ),
    "1_1": (
        (64, 3),
        ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
         (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
    ),
}


class Fire(nn.Module):
    """Fig. 1: squeeze 1x1 -> ReLU, then expand 1x1 and expand 3x3 (each + ReLU), concatenated."""

    def __init__(self, in_chs: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_chs, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.squeeze(x))
        return torch.cat((self.act(self.expand1x1(x)), self.act(self.expand3x3(x))), 1)


class SqueezeNet(ModelBase):
    """SqueezeNet 1.0 (Table 1) or 1.1 (the authors' v1.1 release)."""

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.5,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        (stem, kernel), layers = SQUEEZENET_CFGS[version]
        self.features = nn.Sequential()
        if small:
            self.features.add_module("conv1", nn.Conv2d(in_chans, stem, kernel, 1, kernel // 2))
        else:
            self.features.add_module("conv1", nn.Conv2d(in_chans, stem, kernel, 2))
        self.features.add_module("relu1", nn.ReLU(inplace=True))
        in_chs, fire, last = stem, 2, "1"
        for layer in layers:
            if layer == "M":
                self.features.add_module(f"maxpool{last}", nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                self.features.add_module(f"fire{fire}", Fire(in_chs, *layer))
                in_chs, last, fire = layer[1] + layer[2], str(fire), fire + 1
        self.num_features = in_chs
        self.drop_rate = drop_rate
        self.conv10 = nn.Conv2d(in_chs, num_classes, 1)
        self.act10 = nn.ReLU(inplace=True)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.conv10:
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return self.act10(self.conv10(x)).mean((2, 3))

    def reset_classifier(self, num_classes: int) -> None:
        self.conv10 = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.normal_(self.conv10.weight, 0, 0.01)
        nn.init.zeros_(self.conv10.bias)


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # torchvision numbers the layers of one Sequential (conv, ReLU, pools and Fire modules alike); ours carry
    # the paper's names. The layers come in the same order, so the indices map one to one.
    names = [name for name, _ in model.features.named_children()]
    rules = [(rf"^features\.{i}\.", f"features.{name}.") for i, name in enumerate(names)]
    rules.append((r"^classifier\.1\.", "conv10."))
    return rename_keys(state, rules)


def _tv(name: str) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _from_torchvision)}


@register_model(
    paper=SQUEEZENET,
    family="squeezenet",
    min_img_size=8,
    aliases=("squeezenet",),
    pretrained=_tv("squeezenet1_0"),
)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    return SqueezeNet("1_0", **kwargs)


@register_model(paper=SQUEEZENET, family="squeezenet", min_img_size=8, pretrained=_tv("squeezenet1_1"))
def squeezenet1_1(**kwargs) -> SqueezeNet:
    return SqueezeNet("1_1", **kwargs)
