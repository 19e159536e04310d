"""papernets as a user installs it: a wheel (not an editable install) in a fresh virtual environment, run from
another folder. The configs ship inside the package, so ``--config NAME``, ``--recipe paper`` and the bench
protocols work without a checkout of the repository."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
         ) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path, Path]:
    """(the fresh environment's bin folder, its environment variables, a work folder outside the repository, the
    wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
          str(REPO)], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("papernets-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q",
          str(wheel)], cwd=tmp)
    # The pinned dependencies (torch, torchvision, ...) come from this environment instead of a second download:
    # its site-packages is appended to the fresh one's path, after the fresh one's own packages.
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), "PYTHONUNBUFFERED": "1"}
    work = tmp / "elsewhere"
    work.mkdir()
    return venv / "bin", env, work, wheel


def test_the_wheel_holds_every_config(installed):
    wheel = installed[3]
    built = sorted((REPO / "src" / "papernets" / "configs").rglob("*.yaml"))
    assert len(built) > 20
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in built if f"papernets/{p.relative_to(REPO / 'src' / 'papernets')}" not in names]
    assert not missing, f"configs missing from the wheel: {missing}"


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    bin_dir, env, work, _ = installed
    res = _run([str(bin_dir / "python"), "-c", "import papernets; print(papernets.__file__)"], cwd=work, env=env)
    assert str(bin_dir.parent) in res.stdout and str(REPO) not in res.stdout


def test_recipe_paper_and_a_shipped_config_by_name(installed):
    bin_dir, env, work, _ = installed
    _run([str(bin_dir / "papernets"), "train", "--config", "quickstart", "--model", "lenet5", "--dataset",
          "synthetic", "--epochs", "1", "--recipe", "paper", "--set", "data.limit=128", "--set",
          "train.batch_size=64", "--set", "train.steps=null", "--out", "runs", "--name", "r"], cwd=work, env=env)
    assert (work / "runs" / "r" / "summary.json").is_file()
    assert "# The paper recipe was applied:" in (work / "runs" / "r" / "config.yaml").read_text()


@pytest.mark.slow  # about 20 s; test_the_wheel_holds_every_config checks the protocol files are in the wheel
def test_a_bench_protocol_by_name(installed):
    bin_dir, env, work, _ = installed
    _run([str(bin_dir / "papernets"), "bench", "--protocol", "fashion-quick", "--models", "lenet5", "--set",
          "data.name=synthetic", "--set", "data.limit=128", "--set", "train.epochs=1", "--out", "bench-runs",
          "--results", "results"], cwd=work, env=env)
    assert (work / "results" / "fashion-quick.md").is_file()
    assert "lenet5" in (work / "results" / "fashion-quick.md").read_text()
