import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_cifar, write_idx, write_mnist
from papernets.data import DatasetError, TensorLoader, load_dataset
from papernets.data.datasets import read_cifar_batch, read_idx
from papernets.data.loader import epoch_order


def test_real_fashion_mnist(fashion_root):
    d = load_dataset("fashion-mnist", val_fraction=0.1)
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (1, 28, 28)
    assert len(d.train_x) == 54_000 and len(d.val_x) == 6_000 and len(d.test_x) == 10_000
    assert d.classes[0] == "T-shirt/top" and d.num_classes == 10
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert d.flip and d.crop_padding == 2


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    # MNIST-format files, not synthetic: synthetic's images themselves depend on the split seed.
    write_mnist(tmp_path, n_train=1000, n_test=20)
    a = load_dataset("mnist", root=str(tmp_path), val_fraction=0.1, split_seed=0)
    b = load_dataset("mnist", root=str(tmp_path), val_fraction=0.1, split_seed=0)
    c = load_dataset("mnist", root=str(tmp_path), val_fraction=0.1, split_seed=1)
    assert (len(a.train_x), len(a.val_x)) == (900, 100)
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    train_rows = {bytes(x.numpy()) for x in a.train_x}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val_x)


def test_limit_caps_every_split():
    d = load_dataset("synthetic", limit=100)
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (100, 100, 100)


def test_eval_limit_caps_validation_and_test_only():
    d = load_dataset("synthetic", limit=300, eval_limit=80)  # synthetic: 900 train, 100 val, 200 test images
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (300, 80, 80)
    full = load_dataset("synthetic", eval_limit=50)  # no train cap: the whole training split stays
    assert (len(full.train_x), len(full.val_x), len(full.test_x)) == (900, 50, 50)
    assert torch.equal(full.val_x, load_dataset("synthetic", limit=50).val_x)  # the same images as limit keeps


def test_eval_limit_must_be_positive():
    from papernets.config import Config, ConfigError, apply_overrides, validate

    with pytest.raises(ConfigError, match=r"data.eval_limit must be positive or null, got 0"):
        validate(apply_overrides(Config(), ["data.eval_limit=0"]))


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    write_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    d = load_dataset("mnist", root=str(tmp_path), val_fraction=0.2)
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (40, 10, 20)
    assert d.train_x.shape[1:] == (1, 28, 28) and not d.flip  # no flips for digits
    assert d.mean == (0.1307,)


def test_idx_reader_rejects_corrupt_files(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 4, 4), np.uint8), gz=False)
    assert read_idx(tmp_path / "x").shape == (3, 4, 4)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "y")
    (tmp_path / "z").write_bytes(b"not an idx file")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "z")


@pytest.mark.parametrize("kind,classes,first", [("cifar10", 10, "c10_0"), ("cifar100", 100, "c100_0")])
def test_cifar_python_batches(tmp_path, kind, classes, first):
    write_cifar(tmp_path, kind, per_batch=20)
    d = load_dataset(kind, root=str(tmp_path), val_fraction=0.1)
    n_train = 100 if kind == "cifar10" else 20
    assert len(d.train_x) + len(d.val_x) == n_train and len(d.test_x) == 20
    assert d.train_x.shape[1:] == (3, 32, 32) and d.num_classes == classes and d.classes[0] == first
    test_file = "cifar-10-batches-py/test_batch" if kind == "cifar10" else "cifar-100-python/test"
    raw = read_cifar_batch(tmp_path / test_file)
    assert torch.equal(d.test_x[0].flatten(), torch.from_numpy(np.asarray(raw["data"][0])))


def test_cifar_reader_refuses_arbitrary_objects(tmp_path):
    import pickle

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": Image.new("L", (1, 1))}, protocol=2))
    with pytest.raises(DatasetError, match="refusing"):
        read_cifar_batch(path)


def _write_tree(root, mode):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                shape = (40, 50) if mode == "L" else (40, 50, 3)
                Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(root / split / cls / f"{i}.png")


@pytest.mark.parametrize("mode,chans", [("L", 1), ("RGB", 3)])
def test_imagefolder(tmp_path, mode, chans):
    _write_tree(tmp_path, mode)
    d = load_dataset("imagefolder", root=str(tmp_path), val_fraction=0.25, image_size=32)
    assert d.classes == ["cat", "dog"] and d.in_chans == chans
    assert d.train_x.shape[1:] == (chans, 32, 32) and len(d.train_x) + len(d.val_x) == 12 and len(d.test_x) == 4


def test_imagefolder_names_a_corrupt_image(tmp_path):
    _write_tree(tmp_path, "RGB")
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset("imagefolder", root=str(tmp_path), image_size=32)


