"""benchmarks/mfu.py: the utilization table's arithmetic, its summary, its resume and its failed rows (the tool is
checked, not the machine: no speed is asserted)."""

import json
import re
import statistics

import pytest

from conftest import benchmark_module

HEADER = ("| model | family | size | batch | GMACs/image | train img/s | train GFLOP/s | train % of peak "
          "| compiled train img/s | compiled train % of peak | infer img/s "
          "| infer GFLOP/s | infer % of peak | peak GFLOP/s | memory format | precision | CPU |")


@pytest.fixture
def mfu(monkeypatch):
    module = benchmark_module("mfu")
    monkeypatch.setitem(module.SETTINGS, 28, (1, 10, 4))  # a tiny batch
    return module


def table(md: str) -> dict[str, dict[str, str]]:
    """The table's rows by model, each as {column: cell}."""
    cols = [c.strip() for c in HEADER.strip("|").split("|")]
    rows = {}
    for line in md.splitlines():
        if line.startswith("| `"):
            split = re.split(r"(?<!\\)\|", line.strip()[1:-1])  # not at an escaped "\|"
            cells = dict(zip(cols, (c.strip() for c in split), strict=True))
            rows[cells["model"].strip("`")] = cells
    return rows


def test_mfu_is_the_counted_flops_over_the_measured_peak_and_resumes(mfu, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mfu.md"
    args = ["--sizes", "28", "--rounds", "1", "--steps", "1", "--peak-n", "256", "--out", str(out)]
    assert mfu.main(["--models", "lenet5_bn", "resnet20", *args]) == 0
    printed = capsys.readouterr().out
    assert "threads" in printed and "fp32 peak" in printed
    assert "bf16 peak" in printed or "bf16: not supported by this CPU" in printed
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["size"], r["batch"]) for r in data["rows"]] == [("lenet5_bn", 28, 4), ("resnet20", 28, 4)]
    md = out.read_text()
    assert HEADER in md
    cells = table(md)
    assert set(cells) == {"lenet5_bn", "resnet20"}
    for r in data["rows"]:
        assert r["gmacs"] > 0 and r["train_ips"] > 0 and r["infer_ips"] > 0
        assert r["train_gflops"] == pytest.approx(6 * r["gmacs"] * r["train_ips"])  # 3 x (2 x MACs) x img/s
        assert r["infer_gflops"] == pytest.approx(2 * r["gmacs"] * r["infer_ips"])
        peak = r["peak"]  # timed beside the row: one round of the product per round of the model
        assert len(r["peak_rounds"]) == 1 and peak == max(r["peak_rounds"]) > 0
        assert r["peak_n"] == 256 and r["threads"] >= 1 and r["cpu"] and r["torch"]
        assert r["train_pct"] == pytest.approx(100 * r["train_gflops"] / peak)
        assert r["infer_pct"] == pytest.approx(100 * r["infer_gflops"] / peak)
        c = cells[r["model"]]  # the table prints the JSON's figures
        assert float(c["train GFLOP/s"]) == pytest.approx(r["train_gflops"], abs=0.006)
        assert float(c["train % of peak"].rstrip("%")) == pytest.approx(r["train_pct"], abs=0.06)
        assert float(c["infer img/s"]) == pytest.approx(r["infer_ips"], abs=0.06)
        assert float(c["peak GFLOP/s"]) == pytest.approx(peak, abs=0.06)
        assert (c["family"], c["size"], c["batch"], c["precision"]) == (r["family"], "28", "4", r["precision"])
        assert c["memory format"] in ("channels_last", "NCHW")
    median = statistics.median(r["train_pct"] for r in data["rows"])
    summary = re.search(r"^Median training utilization over all 2 rows measured: ([\d.]+)% of peak", md, re.M)
    assert summary and float(summary.group(1)) == pytest.approx(median, abs=0.06)
    lowest = re.search(r"^Five lowest in training: (.*)\.$", md, re.M).group(1)
    assert "`lenet5_bn` at 28 px" in lowest and "`resnet20` at 28 px" in lowest
    assert "python benchmarks/mfu.py --models lenet5_bn resnet20 --sizes 28" in md
    if all(r["malloc_cache"] for r in data["rows"]):  # glibc: timed with the trainer's allocator, and it says so
        assert "Every row timed with the malloc cache" in md
    assert str(tmp_path) not in md + out.with_suffix(".json").read_text()  # no absolute path in the results

    calls = []

    def fake(name, size, rounds, steps, peak_round, compiled=False):
        assert not compiled  # neither family is compiled by the trainer on a CPU
        calls.append((name, size))
        return {"gmacs": 0.1, "train_ips": 10.0, "train_gflops": 6.0, "infer_ips": 30.0, "infer_gflops": 6.0,
                "peak_rounds": [450.0, 600.0, 90.0]}  # timed beside the row: its highest round is its peak

    monkeypatch.setattr(mfu, "measure_row", fake)
    monkeypatch.setattr(mfu, "matmul_peak", lambda n, dtype, rounds: 300.0)  # the run's start peak
    assert mfu.main(["--models", "lenet5_bn", "resnet20", "nin", "--resume", *args]) == 0
    assert calls == [("nin", 28)]  # the two rows already in the file are kept, not measured again
    resumed = json.loads(out.with_suffix(".json").read_text())
    assert resumed["rows"][:2] == data["rows"]  # each with the peak timed beside it
    nin = resumed["rows"][2]
    assert nin["peak_fp32"] == 300.0 and nin["train_pct"] == pytest.approx(1.0)  # against its own peak, not the run's
    md = out.read_text()
    assert set(table(md)) == {"lenet5_bn", "resnet20", "nin"}
    assert "Median training utilization over all 3 rows measured" in md
    assert "then `python benchmarks/mfu.py --models lenet5_bn resnet20 nin --resume" in md
    assert mfu.main(["--models", "nin", "--resume", *args]) == 0  # nothing left to measure
    assert calls == [("nin", 28)]
    assert mfu.main(["--models", "resnet20", "--resume", "--again", *args]) == 0  # after a change to resnet20
    assert calls == [("nin", 28), ("resnet20", 28)]
    again = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["model"] for r in again] == ["lenet5_bn", "nin", "resnet20"] and again[0] == data["rows"][0]
    assert again[2]["peak"] == 600.0
    old = {"commands": ["x"], "rows": [{k: v for k, v in again[1].items() if k not in ("peak", "peak_rounds")}]}
    assert "| 300.0 |" in mfu.render(old)  # a row from before: against its run's start peak, and the text says so
    assert "the peak of the start of their run" in mfu.render(old)
    assert "the peak of the start of their run" not in md
    assert mfu.main(["--models", "resnet20", "--again", *args]) == 2  # --again needs --resume
    if all(r["malloc_cache"] for r in again):  # a table whose older rows were timed before the malloc cache
        mixed = {"commands": ["x"], "rows": [dict(again[0], malloc_cache=False), *again[1:]]}
        assert "the other 1 row was timed before it, with glibc's default allocator" in mfu.render(mixed)


