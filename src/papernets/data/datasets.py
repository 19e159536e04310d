"""Datasets: where they are found, how their files are read, and their train/validation/test splits.

Everything is held in memory as uint8 tensors (N, C, H, W): the small classic datasets fit easily, and batches
are then cut, augmented and normalized as whole tensors (see ``loader.py``), so the input pipeline never waits
on Python-level per-image work.

Offline first: a dataset is looked for in ``data.root`` (if given), then in well-known places (Debian's
``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist``; torchvision's layout under
``./data``; ``~/.cache/papernets``), and torchvision downloads it only when ``data.download`` is true.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from papernets.errors import DatasetError

__all__ = [
    "DATASETS",
    "DatasetError",
    "Splits",
    "load_dataset",
    "read_idx",
    "read_cifar_batch",
    "dataset_names",
]


@dataclass
class Splits:
    """A dataset in memory: uint8 images (N, C, H, W) and int64 labels for train, validation and test."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flip preserves the label
    crop_padding: int  # random-crop padding at the native size (0: no crop)

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def native_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def num_train(self) -> int:
        return len(self.train_x)

    @property
    def num_val(self) -> int:
        return len(self.val_x)

    @property
    def num_test(self) -> int:
        return len(self.test_x)


FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# name -> (mean, std, flip, crop padding): the standard per-dataset statistics and augmentation.
DATASETS: dict[str, tuple[tuple[float, ...], tuple[float, ...], bool, int]] = {
    "mnist": ((0.1307,), (0.3081,), False, 2),
    "fashion-mnist": ((0.2860,), (0.3530,), True, 2),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, 4),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True, 4),
    "imagefolder": ((), (), True, -1),  # statistics computed from the training images; padding size / 8
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False, 0),
}

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def dataset_names() -> list[str]:
    return list(DATASETS)


# ----------------------------------------------------------------------------------------------- file formats


def _open_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (LeCun's MNIST format, gzipped or not) into a uint8 tensor."""
    try:
        data = _open_maybe_gz(path)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise DatasetError(f"{path} is truncated or corrupt: expected {count} values for shape {dims}.")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy())


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's python-format batches: dicts, lists, bytes and numpy arrays, nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> dict[str, object]:
    """Read one CIFAR python-format batch file (a pickled dict) with a restricted unpickler."""
    try:
        raw = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetError(f"cannot read CIFAR batch {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} is not a CIFAR batch (expected a pickled dict).")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


# ------------------------------------------------------------------------------------------------- locations


def _candidate_roots(name: str, root: str | None) -> list[Path]:
    folder = {"fashion-mnist": ["fashion-mnist", "FashionMNIST/raw", "FashionMNIST"],
              "mnist": ["mnist", "MNIST/raw", "MNIST"],
              "cifar10": ["cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"],
              "cifar100": ["cifar-100-python", "cifar100/cifar-100-python", "cifar100"]}[name]
    bases: list[Path] = []
    if root:
        bases.append(Path(root).expanduser())
    else:
        bases += [Path("/usr/share/datasets"), Path("data"), Path("~/.cache/papernets").expanduser()]
        if os.environ.get("PAPERNETS_DATA"):
            bases.insert(0, Path(os.environ["PAPERNETS_DATA"]).expanduser())
    out = []
    for base in bases:
        out.append(base)
        out += [base / f for f in folder]
    return out


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


_HOW_TO_GET = {
    "fashion-mnist": "install Debian's package (apt-get install dataset-fashion-mnist), or set data.root to a folder "
    "with the IDX files, or set data.download=true",
    "mnist": "set data.root to a folder with the IDX files (train-images-idx3-ubyte[.gz], ...), or set "
    "data.download=true to let torchvision download it",
    "cifar10": "set data.root to the folder holding cifar-10-batches-py, or set data.download=true",
    "cifar100": "set data.root to the folder holding cifar-100-python, or set data.download=true",
}


def _not_found(name: str, looked: list[Path]) -> DatasetError:
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    return DatasetError(f"dataset {name!r} not found (looked in {where}); {_HOW_TO_GET[name]}.")


