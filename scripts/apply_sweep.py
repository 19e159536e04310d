"""Write a sweep's chosen settings into its protocol's ``families`` section.

    python scripts/apply_sweep.py [--protocol src/papernets/configs/bench/fashion-budget.yaml]
                                  [--sweep docs/results/fashion-budget-sweep.json]

``papernets bench --protocol P --sweep`` writes ``docs/results/P-sweep.json``; this replaces the protocol file's
``families:`` section (up to the next top-level key) with one line per swept family, in the sweep's order, and
leaves the rest of the file, comments included, as it is. A test (``tests/test_budget.py``) keeps the two equal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def families_block(families: dict) -> str:
    lines = ["families:  # chosen on validation by the sweep (docs/results/<protocol>-sweep.md); "
             "scripts/apply_sweep.py writes them"]
    for family, f in families.items():
        lines.append(f"  {family}: {json.dumps(f['chosen'])}")  # JSON is YAML (flow style)
    return "\n".join(lines) + "\n" if families else "families: {}\n"


def apply(protocol: Path, sweep: Path) -> str:
    text = protocol.read_text()
    match = re.search(r"^families:.*?(?=^\S)", text, flags=re.S | re.M)
    if match is None:
        raise SystemExit(f"{protocol}: no top-level 'families:' section followed by another key")
    families = json.loads(sweep.read_text())["families"]
    return text[:match.start()] + families_block(families) + text[match.end():]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", type=Path, default=ROOT / "src/papernets/configs/bench/fashion-budget.yaml")
    parser.add_argument("--sweep", type=Path, default=ROOT / "docs/results/fashion-budget-sweep.json")
    args = parser.parse_args(argv)
    for path in (args.protocol, args.sweep):
        if not path.is_file():
            print(f"apply_sweep: {path} is not a file", file=sys.stderr)
            return 2
    args.protocol.write_text(apply(args.protocol, args.sweep))
    print(f"{args.protocol}: families section from {args.sweep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
