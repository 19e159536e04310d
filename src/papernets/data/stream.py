"""The streaming input pipeline: image folders read from disk batch by batch, for folders bigger than memory.

    root/train/<class>/<image>     training images (the validation split is held out of them, seeded)
    root/test/<class>/<image>      test images (or root/val/)

The folder's file index (paths, labels, image sizes and modes) is built once and cached in ``cache_dir``, keyed by
the folder; it is rebuilt when a file is added, removed or changed (the signature of every file's path, size and
modification time). Images are decoded (Pillow) and augmented
(``torchvision.transforms.v2``) in ``DataLoader`` worker processes:

- training: random-resized crop (``scale``, ``ratio``: Szegedy et al.'s "Inception" crop), horizontal flip where
  it keeps the label, then RandAugment, TrivialAugment or AutoAugment;
- evaluation: the shorter side resized to ``image_size / crop_pct``, then a center crop of ``image_size`` (as
  torchvision's and timm's ImageNet evaluation).

Each sample's augmentation is drawn from a generator seeded with (seed, epoch, sample index), in whichever worker
it runs, and each epoch's order from (seed, epoch), so the batches do not depend on the number of workers and a run
resumed in the middle of an epoch sees exactly the batches it would have seen. Normalization and random erasing run
on the whole batch on the training device, as in the in-memory pipeline (``loader.py``).

A file that cannot be read is reported with its path: when the index is built (its header) or when it is first
decoded. With ``skip_bad_images`` such files are left out and counted instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from papernets.data.augment import auto_augment, rand_augment, seeded
from papernets.data.datasets import IMAGE_EXTENSIONS
from papernets.data.images import GRAY_MODES
from papernets.data.loader import batch_count, epoch_order, finish_batch, stream_seed
from papernets.data.transforms import normalize
from papernets.errors import DatasetError

__all__ = ["Augment", "FolderIndex", "StreamSplits", "StreamLoader", "decode_image", "eval_transform",
           "folder_stats", "index_folder", "sample_seed", "save_index", "usable_cores"]

INDEX_VERSION = 1
_GRAY_MODES = set(GRAY_MODES)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch."""
    return stream_seed(seed, epoch, index, 5)


# ---------------------------------------------------------------------------------------------------- index


@dataclass
class FolderIndex:
    """The images of an image folder: (relative path, label) per split, and what the index learned of them."""

    root: Path
    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    gray: bool  # every readable image is grayscale
    bad: dict[str, str] = field(default_factory=dict)  # relative path -> why it cannot be read
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    from_cache: bool = False
    signature: str = ""
    cache: Path | None = None

    @property
    def in_chans(self) -> int:
        return 1 if self.gray else 3


def _split_dirs(root: Path) -> tuple[Path, Path]:
    train = root / "train"
    test = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not train.is_dir() or test is None:
        raise DatasetError(f"imagefolder root {str(root)!r} must hold train/<class>/<image> and test/ (or val/) "
                           "folders.")
    return train, test


def _scan(split_dir: Path, root: Path) -> list[tuple[str, str, int, int]]:
    """(relative path, class, size, mtime_ns) of every image file under ``split_dir/<class>/``, sorted."""
    out = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        stack = [class_dir]
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(Path(entry.path))
                    elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                        st = entry.stat()
                        out.append((str(Path(entry.path).relative_to(root)), class_dir.name, st.st_size,
                                    st.st_mtime_ns))
    return sorted(out)


