"""MLP-Mixer.

Paper: "MLP-Mixer: An all-MLP Architecture for Vision", I. Tolstikhin, N. Houlsby, A. Kolesnikov, L. Beyer,
X. Zhai, T. Unterthiner, J. Yung, A. Steiner, D. Keysers, J. Uszkoreit, M. Lucic, A. Dosovitskiy,
NeurIPS 2021. https://arxiv.org/abs/2105.01601

Key idea: neither convolutions nor attention. After a per-patch linear embedding (S x S patches -> a table of
S tokens x C channels), every block mixes information twice with plain MLPs (eq. 1):

    U = X + W2 GELU(W1 LayerNorm(X)^T)^T        token mixing: one MLP shared by all channels, across patches
    Y = U + W4 GELU(W3 LayerNorm(U))            channel mixing: one MLP shared by all patches, across channels

then LayerNorm, global average pooling over the tokens and a linear head. Variants (Table 1):

    model   blocks  patch  hidden C  MLP_S (tokens)  MLP_C (channels)  params (224 px, 1000 classes)
    S/32       8     32       512        256              2048           19,104,624
    S/16       8     16       512        256              2048           18,528,264
    B/32      12     32       768        384              3072           60,293,428
    B/16      12     16       768        384              3072           59,880,472
    L/16      24     16      1024        512              4096          208,196,168

Faithful to the paper and its official code (google-research/vision_transformer, big_vision): pre-LayerNorm
(eps 1e-6, Flax's), exact GELU, patch embedding as a strided convolution, global average pooling, LeCun-normal
kernels and zero biases, zero-initialized head.
Deviations:
- ``drop_path_rate`` (stochastic depth, one of the paper's pre-training regularizers) grows linearly with depth
  as in big_vision, but the surviving branch is rescaled by 1 / (1 - p) at training time (DropPath, as timm
  and DeiT); big_vision drops without rescaling. 0 by default.
- ``drop_rate`` is dropout before the head (the paper lists dropout among its regularizers without placing
  it); 0 by default, read at forward time.
- GELU is exact (erf); Flax's ``nn.gelu`` in the official code is the tanh approximation.
Differences to timm (``mixer_*_224``, weights map onto ours, identical logits): timm calls the patch embedding
``stem`` (ours ``patch_embed``); its default initialization is Xavier-uniform, ours is the official LeCun
normal. timm applies the same drop-path rate to every block. timm publishes weights for B/16 and L/16 only.

Fixed input size: the token-mixing MLP is a dense layer over the S patches, so a model only takes the image
size it was built for (``variable_img_size=False``); another size raises a ValueError at forward time.

Small images (``img_size`` below 64, or ``small_input=True``): patch size 4 (whatever the variant's), so a
28 px image is 7 x 7 = 49 tokens and a 32 px image 8 x 8 = 64; the MLP widths stay those of Table 1. The
smallest input is one patch (4 px). Sizes must be divisible by the patch size.
"""

from __future__ import annotations

import torch
from torch import nn

from papernets.layers import Classifier, ClassifierModel, DropPath, Mlp, PatchEmbed, check_patches, small_form
from papernets.layers.weight_init import lecun_normal_, zero_init_
from papernets.pretrained import rename_keys
from papernets.registry import Paper, PretrainedSource, register_model

__all__ = ["MixerBlock", "MlpMixer"]

MIXER = Paper(
    "MLP-Mixer: An all-MLP Architecture for Vision",
    "Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, Keysers, Uszkoreit, Lucic, "
    "Dosovitskiy",
    2021,
    "https://arxiv.org/abs/2105.01601",
)

# Table 1: number of layers, hidden size C, MLP dims D_S (token mixing) and D_C (channel mixing).
MIXER_SIZES: dict[str, tuple[int, int, int, int]] = {
    "S": (8, 512, 256, 2048),
    "B": (12, 768, 384, 3072),
    "L": (24, 1024, 512, 4096),
}
SMALL_PATCH = 4


class MixerBlock(nn.Module):
    """Token-mixing MLP (across patches, on the transposed table) then channel-mixing MLP, both pre-norm."""

    def __init__(
        self, dim: int, seq_len: int, tokens_dim: int, channels_dim: int, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(seq_len, tokens_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channels_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class MlpMixer(ClassifierModel):
    """MLP-Mixer from one row of Table 1 and a patch size; built for one input size."""

    classifier_name = "head"

    def __init__(
        self,
        patch_size: int = 16,
        depth: int = 12,
        embed_dim: int = 768,
        tokens_dim: int = 384,
        channels_dim: int = 3072,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
    ) -> None:
        super().__init__()
        small = self.small_input = small_form(img_size, small_input)
        self.patch_size = SMALL_PATCH if small else patch_size
        self.img_size = img_size
        self.patch_embed = PatchEmbed(img_size, self.patch_size, in_chans, embed_dim)
        seq_len = self.patch_embed.num_patches
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *(MixerBlock(embed_dim, seq_len, tokens_dim, channels_dim, rate) for rate in rates)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.num_features = embed_dim
        self.head = Classifier(embed_dim, num_classes, drop_rate, pool="avg_tokens", init=zero_init_)
        self._init_weights()

    def _init_weights(self) -> None:
        # The official Flax code: LeCun normal kernels, zero biases, zero head; LayerNorm 1 / 0.
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                lecun_normal_(m.weight)
                nn.init.zeros_(m.bias)
        zero_init_(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"this MLP-Mixer was built for {self.img_size}x{self.img_size} inputs "
                f"({self.patch_embed.num_patches} patches), not {x.shape[-2]}x{x.shape[-1]}: its "
                f"token-mixing MLP fixes the number of patches; build it with img_size={x.shape[-1]}."
            )
        return self.norm(self.blocks(self.patch_embed(x)))


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's MlpMixer -> ours: only the patch embedding is named differently."""
    state = rename_keys(state, [(r"^stem\.", "patch_embed.")])
    check_patches(state, model, "blocks.0.mlp_tokens.fc1.weight")
    return state


def _timm(name: str) -> dict[str, PretrainedSource]:
    return {"timm": PretrainedSource("timm", name, _from_timm)}


def _mixer(size: str, patch_size: int, **kwargs) -> MlpMixer:
    depth, dim, tokens_dim, channels_dim = MIXER_SIZES[size]
    return MlpMixer(patch_size, depth, dim, tokens_dim, channels_dim, **kwargs)


_REG = {"paper": MIXER, "family": "mlp_mixer", "default_img_size": 224, "min_img_size": SMALL_PATCH,
        "variable_img_size": False}


@register_model(**_REG)
def mixer_s_32(**kwargs) -> MlpMixer:
    return _mixer("S", 32, **kwargs)


@register_model(**_REG)
def mixer_s_16(**kwargs) -> MlpMixer:
    return _mixer("S", 16, **kwargs)


@register_model(**_REG)
def mixer_b_32(**kwargs) -> MlpMixer:
    return _mixer("B", 32, **kwargs)


@register_model(**_REG, aliases=("mlpmixer",), pretrained=_timm("mixer_b16_224"))
def mixer_b_16(**kwargs) -> MlpMixer:
    return _mixer("B", 16, **kwargs)


@register_model(**_REG, pretrained=_timm("mixer_l16_224"))
def mixer_l_16(**kwargs) -> MlpMixer:
    return _mixer("L", 16, **kwargs)
