"""The README's model table is the registry's, as `papernets models --markdown` prints it."""

import re
from pathlib import Path

from papernets.cli import model_rows, models_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_model_table_matches_the_registry():
    block = re.search(r"<!-- models:start -->(.*)<!-- models:end -->", README.read_text(), flags=re.S)
    assert block, "README.md lost its <!-- models:start --> ... <!-- models:end --> markers"
    table = models_markdown(model_rows(small=True))
    assert table in block.group(1), "README model table is stale: run `python scripts/update_readme.py`"
