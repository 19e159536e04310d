"""The trainer end to end: run directory and accuracy on the real Fashion-MNIST; exact resume, Ctrl-C, divergence
and the other mechanics on synthetic data (or small dataset files where a property of the dataset matters)."""

import csv
import io
import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import run_cli
from papernets.cli import main
from papernets.config import ScheduleConfig, apply_overrides, load_config
from papernets.engine import step as step_mod
from papernets.engine import trainer as trainer_mod
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.trainer import METRIC_COLUMNS, Trainer, TrainingDiverged, build_model, config_from_checkpoint
from papernets.optim import create_schedule
from papernets.registry import ModelConfigError

QUICK = ["--model", "lenet5_bn", "--dataset", "fashion-mnist", "--image-size", "28", "--batch-size", "64",
         "--optimizer", "adam", "--lr", "0.002", "--set", "schedule.name=cosine", "--set", "model.drop_rate=0.1"]
DETERMINISTIC = ["--set", "train.threads=1"]
# Synthetic data for the mechanics: 900 train images, 57 steps an epoch in batches of 16.
SYNTHETIC = ["--model", "lenet5_bn", "--dataset", "synthetic", "--image-size", "28", "--batch-size", "16",
             "--optimizer", "adam", "--lr", "0.002", "--set", "schedule.name=cosine", "--set", "model.drop_rate=0.1"]


