"""Split an image into non-overlapping patches and embed each linearly (ViT, MLP-Mixer, ResMLP, gMLP)."""

from __future__ import annotations

import torch
from torch import nn

from papernets.errors import ModelConfigError


class PatchEmbed(nn.Module):
    """A ``patch_size`` x ``patch_size`` convolution with the same stride: one token per patch.

    Returns tokens of shape (batch, num_patches, embed_dim). The grid follows the input, so a model that can
    handle a different number of tokens (ViT with resampled position embeddings) sees any size divisible by
    the patch size. An ``img_size`` that is not divisible by the patch size raises ``ModelConfigError``.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.set_img_size(img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def set_img_size(self, img_size: int) -> None:
        """The grid for ``img_size`` px images; a size that is not a multiple of the patch size is refused."""
        p = self.patch_size
        if img_size % p:
            lower = img_size - img_size % p
            nearest = " or ".join(str(size) for size in (lower, lower + p) if size > 0)
            raise ModelConfigError(
                f"image size {img_size} is not divisible by the patch size {p}; "
                f"use a multiple of {p}, such as {nearest}."
            )
        self.img_size = img_size
        self.grid_size = img_size // p
        self.num_patches = self.grid_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not divisible by the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


def check_patches(state: dict[str, torch.Tensor], model: nn.Module, key: str) -> None:
    """Refuse, plainly, weights made for another patch grid than ``model.patch_embed``'s.

    MLP-Mixer's token-mixing MLP, ResMLP's cross-patch layer and gMLP's spatial gating unit have one weight per
    patch position, so their weights fix the number of patches. ``key`` names such a weight in ``state``; its
    last dimension is the number of patches it was trained for.
    """
    theirs, ours = state[key].shape[-1], model.patch_embed.num_patches
    patch = state["patch_embed.proj.weight"].shape[-1]
    if theirs != ours or patch != model.patch_embed.patch_size:
        size = int(round(theirs**0.5)) * patch
        raise ModelConfigError(
            f"these weights are for {size} px images ({theirs} patches of {patch} px) and this model is built for "
            f"{model.img_size} px; build it with img_size={size} (and small_input=False) to import them."
        )
