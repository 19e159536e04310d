"""The command line: every subcommand, and one-line errors with exit code 2 for bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, write_mnist


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stderr[-1500:])
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("papernets: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fashion_root):
    out = tmp_path_factory.mktemp("cli")
    res = run_cli("train", "--model", "lenet5_bn", "--dataset", "fashion-mnist", "--image-size", "28",
                  "--epochs", "1", "--set", "data.limit=2000", "--out", str(out), "--name", "run")
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "run"


@pytest.mark.parametrize("args,fragments", [
    (["train", "--model", "resnet81"], ["unknown model 'resnet81'", "resnet18"]),
    (["train", "--dataset", "fashion_mnist"], ["unknown dataset 'fashion_mnist'", "fashion-mnist"]),
    (["train", "--set", "optim.lrr=0.1"], ["unknown config key optim.'lrr'", "optim.lr"]),
    (["train", "--set", "train.epochs=many"], ["train.epochs must be an integer, got 'many'"]),
    (["train", "--model", "lenet5", "--image-size", "12"], ["image size 12 is below lenet5's minimum of 16"]),
    (["train", "--config", "no/such.yaml"], ["config file 'no/such.yaml' does not exist"]),
    (["train", "--optimizer", "adagrad"], ["optim.name must be one of"]),
    (["profile", "vgg99"], ["unknown model 'vgg99'"]),
    (["models", "zzz*"], ["no model matches 'zzz*'"]),
])
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    _one_line_error(run_cli(*args), *fragments)


def test_dataset_not_found_says_where_and_how(tmp_path):
    res = run_cli("train", "--model", "lenet5", "--dataset", "mnist", "--image-size", "28",
                  "--data-root", str(tmp_path), "--out", str(tmp_path))
    _one_line_error(res, "dataset 'mnist' not found", str(tmp_path), "data.download=true")


def test_train_on_mnist_format_files(tmp_path):
    write_mnist(tmp_path / "data", n_train=200, n_test=50)
    res = run_cli("train", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(tmp_path / "data"),
                  "--image-size", "28", "--epochs", "1", "--out", str(tmp_path), "--name", "m")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["dataset"] == "mnist"


def test_existing_run_directory_is_not_overwritten(run_dir):
    res = run_cli("train", "--model", "lenet5_bn", "--out", str(run_dir.parent), "--name", run_dir.name)
    _one_line_error(res, "already holds a run", "--resume")


def test_eval_reports_top1_top5_and_matches_the_summary(run_dir):
    res = run_cli("eval", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"] == 10_000  # the whole test split by default
    res = run_cli("eval", str(run_dir), "--json", "--limit", "2000")  # the run's own capped test split
    out = json.loads(res.stdout)
    assert out["split"] == "test" and out["images"] == 2000
    best = json.loads((run_dir / "summary.json").read_text())
    assert out["top1"] == pytest.approx(best["test_acc"]) and out["top5"] >= out["top1"]
    res = run_cli("eval", str(run_dir / "checkpoints" / "best.pt"), "--split", "val")
    assert res.returncode == 0 and "top-1" in res.stdout


def test_eval_rejects_unreadable_and_foreign_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    _one_line_error(run_cli("eval", str(garbage)), "cannot read checkpoint", "garbage.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    _one_line_error(run_cli("eval", str(foreign)), "is not a papernets checkpoint")
    _one_line_error(run_cli("eval", str(tmp_path / "missing.pt")), "does not exist")


def test_predict_labels_real_images(run_dir, tmp_path, fashion_root):
    from papernets.cli import _load_trained
    from papernets.data import load_dataset
    from papernets.data.transforms import normalize

    data = load_dataset("fashion-mnist", limit=20)
    for i in range(12):
        Image.fromarray(data.test_x[i, 0].numpy(), "L").save(tmp_path / f"img{i:02d}.png")
    rgb = np.stack([data.test_x[3, 0].numpy()] * 3, -1)
    Image.fromarray(rgb, "RGB").resize((56, 56)).save(tmp_path / "big_rgb.jpg")
    res = run_cli("predict", str(run_dir), str(tmp_path), "--top-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    out = {item["image"].rsplit("/", 1)[-1]: item["top"] for item in json.loads(res.stdout)}
    assert len(out) == 13
    for top in out.values():
        probs = [p["probability"] for p in top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(p["label"] in data.classes for p in top)
    model, _, ckpt = _load_trained(str(run_dir))
    with torch.no_grad():  # the same images through the evaluation pipeline
        logits = model(normalize(data.test_x[:12], tuple(ckpt["data"]["mean"]), tuple(ckpt["data"]["std"])))
    expected = [data.classes[i] for i in logits.argmax(1).tolist()]
    assert [out[f"img{i:02d}.png"][0]["label"] for i in range(12)] == expected
    assert out["big_rgb.jpg"][0]["label"] in data.classes  # RGB, 56 px: converted to gray and resized


def test_predict_names_a_corrupt_image(run_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    _one_line_error(run_cli("predict", str(run_dir), str(bad)), "cannot read image", "broken.png")


def test_models_lists_params_and_gmacs():
    res = run_cli("models", "resnet*", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["resnet18"]["params"] == 11_689_512 and rows["resnet18"]["gmacs"] == pytest.approx(1.814, rel=0.01)
    assert rows["resnet18"]["year"] == 2015
    text = run_cli("models", "lenet*")
    assert text.returncode == 0 and "lenet5_bn" in text.stdout and "Gradient-Based Learning" in text.stdout


def test_profile_counts_and_times():
    res = run_cli("profile", "resnet18", "--image-size", "32", "--batch-size", "4", "--num-classes", "10",
                  "--steps", "1", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["params"] == 11_173_962 and out["gflops"] == pytest.approx(2 * out["gmacs"])
    assert out["train_img_per_s"] > 0 and out["infer_img_per_s"] > 0
    # A training step holds at least the fp32 weights and their gradients: 2 x 4 bytes x 11.17M = 85 MiB.
    assert out["peak_memory_mb"] > 85
    text = run_cli("profile", "lenet5", "--in-chans", "1", "--image-size", "28", "--num-classes", "10", "--no-timing")
    assert text.returncode == 0 and "GMACs" in text.stdout and "GFLOPs" in text.stdout and "60,850" in text.stdout
