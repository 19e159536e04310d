"""Regenerate the README's model table from the registry (`papernets models --markdown`)."""

import re
from pathlib import Path

from papernets.cli import model_rows, models_markdown

README = Path(__file__).resolve().parents[1] / "README.md"

text = README.read_text()
table = models_markdown(model_rows(small=True))
note = ("Params and GMACs are counted by `papernets models --markdown` (meta device, no weights allocated); "
        "\"ImageNet\" is 1000 classes, RGB, at the listed input size; 28x28x1 uses the small-image form.")
new = re.sub(r"<!-- models:start -->.*<!-- models:end -->",
             f"<!-- models:start -->\n{note}\n\n{table}\n<!-- models:end -->", text, flags=re.S)
README.write_text(new)
print(f"README model table: {table.count(chr(10)) - 1} models")

# The measured fashion-quick table, copied from what `papernets bench --protocol fashion-quick` wrote.
bench_md = README.parent / "docs" / "results" / "fashion-quick.md"
bench_table = "\n".join(line for line in bench_md.read_text().splitlines() if line.startswith("|"))
header = next(line for line in bench_md.read_text().splitlines() if line.startswith("Written by"))
text = README.read_text()
new = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->",
             f"<!-- bench:start -->\n{header}\n\n{bench_table}\n\n"
             "![fashion-quick: test accuracy against GMACs](docs/results/fashion-quick_acc_vs_gmacs.png)\n"
             "<!-- bench:end -->", text, flags=re.S)
README.write_text(new)
print(f"README bench table: {bench_table.count(chr(10)) - 1} rows")
