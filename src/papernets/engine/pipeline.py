"""The input pipeline of a run: in memory or streamed from disk (``data.pipeline``), and its three loaders.

``memory`` holds every split as uint8 tensors and augments whole batches on the training device (``data/loader.py``):
the classic datasets always, and an image folder whose decoded training split fits ``data.memory_budget_gb``
(default: a quarter of the machine's memory). ``stream`` reads an image folder batch by batch in worker processes
(``data/stream.py``), for folders of any size. ``auto`` picks memory where it fits and stream otherwise; the run's
first lines say which pipeline, why, and which augmentations are on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Any

import torch

from papernets.config import Config
from papernets.data import Splits, TensorLoader, load_dataset
from papernets.data.stream import Augment, StreamLoader, StreamSplits, folder_stats, index_folder, usable_cores
from papernets.errors import ConfigError, DatasetError

__all__ = ["Data", "open_data", "make_loaders", "eval_loader", "memory_budget_bytes", "describe_augmentation",
           "check_tta", "bad_images", "checkpoint_data"]

Loaders = tuple[Any, Any, Any]  # train, validation, test: TensorLoader or StreamLoader


@dataclass
class Data:
    """The splits of a run and the pipeline that reads them."""

    splits: Splits | StreamSplits
    pipeline: str  # "memory" or "stream"
    why: str


def memory_budget_bytes(cfg: Config) -> int:
    if cfg.data.memory_budget_gb is not None:
        return int(cfg.data.memory_budget_gb * 1e9)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _flip(cfg: Config, dataset_flips: bool) -> bool:
    return dataset_flips if cfg.data.flip is None else cfg.data.flip


def _held_out(files: list[tuple[str, int]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): the same seeded hold-out as ``load_dataset``'s."""
    n_val = int(round(len(files) * fraction))
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val].sort().values.tolist(), perm[n_val:].sort().values.tolist()
    return [files[i] for i in train], [files[i] for i in val]


def open_data(cfg: Config, log: IO[str] | None = None) -> Data:
    """The run's splits, in memory or as an index of files to stream, with the reason for the choice."""
    d = cfg.data
    if d.name != "imagefolder":
        splits = load_dataset(d.name, d.root, d.val_fraction, d.limit, d.download, d.split_seed, d.image_size,
                              d.eval_limit)
        splits.flip = _flip(cfg, splits.flip)
        return Data(splits, "memory", f"{splits.name} is small enough to hold in memory")
    if not d.root:
        raise DatasetError("dataset 'imagefolder' needs data.root: a folder with train/<class>/<image> files.")
    index = index_folder(d.root, d.index_cache, log)
    if index.bad and not d.skip_bad_images:
        rel, why = next(iter(sorted(index.bad.items())))
        more = f" (and {len(index.bad) - 1} more)" if len(index.bad) > 1 else ""
        raise DatasetError(f"cannot read image {str(index.root / rel)!r}: {why}{more}; remove it or set "
                           "data.skip_bad_images=true to skip such files.")
    need = len(index.train) * index.in_chans * d.image_size ** 2
    budget = memory_budget_bytes(cfg)
    fits = need <= budget
    sizes = f"the decoded training split takes {need / 1e9:.2f} GB, the budget is {budget / 1e9:.2f} GB"
    if d.pipeline == "memory" or (d.pipeline == "auto" and fits):
        why = "data.pipeline=memory" if d.pipeline == "memory" else f"auto: {sizes} (data.memory_budget_gb)"
        skip = frozenset(index.root / rel for rel in index.bad)
        splits = load_dataset("imagefolder", d.root, d.val_fraction, d.limit, False, d.split_seed, d.image_size,
                              d.eval_limit, skip=skip)
        splits.flip = _flip(cfg, splits.flip)
        return Data(splits, "memory", why)
    why = "data.pipeline=stream" if d.pipeline == "stream" else f"auto: {sizes} (data.memory_budget_gb)"
    good = [f for f in index.train if f[0] not in index.bad]
    train, val = _held_out(good, d.val_fraction, d.split_seed)
    test = [f for f in index.test if f[0] not in index.bad]
    cap_eval = d.eval_limit if d.eval_limit is not None else d.limit
    if d.limit is not None:
        train = train[:d.limit]
    if cap_eval is not None:
        val, test = val[:cap_eval], test[:cap_eval]
    if not train:
        raise DatasetError(f"imagefolder {str(index.root)!r} has no training images left after the validation split.")
    mean, std = folder_stats(index, good)
    splits = StreamSplits("imagefolder", index.root, train, val, test, index.classes, mean, std,
                          _flip(cfg, True), index.gray, dict(index.bad))
    return Data(splits, "stream", why)


def _common(data: Data, cfg: Config, device: torch.device, rank: int, world_size: int, channels_last: bool
            ) -> dict[str, Any]:
    d, s = cfg.data, data.splits
    common = dict(image_size=d.image_size, mean=s.mean, std=s.std, device=device, channels_last=channels_last,
                  rank=rank, world_size=world_size)
    if isinstance(s, StreamSplits):
        common.update(gray=s.gray, crop_pct=d.crop_pct, skip_bad=d.skip_bad_images,
                      workers=usable_cores() if d.workers is None else d.workers)
    return common