def _probe(path: Path) -> tuple[bool, str]:
    """(grayscale, "") from the image's header, or (False, why it cannot be read)."""
    from PIL import UnidentifiedImageError

    from papernets.data.images import ImageTooLarge, open_image

    try:
        with open_image(path) as img:
            w, h = img.size
            if w < 1 or h < 1:
                return False, f"its size is {w}x{h}"
            return img.mode in _GRAY_MODES, ""
    except ImageTooLarge:
        raise  # never skipped: the user must see it
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _cache_file(root: Path, cache_dir: str | Path | None) -> Path:
    """The index file of ``root`` in ``cache_dir``, else ``$PAPERNETS_CACHE/index``, else
    ``~/.cache/papernets/index``."""
    default = Path(os.environ.get("PAPERNETS_CACHE") or Path.home() / ".cache" / "papernets") / "index"
    base = Path(cache_dir).expanduser() if cache_dir else default
    return base / f"{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def index_folder(root: str | Path, cache_dir: str | Path | None = None, log: Any = None) -> FolderIndex:
    """The file index of an image folder, from the cache when no file changed since it was built."""
    root = Path(root).expanduser().resolve()
    train_dir, test_dir = _split_dirs(root)
    train, test = _scan(train_dir, root), _scan(test_dir, root)
    if not train:
        raise DatasetError(f"no images found under {train_dir} (accepted: {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    if not test:
        raise DatasetError(f"no images found under {test_dir}, the test split of imagefolder root {str(root)!r}.")
    classes = sorted({c for _, c, _, _ in train})
    unknown = sorted({c for _, c, _, _ in test} - set(classes))
    if unknown:
        raise DatasetError(f"{test_dir} has classes not in train/: {', '.join(unknown)}.")
    signature = hashlib.sha1(json.dumps([train, test]).encode()).hexdigest()
    cache = _cache_file(root, cache_dir)
    label = {c: i for i, c in enumerate(classes)}
    files = {"train": [(p, label[c]) for p, c, _, _ in train], "test": [(p, label[c]) for p, c, _, _ in test]}
    try:
        cached = json.loads(cache.read_text())
        if cached.get("version") == INDEX_VERSION and cached.get("signature") == signature:
            return FolderIndex(root, classes, files["train"], files["test"], cached["gray"], cached["bad"],
                               _tuple(cached.get("mean")), _tuple(cached.get("std")), True, signature, cache)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if log and len(train) + len(test) >= 2000:  # say why the start takes a while
        print(f"data: indexing {len(train) + len(test):,} images under {root} (once; cached in {cache})", file=log,
              flush=True)
    gray, bad = True, {}
    for rel, _, _, _ in train + test:
        g, why = _probe(root / rel)
        if why:
            bad[rel] = why
        else:
            gray &= g
    index = FolderIndex(root, classes, files["train"], files["test"], gray, bad, signature=signature, cache=cache)
    save_index(index)
    return index


def _tuple(v: Any) -> tuple[float, ...] | None:
    return tuple(float(x) for x in v) if v else None


def save_index(index: FolderIndex) -> None:
    """Write the index to its cache file (the bad files and statistics found so far included)."""
    data = {"version": INDEX_VERSION, "root": str(index.root), "signature": index.signature, "gray": index.gray,
            "bad": index.bad, "mean": index.mean, "std": index.std}
    try:
        _write_json(index.cache, data)
    except OSError:  # a read-only home: the index is rebuilt next time, nothing is lost
        pass


# ---------------------------------------------------------------------------------------------------- decode


def decode_image(path: Path, gray: bool) -> torch.Tensor:
    """A uint8 (C, H, W) tensor of the image at ``path``, 1 channel if ``gray`` else 3 (decoded by Pillow, as
    torchvision's own ``ImageFolder`` does; torchvision 0.29 deprecates its ``io`` decoders)."""
    from papernets.data.images import open_image
    from papernets.data.transforms import pil_to_uint8

    with open_image(path) as img:
        img.load()
        return pil_to_uint8(img, gray)


def eval_transform(image_size: int, crop_pct: float) -> Any:
    """Evaluation: the shorter side resized to ``image_size / crop_pct``, then a center crop of ``image_size``."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(int(math.floor(image_size / crop_pct)), antialias=True), v2.CenterCrop(image_size)])


def folder_stats(index: FolderIndex, files: list[tuple[str, int]], count: int = 1000, size: int = 64
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of up to ``count`` of ``files`` (a fixed, evenly spread subset),
    each resized and center-cropped to ``size``; cached in the index."""
    if index.mean is not None and index.std is not None:
        return index.mean, index.std
    step = max(1, len(files) // count)
    crop = eval_transform(size, 1.0)
    images = []
    for rel, _ in files[::step][:count]:
        if rel in index.bad:
            continue
        try:
            images.append(crop(decode_image(index.root / rel, index.gray)))
        except Exception:  # an unreadable file is reported when it is read for training
            continue
    if not images:
        raise DatasetError(f"none of the training images under {index.root} could be decoded.")
    x = torch.stack(images).float() / 255
    index.mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
    index.std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    save_index(index)
    return index.mean, index.std


# ---------------------------------------------------------------------------------------------------- splits


@dataclass
class StreamSplits:
    """An image folder read from disk: the files of each split, and what a run needs to know about them."""

    name: str
    root: Path
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    test: list[tuple[str, int]]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    gray: bool
    skipped: dict[str, str] = field(default_factory=dict)  # bad files left out when the index was built

    @property
    def in_chans(self) -> int:
        return 1 if self.gray else 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def native_size(self) -> None:  # images keep their own sizes
        return None

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_val(self) -> int:
        return len(self.val)

    @property
    def num_test(self) -> int:
        return len(self.test)


# ---------------------------------------------------------------------------------------------------- loader


@dataclass(frozen=True)
class Augment:
    """The per-sample transforms of a split (None: evaluation)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    randaugment_ops: int = 0
    auto_augment: str | None = None  # one of augment.POLICIES


class _Samples(Dataset):
    """Decodes and transforms one sample per key (epoch, index, image size, RandAugment magnitude)."""

    def __init__(self, root: Path, files: list[tuple[str, int]], gray: bool, augment: Augment | None, seed: int,
                 crop_pct: float) -> None:
        self.root, self.files, self.gray, self.augment, self.seed, self.crop_pct = root, files, gray, augment, seed, \
            crop_pct

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor | None, int, int, str]:
        from torchvision.transforms import v2

        epoch, i, size, magnitude = key
        rel, label = self.files[i]
        try:
            img = decode_image(self.root / rel, self.gray)
        except Exception as exc:  # torchvision and Pillow raise many kinds for bad files
            return None, label, i, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        a = self.augment
        if a is None:
            return eval_transform(size, self.crop_pct)(img), label, i, ""
        seed = sample_seed(self.seed, epoch, i)
        with seeded(seed, img.device):  # the sample's draws depend on (seed, epoch, index) only
            img = v2.RandomResizedCrop(size, scale=a.scale, ratio=a.ratio, antialias=True)(img)
            if a.flip:
                img = v2.RandomHorizontalFlip()(img)
        if a.randaugment_ops > 0:
            img = rand_augment(img[None], a.randaugment_ops, magnitude, stream_seed(seed, 0, 0, 1))[0]
        if a.auto_augment:
            img = auto_augment(img[None], a.auto_augment, stream_seed(seed, 0, 0, 2))[0]
        return img, label, i, ""


def _collate(items: list[tuple[torch.Tensor | None, int, int, str]]) -> tuple[torch.Tensor | None, torch.Tensor,
                                                                                 list[tuple[int, str]]]:
    good = [(x, y) for x, y, _, why in items if not why]
    bad = [(i, why) for _, _, i, why in items if why]
    if not good:
        return None, torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one core per worker: the workers together use what the machine has


class _Keys:
    """The batch sampler: each batch's keys, for the epoch and start batch set before iterating."""

    def __init__(self, loader: StreamLoader) -> None:
        self.loader = loader
        self.epoch = self.start = 0

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        ld = self.loader
        order = epoch_order(len(ld.files), ld.train, ld.seed, self.epoch, ld.rank, ld.world_size)
        for b in range(self.start, len(ld)):
            sel = order[b * ld.batch_size:(b + 1) * ld.batch_size].tolist()
            yield [(self.epoch, i, ld.image_size, ld.randaugment_magnitude) for i in sel]

    def __len__(self) -> int:
        return len(self.loader) - self.start


class StreamLoader:
    """(images, labels) batches of an image-folder split, decoded and augmented in ``workers`` processes.

    The same interface as ``TensorLoader``: ``batches(epoch, start)``, ``len()`` (batches per epoch),
    ``num_samples``, and ``image_size`` and ``randaugment_magnitude`` that may change between epochs (progressive
    learning). Files found unreadable while reading are in ``bad`` (path -> why) when ``skip_bad`` is on; without
    it the first one stops the run with a one-line error naming it."""

    def __init__(
        self, root: Path, files: list[tuple[str, int]], gray: bool, batch_size: int, image_size: int,
        mean: tuple[float, ...], std: tuple[float, ...], train: bool, device: torch.device, seed: int = 0,
        augment: Augment | None = None, crop_pct: float = 0.875, randaugment_magnitude: int = 9,
        random_erasing: float = 0.0, workers: int = 0, rank: int = 0, world_size: int = 1,
        channels_last: bool = False, skip_bad: bool = False,
    ) -> None:
        self.root, self.files = root, files
        self.batch_size, self.image_size, self.mean, self.std = batch_size, image_size, mean, std
        self.train, self.device, self.seed = train, device, seed
        self.augment = augment if train else None
        self.randaugment_ops = augment.randaugment_ops if self.augment else 0
        self.randaugment_magnitude = randaugment_magnitude
        self.random_erasing = random_erasing if train else 0.0
        self.workers, self.rank, self.world_size = workers, rank, world_size
        self.channels_last, self.skip_bad = channels_last, skip_bad
        self.bad: dict[str, str] = {}
        self._samples = _Samples(root, files, gray, self.augment, seed, crop_pct)
        self._keys = _Keys(self)
        self._loader: DataLoader | None = None

    @property
    def num_samples(self) -> int:
        n = len(self.files)
        return math.ceil(n / self.world_size) if self.train else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return batch_count(self.num_samples, self.batch_size, self.train)

    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            w = self.workers
            self._loader = DataLoader(
                self._samples, batch_sampler=self._keys, num_workers=w, collate_fn=_collate,
                pin_memory=self.device.type == "cuda", persistent_workers=w > 0, prefetch_factor=4 if w else None,
                worker_init_fn=_worker_init if w else None,
            )
        return self._loader

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``, starting at batch index ``start``."""
        self._keys.epoch, self._keys.start = epoch, start
        for b, (x, y, bad) in enumerate(self._dataloader(), start=start):
            for i, why in bad:
                rel = self.files[i][0]
                if not self.skip_bad:
                    raise DatasetError(f"cannot decode image {str(self.root / rel)!r}: {why}; remove the file or set "
                                       "data.skip_bad_images=true to skip such files.")
                self.bad[rel] = why
            if x is None or len(y) < (2 if self.train else 1):
                continue
            yield self._finish(x, y, epoch, b)

    def _finish(self, x: torch.Tensor, y: torch.Tensor, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return finish_batch(normalize(x, self.mean, self.std), self.random_erasing,
                            stream_seed(self.seed, epoch, b, 2), self.channels_last), y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)

