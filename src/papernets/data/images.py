"""Opening image files safely, and their pixels as 8 bits.

``open_image`` refuses, with one line naming the file, an image whose size is absurd before anything is decoded:
either side above ``MAX_SIDE`` pixels, or more than ``MAX_PIXELS`` in all (Pillow's decompression-bomb warning and
error are turned into the same error). ``to_8bit`` scales 16-bit and 32-bit integer images (``I;16``, ``I``) and
float images (``F``) to 8 bits instead of clipping them: a 16-bit PNG keeps its contrast (value / 257), a float
TIFF in [0, 1] becomes 0..255 (other ranges: scaled by their maximum).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from papernets.errors import DatasetError

__all__ = ["MAX_SIDE", "MAX_PIXELS", "ImageTooLarge", "open_image", "to_8bit", "GRAY_MODES"]

MAX_SIDE = 30_000
MAX_PIXELS = 100_000_000
GRAY_MODES = ("L", "1", "I;16", "I;16L", "I;16B", "I;16N", "I", "F", "LA")


class ImageTooLarge(DatasetError):
    """An image whose size is absurd; refused before decoding."""


def _too_large(path: Path | str, w: int, h: int) -> ImageTooLarge:
    return ImageTooLarge(f"image {str(path)!r} is {w}x{h} pixels: more than papernets decodes (at most {MAX_SIDE} "
                         f"pixels a side and {MAX_PIXELS:,} in all); resize it first or leave it out.")


@contextlib.contextmanager
def open_image(path: Path | str) -> Iterator[Image.Image]:
    """``PIL.Image.open`` that checks the size in the header first (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLarge(f"image {str(path)!r} is refused as a decompression bomb: "
                                f"{str(exc).splitlines()[0]}") from exc
    with img:
        w, h = img.size
        if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
            raise _too_large(path, w, h)
        yield img


def to_8bit(img: Image.Image) -> Image.Image:
    """``img`` with 8-bit channels: 16- and 32-bit integer and float images scaled, not clipped."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return Image.fromarray(np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(arr.min(initial=0)), float(arr.max(initial=0))
        if low >= 0 and high <= 1:
            scaled = arr * 255.0
        else:
            scaled = (arr - min(low, 0.0)) / ((high - min(low, 0.0)) or 1.0) * 255.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    return img