def eval_loader(data: Data, cfg: Config, split: str, device: torch.device, rank: int = 0, world_size: int = 1,
                channels_last: bool = False) -> Any:
    """A loader of ``split`` ("train", "val" or "test") prepared for evaluation: in order, no augmentation."""
    s, bs = data.splits, cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    common = _common(data, cfg, device, rank, world_size, channels_last)
    if isinstance(s, Splits):
        return TensorLoader(getattr(s, f"{split}_x"), getattr(s, f"{split}_y"), bs, train=False, **common)
    return StreamLoader(s.root, getattr(s, split), batch_size=bs, train=False, **common)


def make_loaders(data: Data, cfg: Config, device: torch.device, rank: int, world_size: int, channels_last: bool,
                 randaugment_ops: int) -> Loaders:
    """Training, validation and test loaders of the run's pipeline (``randaugment_ops``: RandAugment's ops in
    training, progressive learning's default included)."""
    d, s = cfg.data, data.splits
    common = _common(data, cfg, device, rank, world_size, channels_last)
    ops, policy = (randaugment_ops, d.auto_augment) if d.augment else (0, None)
    if isinstance(s, Splits):
        train = TensorLoader(s.train_x, s.train_y, cfg.train.batch_size, train=True, seed=cfg.train.seed,
                             flip=s.flip and d.augment, crop_padding=s.crop_padding if d.augment else 0,
                             randaugment_ops=ops, randaugment_magnitude=d.randaugment_magnitude,
                             auto_augment=policy, random_erasing=d.random_erasing, flip_mode=d.flip_mode, **common)
    else:
        if d.flip_mode != "random":
            raise ConfigError(f"data.flip_mode={d.flip_mode} needs the memory pipeline (it mirrors each image by its "
                              "index and the pass); the stream pipeline flips at random: set data.flip_mode=random.")
        augment = Augment(tuple(d.crop_scale), tuple(d.crop_ratio), s.flip and d.augment, ops, policy)
        if not d.augment:  # the crop stays (every image must come out at image_size), at its full extent
            augment = Augment((1.0, 1.0), (1.0, 1.0), False, 0, None)
        train = StreamLoader(s.root, s.train, batch_size=cfg.train.batch_size, train=True, seed=cfg.train.seed,
                             augment=augment, randaugment_magnitude=d.randaugment_magnitude,
                             random_erasing=d.random_erasing, **common)
    return (train, *(eval_loader(data, cfg, split, device, rank, world_size, channels_last)
                     for split in ("val", "test")))


def describe_augmentation(data: Data, cfg: Config, randaugment_ops: int) -> str:
    """One line: the training augmentations that are on."""
    d, t, s = cfg.data, cfg.train, data.splits
    parts = []
    if d.augment:
        if data.pipeline == "stream":
            parts.append(f"random-resized crop (scale {d.crop_scale[0]:g}-{d.crop_scale[1]:g}, ratio "
                         f"{d.crop_ratio[0]:.3g}-{d.crop_ratio[1]:.3g})")
        elif isinstance(s, Splits) and s.crop_padding > 0:
            parts.append(f"random crop (padding {s.crop_padding})")
        flip = "alternating flip" if d.flip_mode == "alternating" else "flip"
        parts.append(flip if s.flip else "no flip" + (" (data.flip=false)" if d.flip is False else
                                                      f" ({s.name}'s labels change when mirrored)"))
        if randaugment_ops:
            parts.append(f"RandAugment (N {randaugment_ops}, M {d.randaugment_magnitude:g} of 10)")
        if d.auto_augment:
            parts.append({"trivialaugment": "TrivialAugment", "autoaugment": "AutoAugment"}[d.auto_augment])
    else:
        parts.append("none (data.augment=false)")
    if d.random_erasing:
        parts.append(f"random erasing {d.random_erasing:g}")
    for name, value in (("mixup", t.mixup_alpha), ("cutmix", t.cutmix_alpha)):
        if value:
            parts.append(f"{name} {value:g}")
    if t.progressive:
        parts.append("progressive learning")
    evaluation = (f"; evaluation: resize to {int(d.image_size / d.crop_pct)}, center crop {d.image_size}"
                  if data.pipeline == "stream" else "")
    return "augmentation: " + ", ".join(parts) + evaluation


def check_tta(data: Data, cfg: Config) -> None:
    if cfg.train.tta_flip and not data.splits.flip:
        raise ConfigError(f"train.tta_flip=true mirrors the images, which changes the labels of "
                          f"{data.splits.name!r} (or data.flip=false says so); use it only where horizontal flips "
                          f"keep the label.")


def bad_images(splits: Any, *loaders: Any) -> dict[str, Any]:
    """The image files left out as unreadable (``data.skip_bad_images``), when indexed or when read: their count
    and the first 20 with their errors."""
    bad = dict(getattr(splits, "skipped", {}))
    for loader in loaders:
        bad.update(getattr(loader, "bad", {}))
    return {"count": len(bad), "files": dict(sorted(bad.items())[:20])}


def checkpoint_data(data: Data, cfg: Config) -> dict[str, Any]:
    """What a checkpoint records of its data: enough to preprocess and name new images the same way."""
    d = data.splits
    return {"name": d.name, "classes": d.classes, "mean": list(d.mean), "std": list(d.std), "in_chans": d.in_chans,
            "native_size": d.native_size, "num_classes": d.num_classes, "pipeline": data.pipeline,
            "crop_pct": cfg.data.crop_pct}
