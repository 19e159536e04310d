"""RandAugment, TrivialAugment, AutoAugment and random erasing through ``torchvision.transforms.v2``, each image
drawing its own ops, seeded per batch (in-memory pipeline) or per sample (streaming pipeline).

RandAugment's magnitude is on the papers' scale (Cubuk et al. 2020 and the TensorFlow code that EfficientNet,
EfficientNetV2, MLP-Mixer, ResMLP and gMLP used), where 10 is the maximum level of each operation: level ``m`` is
the fraction m / 10 of torchvision's largest value for the op (rotation 3 m degrees, shear 0.03 m, translation
m / 10 of 45% of the image, colour and contrast factors 1 +- 0.09 m, posterize 8 - 0.4 m bits rounded, solarize
at 1 - m / 10). For m <= 10 that is exactly torchvision's ``RandAugment(magnitude=3 m)`` (its 31 bins). Levels
above 10, which EfficientNetV2's progressive learning uses (magnitude 15), continue the geometric ops linearly as
the TensorFlow code does (rotation 45 degrees at 15) and hold the others at their maximum.

torchvision's ``RandAugment`` called on a batch tensor draws one op for the whole batch. Here every image draws
its own ops and signs, exactly as ``torch.stack([RandAugment(N, 3 M)(img) for img in batch])`` would under the
same seed (tested), but the images that drew the same (op, signed magnitude) are transformed together, one
torchvision call per group: at most 2 x 14 calls per op slot instead of one per image. RandAugment runs on uint8
images before normalization (fill 0); random erasing (``v2.RandomErasing``, value 0, i.e. the dataset mean) on each
normalized image.

torchvision transforms draw from PyTorch's global generator and do not take a local one, so these functions run
inside ``torch.random.fork_rng`` seeded with the batch's seed: the draws are a function of (seed, epoch, batch),
a resumed run sees the same augmentations, and the global random state (dropout, ...) is left untouched.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import torch
from torchvision.transforms import v2

__all__ = ["POLICIES", "auto_augment", "rand_augment", "random_erase", "ra_value", "seeded"]

MAX_LEVEL = 10  # the papers' RandAugment scale: level 10 is each operation's largest value
_GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}  # continued past level 10


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global generators (CPU, and ``device`` if CUDA) seeded, restoring them after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def ra_value(space: dict, name: str, level: float, h: int, w: int) -> tuple[float, bool]:
    """(unsigned value, whether its sign is drawn) of RandAugment op ``name`` at the papers' ``level``."""
    magnitudes_fn, signed = space[name]
    bins = magnitudes_fn(3 * MAX_LEVEL + 1, h, w)  # torchvision's 31 bins: bin 3 m is level m
    if bins is None:
        return 0.0, False
    if level <= MAX_LEVEL and float(level * 3).is_integer():
        return float(bins[int(level * 3)]), signed
    if name in _GEOMETRIC:
        return float(bins[-1]) * level / MAX_LEVEL, signed
    return float(bins[min(int(round(level * 3)), len(bins) - 1)]), signed


def rand_augment(x: torch.Tensor, num_ops: int, magnitude: float, seed: int) -> torch.Tensor:
    """RandAugment(N=num_ops, M=magnitude, the papers' scale) drawn independently for each uint8 image of ``x``
    (N, C, H, W)."""
    if num_ops <= 0 or len(x) == 0:
        return x
    ra = v2.RandAugment(num_ops=num_ops)
    space = ra._AUGMENTATION_SPACE
    names = tuple(space)
    h, w = x.shape[-2:]
    with seeded(seed, x.device):
        plan: list[list[tuple[str, float]]] = []
        for _ in range(len(x)):  # the draws of RandAugment.forward, image by image
            ops = []
            for _ in range(num_ops):
                name = names[int(torch.randint(len(names), ()))]
                value, signed = ra_value(space, name, magnitude, h, w)
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


POLICIES = ("trivialaugment", "autoaugment")  # data.auto_augment


def auto_augment(x: torch.Tensor, policy: str, seed: int) -> torch.Tensor:
    """TrivialAugment (Müller & Hutter 2021, torchvision's "wide" op table) or AutoAugment (Cubuk et al. 2019, the
    ImageNet policy), drawn independently for each uint8 image of ``x``."""
    if len(x) == 0:
        return x
    if policy == "trivialaugment":
        op = v2.TrivialAugmentWide()
    elif policy == "autoaugment":
        op = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    else:
        raise ValueError(f"unknown augmentation policy {policy!r}; accepted: {', '.join(POLICIES)}")
    with seeded(seed, x.device):
        return torch.stack([op(img) for img in x])


def random_erase(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``v2.RandomErasing(p)`` applied to each image of the normalized batch ``x`` on its own."""
    if p <= 0 or len(x) == 0:
        return x
    erase = v2.RandomErasing(p=p, value=0.0)
    with seeded(seed, x.device):
        return torch.stack([erase(img) for img in x])