def _download(name: str, root: str | None) -> Path:
    import torchvision

    target = Path(root or "data").expanduser()
    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
           "cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    try:
        cls(str(target), train=True, download=True)
        cls(str(target), train=False, download=True)
    except Exception as exc:  # network errors come in many types
        raise DatasetError(f"downloading {name!r} into {target} failed: {exc}") from exc
    return target


# --------------------------------------------------------------------------------------------------- loaders


def _load_idx_dataset(name: str, root: str | None, download: bool) -> tuple[torch.Tensor, ...]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    looked = _candidate_roots(name, root)
    for directory in looked:
        files = [_find_file(directory, s) for s in stems]
        if all(files):
            tx, ty, vx, vy = (read_idx(f) for f in files)  # type: ignore[arg-type]
            if tx.shape[0] != ty.shape[0] or vx.shape[0] != vy.shape[0]:
                raise DatasetError(f"{name} in {directory}: image and label counts differ.")
            return tx.unsqueeze(1), ty.long(), vx.unsqueeze(1), vy.long()
    if download:
        return _load_idx_dataset(name, str(_download(name, root)), download=False)
    raise _not_found(name, looked)


def _load_cifar(name: str, root: str | None, download: bool) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    if name == "cifar10":
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, meta_file, label_key, names_key = ["test_batch"], "batches.meta", "labels", "label_names"
    else:
        train_files, test_files = ["train"], ["test"]
        meta_file, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    looked = _candidate_roots(name, root)
    for directory in looked:
        if not all((directory / f).is_file() for f in train_files + test_files):
            continue

        def read(files: list[str], where: Path = directory) -> tuple[torch.Tensor, torch.Tensor]:
            xs, ys = [], []
            for f in files:
                batch = read_cifar_batch(where / f)
                try:
                    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                    labels = np.asarray(batch[label_key], dtype=np.int64)
                except (KeyError, ValueError) as exc:
                    raise DatasetError(f"{where / f} is not a {name} batch: {exc}") from exc
                xs.append(torch.from_numpy(data.copy()))
                ys.append(torch.from_numpy(labels))
            return torch.cat(xs), torch.cat(ys)

        tx, ty = read(train_files)
        vx, vy = read(test_files)
        classes = CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(100)]
        if (directory / meta_file).is_file():
            meta = read_cifar_batch(directory / meta_file)
            if names_key in meta:
                classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key]]
        return (tx, ty, vx, vy), classes
    if download:
        return _load_cifar(name, str(_download(name, root)), download=False)
    raise _not_found(name, looked)


def _decode_images(paths: list[Path], image_size: int) -> tuple[torch.Tensor, bool]:
    """Decode, resize (shorter side) and center-crop to ``image_size``; grayscale if every image is."""
    from PIL import UnidentifiedImageError

    from papernets.data.images import GRAY_MODES, open_image
    from papernets.data.transforms import pil_to_square_uint8

    images = []
    all_gray = True
    for path in paths:
        try:
            with open_image(path) as img:
                img.load()
                gray = img.mode in GRAY_MODES
                all_gray &= gray
                images.append(pil_to_square_uint8(img, image_size, gray=gray))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DatasetError(f"cannot read image {path}: {exc}") from exc
    if all_gray:
        return torch.stack([x[:1] for x in images]), True
    return torch.stack([x.expand(3, -1, -1) if x.shape[0] == 1 else x for x in images]), False


