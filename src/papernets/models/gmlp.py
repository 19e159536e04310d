"""gMLP.

Paper: "Pay Attention to MLPs", H. Liu, Z. Dai, D. R. So, Q. V. Le, NeurIPS 2021.
https://arxiv.org/abs/2105.08050

Key idea: replace self-attention by a spatial gating unit (SGU). Each block is one channel MLP whose hidden
activations gate themselves through a linear projection across the tokens (section 2, eq. 1-6, Fig. 1):

    Z = GELU(X U)                                    channel projection d -> d_ffn
    (Z1, Z2) = split(Z) along channels               two halves of d_ffn / 2
    s(Z) = Z1 * (W LayerNorm(Z2) + b)                W is n x n over the n tokens; W ~ 0, b = 1 at init
    Y = X + s(Z) V                                   projection d_ffn / 2 -> d, pre-norm residual block

so that at initialization every block is a plain feed-forward layer, and token interactions are learned. Patch
16 x 16 embedding, 30 blocks, LayerNorm, average pooling over the tokens, linear head. Variants (Table 1):

    model    blocks  d_model  d_ffn  params (224 px, 1000 classes)
    gMLP-Ti    30      128     768     5,867,328
    gMLP-S     30      256    1536    19,422,656
    gMLP-B     30      512    3072    73,075,392

Faithful to the paper: the SGU as eq. 6 with the norm on Z2, W initialized near zero (N(0, 1e-6)) and b to
ones; the gating projection works for any number of patches (it is sized from the image size at build time).
``drop_path_rate`` is stochastic depth (the paper's recipe: survival probability 1.0 / 0.95 / 0.8 for
Ti / S / B), ramped linearly over depth (Huang et al.'s rule); 0 by default.
Deviations / choices the paper leaves open:
- The paper does not state the final normalization; we use a LayerNorm before the pooling as timm does (the
  parameter counts above include it). LayerNorm eps: 1e-6 in the blocks and at the end, PyTorch's 1e-5 inside
  the SGU (timm's choice, kept so that timm's weights give identical logits).
- Initialization beyond the SGU is not given in the paper; we use MLP-Mixer's official one (LeCun-normal
  kernels, zero biases, zero-initialized head).
- ``drop_rate`` is dropout before the head (not in the paper), 0 by default, read at forward time.
- GELU is exact (erf).
Differences to timm (``gmlp_*16_224``, weights map onto ours, identical logits): timm wraps fc1 / SGU / fc2 in
``mlp_channels`` with the SGU as ``mlp_channels.gate`` (ours ``fc1``, ``sgu``, ``fc2`` directly in the
block) and calls the patch embedding ``stem``; its drop-path rate is the same for every block. timm publishes
weights for gMLP-S only.

Fixed input size: the SGU's W is n x n, so a model only takes the image size it was built for
(``variable_img_size=False``); another size raises a ValueError at forward time.

Small images (``img_size`` below 64, or ``small_input=True``): patch size 4, so a 28 px image is 7 x 7 = 49
tokens and a 32 px image 8 x 8 = 64; widths unchanged. The smallest input is one patch (4 px); sizes must be
divisible by the patch size.
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, DropPath, PatchEmbed, check_patches, small_form
from papernets.layers.weight_init import lecun_normal_, zero_init_
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["SpatialGatingUnit", "GMLPBlock", "GMLP"]

GMLP_PAPER = Paper("Pay Attention to MLPs", "Liu, Dai, So, Le", 2021, "https://arxiv.org/abs/2105.08050")

# Table 1: number of blocks, d_model, d_ffn (patch 16 for all).
GMLP_SIZES: dict[str, tuple[int, int, int]] = {
    "Ti": (30, 128, 768),
    "S": (30, 256, 1536),
    "B": (30, 512, 3072),
}
PATCH_SIZE, SMALL_PATCH = 16, 4


class SpatialGatingUnit(nn.Module):
    """s(Z) = Z1 * (W LayerNorm(Z2) + b), with W a linear map over the sequence (eq. 5-6)."""

    def __init__(self, dim: int, seq_len: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim // 2)
        self.proj = nn.Linear(seq_len, seq_len)

    def reset_parameters(self) -> None:
        """W near zero and b one, so that the unit starts as the identity on Z1 (section 2.1)."""
        nn.init.normal_(self.proj.weight, std=1e-6)
        nn.init.ones_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)
        v = self.proj(self.norm(v).transpose(1, 2)).transpose(1, 2)
        return u * v


class GMLPBlock(nn.Module):
    """Pre-norm block: x + V(SGU(GELU(U(LayerNorm(x)))))."""

    def __init__(self, dim: int, ffn_dim: int, seq_len: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit(ffn_dim, seq_len)
        self.fc2 = nn.Linear(ffn_dim // 2, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.fc2(self.sgu(self.act(self.fc1(self.norm(x))))))


class GMLP(ClassifierModel):
    """gMLP from one row of Table 1; built for one input size."""

    classifier_name = "head"

    def __init__(
        self,
        depth: int = 30,
        embed_dim: int = 256,
        ffn_dim: int = 1536,
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
        self.patch_embed = PatchEmbed(img_size, self.patch_size, in_chans, embed_dim)
        seq_len = self.patch_embed.num_patches
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*(GMLPBlock(embed_dim, ffn_dim, seq_len, rate) for rate in rates))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.num_features = embed_dim
        self.head = Classifier(embed_dim, num_classes, drop_rate, pool="avg_tokens", init=zero_init_)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                lecun_normal_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            block.sgu.reset_parameters()
        zero_init_(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"this gMLP was built for {self.img_size}x{self.img_size} inputs "
                f"({self.patch_embed.num_patches} patches), not {x.shape[-2]}x{x.shape[-1]}: its "
                f"spatial gating unit fixes the number of patches; build it with img_size={x.shape[-1]}."
            )
        return self.norm(self.blocks(self.patch_embed(x)))


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's gMLP -> ours: ``mlp_channels`` flattened into the block, ``gate`` -> ``sgu``."""
    rules = [(r"^stem\.", "patch_embed."), (r"\.mlp_channels\.gate\.", ".sgu."), (r"\.mlp_channels\.", ".")]
    state = rename_keys(state, rules)
    check_patches(state, model, "blocks.0.sgu.proj.weight")
    return state


def _gmlp(size: str, **kwargs) -> GMLP:
    depth, dim, ffn_dim = GMLP_SIZES[size]
    return GMLP(depth, dim, ffn_dim, **kwargs)


_TIMM_S = {"timm": PretrainedSource("timm", "gmlp_s16_224", _from_timm)}
_REG = {"paper": GMLP_PAPER, "family": "gmlp", "default_img_size": 224, "min_img_size": SMALL_PATCH,
        "variable_img_size": False}


@register_model(**_REG)
def gmlp_ti_16(**kwargs) -> GMLP:
    return _gmlp("Ti", **kwargs)


@register_model(**_REG, aliases=("gmlp",), pretrained=_TIMM_S)
def gmlp_s_16(**kwargs) -> GMLP:
    return _gmlp("S", **kwargs)


@register_model(**_REG)
def gmlp_b_16(**kwargs) -> GMLP:
    return _gmlp("B", **kwargs)