@pytest.mark.parametrize("split", ["test", "val"])
def test_imagefolder_empty_test_split_is_an_error(tmp_path, split):
    _write_tree(tmp_path, "RGB")
    for f in (tmp_path / "test").rglob("*.png"):
        f.unlink()
    if split == "val":  # val/ is the test split when there is no test/
        (tmp_path / "test").rename(tmp_path / "val")
    with pytest.raises(DatasetError, match=rf"no images found under {tmp_path / split}, the test split"):
        load_dataset("imagefolder", root=str(tmp_path), image_size=32)


def test_imagefolder_uses_val_when_there_is_no_test(tmp_path):
    _write_tree(tmp_path, "L")
    (tmp_path / "test").rename(tmp_path / "val")
    (tmp_path / "val" / "cat" / "0.png").unlink()
    d = load_dataset("imagefolder", root=str(tmp_path), val_fraction=0.25, image_size=32)
    assert len(d.test_x) == 3 and d.test_y.tolist() == [0, 1, 1]


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match=rf"'mnist' not found \(looked in {tmp_path}.*data.download=true"):
        load_dataset("mnist", root=str(tmp_path))


def test_unknown_dataset_suggests():
    with pytest.raises(DatasetError, match="Did you mean fashion-mnist"):
        load_dataset("fashion_mnist")


def _loader(d, train=True, **kw):
    args = dict(batch_size=16, image_size=28, mean=d.mean, std=d.std, train=train, device=torch.device("cpu"),
                seed=3, flip=d.flip, crop_padding=d.crop_padding)
    args.update(kw)
    return TensorLoader(d.train_x, d.train_y, **args)


def _synthetic(limit):
    """Synthetic images with Fashion-MNIST's augmentation (flip, crop padding 2): synthetic has none of its own."""
    d = load_dataset("synthetic", limit=limit)
    d.flip, d.crop_padding = True, 2
    return d


def test_loader_is_deterministic_per_epoch_and_resumable():
    d = _synthetic(200)
    a, b = list(_loader(d).batches(1)), list(_loader(d).batches(1))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    other = list(_loader(d).batches(2))
    assert not torch.equal(a[0][1], other[0][1])
    tail = list(_loader(d).batches(1, start=5))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a[5:], tail, strict=True))
    x, _ = a[0]
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 1.0  # normalized


def test_loader_augments_only_in_training():
    d = _synthetic(64)
    plain = _loader(d, train=False, image_size=32).make_batch(torch.arange(16), 0, 0)[0]
    aug = _loader(d, train=True, image_size=32).make_batch(torch.arange(16), 0, 0)[0]
    assert plain.shape == aug.shape and not torch.equal(plain, aug)
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    ref = (d.train_x[:16].float() / 255 - mean) / std
    torch.testing.assert_close(plain, ref)


def test_loader_resizes():
    d = load_dataset("synthetic", limit=32)
    x, _ = next(iter(_loader(d, image_size=64).batches(0)))
    assert x.shape == (16, 3, 64, 64)


def test_loader_shards_across_processes():
    d = load_dataset("synthetic", limit=101)
    seen = torch.cat([epoch_order(len(d.train_x), True, 0, 0, r, 2) for r in range(2)])
    assert len(seen) == 102 and set(seen.tolist()) == set(range(101))  # padded by one, every image seen
    evals = [epoch_order(len(d.train_x), False, 0, 0, r, 2) for r in range(2)]
    assert sorted(torch.cat(evals).tolist()) == list(range(101))  # evaluation: each image exactly once


def test_alternating_flip_mirrors_each_image_every_other_pass():
    n = 64
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, :, 0] = 200  # a bright left column: mirrored, it is on the right
    images[:, 0, 0, 1] = torch.arange(n, dtype=torch.uint8)  # each image's index, readable in either orientation
    loader = TensorLoader(images, torch.arange(n) % 10, 16, 4, (0.0,), (1.0,), train=True,
                          device=torch.device("cpu"), seed=3, flip=True, flip_mode="alternating")

    def mirrored(epoch: int) -> dict[int, bool]:
        out = {}
        for x, _ in loader.batches(epoch):
            x = x * 255
            for img in x[:, 0]:
                left = bool(img[:, 0].mean() > 100)
                index = int(round(float(img[0, 1] if left else img[0, 2])))
                out[index] = not left
        return out

    e0, e1, e2 = mirrored(0), mirrored(1), mirrored(2)
    assert sorted(e0) == list(range(n))
    assert all(e1[i] != e0[i] for i in range(n)) and e2 == e0  # every other pass
    assert 16 < sum(e0.values()) < 48  # a random start per image
    again = TensorLoader(images, torch.arange(n) % 10, 16, 4, (0.0,), (1.0,), train=True,
                         device=torch.device("cpu"), seed=3, flip=True, flip_mode="alternating")
    loader = again
    assert mirrored(0) == e0  # the same seed, the same start
