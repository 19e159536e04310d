"""The command line: every subcommand, and one-line errors with exit code 2 for bad input."""

import csv
import json
import re
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import run_cli, write_image_tree, write_mnist
from papernets.cli import main
from papernets.config import load_config
from papernets.engine.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint


def _one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stderr[-1500:])
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("papernets: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Small MNIST-format files (gray 28 px, a learnable mark per class): 900 train, 100 val, 1000 test images."""
    root = tmp_path_factory.mktemp("digits")
    write_mnist(root, n_train=1000, n_test=1000)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("cli")
    res = run_cli("train", "--model", "lenet5_bn", "--dataset", "mnist", "--data-root", str(digits), "--image-size",
                  "28", "--epochs", "1", "--batch-size", "32", "--set", "data.limit=900", "--out", str(out),
                  "--name", "run")
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
def test_bad_input_is_one_line_and_exit_2(cli, args, fragments):
    _one_line_error(cli(*args), *fragments)


def test_the_command_itself_exits_2_with_one_line():
    """The cases above run in this process (``main``); this one runs the installed command in a new interpreter."""
    _one_line_error(run_cli("train", "--model", "resnet81"), "unknown model 'resnet81'", "resnet18")


def test_dataset_not_found_says_where_and_how(cli, tmp_path):
    res = cli("train", "--model", "lenet5", "--dataset", "mnist", "--image-size", "28",
              "--data-root", str(tmp_path), "--out", str(tmp_path))
    _one_line_error(res, "dataset 'mnist' not found", str(tmp_path), "data.download=true")


def test_train_on_mnist_format_files(cli, tmp_path):
    write_mnist(tmp_path / "data", n_train=200, n_test=50)
    res = cli("train", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(tmp_path / "data"),
              "--image-size", "28", "--epochs", "1", "--out", str(tmp_path), "--name", "m")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["dataset"] == "mnist"


def test_existing_run_directory_is_not_overwritten(cli, run_dir):
    res = cli("train", "--model", "lenet5_bn", "--out", str(run_dir.parent), "--name", run_dir.name)
    _one_line_error(res, "already holds a run", "--resume")


@pytest.mark.slow
def test_eval_reports_top1_top5_and_matches_the_summary(run_dir):
    res = run_cli("eval", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"] == 1000  # the whole test split by default
    res = run_cli("eval", str(run_dir), "--json", "--limit", "900")  # the run's own capped test split
    out = json.loads(res.stdout)
    assert out["split"] == "test" and out["images"] == 900
    best = json.loads((run_dir / "summary.json").read_text())
    assert out["top1"] == pytest.approx(best["test_acc"]) and out["top5"] >= out["top1"]
    res = run_cli("eval", str(run_dir / "checkpoints" / "best.pt"), "--split", "val")
    assert res.returncode == 0 and "top-1" in res.stdout


@pytest.mark.slow
def test_eval_rejects_unreadable_and_foreign_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    _one_line_error(run_cli("eval", str(garbage)), "not a PyTorch checkpoint file", "garbage.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    _one_line_error(run_cli("eval", str(foreign)), "is not a papernets checkpoint")
    _one_line_error(run_cli("eval", str(tmp_path / "missing.pt")), "does not exist")


def test_predict_labels_real_images(cli, run_dir, tmp_path, digits):
    from papernets.data import load_dataset
    from papernets.data.transforms import normalize
    from papernets.engine.inference import load_trained

    data = load_dataset("mnist", root=str(digits), limit=20)
    for i in range(12):
        Image.fromarray(data.test_x[i, 0].numpy(), "L").save(tmp_path / f"img{i:02d}.png")
    rgb = np.stack([data.test_x[3, 0].numpy()] * 3, -1)
    Image.fromarray(rgb, "RGB").resize((56, 56)).save(tmp_path / "big_rgb.jpg")
    res = cli("predict", str(run_dir), str(tmp_path), "--top-k", "3", "--json")
    assert res.returncode == 0, res.stderr
    out = {item["image"].rsplit("/", 1)[-1]: item["top"] for item in json.loads(res.stdout)}
    assert len(out) == 13
    for top in out.values():
        probs = [p["probability"] for p in top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(p["label"] in data.classes for p in top)
    trained = load_trained(str(run_dir))
    model, ckpt = trained.model, trained.ckpt
    with torch.no_grad():  # the same images through the evaluation pipeline
        logits = model(normalize(data.test_x[:12], tuple(ckpt["data"]["mean"]), tuple(ckpt["data"]["std"])))
    expected = [data.classes[i] for i in logits.argmax(1).tolist()]
    assert [out[f"img{i:02d}.png"][0]["label"] for i in range(12)] == expected
    assert out["big_rgb.jpg"][0]["label"] in data.classes  # RGB, 56 px: converted to gray and resized


def test_predict_names_a_corrupt_image(cli, run_dir, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    _one_line_error(cli("predict", str(run_dir), str(bad)), "cannot read image", "broken.png")


def test_models_lists_params_and_gmacs(cli):
    res = cli("models", "resnet*", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["resnet18"]["params"] == 11_689_512 and rows["resnet18"]["gmacs"] == pytest.approx(1.814, rel=0.01)
    assert rows["resnet18"]["year"] == 2015
    text = cli("models", "lenet*")
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


# ------------------------------------------------------------------------------ in-process CLI (no start-up cost)


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd):
    """``papernets ARGS`` in this process (``papernets.cli.main``): the same parsing, error handling and exit codes
    as the command, without a new interpreter's start-up for every call."""

    def run(*args: str) -> _Result:
        capfd.readouterr()
        code = main(list(args))
        out, err = capfd.readouterr()
        return _Result(code, out, err)

    return run


SMALL = ("--model", "lenet5", "--dataset", "synthetic", "--image-size", "28", "--epochs", "1",
         "--batch-size", "64", "--set", "data.limit=300")


def _digit_png(path, root, index=0):
    from papernets.data import load_dataset

    Image.fromarray(load_dataset("mnist", root=str(root), limit=index + 1).test_x[index, 0].numpy(), "L").save(path)
    return path


@pytest.mark.parametrize("args,fragments", [
    (["train", "--set", "optim.betas=[0.9, 0.99"], ["--set optim.betas=[0.9, 0.99", "not valid YAML"]),
    (["train", "--set", "train.amp=on"], ["train.amp must be one of 'auto', 'off'", "got 'on'"]),
    (["train", "--set", "output.name=\"run"], ["output.name", "not valid YAML"]),
    (["eval", "some_run", "--limit", "0"], ["--limit must be at least 1, got 0"]),
])
def test_bad_values_are_one_line_and_exit_2(cli, args, fragments):
    _one_line_error(cli(*args), *fragments)


def test_precedence_file_then_flags_then_set_and_the_default_run_name(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {name: lenet5}\n"
        "data: {name: synthetic, image_size: 28, limit: 300}\n"
        "optim: {name: sgd, lr: 0.5, momentum: 0.8}\n"
        "train: {epochs: 3, batch_size: 64, amp: off}\n"
    )
    res = cli("train", "--config", str(config), "--epochs", "1", "--lr", "0.25", "--set", "optim.lr=0.05",
              "--out", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"lenet5-synthetic-\d{8}-\d{6}", run.name), run.name  # <model>-<dataset>-<time>
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.05  # --set beats the --lr flag, which beats the file's 0.5
    assert saved["train"]["epochs"] == 1  # the flag beats the file
    assert (saved["optim"]["name"], saved["optim"]["momentum"], saved["train"]["batch_size"]) == ("sgd", 0.8, 64)
    assert saved["train"]["amp"] == "off"  # YAML 1.1 reads `off` as false; a string field keeps the spelling
    assert len(list(csv.DictReader((run / "metrics.csv").open()))) == 1
    again = load_config(run / "config.yaml")  # the saved config repeats the run
    assert (again.optim.lr, again.train.epochs, again.train.amp) == (0.05, 1, "off")


def test_resume_from_a_checkpoint_file(cli, tmp_path):
    res = cli("train", *SMALL, "--out", str(tmp_path), "--set", "output.name=2024", "--set", "train.amp=off")
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "2024"  # YAML reads 2024 as a number; the name is the string the user wrote
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["amp"] == "off"
    res = cli("train", "--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming after epoch 1" in res.stderr
    assert [r["epoch"] for r in csv.DictReader((run / "metrics.csv").open())] == ["1", "2"]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2


def test_eval_and_predict_of_a_run_directory_read_best_pt(cli, run_dir, digits, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    del last["path"]
    last["model"] = {k: v * 0 if v.is_floating_point() else v for k, v in last["model"].items()}
    save_checkpoint(last, run / "checkpoints" / "last.pt")  # last.pt now differs: zero weights, uniform output
    summary = json.loads((run / "summary.json").read_text())
    res = cli("eval", str(run), "--json", "--limit", "900")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["checkpoint"] == str(run / "checkpoints" / "best.pt")
    assert out["top1"] == pytest.approx(summary["test_acc"])  # the run's reported test accuracy, reproduced
    zeroed = json.loads(cli("eval", str(run / "checkpoints" / "last.pt"), "--json", "--limit", "900").stdout)
    assert zeroed["top1"] < summary["test_acc"] - 0.2
    image = _digit_png(tmp_path / "x.png", digits)
    res = cli("predict", str(run), str(image), "--top-k", "10", "--json")
    assert res.returncode == 0, res.stderr
    probs = [p["probability"] for p in json.loads(res.stdout)[0]["top"]]
    assert max(probs) > 0.11  # best.pt; last.pt's zero weights give 0.1 for every class
    assert find_checkpoint(run).name == "last.pt"  # what --resume continues from


def test_predict_top_k_must_be_between_1_and_the_class_count(cli, run_dir, digits, tmp_path):
    image = _digit_png(tmp_path / "x.png", digits)
    _one_line_error(cli("predict", str(run_dir), str(image), "--top-k", "0"), "--top-k must be at least 1, got 0")
    _one_line_error(cli("predict", str(run_dir), str(image), "--top-k", "11"),
                    "--top-k 11 is more than the model's 10 classes", "1 to 10")


def test_cuda_device_without_cuda_is_a_config_error(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ("train", "--model", "lenet5", "--image-size", "28", "--out", str(tmp_path))
    _one_line_error(cli(*args, "--device", "cuda"), "train.device is 'cuda'", "no CUDA device", "'cpu' or 'auto'")
    _one_line_error(cli(*args, "--set", "train.device=cuda:1"), "train.device is 'cuda:1'")
    _one_line_error(cli(*args, "--device", "gpu"), "train.device 'gpu' is not a device", "auto, cpu, cuda or cuda:N")
    _one_line_error(cli("eval", str(tmp_path), "--device", "cuda"), "--device is 'cuda'")
    assert not any(tmp_path.iterdir())  # nothing was written


def test_debug_shows_the_traceback_and_normal_mode_one_line(cli):
    res = cli("--debug", "train", "--model", "resnet81")
    assert res.returncode == 2 and "Traceback (most recent call last)" in res.stderr, res.stderr[-1500:]
    assert "UnknownModelError: unknown model 'resnet81'" in res.stderr
    _one_line_error(cli("train", "--model", "resnet81"), "unknown model 'resnet81'")


def test_diverging_training_exits_1_with_a_message(cli, tmp_path):
    res = cli("train", *SMALL, "--optimizer", "sgd", "--lr", "1e38", "--out", str(tmp_path), "--name", "d")
    assert res.returncode == 1, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert re.match(r"papernets: training diverged: the loss became (nan|inf) at epoch 1", last), res.stderr[-2000:]
    assert "optim.lr" in last and "Traceback" not in res.stderr


def test_synthetic_rgb_end_to_end(cli, tmp_path):
    res = cli("train", "--model", "resnet20", "--dataset", "synthetic", "--image-size", "32", "--epochs", "1",
              "--batch-size", "50", "--set", "data.limit=200", "--out", str(tmp_path), "--name", "s")
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "s" / "checkpoints" / "best.pt")
    first_conv = next(v for v in ckpt["model"].values() if v.ndim == 4)
    assert ckpt["data"]["in_chans"] == 3 and first_conv.shape[1] == 3
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert (summary["dataset"], summary["model"], summary["image_size"]) == ("synthetic", "resnet20", 32)
    out = json.loads(cli("eval", str(tmp_path / "s"), "--json").stdout)
    assert out["images"] == 200 and out["top1"] == pytest.approx(summary["test_acc"])


@pytest.mark.parametrize("switch,files,tested", [
    ("output.save_best=false", ["last.pt"], "last"),
    ("output.checkpoint=false", ["best.pt"], "best (epoch 1)"),
])
def test_output_switches_leave_the_expected_files(cli, tmp_path, switch, files, tested):
    res = cli("train", *SMALL, "--set", switch, "--set", "output.plots=false", "--out", str(tmp_path), "--name", "r")
    assert res.returncode == 0, res.stderr[-2000:]
    run = tmp_path / "r"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == files
    assert sorted(p.name for p in run.iterdir()) == [".papernets-run", "checkpoints", "config.yaml", "confusion.csv",
                                                     "metrics.csv", "per_class.csv", "summary.json"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tested_weights"] == tested
    out = json.loads(cli("eval", str(run), "--json", "--limit", "300").stdout)  # eval finds whichever is there
    assert out["checkpoint"].endswith(files[0]) and out["top1"] == pytest.approx(summary["test_acc"])


def test_imagefolder_through_the_cli(cli, tmp_path):
    root = write_image_tree(tmp_path / "images", {"train": 8, "val": 2})  # no test/: val/ is the test split

    def args(data_root, name):
        return ("train", "--model", "lenet5", "--dataset", "imagefolder", "--data-root", str(data_root),
                "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path), "--name", name)

    res = cli(*args(root, "ok"))
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(cli("eval", str(tmp_path / "ok"), "--json").stdout)
    assert (out["dataset"], out["images"]) == ("imagefolder", 4)
    (root / "train" / "dog" / "3.png").write_bytes(b"\x89PNG garbage")
    _one_line_error(cli(*args(root, "corrupt")), "cannot read image", str(root / "train" / "dog" / "3.png"))
    empty = write_image_tree(tmp_path / "empty", {"train": 2})
    (empty / "test" / "cat").mkdir(parents=True)
    _one_line_error(cli(*args(empty, "empty")), f"no images found under {empty / 'test'}")
