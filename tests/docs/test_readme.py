"""The README and the docs pages: short, linked, their generated tables current, their Python example true.

The generated tables (written by `python scripts/update_readme.py`): the model table in docs/models.md is the
registry's, as `papernets models --markdown` prints it; the fashion-quick table in docs/benchmark.md and the
time-to-accuracy table in the README are the measured ones in docs/results/.
"""

import ast
import re
from pathlib import Path

import pytest

from conftest import benchmark_module
from papernets.bench.zoo import model_rows, models_markdown

ROOT = Path(__file__).resolve().parents[2]  # tests/docs/ -> the repository
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
STALE = "is stale: run `python scripts/update_readme.py`"


def _block(page: Path, marker: str) -> str:
    block = re.search(rf"<!-- {marker}:start -->(.*)<!-- {marker}:end -->", page.read_text(), flags=re.S)
    assert block, f"{page.name} lost its <!-- {marker}:start --> ... <!-- {marker}:end --> markers"
    return block.group(1)


@pytest.mark.slow
def test_model_table_matches_the_registry():
    table = models_markdown(model_rows(small=True))
    assert table.count("\n") - 1 == 90, "the docs and the README say 90 registered models"
    assert table in _block(DOCS / "models.md", "models"), f"docs/models.md model table {STALE}"


def test_bench_table_is_the_measured_one_and_says_it_is_a_smoke_test():
    page = DOCS / "benchmark.md"
    block = _block(page, "bench")
    measured = DOCS / "results" / "fashion-quick.md"
    rows = [line for line in measured.read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 23, "docs/results/fashion-quick.md should hold the 23 default rows"
    assert "\n".join(rows) in block, f"docs/benchmark.md bench table {STALE}"
    assert "(results/fashion-quick_acc_vs_gmacs.png)" in block
    assert (measured.parent / "fashion-quick_acc_vs_gmacs.png").is_file()
    caption = page.read_text().split("<!-- bench:start -->")[0]
    assert "smoke test of the pipeline, not a ranking" in caption


def test_readme_headline_is_the_measured_time_to_accuracy_table():
    block = _block(README, "fast")
    table = _update_readme().FAST_TABLE
    measured = (DOCS / "results" / table).read_text().splitlines()
    rows = [line for line in measured if line.startswith("|")]
    summary = next(line for line in measured if line.startswith("Test accuracy: mean"))
    assert len(rows) >= 2 + 3, f"docs/results/{table} should hold at least 3 seeds"
    assert "\n".join(rows) in block and summary in block, f"README time-to-accuracy table {STALE}"
    assert f"(docs/results/{table.removesuffix('.md')}.png)" in README.read_text()
    assert "<!-- models:start -->" not in README.read_text() and "<!-- bench:start -->" not in README.read_text()


def _update_readme():
    return benchmark_module("update_readme", "scripts")


def test_readme_headline_is_the_measured_budget_table_once_there_is_one():
    """Once `papernets bench` has written docs/results/fashion-budget.json, the README's budget block is its
    narrow table; before that, the README has no budget block to be stale."""
    measured = DOCS / "results" / "fashion-budget.json"
    if not measured.is_file():
        assert "<!-- budget:start -->" not in README.read_text(), "a budget block with no fashion-budget.json"
        return
    body, rows = _update_readme().budget_block(measured)
    assert rows >= 1 and body in _block(README, "budget"), f"README budget table {STALE}"


def test_budget_block_names_the_cpu_budget_and_every_row(tmp_path):
    import json

    budget_block = _update_readme().budget_block

    def record(i, family, acc):
        return {"id": f"m{i}", "model": f"m{i}", "family": family, "year": 2000 + i, "status": "ok",
                "test_acc": acc, "params": 1000 * i, "gmacs": 0.01 * i, "train_img_per_s": 100.0 * i,
                "steps": 500 * i, "data_epochs": 0.5 * i, "cpu": "Some CPU (AVX2)", "budget_min": 5}

    records = [record(1, "lenet", 0.8812), record(2, "resnet", 0.9034),
               {**record(3, "vit", None), "status": "failed", "error": "out of memory"}]
    path = tmp_path / "fashion-budget.json"
    path.write_text(json.dumps({"protocol": "fashion-budget", "records": records, "bench": {"budget_min": 5},
                                "cpus": ["Some CPU (AVX2)"], "total_time_s": 3725.0,
                                "versions": {"torch": "2.14.1"}}))
    body, rows = budget_block(path)
    assert rows == 3
    assert "on Some CPU (AVX2): 3 rows, 5 minutes of training each, 1:02:05 in all" in body
    assert "1 of 3 rows failed" in body and "failed: out of memory" in body
    assert "| lenet | `m1` | 88.12 | 1,000 | 0.01 | 100.0 | 500 | 0.50 |" in body
    assert "(docs/results/fashion-budget.md)" in body and "(docs/results/fashion-budget_acc_vs_time.png)" in body
    assert "| CPU |" not in body  # one CPU: the line above names it


def test_budget_headline_names_each_rows_cpu_when_rows_ran_on_several():
    from papernets.bench.report import headline_table

    row = {"family": "lenet", "model": "m", "year": 2000, "status": "ok", "test_acc": 0.9, "params": 1, "gmacs": 0.1,
           "train_img_per_s": 10.0, "steps": 5, "data_epochs": 0.1}
    table = headline_table([{**row, "id": "a", "cpu": "CPU one (AVX2)"}, {**row, "id": "b", "cpu": "CPU two (AMX)"}])
    assert table.splitlines()[0].endswith("| CPU |")
    assert "| CPU one (AVX2) |" in table and "| CPU two (AMX) |" in table


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "the README is for a newcomer: at most 250 lines, details go to docs/"
    setup, tests = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]
    assert setup == "bash scripts/setup.sh && .venv/bin/papernets train --config quickstart"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert tests == " && ".join(ci) == "bash scripts/setup.sh && .venv/bin/python -m pytest", \
        "the README's test command must be what .ci/run runs"


