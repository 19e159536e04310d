"""Regenerate the tables between markers in the README and the docs pages.

- ``docs/models.md``, ``<!-- models:start -->``: the model table, from the registry (``papernets models
  --markdown``);
- ``docs/benchmark.md``, ``<!-- bench:start -->``: the fashion-quick table, copied from
  ``docs/results/fashion-quick.md`` (what ``papernets bench --protocol fashion-quick`` wrote);
- ``README.md``, ``<!-- budget:start -->``: the README's headline, the fashion-budget table narrowed to a screen's
  width, from ``docs/results/fashion-budget.json`` (what ``papernets bench`` wrote), once that table exists;
- ``README.md``, ``<!-- fast:start -->``: the time-to-accuracy table of the fastest recipe, copied from
  ``docs/results/fashion-mnist-airbench.md`` (what ``python benchmarks/time_to_accuracy.py`` wrote).

``tests/test_readme.py`` fails while any of them is stale.
"""

import json
import re
from pathlib import Path

from papernets.bench.report import headline_table
from papernets.bench.table import fmt_seconds
from papernets.bench.zoo import model_rows, models_markdown

ROOT = Path(__file__).resolve().parents[1]
FAST_TABLE = "fashion-mnist-airbench.md"  # the README's time-to-accuracy headline
README = ROOT / "README.md"
MODELS_PAGE = ROOT / "docs" / "models.md"
BENCH_PAGE = ROOT / "docs" / "benchmark.md"
RESULTS = ROOT / "docs" / "results"

MODELS_NOTE = ("Params and GMACs are counted by `papernets models --markdown` (meta device, no weights allocated); "
               "\"ImageNet\" is 1000 classes, RGB, at the listed input size; 28x28x1 uses the small-image form.")


def replace_block(page: Path, marker: str, body: str) -> None:
    """Put ``body`` between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` of ``page``."""
    text = page.read_text()
    pattern = rf"<!-- {marker}:start -->.*<!-- {marker}:end -->"
    if not re.search(pattern, text, flags=re.S):
        raise SystemExit(f"{page} lost its <!-- {marker}:start --> ... <!-- {marker}:end --> markers")
    page.write_text(re.sub(pattern, lambda _: f"<!-- {marker}:start -->\n{body}<!-- {marker}:end -->", text,
                           flags=re.S))


def measured_block(measured: Path, extra: str = "") -> tuple[str, int]:
    """The header line, the table (and the summary line under it) of ``measured``, then ``extra``; and the number
    of table rows."""
    lines = measured.read_text().splitlines()
    table = "\n".join(line for line in lines if line.startswith("|"))
    header = next(line for line in lines if line.startswith("Written by"))
    summary = "".join(f"\n\n{line}" for line in lines if line.startswith("Test accuracy: mean"))
    return f"{header}\n\n{table}{summary}\n{extra}", table.count("\n") - 1


def budget_block(measured: Path) -> tuple[str, int]:
    """The README's headline from a budget bench's ``.json``: a line saying what ran where, the narrow table, the
    link to the whole table and the accuracy-against-time plot; and the number of rows."""
    data = json.loads(measured.read_text())
    records, bench = data["records"], data["bench"]
    ok = [r for r in records if r.get("status") == "ok"]
    name = data["protocol"]
    line = (f"Written by `papernets bench --protocol {name}` (torch {data['versions']['torch']}) on "
            f"{', '.join(data['cpus']) or 'n/a'}: {len(records)} rows, "
            f"{bench['budget_min']:g} minutes of training each, {fmt_seconds(data['total_time_s'])} in all. Test "
            f"accuracy on the 10,000 test images; steps and epochs: what {bench['budget_min']:g} minutes bought "
            f"(epochs = images seen / 54,000). Every column, the configurations and the CPU of each row: "
            f"[docs/results/{name}.md](docs/results/{name}.md).")
    if len(ok) < len(records):
        line += f" {len(records) - len(ok)} of {len(records)} rows failed (the table says why)."
    plot = f"![test accuracy against wall time](docs/results/{name}_acc_vs_time.png)"
    return f"{line}\n\n{headline_table(records)}\n\n{plot}\n", len(records)


def main() -> None:
    table = models_markdown(model_rows(small=True))
    replace_block(MODELS_PAGE, "models", f"{MODELS_NOTE}\n\n{table}\n")
    print(f"{MODELS_PAGE.relative_to(ROOT)} model table: {table.count(chr(10)) - 1} models")

    # The measured fashion-quick table, copied from what `papernets bench --protocol fashion-quick` wrote.
    plot = "![fashion-quick: test accuracy against GMACs](results/fashion-quick_acc_vs_gmacs.png)"
    body, rows = measured_block(RESULTS / "fashion-quick.md", f"\n{plot}\n")
    replace_block(BENCH_PAGE, "bench", body)
    print(f"{BENCH_PAGE.relative_to(ROOT)} bench table: {rows} rows")

    # The fashion-budget table, narrowed: the README's headline, once `papernets bench` has written it.
    budget = RESULTS / "fashion-budget.json"
    if budget.is_file():
        body, rows = budget_block(budget)
        replace_block(README, "budget", body)
        print(f"README budget table: {rows} rows")
    else:
        print(f"README budget table: {budget.relative_to(ROOT)} not written yet (run `papernets bench`)")

    # The fastest recipe's seeds, copied from what `python benchmarks/time_to_accuracy.py` wrote.
    body, rows = measured_block(RESULTS / FAST_TABLE)
    replace_block(README, "fast", body)
    print(f"README time-to-accuracy table: {rows} seeds")


if __name__ == "__main__":
    main()
