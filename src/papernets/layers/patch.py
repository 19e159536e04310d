"""Split an image into non-overlapping patches and embed each linearly (ViT, MLP-Mixer, ResMLP, gMLP)."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """A ``patch_size`` x ``patch_size`` convolution with the same stride: one token per patch.

    Returns tokens of shape (batch, num_patches, embed_dim). The grid follows the input, so a model that can
    handle a different number of tokens (ViT with resampled position embeddings) sees any size divisible by
    the patch size.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not divisible by the patch size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not divisible by the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)
