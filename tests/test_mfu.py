"""benchmarks/mfu.py: the utilization table's arithmetic, its resume and its errors (no speed is asserted)."""

import json

import pytest

from conftest import benchmark_module


@pytest.fixture
def mfu(monkeypatch):
    module = benchmark_module("mfu")
    monkeypatch.setitem(module.SETTINGS, 28, (1, 10, 8))  # a tiny batch: this checks the tool, not the machine
    return module


def test_mfu_table_is_the_counted_flops_over_the_measured_peak_and_resumes(mfu, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mfu.md"
    args = ["--sizes", "28", "--rounds", "1", "--steps", "1", "--peak-n", "128", "--out", str(out)]
    assert mfu.main(["--models", "lenet5_bn", "resnet20", *args]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["size"], r["batch"]) for r in data["rows"]] == [("lenet5_bn", 28, 8), ("resnet20", 28, 8)]
    for r in data["rows"]:
        assert r["train_gflops"] == pytest.approx(6 * r["gmacs"] * r["train_ips"])
        assert r["infer_gflops"] == pytest.approx(2 * r["gmacs"] * r["infer_ips"])
        peak = r["peak_bf16"] if r["precision"] == "bf16" else r["peak_fp32"]
        assert r["train_pct"] == pytest.approx(100 * r["train_gflops"] / peak) and peak > 0
        assert r["cpu"] and r["threads"] >= 1
    md = out.read_text()
    assert "| model | family | size | batch | GMACs/image | train img/s | train GFLOP/s | train % of peak |" in md
    assert "28 px: median training utilization" in md and "the five lowest in training: `" in md

    calls = []

    def fake(name, size, rounds, steps):
        calls.append(name)
        return {"model": name, "family": "nin", "size": size, "batch": 8, "gmacs": 0.1, "train_ips": 10.0,
                "train_gflops": 6.0, "infer_ips": 30.0, "infer_gflops": 6.0, "memory_format": "NCHW",
                "precision": "fp32"}

    monkeypatch.setattr(mfu, "measure_row", fake)
    assert mfu.main(["--models", "lenet5_bn", "resnet20", "nin", "--resume", *args]) == 0
    assert calls == ["nin"]  # the two rows already in the file are kept, not measured again
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 3


def test_mfu_rejects_bad_arguments_and_keeps_a_failed_row(mfu, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.md"
    assert mfu.main(["--rounds", "0", "--out", str(out)]) == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
    assert mfu.main(["--models", "no_such_model", "--out", str(out)]) == 2
    assert "no_such_model" in capsys.readouterr().err

    def broken(name, size, rounds, steps):
        raise RuntimeError("input too small")

    monkeypatch.setattr(mfu, "measure_row", broken)
    assert mfu.main(["--models", "lenet5_bn", "--sizes", "28", "--peak-n", "64", "--out", str(out)]) == 0
    assert "failed: RuntimeError: input too small" in out.read_text()
