"""Two processes under torchrun on the CPU (gloo): one run directory written once by rank 0, validation accuracy
equal to a single-process `papernets eval` of the saved checkpoint, resume with the same and with another number of
processes."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from conftest import run_cli
from papernets.config import ConfigError, apply_overrides, load_config
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.trainer import TIMING_COLUMNS, Trainer, config_from_checkpoint

LIMIT = 400  # synthetic data, 40% held out: 400 train / 400 val images, 4 steps of 2 x 64 an epoch
TEST_IMAGES = 200  # synthetic's whole test split
BASE = ["--model", "lenet5_bn", "--dataset", "synthetic", "--image-size", "28", "--batch-size", "64",
        "--optimizer", "adam", "--lr", "0.002", "--set", f"data.limit={LIMIT}", "--set", "data.val_fraction=0.4",
        "--set", "model.drop_rate=0.1"]
ENV = {"OMP_NUM_THREADS": "1"}
RUN_FILES = {".papernets-run", "config.yaml", "metrics.csv", "summary.json", "per_class.csv", "confusion.csv",
             "checkpoints/last.pt", "checkpoints/best.pt", "plots/accuracy.png", "plots/loss.png",
             "plots/confusion.png"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(_free_port()), "-m", "papernets", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **ENV})


def _rows(run):
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _eval(checkpoint, split):
    res = run_cli("eval", str(checkpoint), "--split", split, "--limit", str(LIMIT), "--json", env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    res = torchrun("train", *BASE, "--epochs", "2", "--out", str(out))  # default <model>-<dataset>-<time> name
    assert res.returncode == 0, res.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1, runs  # both processes agreed on rank 0's name; only rank 0 created it
    return runs[0], res


def test_two_processes_write_one_run_directory_once(two_process_run):
    run, res = two_process_run
    files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert files == RUN_FILES  # no leftover temporary files from a second writer
    assert [int(r["epoch"]) for r in _rows(run)] == [1, 2]
    assert res.stderr.count("papernets: lenet5_bn on synthetic") == 1 and "x2 processes" in res.stderr
    assert res.stderr.count("test accuracy ") == 1 and res.stderr.count("epoch 2/2: train loss") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["global_step"] == 2 * 4  # 200 images a process: 3 x 64 + 8
    assert len(ckpt["rng_ranks"]) == 2 and not torch.equal(ckpt["rng_ranks"][0]["cpu"], ckpt["rng_ranks"][1]["cpu"])


def test_validation_and_test_accuracy_match_a_single_process_eval(two_process_run):
    run, _ = two_process_run
    last = _rows(run)[-1]
    val = _eval(run / "checkpoints" / "last.pt", "val")
    assert val["images"] == LIMIT  # the two shards of the validation split, summed: every image once
    assert abs(val["top1"] - float(last["val_acc"])) < 1e-6 and abs(val["loss"] - float(last["val_loss"])) < 1e-4
    test = _eval(run, "test")  # a run directory gives best.pt, the weights the run tested
    summary = json.loads((run / "summary.json").read_text())
    assert test["images"] == TEST_IMAGES and abs(test["top1"] - summary["test_acc"]) < 1e-6


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """The first epoch of the 2-process run, trained once; each resume test works on its own copy."""
    out = tmp_path_factory.mktemp("ddp1")
    res = torchrun("train", *BASE, "--epochs", "1", "--out", str(out), "--name", "r")
    assert res.returncode == 0, res.stderr[-3000:]
    return out / "r"


def test_resume_with_the_same_number_of_processes_continues_exactly(two_process_run, one_epoch_run, tmp_path):
    """1 epoch under torchrun, then --resume to 2 under torchrun: every figure of epoch 2 (dropout from each rank's
    saved RNG stream, the seeded shuffle, the schedule) equals that of the uninterrupted 2-epoch run."""
    straight, _ = two_process_run
    run = shutil.copytree(one_epoch_run, tmp_path / "r")
    res = torchrun("train", "--resume", str(run), "--epochs", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 1" in res.stderr and "process(es), this run has" not in res.stderr
    resumed = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in _rows(run)]
    expected = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in _rows(straight)]
    assert [r["epoch"] for r in resumed] == ["1", "2"] and resumed == expected
    a = load_checkpoint(run / "checkpoints" / "last.pt")
    b = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 2 * 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


@pytest.mark.slow
def test_resume_with_another_number_of_processes(one_epoch_run, tmp_path):
    run = shutil.copytree(one_epoch_run, tmp_path / "r")
    first = _rows(run)
    res = run_cli("train", "--resume", str(run), "--epochs", "2", env=ENV)  # 2 processes -> 1
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 1" in res.stderr and "saved by 2 process(es), this run has 1" in res.stderr
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and rows[0] == first[0]
    first = rows
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 1 and ckpt["global_step"] == 4 + 7  # 400 images in 1 process: 6 x 64 + 16
    res = torchrun("train", "--resume", str(run), "--epochs", "3")  # 1 process -> 2
    assert res.returncode == 0, res.stderr[-3000:]
    assert "saved by 1 process(es), this run has 2" in res.stderr
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[:2] == first
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["global_step"] == 4 + 7 + 4 and ckpt["schedule"]["step_count"] == 3 * 4

    ckpt["partial"] = {**ckpt["partial"], "step": 2}  # as if stopped by Ctrl-C in the middle of epoch 4
    cfg = config_from_checkpoint(ckpt)
    cfg.train.epochs = 4
    with pytest.raises(ConfigError, match=r"middle of epoch 4 \(step 2\) by 2 processes.*torchrun --nproc_per_node 2"):
        Trainer(cfg, run, resume=ckpt)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_sync_bn_is_a_config_error_on_cpu(tmp_path):
    with pytest.raises(ConfigError, match="train.sync_bn needs CUDA"):
        apply_overrides(load_config(None), ["train.sync_bn=true", "train.device=cpu"])
    cfg = apply_overrides(load_config(None), ["train.sync_bn=true", "data.name=synthetic"])  # device auto: CPU here
    with pytest.raises(ConfigError, match="SyncBatchNorm does not run on CPU tensors"):
        Trainer(cfg, tmp_path / "r")