def _rows(run):
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _exact_columns(rows):
    return [{k: r[k] for k in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc")} for r in rows]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fashion_root):
    out = tmp_path_factory.mktemp("runs")
    res = run_cli("train", *QUICK, "--epochs", "2", "--set", "data.limit=6000", "--out", str(out), "--name", "r")
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "r", res


def test_run_directory_is_complete(trained_run):
    run, res = trained_run
    for rel in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                "plots/accuracy.png", "plots/loss.png"):
        assert (run / rel).is_file(), rel
    rows = _rows(run)
    assert list(rows[0]) == METRIC_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("best_val_acc", "test_acc", "params", "gmacs", "epochs", "wall_time_s", "versions"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["params"] == 61_302 and 0 < summary["test_acc"] <= 1
    assert summary["best_val_acc"] == max(float(r["val_acc"]) for r in rows)
    walls = [float(r["wall_time_s"]) for r in rows]  # the run's clock at each epoch's end, then the final test
    assert 0 < walls[0] < walls[1] <= summary["wall_time_s"]
    assert walls[0] >= float(rows[0]["epoch_time_s"])
    assert set(summary["versions"]) >= {"papernets", "torch", "torchvision"}
    with Image.open(run / "plots" / "accuracy.png") as img:
        assert img.size[0] > 300 and img.size[1] > 200
    assert f"test accuracy {summary['test_acc'] * 100:.2f}%" in res.stderr
    saved = load_config(run / "config.yaml")
    assert saved.model.name == "lenet5_bn" and saved.train.epochs == 2


def test_short_real_training_clears_the_threshold(trained_run):
    summary = json.loads((trained_run[0] / "summary.json").read_text())
    assert summary["test_acc"] > 0.70, summary  # LeNet-5 + BN, 2 epochs on 5,400 images: 75.2% measured


def test_checkpoint_contents_and_weights_only(trained_run):
    ckpt = load_checkpoint(trained_run[0] / "checkpoints" / "last.pt")  # torch.load(weights_only=True)
    for key in ("model", "optimizer", "schedule", "scaler", "rng", "epoch", "global_step", "config", "history"):
        assert key in ckpt
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["data"]["classes"][9] == "Ankle boot"


def _resume_base(tmp_path):
    return [*SYNTHETIC, *DETERMINISTIC, "--epochs", "3", "--out", str(tmp_path)]


def _final_weights(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def _assert_same_run(a, b):
    assert _exact_columns(_rows(a)) == _exact_columns(_rows(b))
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert sa["test_acc"] == sb["test_acc"]


@pytest.fixture(scope="module")
def one_go(tmp_path_factory):
    out = tmp_path_factory.mktemp("onego")
    res = run_cli("train", *_resume_base(out), "--name", "full")
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "full"


def _popen(args):
    return subprocess.Popen([sys.executable, "-m", "papernets", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path, one_go):
    run = tmp_path / "killed"
    proc = _popen(["train", *_resume_base(tmp_path), "--name", "killed"])
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").is_file() and len(_rows(run)) >= 1:
            break
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] < 3 and not (run / "summary.json").exists(), "the run finished before it was killed"
    res = run_cli("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming after epoch" in res.stderr
    _assert_same_run(one_go, run)


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_identical(tmp_path, one_go):
    run = tmp_path / "stopped"
    proc = _popen(["train", *_resume_base(tmp_path), "--name", "stopped"])
    for line in proc.stderr:
        if line.startswith("epoch 2/3 ") and "/" in line.split()[2] and int(line.split()[2].split("/")[0]) >= 5:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["partial"]["step"] >= 5, "expected a mid-epoch checkpoint in epoch 2"
    res = run_cli("train", "--resume", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_same_run(one_go, run)


def _tiny(*extra):
    """LeNet-5 on synthetic data (256 train, 100 val images): 4 steps an epoch."""
    return apply_overrides(load_config(None), [
        "model.name=lenet5", "data.name=synthetic", "data.image_size=28", "data.limit=256", "train.epochs=1",
        "train.batch_size=64", "train.threads=1", "optim.name=sgd", "optim.lr=0.01", "output.plots=false", *extra])


def test_resume_can_extend_epochs_but_not_change_the_config(tmp_path, capfd):
    run = tmp_path / "r"
    Trainer(_tiny(), run, stream=io.StringIO()).fit()
    first = _rows(run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and (run / "summary.json").is_file()
    cfg = config_from_checkpoint(ckpt)
    cfg.train.epochs = 2  # as `papernets train --resume RUN --epochs 2`
    stream = io.StringIO()
    summary = Trainer(cfg, run, resume=ckpt, stream=stream).fit()
    assert "resuming after epoch 1" in stream.getvalue()
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and rows[0] == first[0]  # epoch 1 kept, epoch 2 added
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and last["global_step"] == 2 * ckpt["global_step"] == 8
    assert not torch.equal(last["model"]["features.c1.weight"], ckpt["model"]["features.c1.weight"])
    assert summary["epochs"] == 2 and json.loads((run / "summary.json").read_text())["epochs"] == 2
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.5"]) == 2
    assert "only --epochs may change" in capfd.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    assert "below the 2 epochs already done" in capfd.readouterr().err


class AuxStub(nn.Module):
    """GoogLeNet's interface in miniature: ``(logits, [aux])`` in training, logits in evaluation."""

    aux_weight = 0.3

    def __init__(self, in_chans):
        super().__init__()
        self.head, self.aux = nn.Linear(in_chans * 28 * 28, 10), nn.Linear(in_chans * 28 * 28, 10)

    def forward(self, x):
        f = x.flatten(1)
        return (self.head(f), [self.aux(f)]) if self.training else self.head(f)


def test_auxiliary_losses_reach_the_training_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "build_model", lambda cfg, classes, chans, *a, **k: AuxStub(chans))
    calls, real = [], step_mod.training_loss

    def spy(output, y, targets, aux_weight, label_smoothing):
        loss = real(output, y, targets, aux_weight, label_smoothing)
        calls.append((output[0].detach(), output[1][0].detach(), y, aux_weight, loss.item()))
        return loss

    monkeypatch.setattr(step_mod, "training_loss", spy)
    trainer = Trainer(_tiny("train.label_smoothing=0.1", "output.checkpoint=false", "output.save_best=false"),
                      tmp_path / "r", stream=io.StringIO())
    assert isinstance(trainer.model, AuxStub)
    trainer.fit()
    assert len(calls) == trainer.state.global_step == 4
    total = seen = 0.0
    for logits, aux, y, weight, loss in calls:
        assert weight == 0.3
        expected = F.cross_entropy(logits, y, label_smoothing=0.1) + 0.3 * F.cross_entropy(aux, y, label_smoothing=0.1)
        assert loss == pytest.approx(expected.item(), rel=1e-6)
        assert loss > F.cross_entropy(logits, y, label_smoothing=0.1).item() + 0.1  # the aux term is there
        total, seen = total + loss * len(y), seen + len(y)
    assert trainer.state.history[0]["train_loss"] == pytest.approx(total / seen, rel=1e-6)


@pytest.mark.parametrize("override,key", [("model.drop_path_rate=0.1", "drop_path_rate"),
                                          ("model.kwargs={bogus: 1}", "bogus")])
def test_bad_model_keywords_are_a_model_config_error(override, key, tmp_path, capsys):
    cfg = apply_overrides(load_config(None), ["model.name=lenet5", override])
    with pytest.raises(ModelConfigError, match=f"^lenet5 does not take the keyword '{key}' \\(model\\.") as info:
        build_model(cfg, 10, 1, 28)
    assert "\n" not in str(info.value) and info.value.__cause__ is None  # refused by the signature, before building
    code = main(["train", "--model", "lenet5", "--dataset", "synthetic", "--image-size", "28", "--set",
                 override, "--set", "data.limit=64", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"does not take the keyword '{key}'" in err, err[-2000:]


def _poison_after_epoch(trainer, epoch_index, fn):
    train_epoch = trainer.train_epoch

    def wrapped(epoch):
        train_epoch(epoch)
        if epoch == epoch_index:
            fn()

    trainer.train_epoch = wrapped


@pytest.mark.parametrize("what", ["weight", "val_loss"])
def test_non_finite_weights_or_val_loss_keep_the_last_good_checkpoint(what, tmp_path, monkeypatch):
    extra = ["data.val_fraction=0"] if what == "weight" else []  # no validation: only the weights can tell
    trainer = Trainer(_tiny("train.epochs=2", *extra), tmp_path / "r", stream=io.StringIO())
    saved = []
    trainer._save = lambda name, save=trainer._save: (saved.append((name, trainer.state.epoch)), save(name))
    if what == "weight":
        _poison_after_epoch(trainer, 1, lambda: trainer.model.features.c1.weight.data[0, 0].fill_(float("inf")))
        match = "lenet5's features.c1.weight became non-finite at the end of epoch 2"
    else:
        evaluate = trainer_mod.evaluate

        def nan_in_epoch_2(*args, **kwargs):
            out = evaluate(*args, **kwargs)
            return {**out, "loss": float("nan")} if trainer.state.epoch == 1 else out

        monkeypatch.setattr(trainer_mod, "evaluate", nan_in_epoch_2)
        match = "the validation loss became nan at the end of epoch 2"
    with pytest.raises(TrainingDiverged, match=match + ".*last good checkpoint \\(epoch 1\\) is kept"):
        trainer.fit()
    assert all(epoch == 1 for _, epoch in saved) and ("last.pt", 1) in saved  # nothing saved after epoch 2
    kept = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())
    assert [int(r["epoch"]) for r in _rows(tmp_path / "r")] == [1]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = apply_overrides(load_config(None), [
        "model.name=lenet5", "data.name=synthetic", "data.image_size=28", "data.limit=512", "train.epochs=1",
        "train.batch_size=64", "optim.name=sgd", "optim.lr=0.01"])
    Trainer(cfg, tmp_path / "r").fit()
    good = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    cfg.train.epochs = 2
    trainer = Trainer(cfg, tmp_path / "r", resume=good)
    trainer.schedule.base_lrs = [1e38]
    trainer.schedule.load_state_dict(trainer.schedule.state_dict())
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf).*epoch 2.*last good checkpoint \\(epoch 1\\)"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


@pytest.mark.parametrize("name", ["none", "step", "cosine"])
def test_schedules_per_step(name):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = ScheduleConfig(name=name, step_size=2, gamma=0.5, min_lr=0.1, warmup=1)
    sched = create_schedule(opt, cfg, steps_per_epoch=10, epochs=6, base_lr=1.0)
    lrs = []
    for _ in range(60):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)  # linear warmup, 10 steps
    if name == "none":
        assert lrs[10:] == [1.0] * 50
    elif name == "step":
        assert lrs[19] == 1.0 and lrs[20] == 0.5 and lrs[39] == 0.5 and lrs[40] == 0.25 and lrs[59] == 0.25
    else:
        assert lrs[10] == 1.0 and lrs[35] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 25 / 50)))
        assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    resumed = create_schedule(opt, cfg, steps_per_epoch=10, epochs=6, base_lr=1.0)
    resumed.load_state_dict({"step_count": 35})
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[35])


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror():
    from papernets.data import TensorLoader, load_dataset
    from papernets.engine.distributed import DistInfo
    from papernets.engine.trainer import evaluate

    data = load_dataset("synthetic", limit=200, image_size=28)
    loader = TensorLoader(data.test_x, data.test_y, 64, 28, data.mean, data.std, train=False,
                          device=torch.device("cpu"))
    torch.manual_seed(0)
    cfg = load_config(None)
    cfg.model.name = "lenet5_bn"
    model = build_model(cfg, 10, 3, 28).eval()
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    y = data.test_y
    with torch.no_grad():
        batches = list(loader.batches(0))
        plain = torch.cat([model(b) for b, _ in batches])
        mirrored = torch.cat([model(b.flip(-1)) for b, _ in batches])
    for flip, logits in ((False, plain), (True, (plain + mirrored) / 2)):
        res = evaluate(model, loader, info, flip=flip)
        assert res["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
        assert res["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert len(y) == 200 and not torch.equal(plain.argmax(1), ((plain + mirrored) / 2).argmax(1))
    # airbench's multi-crop: the image at 1/2, shifted one pixel up-left and down-right (reflect-padded) at 1/4 each
    from papernets.engine.evaluation import TTA

    def shifted(b, dy):  # the view whose pixel (i, j) is the image's (i + dy, j + dy), mirrored at the border
        idx = (torch.arange(28) + dy).abs()
        idx = torch.where(idx > 27, 54 - idx, idx)
        return b[:, :, idx][:, :, :, idx]

    with torch.no_grad():
        views = [torch.cat([(model(v) + model(v.flip(-1))) / 2 for v in vs])
                 for vs in ([b for b, _ in batches], [shifted(b, -1) for b, _ in batches],
                            [shifted(b, 1) for b, _ in batches])]
    logits = views[0] / 2 + views[1] / 4 + views[2] / 4
    res = evaluate(model, loader, info, flip=TTA(flip=True, translate=1))
    assert res["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert res["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert not torch.allclose(logits, views[0])


@pytest.mark.slow
def test_a_flip_tta_run_tests_and_evaluates_with_it_and_digits_refuse_it(tmp_path):
    from conftest import write_cifar, write_mnist

    common = ["--epochs", "1", "--set", "data.limit=600", "--set", "train.tta_flip=true", "--set", "train.amp=off",
              "--set", "train.tta_translate=1", "--out", str(tmp_path)]
    write_cifar(tmp_path / "cifar", per_batch=120)  # CIFAR-10-format files: a dataset whose images may be mirrored
    res = run_cli("train", *QUICK, *common, "--dataset", "cifar10", "--data-root", str(tmp_path / "cifar"),
                  "--name", "tta")
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "tta" / "summary.json").read_text())
    res = run_cli("eval", str(tmp_path / "tta"), "--limit", "600", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["top1"] == pytest.approx(summary["test_acc"])
    write_mnist(tmp_path / "mnist")
    res = run_cli("train", *QUICK, *common, "--dataset", "mnist", "--data-root", str(tmp_path / "mnist"))
    assert res.returncode == 2 and "train.tta_flip=true" in res.stderr and "'mnist'" in res.stderr


def test_a_lookahead_run_ends_on_its_average_and_evaluates_it(tmp_path):
    res = run_cli("train", *SYNTHETIC, *DETERMINISTIC, "--epochs", "1", "--set", "train.lookahead=5",
                  "--set", "train.ema_decay=0.95", "--set", "data.limit=150", "--out", str(tmp_path), "--name", "la")
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "la" / "checkpoints" / "last.pt")
    model, avg = ckpt["model"], ckpt["ema"]
    assert model.keys() == avg.keys() and all(torch.equal(model[k], avg[k]) for k in model)
    assert "ema_val_acc" in _rows(tmp_path / "la")[0]


def test_val_every_validates_every_nth_epoch_and_the_last(tmp_path):
    res = run_cli("train", *SYNTHETIC, *DETERMINISTIC, "--epochs", "3", "--set", "train.val_every=2",
                  "--set", "data.limit=150", "--out", str(tmp_path), "--name", "ve")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(tmp_path / "ve")
    assert [math.isnan(float(r["val_acc"])) for r in rows] == [True, False, False]
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    log = res.stdout + res.stderr
    assert "epoch 1/3: train loss" in log and "not validated" in log.split("epoch 2/3:")[0]
    summary = json.loads((tmp_path / "ve" / "summary.json").read_text())
    assert summary["best_epoch"] in (2, 3) and (tmp_path / "ve" / "checkpoints" / "best.pt").is_file()
    res = run_cli("train", *SYNTHETIC, "--set", "train.val_every=0", "--out", str(tmp_path))
    assert res.returncode == 2 and "train.val_every" in res.stderr and "got 0" in res.stderr
