"""DenseNet.

Paper: "Densely Connected Convolutional Networks", G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger, CVPR
2017 (arXiv 2016). https://arxiv.org/abs/1608.06993

Key idea: inside a dense block every layer receives the concatenation of the feature maps of all preceding
layers, x_l = H_l([x_0, x_1, ..., x_{l-1}]), and adds only k ("growth rate") new maps of its own. Features are
reused instead of re-learned, so the network is narrow and parameter-efficient. H_l is BN-ReLU-Conv(3x3); the
bottleneck variant (-B) puts a BN-ReLU-Conv(1x1) with 4k outputs before it; compression (-C) makes each
transition layer (BN-ReLU-Conv(1x1), 2x2 average pool) keep only theta = 0.5 of the maps. DenseNet-BC = both.

ImageNet networks (Table 1, all DenseNet-BC, k = 32; DenseNet-161 has k = 48), for a 224 px input:

    convolution   112x112   7x7 conv, stride 2 (2k maps)
    pooling        56x56    3x3 max pool, stride 2
    dense block 1  56x56    [1x1 conv, 3x3 conv] x 6
    transition 1   28x28    1x1 conv, 2x2 average pool, stride 2
    dense block 2  28x28    [1x1 conv, 3x3 conv] x 12
    transition 2   14x14    1x1 conv, 2x2 average pool, stride 2
    dense block 3  14x14    [1x1 conv, 3x3 conv] x 24 | 32 | 48 | 36   (121 | 169 | 201 | 161)
    transition 3    7x7     1x1 conv, 2x2 average pool, stride 2
    dense block 4   7x7     [1x1 conv, 3x3 conv] x 16 | 32 | 32 | 24
    classification          7x7 global average pool, 1000-d fully connected, softmax

CIFAR networks (section 3, "Implementation Details"): a 3x3 convolution with 16 maps (2k for DenseNet-BC),
three dense blocks of equal depth at 32x32, 16x16 and 8x8, transitions between them, global average pool,
softmax classifier. Depth L counts the stem, every convolution of the blocks, the two transitions and the
classifier: L = 40 without bottleneck gives 12 layers per block; DenseNet-BC with L = 100 (or 40) gives 16 (or
6) bottleneck layers per block. Registered: ``densenet40_k12`` (the paper's basic DenseNet, no bottleneck, no
compression, 1.0M parameters), ``densenet_bc_100_k12`` (0.8M) and ``densenet_bc_40_k12``.

Parameter counts, 1000 classes at 224 px: DenseNet-121 7,978,856; -169 14,149,480; -201 20,013,928; -161
28,681,000 (identical to torchvision's). CIFAR-10 (10 classes, 32 px): DenseNet-40 (k = 12) 1,019,722;
DenseNet-BC-100 (k = 12) 769,162; DenseNet-BC-40 (k = 12) 176,122.

Faithful to the paper and to the authors' Torch code (github.com/liuzhuang13/DenseNet):
- Pre-activation ordering everywhere: BN-ReLU-Conv, so the stem of the CIFAR networks is a bare convolution
  and the last dense block is followed by BN-ReLU before the pooling. Convolutions have no bias (the authors'
  code removes them); the classifier has one.
- Transitions keep floor(theta * m) maps (theta = 1 for the basic DenseNet).
- Dropout: for the datasets without augmentation the paper adds dropout (rate 0.2) after every convolution
  except the first one: dense layers (after the 1x1 and after the 3x3 convolution) and transitions. That is
  ``proj_drop_rate`` (default 0, as for augmented data and ImageNet); ``drop_rate`` is the dropout before the
  classifier (not in the paper, default 0).
- Initialization of the authors' code (after fb.resnet.torch): He normal with fan-out for convolutions, BN
  weight 1 and bias 0, zero classifier bias.

Deviations and choices:
- The paper's CIFAR stem has 16 maps for the basic DenseNet (section 3); the authors' later code uses 2k = 24.
  The paper's text is followed.
- The stem follows the input size for every configuration: below 64 px (or ``small_input=True``) the CIFAR
  stem (one 3x3 stride-1 convolution, no BN, no max-pool), from 64 px on the ImageNet stem (7x7/2 convolution,
  BN, ReLU, 3x3/2 max-pool) with the same number of maps. So the ImageNet DenseNets at 28/32 px keep a 3x3/4x4
  map in their last block, and the CIFAR DenseNets also run on large images without huge maps.
- ``memory_efficient=True`` recomputes each layer's concatenation, BN, ReLU and first convolution in the
  backward pass (torch.utils.checkpoint), as torchvision does after Pleiss et al. 2017, "Memory-Efficient
  Implementation of DenseNets": the memory of the concatenations grows linearly instead of quadratically with
  depth, at the cost of extra compute. Default False. Unlike torchvision's, the recomputation does not update
  the BN running statistics a second time, so both settings train identically.

Differences to torchvision's ``densenet121/169/201/161``: the ImageNet architecture and the module names are
the same (``features.conv0``, ``features.denseblock1.denselayer1.norm1``, ..., ``features.norm5``,
``classifier``), so torchvision's weights load with only the renaming of their old checkpoints' "norm.1"-style
keys; torchvision initializes convolutions with fan-in instead of fan-out, puts its dropout only after the 3x3
convolution of the dense layers, and has no CIFAR networks and no small-image form. timm's ``densenet121`` is
the same network with ``proj_drop_rate`` for the dense layers' dropout.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

import torch
import torch.utils.checkpoint as cp
from torch import nn

from papernets.layers import Classifier, ClassifierModel, small_form
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet"]

DENSENET = Paper(
    "Densely Connected Convolutional Networks",
    "Huang, Liu, van der Maaten, Weinberger",
    2016,
    "https://arxiv.org/abs/1608.06993",
)


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return nn.functional.dropout(x, p, training) if p > 0 else x


@contextlib.contextmanager
def _keep_running_stats(norm: nn.BatchNorm2d) -> Iterator[None]:
    """Undo the running-statistics update of a checkpoint's recomputation; the forward pass made it once."""
    saved = [b.clone() for b in norm.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(norm.buffers(), saved, strict=True):
                buffer.copy_(value)


class DenseLayer(nn.Module):
    """H_l: BN-ReLU-Conv(1x1, bn_size * k)-BN-ReLU-Conv(3x3, k), or BN-ReLU-Conv(3x3, k) without bottleneck.

    ``bn_size=None`` is the basic layer. The input is the list of all preceding feature maps of the block.
    """

    def __init__(
        self,
        in_chs: int,
        growth_rate: int,
        bn_size: int | None = 4,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.bottleneck = bn_size is not None
        first_out = bn_size * growth_rate if bn_size is not None else growth_rate
        self.norm1 = nn.BatchNorm2d(in_chs)
        self.relu1 = nn.ReLU(inplace=True)
        if self.bottleneck:
            self.conv1 = nn.Conv2d(in_chs, first_out, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(first_out)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(first_out, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chs, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def _first(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            out = cp.checkpoint(
                self._first,
                *inputs,
                use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), _keep_running_stats(self.norm1)),
            )
        else:
            out = self._first(*inputs)
        out = _dropout(out, self.drop_rate, self.training)
        if self.bottleneck:
            out = _dropout(self.conv2(self.relu2(self.norm2(out))), self.drop_rate, self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; each sees the block input and every earlier layer's k new maps."""

    def __init__(
        self,
        num_layers: int,
        in_chs: int,
        growth_rate: int,
        bn_size: int | None,
        drop_rate: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """BN-ReLU-Conv(1x1) to ``out_chs`` maps, then 2x2 average pooling with stride 2."""

    def __init__(self, in_chs: int, out_chs: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_chs)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.relu(self.norm(x)))
        return self.pool(_dropout(x, self.drop_rate, self.training))


class DenseNet(ClassifierModel):
    """A DenseNet from its blocks' depths, growth rate k, stem width, bottleneck and compression.

    ``block_config`` has four entries for the ImageNet networks (Table 1) and three for the CIFAR ones.
    ``bn_size`` is the bottleneck width in multiples of k (None: no bottleneck); ``compression`` is theta.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        block_config: tuple[int, ...],
        growth_rate: int,
        stem_chs: int,
        bn_size: int | None = 4,
        compression: float = 0.5,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        memory_efficient: bool = False,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        if small:
            stem = [("conv0", nn.Conv2d(in_chans, stem_chs, 3, 1, 1, bias=False))]
        else:
            stem = [
                ("conv0", nn.Conv2d(in_chans, stem_chs, 7, 2, 3, bias=False)),
                ("norm0", nn.BatchNorm2d(stem_chs)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(3, 2, 1)),
            ]
        self.features = nn.Sequential(OrderedDict(stem))
        chs = stem_chs
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, chs, growth_rate, bn_size, proj_drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            chs += num_layers * growth_rate
            if i < len(block_config) - 1:
                out_chs = int(chs * compression)
                self.features.add_module(f"transition{i + 1}", Transition(chs, out_chs, proj_drop_rate))
                chs = out_chs
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(chs))
        self.features.add_module(f"relu{len(block_config) + 1}", nn.ReLU(inplace=True))
        self.num_features = chs
        self.classifier = Classifier(chs, num_classes, drop_rate, pool="avg", init=_zero_bias)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                _zero_bias(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _zero_bias(m: nn.Linear) -> None:
    nn.init.zeros_(m.bias)


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # Same module names. torchvision's published checkpoints (ported from LuaTorch) still spell the dense
    # layers' modules "norm.1", "conv.2", ...; its current state_dict() spells them "norm1", "conv2".
    return rename_keys(state, [(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.")])


def _tv(name: str) -> dict[str, PretrainedSource]:
    return {"torchvision": PretrainedSource("torchvision", name, _from_torchvision)}


def _imagenet(block_config: tuple[int, int, int, int], growth_rate: int, **kwargs) -> DenseNet:
    return DenseNet(block_config, growth_rate, stem_chs=2 * growth_rate, bn_size=4, compression=0.5, **kwargs)


def _cifar(depth: int, growth_rate: int, bc: bool, **kwargs) -> DenseNet:
    # Depth L = 3 blocks x (layers per block x convs per layer) + stem + 2 transitions + classifier.
    per_block = (depth - 4) // (6 if bc else 3)
    return DenseNet(
        (per_block,) * 3,
        growth_rate,
        stem_chs=2 * growth_rate if bc else 16,
        bn_size=4 if bc else None,
        compression=0.5 if bc else 1.0,
        **{"img_size": 32, **kwargs},
    )


@register_model(paper=DENSENET, family="densenet", min_img_size=8, pretrained=_tv("densenet121"))
def densenet121(**kwargs) -> DenseNet:
    return _imagenet((6, 12, 24, 16), 32, **kwargs)


@register_model(paper=DENSENET, family="densenet", min_img_size=8, pretrained=_tv("densenet169"))
def densenet169(**kwargs) -> DenseNet:
    return _imagenet((6, 12, 32, 32), 32, **kwargs)


@register_model(paper=DENSENET, family="densenet", min_img_size=8, pretrained=_tv("densenet201"))
def densenet201(**kwargs) -> DenseNet:
    return _imagenet((6, 12, 48, 32), 32, **kwargs)


@register_model(paper=DENSENET, family="densenet", min_img_size=8, pretrained=_tv("densenet161"))
def densenet161(**kwargs) -> DenseNet:
    return _imagenet((6, 12, 36, 24), 48, **kwargs)


@register_model(paper=DENSENET, family="densenet", default_img_size=32, min_img_size=4, aliases=("densenet",))
def densenet40_k12(**kwargs) -> DenseNet:
    return _cifar(40, 12, bc=False, **kwargs)


@register_model(paper=DENSENET, family="densenet", default_img_size=32, min_img_size=4)
def densenet_bc_100_k12(**kwargs) -> DenseNet:
    return _cifar(100, 12, bc=True, **kwargs)


@register_model(paper=DENSENET, family="densenet", default_img_size=32, min_img_size=4)
def densenet_bc_40_k12(**kwargs) -> DenseNet:
    return _cifar(40, 12, bc=True, **kwargs)