def _strip_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _strip_code(page.read_text()))


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", _strip_code(page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / link.split("#")[0]).resolve() for link in _links(README)}
    assert PAGES, "docs/ has no pages"
    missing = [page.name for page in PAGES if page.resolve() not in linked]
    assert not missing, f"docs pages the README does not link to: {missing}"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_an_existing_file(page):
    for link in _links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: the link {link!r} points at no file"
        assert target.resolve().is_relative_to(ROOT), f"{page.name}: {link!r} points outside the repository"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{page.name}: {link!r}: {target.name} has no heading #{anchor}"


def test_no_page_points_outside_the_repository():
    for page in [README, *PAGES]:
        text = page.read_text()
        assert "../shared" not in text and "REFERENCES.md" not in text and "DESIGN.md" not in text, page.name


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python block, run as written on a tiny run: the synthetic dataset, 64 images, LeNet-5-BN."""
    from PIL import Image

    code = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    assert len([line for line in code.splitlines() if line and not line.startswith(("import", "from"))]) <= 5
    given = 'papernets.train("quickstart", steps=200)'
    assert code.count(given) == 1, "the README's example changed: update this test's substitution"
    tiny = code.replace(given, 'papernets.train("quickstart", steps=2, data={"name": "synthetic", "limit": 64}, '
                               'batch_size=32, model={"name": "lenet5_bn"}, plots=False)')
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(tiny, "README.md", "exec"), scope)
    run = scope["run"]
    assert 0.0 <= run.summary["test_acc"] <= 1.0 and (tmp_path / run.dir / "summary.json").is_file()
    assert str(run.dir).startswith("runs/lenet5_bn-synthetic-")
    x = scope["preprocess"](Image.new("L", (28, 28)))
    assert scope["model"](x).shape == (1, 10) and scope["classes"][0] == "class0"
    for line in code.splitlines():  # a comment that is a Python literal is the value of its line
        expr, _, comment = line.partition("#")
        try:
            expected = ast.literal_eval(comment.strip())
        except (ValueError, SyntaxError):
            continue
        assert eval(expr, scope) == expected, f"README: {line.strip()!r} is not true"


def test_the_near_chance_rows_after_are_the_committed_table():
    """docs/benchmark.md's before -> after table: each "after" is the row's test accuracy in the committed
    fashion-quick results, and each of those rows carries its remedy in the protocol."""
    import json

    from papernets.bench.protocol import load_protocol

    text = (DOCS / "benchmark.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|.*\| ([\d.]+) -> ([\d.]+) \|$", text, flags=re.M)
    assert len(rows) == 6
    records = {r["id"]: r for r in json.loads((DOCS / "results" / "fashion-quick.json").read_text())["records"]}
    remedies = {r.id: r.config for r in load_protocol("fashion-quick").rows}
    for row, before, after in rows:
        assert f"{records[row]['test_acc'] * 100:.1f}" == after, row
        assert float(after) > float(before) and remedies[row], row
