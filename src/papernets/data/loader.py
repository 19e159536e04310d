"""Batches from in-memory uint8 tensors, augmented and normalized on the training device.

Every batch is a pure function of (seed, epoch, batch index): the epoch's order comes from a generator seeded
with (seed, epoch), each batch's augmentation (crop, flip, RandAugment, random erasing) from generators seeded
with (seed, epoch, batch). A run resumed in the
middle of an epoch therefore continues with exactly the batches it would have seen, and under ``torchrun``
each process takes its own share of the same order (``rank::world_size``, padded like DistributedSampler).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from papernets.data.augment import auto_augment, rand_augment, random_erase
from papernets.data.transforms import normalize, random_crop, random_flip, resize

__all__ = ["SegmentLoader", "TensorLoader", "batch_count", "batch_seed", "epoch_order", "finish_batch", "stream_seed"]

_PRIME = 1_000_003


def batch_seed(seed: int, epoch: int, batch: int = -1) -> int:
    return ((seed * _PRIME + epoch) * _PRIME + batch + 1) % (2**63 - 1)


def stream_seed(seed: int, epoch: int, batch: int, stream: int) -> int:
    """A seed for one more random stream of a batch (RandAugment, erasing, mixing), independent of the others."""
    return (batch_seed(seed, epoch, batch) * _PRIME + stream) % (2**63 - 1)


def epoch_order(n: int, train: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The sample indices this process reads in ``epoch``: for training a permutation seeded with (seed, epoch),
    padded by wrapping so that every process has as many, and dealt out ``rank::world_size`` (as PyTorch's
    ``DistributedSampler``); for evaluation the samples in order, ``rank::world_size``."""
    if not train:
        return torch.arange(rank, n, world_size)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(batch_seed(seed, epoch)))
    per_rank = math.ceil(n / world_size)
    if per_rank * world_size > n:  # pad by wrapping so every process has the same number of batches
        order = torch.cat([order, order[: per_rank * world_size - n]])
    return order[rank::world_size]


def batch_count(samples: int, batch_size: int, train: bool) -> int:
    """Batches per epoch: in training a last batch of fewer than two images is dropped (batch normalization needs
    two); in evaluation every image counts."""
    if train:
        full, rest = divmod(samples, batch_size)
        return full + (1 if rest >= 2 else 0)
    return math.ceil(samples / batch_size)


