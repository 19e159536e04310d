"""`papernets runs` (one line per run, with its status) and per-class results (per_class.csv, confusion.csv and
plots/confusion.png at the end of training and from `papernets eval`)."""

import csv
import json

import pytest
import torch

from papernets.cli import main
from papernets.engine import rundir
from papernets.engine import trainer as trainer_mod

TINY = ["--model", "lenet5_bn", "--dataset", "synthetic", "--image-size", "28", "--batch-size", "32",
        "--set", "data.limit=96", "--set", "output.plots=false", "--set", "train.threads=1"]


def test_per_class_figures_from_a_confusion_matrix():
    m = torch.tensor([[8, 2, 0], [1, 5, 4], [0, 0, 0]])
    rows = rundir.per_class(m, ["a", "b", "c"])
    assert rows[0] == {"class": "a", "images": 10, "correct": 8, "accuracy": 0.8, "precision": 8 / 9, "recall": 0.8}
    assert rows[1]["precision"] == 5 / 7 and rows[2]["accuracy"] is None and rows[2]["precision"] == 0.0
    assert rundir.per_class(torch.tensor([[1, 0], [1, 0]]), ["a", "b"])[1]["precision"] is None  # never predicted
    assert rundir.most_confused(m, ["a", "b", "c"]) == [("b", "c", 4), ("a", "b", 2), ("b", "a", 1)]


def test_training_and_eval_write_per_class_results(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    run = tmp_path / "r"
    err = capsys.readouterr().err
    assert "per class (test split): lowest accuracy" in err and "most confused:" in err
    with (run / "per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((run / "summary.json").read_text())
    assert [r["class"] for r in rows] == [f"class{i}" for i in range(10)]
    assert sum(int(r["correct"]) for r in rows) / sum(int(r["images"]) for r in rows) == pytest.approx(
        summary["test_acc"])
    with (run / "confusion.csv").open() as f:
        matrix = list(csv.reader(f))
    assert matrix[0][1:] == [r["class"] for r in rows] and len(matrix) == 11
    assert not (run / "plots" / "confusion.png").exists()  # output.plots=false: no PNG

    assert main(["eval", str(run), "--json", "--limit", "96"]) == 0  # the run tested the first 96 images
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] == pytest.approx(summary["test_acc"]) and len(out["per_class"]) == 10
    assert sum(map(sum, out["confusion"])) == out["images"]
    assert (run / "eval-synthetic-test" / "per_class.csv").is_file()
    assert (run / "eval-synthetic-test" / "plots" / "confusion.png").stat().st_size > 5_000
    assert main(["eval", str(run), "--split", "val", "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out
    assert "precision %" in printed and "class9" in printed and (tmp_path / "e" / "confusion.csv").is_file()


def test_runs_lists_finished_interrupted_and_diverged_runs(tmp_path, capsys, monkeypatch):
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "done"]) == 0
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "nan", "--lr", "1e30"]) != 0
    real = trainer_mod.Trainer.train_epoch

    def stop_in_epoch_two(self, epoch):
        if epoch == 1:
            self.stop_requested = True
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", stop_in_epoch_two)
    assert main(["train", *TINY, "--epochs", "3", "--out", str(tmp_path), "--name", "stopped"]) == 130
    capsys.readouterr()
    assert main(["runs", str(tmp_path), "--json"]) == 0
    runs = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs["done"]["status"] == "finished" and runs["done"]["epochs"] == 2 and runs["done"]["test_acc"] >= 0
    assert runs["nan"]["status"] == "diverged" and "became" in runs["nan"]["why"]
    assert runs["stopped"]["status"] == "interrupted" and runs["stopped"]["epochs"] == 1
    assert runs["stopped"]["epochs_planned"] == 3 and runs["stopped"]["test_acc"] is None
    assert main(["runs", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["run", "model", "dataset", "epochs", "best", "val", "%", "test", "%", "time", "status"]
    assert any(line.startswith("stopped") and line.rstrip().endswith("interrupted") for line in table)
    assert main(["runs", str(tmp_path / "none")]) == 2
