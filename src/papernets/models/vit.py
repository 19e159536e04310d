"""Vision Transformer (ViT).

Paper: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", A. Dosovitskiy, L. Beyer,
A. Kolesnikov, D. Weissenborn, X. Zhai, T. Unterthiner, M. Dehghani, M. Minderer, G. Heigold, S. Gelly,
J. Uszkoreit, N. Houlsby, ICLR 2021. https://arxiv.org/abs/2010.11929

Key idea: no convolutions beyond a patch embedding. Cut the image into P x P patches, embed each linearly,
prepend a learnable class token, add learned 1-D position embeddings, and run a standard pre-norm Transformer
encoder (section 3.1, eq. 1-4):

    z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}        z_l = MLP(LN(z'_l)) + z'_l       (l = 1..L)
    y = LN(z_L^0) -> linear head

The MLP is Linear(D, 4D) -> GELU -> Linear(4D, D). Variants (Table 1; Ti and S from DeiT, Touvron et al. 2021,
"Training data-efficient image transformers", https://arxiv.org/abs/2012.12877):

    model    layers  hidden D  MLP size  heads  params (224 px, patch 16)
    ViT-Ti     12      192       768       3      5,717,416
    ViT-S      12      384      1536       6     22,050,664
    ViT-B      12      768      3072      12     86,567,656   (B/32: 88,224,232)
    ViT-L      24     1024      4096      16    304,326,632

Faithful to the paper and its official code (google-research/vision_transformer):
- LayerNorm eps 1e-6; pre-norm blocks; final LayerNorm; the head reads the class token.
- Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (same maths as
  softmax(QK^T/sqrt(d))V).
- ``drop_rate`` is the paper's dropout (Appendix B.1): after adding the position embeddings and after every
  dense layer except the qkv projections (attention output projection, both MLP layers). It is a property:
  setting ``model.drop_rate`` at run time updates every one of these dropouts. There is no separate dropout in
  front of the head (the paper has none). Default 0.0; the paper uses 0.1 when training on ImageNet-1k from
  scratch.
- ``drop_path_rate``: stochastic depth (Huang et al. 2016), linear in depth as in DeiT. Not in the ViT paper,
  standard in every later ViT recipe; 0 by default.
- Initialization as the official code: patch embedding LeCun normal, position embeddings N(0, 0.02), class
  token 0, dense kernels Xavier uniform (q, k, v each on its own fan), MLP biases N(0, 1e-6), other biases 0,
  head zero-initialized (the paper's fine-tuning head, section 3.2; the official code does this for
  pre-training too). ``reset_classifier`` zero-initializes the new head as the paper does for fine-tuning.
Deviations:
- The head is a single linear layer. The paper pre-trains with a hidden tanh layer in the head ("MLP with one
  hidden layer at pre-training time", section 3.1) and drops it for fine-tuning; torchvision's
  ``representation_size`` option; the parameter counts above (and torchvision's and timm's) are without it.
- GELU is the exact (erf) form, as in torchvision and timm; Flax's ``nn.gelu`` in the official code defaults
  to the tanh approximation.
- Inputs of another size than the model was built for: the grid of position embeddings is resampled on the fly
  (bicubic, antialiased, class token kept; the same rule as timm's ``resample_abs_pos_embed`` and the paper's
  "2D interpolation of the pre-trained position embeddings", section 3.2), so progressive resizing and
  fine-tuning at another resolution work. ``set_img_size`` resamples them permanently.
Differences to torchvision and timm (weights of both map onto ours, identical logits):
- torchvision ``vit_b_16``/``vit_b_32``/``vit_l_16`` use ``nn.MultiheadAttention`` (one ``in_proj_weight`` in
  q, k, v order = our ``qkv``), names ``conv_proj``, ``class_token``, ``encoder.pos_embedding``,
  ``ln_1``/``ln_2``, ``mlp.0``/``mlp.3``, ``encoder.ln``, ``heads.head``. Their position embeddings are fixed
  to the build size.
- Module names follow timm (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``), so timm's
  ``vit_*_patch*_224`` weights load unchanged. timm's own default initialization differs (truncated normal
  0.02 everywhere); its ``weight_init='jax'`` is ours.

The head reads the class token (``global_pool="token"``, the paper's default). ``global_pool="avg"`` is the
paper's other classifier (Appendix D.3, Figure 9; ``classifier='gap'`` in the official code): no class token and
no position embedding for one, the head reads the mean of all patch outputs after the final LayerNorm. The paper
finds both work similarly well once each has its own learning rate; later ViT recipes from the same group use
the mean (Beyer, Zhai and Kolesnikov, "Better plain ViT baselines for ImageNet-1k", 2022). Pretrained weights
(torchvision's and timm's) have a class token and load only into ``"token"``.

Small images (``img_size`` below 64, or ``small_input=True``): patch size 4 instead of 16 or 32, so a 28 px
input gives 7 x 7 = 49 patches and a 32 px input 8 x 8 = 64 (plus the class token); everything else unchanged.
The smallest input is one patch (4 px). Sizes must be divisible by the patch size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from papernets.layers import Classifier, ClassifierModel, DropPath, Mlp, PatchEmbed, small_form
from papernets.layers.weight_init import lecun_normal_, zero_init_
from papernets.pretrained import rename_keys
from papernets.registry import ModelConfigError, Paper, PretrainedSource, register_model

__all__ = ["Attention", "Block", "VisionTransformer", "resample_pos_embed"]

VIT = Paper(
    "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
    "Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer, Heigold, Gelly, "
    "Uszkoreit, Houlsby",
    2020,
    "https://arxiv.org/abs/2010.11929",
)

# Table 1 (Ti and S from DeiT): layers, hidden size D, MLP size, heads.
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "Ti": (12, 192, 768, 3),
    "S": (12, 384, 1536, 6),
    "B": (12, 768, 3072, 12),
    "L": (24, 1024, 4096, 16),
}
SMALL_PATCH = 4
GLOBAL_POOLS = ("token", "avg")  # the official code's classifier='token' and 'gap' (Appendix D.3)


class Attention(nn.Module):
    """Multi-head self-attention: one qkv projection, SDPA, output projection (+ dropout)."""

    def __init__(self, dim: int, num_heads: int, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    """Pre-norm encoder block (eq. 2-3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, drop: float = 0.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def resample_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix: int = 1
) -> torch.Tensor:
    """Resample (1, num_prefix + H*W, D) position embeddings to a new grid (bicubic, antialiased).

    The first ``num_prefix`` embeddings (the class token's, when the model has one) are kept as they are.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    cls_pos, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, grid], dim=1)


class VisionTransformer(ClassifierModel):
    """ViT from one row of Table 1 and a patch size."""

    classifier_name = "head"

    def __init__(
        self,
        patch_size: int = 16,
        depth: int = 12,
        embed_dim: int = 768,
        mlp_dim: int = 3072,
        num_heads: int = 12,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        small_input: bool | None = None,
        global_pool: str = "token",
    ) -> None:
        super().__init__()
        if global_pool not in GLOBAL_POOLS:
            raise ModelConfigError(
                f"global_pool {global_pool!r} is not one of {', '.join(map(repr, GLOBAL_POOLS))}."
            )
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if global_pool == "token" else 0
        small = self.small_input = small_form(img_size, small_input)
        self.patch_size = SMALL_PATCH if small else patch_size
        self.patch_embed = PatchEmbed(img_size, self.patch_size, in_chans, embed_dim)
        # the class token exists only when the head reads it (the official code's classifier='token')
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.num_prefix_tokens else None
        num_tokens = self.patch_embed.num_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *(Block(embed_dim, num_heads, mlp_dim, drop_rate, rate) for rate in rates)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.num_features = embed_dim
        self.head = Classifier(embed_dim, num_classes, init=zero_init_)  # no dropout of its own: see drop_rate
        self.drop_rate = drop_rate
        self._init_weights()

    @property
    def drop_rate(self) -> float:
        """The paper's dropout rate (after the position embeddings and every dense layer but qkv and head)."""
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        self._drop_rate = float(value)
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = float(value)

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.patch_embed.grid_size, self.patch_embed.grid_size)

    def _init_weights(self) -> None:
        lecun_normal_(self.patch_embed.proj.weight)
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)
        for block in self.blocks:
            dim = block.attn.proj.in_features
            for w in block.attn.qkv.weight.data.split(dim):
                nn.init.xavier_uniform_(w)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.xavier_uniform_(block.attn.proj.weight)
            nn.init.zeros_(block.attn.proj.bias)
            for fc in (block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(fc.weight)
                nn.init.normal_(fc.bias, std=1e-6)
        zero_init_(self.head)

    def set_img_size(self, img_size: int) -> None:
        """Rebuild for another input size for good: resample the position embeddings to the new grid."""
        old_grid = self.grid_size
        self.patch_embed.set_img_size(img_size)
        with torch.no_grad():
            new = resample_pos_embed(self.pos_embed.data, old_grid, self.grid_size, self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(new)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // self.patch_embed.patch_size, x.shape[-1] // self.patch_embed.patch_size)
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + resample_pos_embed(self.pos_embed, self.grid_size, grid, self.num_prefix_tokens)
        x = self.pos_drop(x)
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pool == "avg":
            return self.head(x.mean(dim=1))  # every patch's output, after the final LayerNorm
        return self.head(x[:, 0])  # the class token


def _fit_pos_embed(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Resample imported position embeddings to the grid our model was built for (fine-tuning at another size)."""
    if model.cls_token is None:
        raise ModelConfigError(
            "pretrained ViT weights have a class token; build the model with global_pool='token' to load them."
        )
    pos = state["pos_embed"]
    if pos.shape != model.pos_embed.shape:
        grid = int(round((pos.shape[1] - 1) ** 0.5))
        if grid * grid != pos.shape[1] - 1:
            raise ModelConfigError(f"cannot resample position embeddings of shape {tuple(pos.shape)}.")
        state["pos_embed"] = resample_pos_embed(pos, (grid, grid), model.grid_size)
    return state


# torchvision's names -> ours (their in_proj holds q, k, v in our qkv order).
_TORCHVISION_RULES = [
    (r"^conv_proj\.", "patch_embed.proj."),
    (r"^class_token$", "cls_token"),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1."),
    (r"\.ln_1\.", ".norm1."),
    (r"\.ln_2\.", ".norm2."),
    (r"\.self_attention\.in_proj_(weight|bias)$", r".attn.qkv.\1"),
    (r"\.self_attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.0\.", ".mlp.fc1."),
    (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
]


def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's ViT -> ours: renamed, position embeddings resampled if ours is built for another size."""
    return _fit_pos_embed(rename_keys(state, _TORCHVISION_RULES), model)


def _from_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's VisionTransformer uses our names already; position embeddings resampled as for torchvision."""
    return _fit_pos_embed(dict(state), model)


def _sources(torchvision: str | None = None, timm: str | None = None) -> dict[str, PretrainedSource]:
    out = {}
    if torchvision:
        out["torchvision"] = PretrainedSource("torchvision", torchvision, _from_torchvision)
    if timm:
        out["timm"] = PretrainedSource("timm", timm, _from_timm)
    return out


def _vit(size: str, patch_size: int, **kwargs) -> VisionTransformer:
    depth, dim, mlp_dim, heads = VIT_SIZES[size]
    return VisionTransformer(patch_size, depth, dim, mlp_dim, heads, **kwargs)


_REG = {"paper": VIT, "family": "vit", "default_img_size": 224, "min_img_size": SMALL_PATCH}


@register_model(**_REG, pretrained=_sources(timm="vit_tiny_patch16_224"))
def vit_ti_16(**kwargs) -> VisionTransformer:
    return _vit("Ti", 16, **kwargs)


@register_model(**_REG, pretrained=_sources(timm="vit_small_patch16_224"))
def vit_s_16(**kwargs) -> VisionTransformer:
    return _vit("S", 16, **kwargs)


@register_model(**_REG, aliases=("vit",), pretrained=_sources("vit_b_16", "vit_base_patch16_224"))
def vit_b_16(**kwargs) -> VisionTransformer:
    return _vit("B", 16, **kwargs)


@register_model(**_REG, pretrained=_sources("vit_b_32", "vit_base_patch32_224"))
def vit_b_32(**kwargs) -> VisionTransformer:
    return _vit("B", 32, **kwargs)


@register_model(**_REG, pretrained=_sources("vit_l_16", "vit_large_patch16_224"))
def vit_l_16(**kwargs) -> VisionTransformer:
    return _vit("L", 16, **kwargs)