def test_mfu_rejects_bad_arguments_and_keeps_a_failed_row(mfu, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.md"
    assert mfu.main(["--rounds", "0", "--out", str(out)]) == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
    assert mfu.main(["--models", "no_such_model", "--out", str(out)]) == 2
    assert "no_such_model" in capsys.readouterr().err

    def broken(name, size, rounds, steps, peak_round, compiled=False):
        raise RuntimeError("input too small | for this model\nsecond line")

    monkeypatch.setattr(mfu, "measure_row", broken)
    assert mfu.main(["--models", "lenet5_bn", "--sizes", "28", "--rounds", "1", "--peak-n", "64",
                     "--out", str(out)]) == 0
    row = table(out.read_text())["lenet5_bn"]  # the row still has every column
    assert row["train img/s"] == "failed: RuntimeError: input too small \\| for this model"
    assert "No row measured yet." in out.read_text()


def test_mfu_times_the_compiled_step_beside_the_eager_one_where_the_trainer_compiles(mfu, tmp_path, monkeypatch):
    """For a family the trainer compiles by default, the row also times the compiled training step in the same
    rounds, and the summary gives the median and the lowest rows with it."""
    from papernets.engine import speed

    monkeypatch.setattr(speed, "COMPILE_CPU_FAMILIES", frozenset({"lenet"}))  # not the committed list
    monkeypatch.setattr(speed, "BF16_CPU_FAMILIES", frozenset())  # fp32 rows, whatever this CPU has
    assert mfu.trainer_runtime("lenet")[2] and not mfu.trainer_runtime("resnet")[2]
    peaks = iter(range(100, 200, 10))
    row = mfu.measure_row("lenet5_bn", 28, 2, 1, lambda: float(next(peaks)), compiled=True)
    assert row["train_compiled_ips"] > 0 and row["compile_s"] > 0 and row["peak_rounds"] == [100.0, 110.0]
    assert row["train_compiled_gflops"] == pytest.approx(6 * row["gmacs"] * row["train_compiled_ips"])
    assert mfu.settle(row)["train_compiled_pct"] == pytest.approx(100 * row["train_compiled_gflops"] / 110.0)

    seen = {}

    def fake(name, size, rounds, steps, peak_round, compiled=False):
        seen[name] = compiled
        base = {"gmacs": 0.1, "train_ips": 10.0, "train_gflops": 6.0, "infer_ips": 30.0, "infer_gflops": 6.0,
                "peak_rounds": [100.0]}
        if compiled:
            base.update(train_compiled_ips=20.0, train_compiled_gflops=12.0, compile_s=5.0)
        return base

    monkeypatch.setattr(mfu, "measure_row", fake)
    out = tmp_path / "mfu.md"
    args = ["--sizes", "28", "--rounds", "1", "--steps", "1", "--peak-n", "64", "--out", str(out)]
    assert mfu.main(["--models", "lenet5_bn", "resnet20", "nin", *args]) == 0
    assert seen == {"lenet5_bn": True, "resnet20": False, "nin": False}
    md = out.read_text()
    cells = table(md)
    assert (cells["lenet5_bn"]["compiled train img/s"], cells["lenet5_bn"]["compiled train % of peak"]) == \
        ("20.0", "12.0%")
    assert cells["resnet20"]["compiled train % of peak"] == "-"
    assert "Median training utilization over all 3 rows measured: 6.0% of peak" in md
    assert "With the compiled step for the 1 row whose family the trainer compiles" in md
    assert "median training utilization 6.0%; five lowest: `nin` at 28 px 6.0%, `resnet20` at 28 px 6.0%, " \
           "`lenet5_bn` at 28 px 12.0%." in md
    assert "when the row was timed (lenet)" in md and "Timed eager only" not in md
    assert "With today's defaults the trainer compiles lenet of them." in md
    monkeypatch.setattr(speed, "COMPILE_CPU_FAMILIES", frozenset())  # the defaults change after the row was timed
    assert mfu.main(["--models", "nin", "--resume", *args]) == 0  # nothing to measure: applied again
    md = out.read_text()
    assert "With today's defaults the trainer compiles none of them." in md
    assert "With the compiled step" not in md and table(md)["lenet5_bn"]["compiled train % of peak"] == "12.0%"
    monkeypatch.setattr(speed, "COMPILE_CPU_FAMILIES", frozenset({"lenet"}))
    assert mfu.main(["--models", "lenet5_bn", "--resume", "--again", "--eager-only", *args]) == 0
    assert seen["lenet5_bn"] is False
    md = out.read_text()
    assert table(md)["lenet5_bn"]["compiled train % of peak"] == "-" and "Timed eager only" in md
    assert "by default the trainer compiles the training step of lenet" in md


@pytest.fixture
def breakdown(monkeypatch):
    module = benchmark_module("op_breakdown")
    monkeypatch.setattr(module, "BATCH", 4)
    return module


def test_op_breakdown_sees_every_counted_convolution_and_splits_the_whole_step(breakdown):
    # The convolutions' MACs read from the profiled shapes are the counted MACs less the linear layers': for LeNet-5
    # (sparse C3 = grouped convs; F6 120x84 and the 84x10 classifier) and ShuffleNet (grouped 1x1, depthwise).
    lenet = breakdown.breakdown("lenet5_bn", steps=1)
    assert sum(lenet["conv_macs"].values()) == lenet["counted_macs"] - 4 * (120 * 84 + 84 * 10)
    assert lenet["conv_macs"]["conv grouped"] > 0 and lenet["conv_macs"]["conv depthwise"] == 0
    shuffle = breakdown.breakdown("shufflenet_v1_g3", steps=1)
    assert shuffle["conv_macs"]["conv grouped"] > 0 and shuffle["conv_macs"]["conv depthwise"] > 0
    assert shuffle["counted_macs"] - sum(shuffle["conv_macs"].values()) == 4 * 960 * 10  # the classifier
    for r in (lenet, shuffle):
        assert sum(r["shares"].values()) == pytest.approx(1.0)
        assert r["shares"]["optimizer"] > 0 and r["shares"]["normalization"] > 0 and r["step_ms"] > 0
    assert breakdown.conv_kind(32, [32, 1, 3, 3]) == "conv depthwise"
    assert breakdown.conv_kind(32, [64, 8, 1, 1]) == "conv grouped"
    assert breakdown.conv_kind(32, [64, 32, 1, 1]) == "conv 1 x 1"
    assert breakdown.conv_kind(32, [64, 32, 3, 3]) == "conv k x k"
    assert breakdown.name_kind("aten::native_batch_norm_backward") == "normalization"
    assert breakdown.name_kind("aten::threshold_backward") == "activation"
    assert breakdown.name_kind("aten::cat") == "memory" and breakdown.name_kind("aten::add_") == "elementwise"


def test_op_breakdown_writes_its_table_and_rejects_bad_arguments(breakdown, tmp_path, capsys):
    out = tmp_path / "ob.md"
    mfu_rows = tmp_path / "mfu.json"
    mfu_rows.write_text(json.dumps({"rows": [
        {"model": "resnet20", "size": 28, "train_pct": 60.0}, {"model": "lenet5_bn", "size": 28, "train_pct": 2.0},
        {"model": "resnet18", "size": 224, "train_pct": 1.0}, {"model": "vgg16", "size": 28, "error": "x"}]}))
    assert breakdown.main(["--mfu", str(mfu_rows), "--lowest", "1", "--steps", "1", "--peak-n", "64",
                           "--out", str(out)]) == 0
    md = out.read_text()
    assert "`lenet5_bn` (channels_last, fp32)" in md and "resnet20" not in md and "resnet18" not in md
    assert str(tmp_path) not in md and "--out ob.md" in md and "fp32 peak" in md
    row = next(line for line in md.splitlines() if line.startswith("| `lenet5_bn`"))
    shares = [float(c.strip().rstrip("%")) for c in row.strip("|").split("|")[2:14]]
    assert sum(shares) == pytest.approx(100, abs=0.7)
    capsys.readouterr()
    assert breakdown.main(["--steps", "0", "--out", str(out)]) == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
    assert breakdown.main(["--models", "no_such_net", "--out", str(out)]) == 2
    assert "no_such_net" in capsys.readouterr().err
    assert breakdown.main(["--mfu", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "run benchmarks/mfu.py first" in capsys.readouterr().err
