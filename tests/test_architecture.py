"""The architecture as a checked rule: import-linter's contracts (pyproject.toml) hold, and they can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    if not LINT.is_file():
        pytest.fail(f"import-linter is missing ({LINT}): pip install -e '.[dev]'")
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold():
    res = _lint(REPO, REPO / "src")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("engine/step.py", "import papernets.cli", "Nothing imports the command line"),
    ("engine/trainer.py", "import papernets.bench.profile", "Layers"),
    ("layers/conv.py", "import papernets.models", "Layers"),
    ("bench/report.py", "import papernets.bench.runner", "No import circles"),
])
def test_contracts_catch_a_wrong_import(tmp_path, module, line, broken):
    """The same contracts on a copy of the package with one import that breaks a rule."""
    shutil.copytree(REPO / "src" / "papernets", tmp_path / "src" / "papernets",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    path = tmp_path / "src" / "papernets" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    res = _lint(tmp_path, tmp_path / "src")
    assert res.returncode != 0
    assert f"{broken}" in res.stdout and "BROKEN" in res.stdout


def test_the_trainer_reads_in_one_sitting():
    """engine/trainer.py keeps the loop, checkpointing and resume; every other job lives in its own module."""
    lines = len((REPO / "src" / "papernets" / "engine" / "trainer.py").read_text().splitlines())
    assert lines <= 450, f"engine/trainer.py has {lines} lines"
