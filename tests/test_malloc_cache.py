"""benchmarks/malloc_cache.py: the malloc cache off and on, each side in fresh processes (the tool is checked, not
the machine: no speed is asserted)."""

import json
import re

import pytest

from conftest import benchmark_module
from papernets.engine import allocator

pytestmark = pytest.mark.skipif(not allocator.available(), reason="the malloc cache needs glibc")


@pytest.fixture
def mc():
    return benchmark_module("malloc_cache")


def test_each_side_runs_in_its_own_process_with_its_allocator(mc):
    off = mc.run_child("lenet5_bn", False, 28, 4, 1)
    on = mc.run_child("lenet5_bn", True, 28, 4, 1)
    assert off["malloc_cache"] is False and on["malloc_cache"] is True
    assert off["train_ips"] > 0 and on["infer_ips"] > 0 and on["precision"] in ("fp32", "bf16")
    with pytest.raises(RuntimeError, match="no_such_model"):
        mc.run_child("no_such_model", True, 28, 4, 1)


def test_the_table_is_the_rounds_medians_and_resumes(mc, tmp_path, monkeypatch, capsys):
    out = tmp_path / "mc.md"
    args = ["--batch", "4", "--rounds", "2", "--steps", "1", "--out", str(out)]
    assert mc.main(["--models", "lenet5_bn", *args]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    [row] = data["rows"]
    assert (row["model"], row["size"], row["batch"], row["rounds"]) == ("lenet5_bn", 28, 4, 2)
    assert row["train_ratio_min"] <= row["train_ratio"] <= row["train_ratio_max"]
    assert row["train_pct_on"] / row["train_pct_off"] == pytest.approx(row["train_on"] / row["train_off"])
    md = out.read_text()
    line = next(x for x in md.splitlines() if x.startswith("| `lenet5_bn`"))
    assert f"x{row['train_ratio']:.2f} ({row['train_ratio_min']:.2f}-{row['train_ratio_max']:.2f})" in line
    assert re.search(r"^Training speed-up, median over 1 rows: x[\d.]+", md, re.M)
    assert "python benchmarks/malloc_cache.py --models lenet5_bn" in md and str(tmp_path) not in md

    calls = []

    def broken(name, *rest):
        calls.append(name)
        raise RuntimeError("boom")

    monkeypatch.setattr(mc, "measure", broken)
    assert mc.main(["--models", "lenet5_bn", "squeezenet1_1", "--resume", *args]) == 0
    assert calls == ["squeezenet1_1"]  # the measured row is kept; the new one fails and says why
    assert "| `squeezenet1_1` | 28 | 4 | failed: boom |" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0] == row
    capsys.readouterr()
    assert mc.main(["--rounds", "0", "--out", str(out)]) == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
    assert mc.main(["--models", "no_such_model", "--out", str(out)]) == 2
    assert "no_such_model" in capsys.readouterr().err
