"""ResMLP.

Paper: "ResMLP: Feedforward networks for image classification with data-efficient training", H. Touvron,
P. Bojanowski, M. Caron, M. Cord, A. El-Nouby, E. Grave, G. Izacard, A. Joulin, G. Synnaeve, J. Verbeek, H.
Jegou, IEEE TPAMI 2022 (arXiv 2021). https://arxiv.org/abs/2105.03404

Key idea: a residual network of two sublayers per block, nothing else (section 2):

    Z = X + LS1 . (A Aff(X)^T)^T        cross-patch sublayer: ONE linear layer A (N x N) over the patches
    Y = Z + LS2 . (C GELU(B Aff(Z)))    cross-channel sublayer: a 2-layer MLP with hidden width 4d

Aff(x) = alpha * x + beta (per channel, initialized to 1 and 0) replaces LayerNorm: no statistics at all.
LS1/LS2 are per-channel LayerScale factors (CaiT) initialized to a small epsilon. Patch embedding 16 x 16,
patch tokens averaged at the end, then Aff and a linear classifier (the final Aff is applied before the
pooling, as in the official code). Variants (all d = 384, 196 patches at 224 px):

    model      blocks  LayerScale init  params (224 px, 1000 classes)
    ResMLP-12    12        0.1          15,350,872
    ResMLP-24    24        1e-5         30,020,680
    ResMLP-36    36        1e-6         44,690,488

Faithful to the official code (facebookresearch/deit, resmlp_models.py): the LayerScale init per depth above
(the CaiT rule the paper refers to: 0.1 up to depth 18, 1e-5 at 24, 1e-6 deeper); truncated-normal (std 0.02)
linear weights and zero biases, the patch convolution left at PyTorch's default init; stochastic depth at the
same rate for every block (``drop_path_rate``, 0 by default; the official code uses a constant rate, not a
linear ramp).
Deviations:
- The paper's equations write the post-normalization as a full Aff (scale and bias); the official code and the
  published weights use LayerScale (scale only), and so do we. The counts above are for that form.
- ``drop_rate`` is dropout before the head (not in the paper), 0 by default, read at forward time.
Differences to timm (``resmlp_*_224``, weights map onto ours, identical logits): timm names the patch
embedding ``stem``, stores alpha/beta with shape (1, 1, d) (ours (d,)), initializes LayerScale with 1e-4 for
ResMLP-12 (the paper: 0.1) and initializes the head and the biases differently.

Fixed input size: the cross-patch layer is N x N, so a model only takes the image size it was built for
(``variable_img_size=False``); another size raises a ValueError at forward time.

Small images (``img_size`` below 64, or ``small_input=True``): patch size 4, so a 28 px image is 7 x 7 = 49
patches and a 32 px image 8 x 8 = 64; widths unchanged. The smallest input is one patch (4 px); sizes must be
divisible by the patch size.
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, DropPath, Mlp, PatchEmbed, check_patches, small_form
from papernets.layers.weight_init import trunc_normal_
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["Affine", "ResMLPBlock", "ResMLP"]

RESMLP = Paper(
    "ResMLP: Feedforward networks for image classification with data-efficient training",
    "Touvron, Bojanowski, Caron, Cord, El-Nouby, Grave, Izacard, Joulin, Synnaeve, Verbeek, Jegou",
    2021,
    "https://arxiv.org/abs/2105.03404",
)

# Depth -> LayerScale initialization (width 384, patch 16, MLP ratio 4 for all).
RESMLP_LAYERSCALE: dict[int, float] = {12: 0.1, 24: 1e-5, 36: 1e-6}
EMBED_DIM, PATCH_SIZE, MLP_RATIO, SMALL_PATCH = 384, 16, 4, 4


class Affine(nn.Module):
    """Aff(x) = alpha * x + beta, per channel: ResMLP's replacement for LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, self.alpha, x)


class ResMLPBlock(nn.Module):
    """Cross-patch linear sublayer then cross-channel MLP, each Aff-normalized and LayerScaled."""

    def __init__(self, dim: int, seq_len: int, init_scale: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = Affine(dim)
        self.linear_tokens = nn.Linear(seq_len, seq_len)
        self.ls1 = nn.Parameter(torch.full((dim,), init_scale))
        self.norm2 = Affine(dim)
        self.mlp_channels = Mlp(dim, dim * MLP_RATIO)
        self.ls2 = nn.Parameter(torch.full((dim,), init_scale))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1 * self.linear_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))


class ResMLP(ClassifierModel):
    """ResMLP of a given depth; built for one input size."""

    classifier_name = "head"

    def __init__(
        self,
        depth: int = 12,
        init_scale: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        self.patch_size = SMALL_PATCH if small else PATCH_SIZE
        self.img_size = img_size
        self.patch_embed = PatchEmbed(img_size, self.patch_size, in_chans, EMBED_DIM)
        seq_len = self.patch_embed.num_patches
        self.blocks = nn.Sequential(
            *(ResMLPBlock(EMBED_DIM, seq_len, init_scale, drop_path_rate) for _ in range(depth))
        )
        self.norm = Affine(EMBED_DIM)
        self.num_features = EMBED_DIM
        self.head = Classifier(EMBED_DIM, num_classes, drop_rate, pool="avg_tokens", init=_init_linear)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"this ResMLP was built for {self.img_size}x{self.img_size} inputs "
                f"({self.patch_embed.num_patches} patches), not {x.shape[-2]}x{x.shape[-1]}: its "
                f"cross-patch layer fixes the number of patches; build it with img_size={x.shape[-1]}."
            )
        return self.norm(self.blocks(self.patch_embed(x)))


def _init_linear(m: nn.Linear) -> None:
    """The official code's initialization of every linear layer, the classifier included."""
    trunc_normal_(m.weight, std=0.02)
    nn.init.zeros_(m.bias)


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's MlpMixer(ResBlock) -> ours: patch embedding name, and alpha/beta from (1, 1, d) to (d,)."""
    state = rename_keys(state, [(r"^stem\.", "patch_embed.")])
    check_patches(state, model, "blocks.0.linear_tokens.weight")
    return {k: v.reshape(-1) if k.endswith((".alpha", ".beta")) else v for k, v in state.items()}


def _resmlp(depth: int, **kwargs) -> ResMLP:
    return ResMLP(depth, RESMLP_LAYERSCALE[depth], **kwargs)


def _reg(depth: int, aliases: tuple[str, ...] = ()):
    source = PretrainedSource("timm", f"resmlp_{depth}_224", _from_timm)
    return register_model(paper=RESMLP, family="resmlp", default_img_size=224, min_img_size=SMALL_PATCH,
                          aliases=aliases, pretrained={"timm": source}, variable_img_size=False)


@_reg(12, aliases=("resmlp",))
def resmlp_12(**kwargs) -> ResMLP:
    return _resmlp(12, **kwargs)


@_reg(24)
def resmlp_24(**kwargs) -> ResMLP:
    return _resmlp(24, **kwargs)


@_reg(36)
def resmlp_36(**kwargs) -> ResMLP:
    return _resmlp(36, **kwargs)
