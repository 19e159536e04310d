"""Regenerate the README's model table from the registry (`papernets models --markdown`)."""

import re
from pathlib import Path

from papernets.bench.zoo import model_rows, models_markdown

README = Path(__file__).resolve().parents[1] / "README.md"

text = README.read_text()
table = models_markdown(model_rows(small=True))
note = ("Params and GMACs are counted by `papernets models --markdown` (meta device, no weights allocated); "
        "\"ImageNet\" is 1000 classes, RGB, at the listed input size; 28x28x1 uses the small-image form.")
new = re.sub(r"<!-- models:start -->.*<!-- models:end -->",
             f"<!-- models:start -->\n{note}\n\n{table}\n<!-- models:end -->", text, flags=re.S)
README.write_text(new)
print(f"README model table: {table.count(chr(10)) - 1} models")



def copy_measured(marker: str, measured: Path, extra: str) -> int:
    """Copy the header line, the table (and the summary line under it) of ``measured`` between the README's
    ``<!-- marker:start -->`` and ``<!-- marker:end -->``; return the number of table rows."""
    lines = measured.read_text().splitlines()
    table = "\n".join(line for line in lines if line.startswith("|"))
    header = next(line for line in lines if line.startswith("Written by"))
    summary = "".join(f"\n\n{line}" for line in lines if line.startswith("Test accuracy: mean"))
    text = README.read_text()
    new = re.sub(rf"<!-- {marker}:start -->.*<!-- {marker}:end -->",
                 lambda _: f"<!-- {marker}:start -->\n{header}\n\n{table}{summary}\n{extra}<!-- {marker}:end -->",
                 text, flags=re.S)
    README.write_text(new)
    return table.count("\n") - 1


results = README.parent / "docs" / "results"
# The measured fashion-quick table, copied from what `papernets bench --protocol fashion-quick` wrote.
rows = copy_measured("bench", results / "fashion-quick.md",
                     "\n![fashion-quick: test accuracy against GMACs](docs/results/fashion-quick_acc_vs_gmacs.png)\n")
print(f"README bench table: {rows} rows")
# The fast recipe's seeds, copied from what `python benchmarks/time_to_accuracy.py` wrote.
rows = copy_measured("fast", results / "fashion-mnist-fast.md", "")
print(f"README time-to-accuracy table: {rows} seeds")
