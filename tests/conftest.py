"""Shared test helpers: small dataset files written in the official formats, a CLI runner, a loader for the
scripts in benchmarks/ and the weight-import check (assert_same_logits_as_reference). Tests that read the
committed documentation (README.md, docs/) live in tests/docs/."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Image-folder indexes (data/stream.py) go to a folder of the test session, not the user's cache (subprocesses too).
os.environ["PAPERNETS_CACHE"] = tempfile.mkdtemp(prefix="papernets-test-cache-")


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
    """The real Fashion-MNIST, for the tests where real data is the point (accuracy reached, real-file loading);
    the others train on ``synthetic`` or on the small files above. Missing data fails those tests loudly."""
    if not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("Fashion-MNIST is missing: apt-get install -y dataset-fashion-mnist (these tests need real data)")
    return FASHION_ROOT


def benchmark_module(name: str, folder: str = "benchmarks"):
    """Import ``<folder>/<name>.py`` (``benchmarks/`` or ``scripts/``: script folders, not packages)."""
    path = REPO / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ weight import


def uninitialized_model(name: str, **kwargs) -> nn.Module:
    """Our model with uninitialized tensors (built on the meta device): its own initialization is wasted work when
    a strict load replaces every tensor. Models with non-persistent buffers (set by the builder, not by a state
    dict) are built normally."""
    import papernets

    with torch.device("meta"):
        model = papernets.create_model(name, **kwargs)
    if any(m._non_persistent_buffers_set for m in model.modules()):
        return papernets.create_model(name, **kwargs)
    return model.to_empty(device="cpu")


def random_reference(library: str, name: str, randomize: Callable[[nn.Module], object] | None = None, *,
                     init: bool = True, dtype: torch.dtype = torch.float32, **kwargs) -> nn.Module:
    """torchvision's or timm's ``name`` (keywords ``kwargs``), randomly initialized: nothing is downloaded. Cast to
    ``dtype``, passed to ``randomize`` (under ``torch.no_grad``) and put in eval mode. ``init=False`` skips its
    own initialization (it is built on the meta device): ``randomize`` must then set every tensor."""
    from papernets.pretrained import reference_model

    if init:
        ref = reference_model(library, name, **kwargs)
    else:
        with torch.device("meta"):
            ref = reference_model(library, name, **kwargs)
        assert not list(ref.buffers()), "a reference without its own initialization must have no buffers"
        ref = ref.to_empty(device="cpu")
    ref = ref.to(dtype)
    if randomize is not None:
        with torch.no_grad():
            randomize(ref)
    return ref.eval()


def assert_same_logits_as_reference(
    name: str,
    library: str,
    ref_name: str | None = None,
    *,
    img_size: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    ref_kwargs: dict | None = None,
    converter: str | None = None,
    randomize: Callable[[nn.Module], object] | None = None,
    ref_init: bool = True,
    state_fn: Callable[[dict], dict] | None = None,
    pretrained_file: Path | None = None,
    load: Callable[[nn.Module], nn.Module] | None = None,
    dtype: torch.dtype = torch.float32,
    input_scale: float = 1.0,
    source_kwargs_matter: bool = False,
    min_std: float | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> tuple[nn.Module, nn.Module]:
    """Import a randomly initialized torchvision/timm model's weights into ours and assert identical logits.

    Nothing is downloaded. The reference is ``random_reference(library, ref_name, randomize, init=ref_init,
    dtype=dtype)`` (``ref_name`` defaults to the name of ``name``'s registered ``library`` source), built with the
    source's ``ref_kwargs`` updated by ``ref_kwargs``; ``randomize`` should give it weights and statistics that a
    wrong mapping cannot hide behind.

    Ours takes its weights one of three ways:

    - by default, the source's ``convert`` (that of ``converter``'s source when given, for an architecture the
      library has without published weights) maps the reference's state dict (passed through ``state_fn``) onto
      ``uninitialized_model(name, img_size=img_size, **source.kwargs)``, strictly;
    - ``pretrained_file`` (a path under tmp_path): that state dict is saved there and ours is
      ``create_model(name, img_size=img_size, pretrained=library, pretrained_file=...)``, as a user loads a file;
    - ``load(ref)`` returns ours (e.g. through ``create_model(..., pretrained=library)`` with the library's
      download monkeypatched to hand back ``ref``).

    Both run in eval mode on ``torch.randn(2, 3, *input_size) * input_scale`` (``input_size`` defaults to
    ``img_size``); the logits must agree to ``atol``/``rtol``, and when ``min_std`` is given the reference's logits
    must vary more than that (a real signal, well above the tolerance). ``source_kwargs_matter``: without the
    source's builder keywords the same weights must give other logits (not allclose at 1e-3). The seed is 0.
    Returns ``(ours, ref)``.
    """
    import papernets
    from papernets.registry import get_entry

    source = get_entry(converter or name).pretrained[library]
    kwargs = {} if img_size is None else {"img_size": img_size}
    size = input_size or img_size
    assert size is not None, "give input_size or img_size"
    h, w = (size, size) if isinstance(size, int) else size

    torch.manual_seed(0)
    ref = random_reference(library, ref_name or source.name, randomize, init=ref_init, dtype=dtype,
                           **dict(source.ref_kwargs, **(ref_kwargs or {})))
    state = ref.state_dict()
    if state_fn is not None:
        state = state_fn(state)

    if load is not None:
        ours = load(ref)
    elif pretrained_file is not None:
        torch.save(state, pretrained_file)
        ours = papernets.create_model(name, pretrained=library, pretrained_file=str(pretrained_file), **kwargs)
    else:
        ours = uninitialized_model(name, **kwargs, **source.kwargs).to(dtype)
        ours.load_state_dict(source.convert(state, ours), strict=True)
    ours.eval()

    x = torch.randn(2, 3, h, w, dtype=dtype) * input_scale
    with torch.no_grad():
        expected = ref(x)
        if min_std is not None:
            assert expected.std() > min_std, f"the reference's logits hardly vary ({expected.std():.3g})"
        torch.testing.assert_close(ours(x), expected, atol=atol, rtol=rtol)
        if source_kwargs_matter:
            assert source.kwargs, f"{name}'s {library} source has no builder keywords"
            plain = uninitialized_model(name, **kwargs).to(dtype)
            plain.load_state_dict(source.convert(state, plain), strict=True)
            assert not torch.allclose(plain.eval()(x), expected, atol=1e-3, rtol=1e-3), \
                f"{name} gives {library}'s logits without {source.kwargs}"
    return ours, ref
