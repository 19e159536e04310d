"""The README's model table is the registry's, as `papernets models --markdown` prints it."""

import re
from pathlib import Path

from papernets.bench.zoo import model_rows, models_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_model_table_matches_the_registry():
    block = re.search(r"<!-- models:start -->(.*)<!-- models:end -->", README.read_text(), flags=re.S)
    assert block, "README.md lost its <!-- models:start --> ... <!-- models:end --> markers"
    table = models_markdown(model_rows(small=True))
    assert table in block.group(1), "README model table is stale: run `python scripts/update_readme.py`"


def test_readme_bench_table_is_the_measured_one():
    block = re.search(r"<!-- bench:start -->(.*)<!-- bench:end -->", README.read_text(), flags=re.S)
    assert block, "README.md lost its <!-- bench:start --> ... <!-- bench:end --> markers"
    measured = README.parent / "docs" / "results" / "fashion-quick.md"
    rows = [line for line in measured.read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 23, "docs/results/fashion-quick.md should hold the 23 default rows"
    assert "\n".join(rows) in block.group(1), "README bench table is stale: run `python scripts/update_readme.py`"
    assert "fashion-quick_acc_vs_gmacs.png" in block.group(1)
    assert (measured.parent / "fashion-quick_acc_vs_gmacs.png").is_file()


def test_readme_time_to_accuracy_table_is_the_measured_one():
    block = re.search(r"<!-- fast:start -->(.*)<!-- fast:end -->", README.read_text(), flags=re.S)
    assert block, "README.md lost its <!-- fast:start --> ... <!-- fast:end --> markers"
    measured = (README.parent / "docs" / "results" / "fashion-mnist-fast.md").read_text().splitlines()
    rows = [line for line in measured if line.startswith("|")]
    summary = next(line for line in measured if line.startswith("Test accuracy: mean"))
    assert len(rows) >= 2 + 3, "docs/results/fashion-mnist-fast.md should hold at least 3 seeds"
    assert "\n".join(rows) in block.group(1) and summary in block.group(1), \
        "README time-to-accuracy table is stale: run `python scripts/update_readme.py`"
