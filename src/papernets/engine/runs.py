"""The runs under a folder, one record each, for ``papernets runs``.

A run directory is a folder with ``config.yaml`` and ``metrics.csv`` or a checkpoint. Its status: ``finished``
(``summary.json`` is written), ``diverged`` (``status.json`` says so: the loss or a weight became NaN or
infinite), or ``interrupted`` (neither: stopped by Ctrl-C, a kill or a crash, or still running; ``papernets
train --resume RUN`` continues it from ``checkpoints/last.pt``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from papernets.config import yaml_load

__all__ = ["find_runs", "run_record"]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def run_record(run_dir: Path, root: Path) -> dict[str, Any]:
    """What ``papernets runs`` shows of one run directory."""
    try:
        config = yaml_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    summary = {}
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
    rows = _metrics(run_dir)
    vals = [float(r["val_acc"]) for r in rows if r.get("val_acc") not in (None, "", "nan")]
    status, why = "interrupted", None
    if summary:
        status = "finished"
    elif (run_dir / "status.json").is_file():
        recorded = json.loads((run_dir / "status.json").read_text())
        status, why = recorded.get("status", "interrupted"), recorded.get("why")
    train = config.get("train") or {}
    wall = summary.get("wall_time_s") if summary else (float(rows[-1]["wall_time_s"]) if rows else None)
    return {
        "run": str(run_dir.relative_to(root)) if run_dir != root else ".",
        "model": (config.get("model") or {}).get("name"), "dataset": (config.get("data") or {}).get("name"),
        "epochs": len(rows), "epochs_planned": train.get("epochs"), "steps": summary.get("steps"),
        "best_val_acc": max(vals) if vals else None, "test_acc": summary.get("test_acc"),
        "wall_time_s": wall, "status": status, "why": why,
    }


def find_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run directory under ``root`` (``root`` itself included), sorted by path."""
    root = Path(root)
    found = []
    for config in sorted(root.rglob("config.yaml")):
        d = config.parent
        if any((d / f).exists() for f in ("metrics.csv", "checkpoints", "summary.json", "status.json")):
            found.append(run_record(d, root))
    return found
