"""Shared test helpers: small dataset files written in the official formats, a CLI runner and a loader for the
scripts in benchmarks/. Tests that read the committed documentation (README.md, docs/) live in tests/docs/."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]
DOCS_TESTS = REPO / "tests" / "docs"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file, LeCun's MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(root: Path, n_train: int = 120, n_test: int = 40, gz: bool = True, seed: int = 0) -> Path:
    """A small MNIST-format dataset in torchvision's layout (root/MNIST/raw)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
        images[np.arange(n), labels + 5, 5:20] = 255  # a learnable mark per class
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return raw


def write_cifar(root: Path, kind: str = "cifar10", per_batch: int = 20, seed: int = 0) -> Path:
    """A small CIFAR python-format dataset (pickled dicts with numpy arrays), as torchvision downloads it."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        key, n_classes = "labels", 10
        meta_name, meta = "batches.meta", {"label_names": [f"c10_{i}" for i in range(10)]}
    else:
        folder = root / "cifar-100-python"
        files = ["train", "test"]
        key, n_classes = "fine_labels", 100
        meta_name, meta = "meta", {"fine_label_names": [f"c100_{i}" for i in range(100)]}
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        data = (rng.random((per_batch, 3072)) * 255).astype(np.uint8)
        labels = rng.integers(0, n_classes, per_batch).tolist()
        with (folder / f).open("wb") as fh:
            pickle.dump({"data": data, key: labels, "batch_label": f}, fh, protocol=2)
    with (folder / meta_name).open("wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return folder


def write_image_tree(root: Path, splits: dict[str, int], mode: str = "RGB", size: tuple[int, int] = (40, 50),
                     classes: tuple[str, ...] = ("cat", "dog"), seed: int = 0) -> Path:
    """An imagefolder tree: ``root/<split>/<class>/<i>.png`` with ``splits[split]`` random images per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = size if mode == "L" else (*size, 3)
                Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(folder / f"{i}.png")
    return root


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "papernets", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    if not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (the tests use the real data)")
    return FASHION_ROOT


def benchmark_module(name: str):
    """Import ``benchmarks/<name>.py`` (a script folder, not a package)."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True, scope="module")
def _docs_tests_read_the_repository_readme(request):
    """tests/docs/test_readme.py came from tests/ unchanged: it names the README as ``Path(__file__).parents[1]``,
    which is tests/ from tests/docs/. While its ``README`` names no file, point it at the repository's README.md;
    once the module names the right file this does nothing."""
    module = request.module
    readme = getattr(module, "README", None)
    moved = module is not None and DOCS_TESTS in Path(module.__file__).resolve().parents
    if moved and isinstance(readme, Path) and not readme.is_file():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(module, "README", REPO / "README.md")
            yield
    else:
        yield
