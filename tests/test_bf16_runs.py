"""benchmarks/bf16_runs.py: the runs' configs, the implicit-bf16 switch, the decision rule, the table and its resume
(the tool is checked, not the machine: no speed or accuracy is asserted)."""

import json

import pytest
import torch

from conftest import benchmark_module


@pytest.fixture
def b16():
    return benchmark_module("bf16_runs")


def test_each_run_is_the_models_fashion_budget_row_over_the_given_images(b16):
    from papernets.bench.protocol import load_protocol

    families = load_protocol("fashion-budget").families
    vgg = b16.run_config("vgg16", 12000, "bf16")
    assert vgg.model.kwargs == {"init": "he"}  # the protocol row's own config
    assert vgg.optim.lr == families["vgg"]["optim"]["lr"]
    assert vgg.train.batch_size == families["vgg"]["train"]["batch_size"]
    assert (vgg.data.limit, vgg.data.eval_limit, vgg.train.epochs, vgg.train.test) == (12000, 6000, 1, False)
    assert vgg.train.amp == "bf16" and vgg.data.image_size == 28
    assert b16.run_config("vgg16", 12000, "fp32").train.amp == "off"
    assert b16.run_config("vgg16", 12000, "implicit").train.amp == "off"
    assert b16.run_config("vgg16_bn", 500, "fp32").model.kwargs == {}  # not a row: the family's settings only
    assert b16.run_config("vgg16_bn", 500, "fp32").optim.lr == families["vgg"]["optim"]["lr"]


def test_implicit_bf16_is_set_for_its_run_only(b16):
    mk = torch.backends.mkldnn
    before = (mk.conv.fp32_precision, mk.matmul.fp32_precision)
    with b16.precision("implicit"):
        assert (mk.conv.fp32_precision, mk.matmul.fp32_precision) == ("bf16", "bf16")
    assert (mk.conv.fp32_precision, mk.matmul.fp32_precision) == before
    with pytest.raises(RuntimeError), b16.precision("implicit"):
        raise RuntimeError("a failed run")
    assert (mk.conv.fp32_precision, mk.matmul.fp32_precision) == before
    with b16.precision("bf16"):
        assert (mk.conv.fp32_precision, mk.matmul.fp32_precision) == before


def _row(fp32, bf16, speed, implicit=None, ispeed=1.0):
    return {"fp32": {"val_acc": fp32}, "bf16": {"val_acc": bf16}, "implicit": {"val_acc": implicit or fp32},
            "bf16_speedup": speed, "implicit_speedup": ispeed}


def test_the_rule_needs_a_learning_fp32_run_speed_and_accuracy(b16):
    assert b16.decide(_row(85.0, 84.0, 1.5)) == "bf16"
    assert b16.decide(_row(85.0, 83.0, 1.5)) == "fp32 (2.0 points below fp32)"
    assert b16.decide(_row(85.0, 85.5, 1.05)) == "fp32 (x1.05 < x1.10)"
    assert b16.decide(_row(65.0, 66.0, 2.0)).startswith("undecided (fp32 reached 65.0%")
    assert b16.decide(_row(85.0, 85.0, 1.0, implicit=80.0, ispeed=1.3), "implicit") == "fp32 (5.0 points below fp32)"
    # a family is in bf16 when one row decides bf16 and bf16 harms none (slower, or over 1.5 points below): a row
    # that gains under x1.10 at no cost does not veto; an undecided row neither qualifies nor vetoes
    rows = [dict(_row(85.0, 85.0, 1.5), family="mobilenet"), dict(_row(85.0, 85.0, 1.03), family="mobilenet"),
            dict(_row(85.0, 85.0, 1.5), family="resnet"), dict(_row(60.0, 50.0, 0.5), family="resnet"),
            dict(_row(85.0, 85.0, 1.5), family="vgg"), dict(_row(85.0, 85.0, 0.95), family="vgg"),
            dict(_row(85.0, 85.0, 1.5), family="vit"), dict(_row(85.0, 83.0, 1.5), family="vit"),
            dict(_row(60.0, 60.0, 2.0), family="nin")]
    assert b16.bf16_families(rows) == ["mobilenet", "resnet"]
    assert b16.decided_families(rows) == ["mobilenet", "resnet", "vgg", "vit"]


def test_table_rows_resume_and_bad_arguments(b16, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(name, images, variant, workdir):
        calls.append((name, variant))
        acc = {"fp32": 86.0, "bf16": 85.5, "implicit": 82.0}[variant]
        return {"val_acc": acc, "train_ips": 100.0, "images_seen": images, "batch": 32, "amp": "off"}

    monkeypatch.setattr(b16, "learning_run", fake_run)
    monkeypatch.setattr(b16, "speedups", lambda name, batch, rounds, steps: {
        "fp32_ips": 100.0, "bf16_speedup": 1.8 if name == "resnet18" else 1.02, "implicit_speedup": 1.3})
    out = tmp_path / "b.md"
    assert b16.main(["--models", "resnet18", "mobilenet_v2", "--images", "300", "--out", str(out)]) == 0
    md = out.read_text()
    assert "| resnet | `resnet18` | 300 | 32 | 86.00 | 85.50 | +0.50 | 82.00 | +4.00 | x1.80 | x1.30 | bf16 |" in md
    assert "fp32 (x1.02 < x1.10)" in md and "Families in bf16 by this rule: resnet (" in md
    assert "Families decided here: mobilenet, resnet;" in md
    assert str(tmp_path) not in md and "--out b.md" in md
    assert len(calls) == 6
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"resnet18", "mobilenet_v2"} and all(r["cpu"] for r in rows)
    calls.clear()
    assert b16.main(["--models", "resnet18", "lenet5_bn", "--images", "300", "--out", str(out), "--resume"]) == 0
    assert calls == [("lenet5_bn", v) for v in b16.VARIANTS]  # resnet18 kept
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 3
    calls.clear()  # --again runs the named models once more, on other images; the others are kept
    assert b16.main(["--models", "lenet5_bn", "--images", "600", "--out", str(out), "--resume", "--again"]) == 0
    assert calls == [("lenet5_bn", v) for v in b16.VARIANTS]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert sorted((r["model"], r["images"]) for r in rows) == [
        ("lenet5_bn", 600), ("mobilenet_v2", 300), ("resnet18", 300)]
    capsys.readouterr()
    assert b16.main(["--images", "0", "--out", str(out)]) == 2
    assert "--images must be at least 1, got 0" in capsys.readouterr().err
    assert b16.main(["--models", "resnet_99", "--out", str(out)]) == 2
    assert "resnet_99" in capsys.readouterr().err


@pytest.mark.slow
def test_real_runs_of_lenet_in_three_precisions(b16, tmp_path):
    rows = {v: b16.learning_run("lenet5_bn", 256, v, tmp_path) for v in b16.VARIANTS}
    assert rows["bf16"]["amp"] == "bf16" and rows["fp32"]["amp"] == "off" and rows["implicit"]["amp"] == "off"
    assert all(r["images_seen"] == 256 and 0 <= r["val_acc"] <= 100 for r in rows.values())
    s = b16.speedups("lenet5_bn", 16, rounds=1, steps=1)
    assert s["fp32_ips"] > 0 and s["bf16_speedup"] > 0 and s["implicit_speedup"] > 0