def finish_batch(x: torch.Tensor, random_erasing: float, seed: int, channels_last: bool) -> torch.Tensor:
    """The last steps of every training or evaluation batch, in either pipeline: random erasing of the normalized
    images (with probability ``random_erasing``, drawn from ``seed``), then the model's memory format."""
    if random_erasing > 0:
        x = random_erase(x, random_erasing, seed)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class TensorLoader:
    """Iterate (images, labels) batches of an in-memory split.

    ``train=True``: shuffled each epoch, random crop / flip (as the dataset allows), a last batch of fewer than
    two images is dropped (batch normalization needs two). ``train=False``: in order, no augmentation.
    ``randaugment_ops`` > 0 applies RandAugment (``randaugment_magnitude``, the papers' scale) and
    ``auto_augment`` TrivialAugment or AutoAugment to each uint8 training image after the crop and flip;
    ``random_erasing`` > 0 erases a random rectangle of each normalized training image with that probability (see
    ``augment.py``). ``image_size`` and ``randaugment_magnitude`` may be changed between
    epochs (progressive learning).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: bool,
        device: torch.device,
        seed: int = 0,
        flip: bool = False,
        crop_padding: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        randaugment_ops: int = 0,
        randaugment_magnitude: float = 9,
        random_erasing: float = 0.0,
        auto_augment: str | None = None,
        flip_mode: str = "random",
    ) -> None:
        self.images, self.labels = images, labels
        self.flip_mode, self._flip_bits = flip_mode, None
        self.batch_size, self.image_size = batch_size, image_size
        self.mean, self.std = mean, std
        self.train, self.device, self.seed = train, device, seed
        self.flip, self.crop_padding = flip and train, crop_padding if train else 0
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.randaugment_ops = randaugment_ops if train else 0
        self.randaugment_magnitude = randaugment_magnitude
        self.random_erasing = random_erasing if train else 0.0
        self.auto_augment = auto_augment if train else None
        self.pin = device.type == "cuda"

    @property
    def num_samples(self) -> int:
        """Images this process sees per epoch."""
        n = len(self.images)
        if not self.train:
            return len(range(self.rank, n, self.world_size))
        return math.ceil(n / self.world_size)

    def __len__(self) -> int:
        return batch_count(self.num_samples, self.batch_size, self.train)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``, starting at batch index ``start``."""
        idx = epoch_order(len(self.images), self.train, self.seed, epoch, self.rank, self.world_size)
        for b in range(start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.make_batch(sel, epoch, b)

    def make_batch(self, sel: torch.Tensor, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.images[sel], self.labels[sel]
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.train and (self.crop_padding > 0 or self.flip):
            g = torch.Generator().manual_seed(batch_seed(self.seed, epoch, b))
            x = random_crop(x, self.crop_padding, g)
            if self.flip and self.flip_mode == "alternating":
                x = self.alternating_flip(x, sel, epoch)
            elif self.flip:
                x = random_flip(x, g)
        if self.randaugment_ops > 0:
            x = rand_augment(x, self.randaugment_ops, self.randaugment_magnitude, stream_seed(self.seed, epoch, b, 1))
        if self.auto_augment:
            x = auto_augment(x, self.auto_augment, stream_seed(self.seed, epoch, b, 4))
        x = normalize(resize(x.float().div_(255.0), self.image_size), self.mean, self.std)
        return finish_batch(x, self.random_erasing, stream_seed(self.seed, epoch, b, 2), self.channels_last), y

    def alternating_flip(self, x: torch.Tensor, sel: torch.Tensor, epoch: int) -> torch.Tensor:
        """Jordan 2024's alternating flip (arXiv:2404.00498): each image is mirrored in every other
        pass over the data, starting mirrored or not at random (a fixed draw per image and seed), so that any two
        consecutive passes show both of its sides instead of the same side half the time."""
        if self._flip_bits is None:
            gen = torch.Generator().manual_seed(batch_seed(self.seed, -1, 0))
            self._flip_bits = torch.randint(0, 2, (len(self.images),), generator=gen, dtype=torch.uint8)
        mask = (self._flip_bits[sel] ^ (epoch % 2)).bool().to(x.device)
        return torch.where(mask[:, None, None, None], x.flip(-1), x)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)


class SegmentLoader:
    """A training loader cut into segments of ``steps`` batches that run through the data continuously: segment
    ``e`` is the batches ``e * steps`` to ``(e + 1) * steps - 1`` of the endless sequence pass 0, pass 1, ... of
    ``loader`` (each pass shuffled as that loader shuffles its epochs). A run with a step budget (``train.steps``)
    treats each segment as one of its "epochs": it validates and checkpoints at the end of each, whether a segment
    is a tenth of a pass over the training set or several passes. Everything else is ``loader``'s."""

    def __init__(self, loader: Any, steps: int) -> None:
        if steps < 1 or len(loader) < 1:
            raise ValueError(f"a segment needs at least one step and one batch per pass, got {steps} and {len(loader)}")
        self.loader, self.steps = loader, steps

    def __getattr__(self, name: str) -> Any:  # image_size, num_samples, bad, ...: the wrapped loader's
        return getattr(self.__dict__["loader"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("loader", "steps") or hasattr(type(self), name):
            object.__setattr__(self, name, value)
        else:  # progressive learning sets image_size and the like on the loader that makes the batches
            setattr(self.loader, name, value)

    def __len__(self) -> int:
        return self.steps

    def position(self, epoch: int, start: int = 0) -> tuple[int, int]:
        """(pass, batch within that pass) of batch ``start`` of segment ``epoch``."""
        return divmod(epoch * self.steps + start, len(self.loader))

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        left = self.steps - start
        data_pass, b = self.position(epoch, start)
        while left > 0:
            for batch in self.loader.batches(data_pass, b):
                yield batch
                left -= 1
                if left == 0:
                    return
            data_pass, b = data_pass + 1, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)