def _image_tree(directory: Path, skip: frozenset[Path] = frozenset()) -> list[tuple[Path, str]]:
    out = []
    for class_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for f in sorted(class_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and f.resolve() not in skip:
                out.append((f, class_dir.name))
    return out


def _load_imagefolder(root: str | None, image_size: int, skip: frozenset[Path] = frozenset()
                      ) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    if not root:
        raise DatasetError("dataset 'imagefolder' needs data.root: a folder with train/<class>/<image> files.")
    base = Path(root).expanduser()
    train_dir = base / "train"
    test_dir = next((base / d for d in ("test", "val") if (base / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DatasetError(
            f"imagefolder root {str(base)!r} must hold train/<class>/<image> and test/ (or val/) folders."
        )
    train = _image_tree(train_dir, skip)
    if not train:
        raise DatasetError(f"no images found under {train_dir} (accepted: {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    classes = sorted({c for _, c in train})
    index = {c: i for i, c in enumerate(classes)}
    test = _image_tree(test_dir, skip)
    if not test:
        raise DatasetError(
            f"no images found under {test_dir}, the test split of imagefolder root {str(base)!r}; it must hold "
            f"<class>/<image> files like train/ (accepted: {', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    unknown = sorted({c for _, c in test} - set(classes))
    if unknown:
        raise DatasetError(f"{test_dir} has classes not in train/: {', '.join(unknown)}.")
    tx, gray_train = _decode_images([p for p, _ in train], image_size)
    vx, gray_test = _decode_images([p for p, _ in test], image_size)
    if gray_train != gray_test:  # mixed: make both RGB
        tx, vx = tx.expand(-1, 3, -1, -1).contiguous(), vx.expand(-1, 3, -1, -1).contiguous()
    ty = torch.tensor([index[c] for _, c in train])
    vy = torch.tensor([index[c] for _, c in test], dtype=torch.long)
    return (tx, ty, vx, vy), classes


def _synthetic(seed: int) -> tuple[torch.Tensor, ...]:
    """Random 32x32 RGB images whose class sets a faint per-class pattern: learnable, for smoke tests only."""
    g = torch.Generator().manual_seed(seed + 12345)
    patterns = torch.rand(10, 3, 32, 32, generator=g) * 120

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = patterns[y] + torch.rand(n, 3, 32, 32, generator=g) * 135
        return x.to(torch.uint8), y

    tx, ty = make(1000)
    vx, vy = make(200)
    return tx, ty, vx, vy


def load_dataset(
    name: str,
    root: str | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
    download: bool = False,
    split_seed: int = 0,
    image_size: int = 32,
    eval_limit: int | None = None,
    skip: frozenset[Path] = frozenset(),
) -> Splits:
    """Load a dataset into memory and hold out a seeded validation split of the training set.

    ``limit`` caps each split (train, validation, test) at that many images; ``eval_limit``, when given, caps
    validation and test instead (so a quick run can train on more images than it evaluates). ``image_size`` only
    matters for ``imagefolder``, whose images are decoded to that size once; ``skip`` are image files (resolved
    paths) it leaves out, the unreadable ones where ``data.skip_bad_images`` is on.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        import difflib

        close = difflib.get_close_matches(key, list(DATASETS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}.{hint}")
    mean, std, flip, pad = DATASETS[key]
    if key in ("mnist", "fashion-mnist"):
        tx, ty, vx, vy = _load_idx_dataset(key, root, download)
        classes = FASHION_CLASSES if key == "fashion-mnist" else [str(i) for i in range(10)]
    elif key in ("cifar10", "cifar100"):
        (tx, ty, vx, vy), classes = _load_cifar(key, root, download)
    elif key == "imagefolder":
        (tx, ty, vx, vy), classes = _load_imagefolder(root, image_size, skip)
        sample = tx[: min(len(tx), 5000)].float() / 255
        mean = tuple(sample.mean(dim=(0, 2, 3)).tolist())
        std = tuple(sample.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
        pad = max(tx.shape[-1] // 8, 1)
    else:
        tx, ty, vx, vy = _synthetic(split_seed)
        classes = [f"class{i}" for i in range(10)]

    n_val = int(round(len(tx) * val_fraction))
    perm = torch.randperm(len(tx), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    splits = Splits(
        name=key,
        train_x=tx[train_idx],
        train_y=ty[train_idx],
        val_x=tx[val_idx],
        val_y=ty[val_idx],
        test_x=vx,
        test_y=vy,
        classes=classes,
        mean=mean,
        std=std,
        flip=flip,
        crop_padding=pad,
    )
    for split in ("train", "val", "test"):
        cap = limit if split == "train" or eval_limit is None else eval_limit
        if cap is not None:
            setattr(splits, f"{split}_x", getattr(splits, f"{split}_x")[:cap])
            setattr(splits, f"{split}_y", getattr(splits, f"{split}_y")[:cap])
    if len(splits.train_x) == 0:
        raise DatasetError(f"dataset {key!r} has no training images left after the validation split.")
    return splits
