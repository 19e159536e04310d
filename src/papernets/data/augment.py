"""RandAugment and random erasing on whole batches, through ``torchvision.transforms.v2``, seeded per batch.

torchvision's ``RandAugment`` called on a batch tensor draws one op for the whole batch. Here every image draws
its own ops and signs, exactly as ``torch.stack([RandAugment(N, M)(img) for img in batch])`` would under the
same seed (tested), but the images that drew the same (op, signed magnitude) are transformed together, one
torchvision call per group: at most 2 x 14 calls per op slot instead of one per image. RandAugment runs on uint8
images before normalization (torchvision's op table and magnitudes, 31 bins, fill 0); random erasing
(``v2.RandomErasing``, value 0, i.e. the dataset mean) on each normalized image.

torchvision transforms draw from PyTorch's global generator and do not take a local one, so both functions run
inside ``torch.random.fork_rng`` seeded with the batch's seed: the draws are a function of (seed, epoch, batch),
a resumed run sees the same augmentations, and the global random state (dropout, ...) is left untouched.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import torch
from torchvision.transforms import v2

__all__ = ["rand_augment", "random_erase", "seeded"]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global generators (CPU, and ``device`` if CUDA) seeded, restoring them after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def rand_augment(x: torch.Tensor, num_ops: int, magnitude: int, seed: int) -> torch.Tensor:
    """RandAugment(N=num_ops, M=magnitude) drawn independently for each uint8 image of ``x`` (N, C, H, W)."""
    if num_ops <= 0 or len(x) == 0:
        return x
    ra = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    space = ra._AUGMENTATION_SPACE
    names = tuple(space)
    h, w = x.shape[-2:]
    with seeded(seed, x.device):
        plan: list[list[tuple[str, float]]] = []
        for _ in range(len(x)):  # the draws of RandAugment.forward, image by image
            ops = []
            for _ in range(num_ops):
                name = names[int(torch.randint(len(names), ()))]
                magnitudes_fn, signed = space[name]
                magnitudes = magnitudes_fn(ra.num_magnitude_bins, h, w)
                value = 0.0
                if magnitudes is not None:
                    value = float(magnitudes[magnitude])
                    if signed and torch.rand(()) <= 0.5:
                        value *= -1
                ops.append((name, value))
            plan.append(ops)
        out = x.clone()
        for slot in range(num_ops):
            groups: dict[tuple[str, float], list[int]] = defaultdict(list)
            for i, ops in enumerate(plan):
                groups[ops[slot]].append(i)
            for (name, value), members in groups.items():
                if name == "Identity":
                    continue
                idx = torch.tensor(members, device=x.device)
                out[idx] = ra._apply_image_or_video_transform(
                    out[idx], name, value, interpolation=ra.interpolation, fill=ra._fill
                )
    return out


def random_erase(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``v2.RandomErasing(p)`` applied to each image of the normalized batch ``x`` on its own."""
    if p <= 0 or len(x) == 0:
        return x
    erase = v2.RandomErasing(p=p, value=0.0)
    with seeded(seed, x.device):
        return torch.stack([erase(img) for img in x])
