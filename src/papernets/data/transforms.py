"""Batched image transforms on tensors: random crop with padding, horizontal flip, resize, normalize.

They work on a whole uint8/float batch at once (on the training device), with randomness from an explicit
``torch.Generator`` so that every batch of every epoch is reproducible and a resumed run sees the same data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from papernets.data.images import to_8bit

__all__ = ["random_crop", "random_flip", "resize", "normalize", "pil_to_uint8", "pil_to_square_uint8",
           "preprocess_pil"]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut a random window of the original size from it."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    mask = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a float batch to ``size`` x ``size`` (antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < x.shape[-1]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 or [0, 1] float batch -> (x / 255 - mean) / std, per channel."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def pil_to_uint8(img: Image.Image, gray: bool) -> torch.Tensor:
    """A PIL image as a uint8 (C, H, W) tensor, 1 channel if ``gray`` else 3 (16-bit and float images scaled to 8
    bits: ``images.to_8bit``)."""
    img = to_8bit(img).convert("L" if gray else "RGB")
    arr = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return arr.view(img.size[1], img.size[0], 1 if gray else 3).permute(2, 0, 1).contiguous()


def pil_to_square_uint8(img: Image.Image, size: int | None, gray: bool) -> torch.Tensor:
    """A PIL image as a uint8 (C, S, S) tensor: shorter side resized to ``size``, then center-cropped.

    ``size=None`` keeps the image as it is (it must be square)."""
    img = to_8bit(img).convert("L" if gray else "RGB")
    if size is not None:
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return pil_to_uint8(img, gray)


def preprocess_pil(
    img: Image.Image, in_chans: int, native_size: int, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Prepare one image for a trained model exactly as its evaluation batches were prepared."""
    x = pil_to_square_uint8(img, native_size, gray=in_chans == 1).unsqueeze(0)
    return resize(normalize(x, mean, std), image_size)
