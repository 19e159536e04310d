"""The run directory: what a run leaves behind, and in which form.

    config.yaml      the resolved config (``--config`` with it repeats the run)
    metrics.csv      one row per epoch (METRIC_COLUMNS, then EMA_COLUMNS and PROGRESSIVE_COLUMNS when on)
    summary.json     test accuracy of the tested weights, params, MACs, wall time, runtime, host, versions
    checkpoints/     last.pt and best.pt (``engine/checkpoint.py``)
    plots/           accuracy.png and loss.png

Only process 0 of a ``torchrun`` job writes; files are replaced atomically (written aside, then renamed).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from papernets._version import __version__
from papernets.config import Config, config_to_dict
from papernets.engine.plots import plot_confusion, plot_curves
from papernets.engine.speed import cpu_label

__all__ = ["atomic_write_text", "METRIC_COLUMNS", "TIMING_COLUMNS", "EMA_COLUMNS", "PROGRESSIVE_COLUMNS", "host",
           "versions", "write_config", "default_run_dir", "write_status", "write_per_class", "per_class",
           "most_confused",
           "write_metrics", "write_summary", "write_plots", "MARKER", "claim_run_dir"]

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "train_img_per_s", "wall_time_s",
]
# The columns that measure time (they differ between two runs of the same config; the others repeat exactly).
# epoch_time_s: the epoch's training steps; wall_time_s: the run's time so far, at the end of the epoch's validation.
TIMING_COLUMNS = ["epoch_time_s", "train_img_per_s", "wall_time_s"]
EMA_COLUMNS = ["ema_val_loss", "ema_val_acc"]  # added when train.ema is on
PROGRESSIVE_COLUMNS = ["image_size", "randaugment_magnitude", "mixup_alpha", "dropout"]  # train.progressive


def host(device: torch.device) -> dict[str, Any]:
    """The machine a run trained on (rank 0's), as timings depend on it: CPU model and bf16 instructions, threads
    per process, and the GPU where there is one."""
    return {"cpu": cpu_label(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def versions() -> dict[str, str]:
    import torchvision

    return {
        "papernets": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a fresh temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # as an ordinary new file (mkstemp makes it private)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_config(run_dir: Path, cfg: Config, recipe: str | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    header = (f"# The paper recipe was applied: {recipe}.\n# This is the resolved config (train.recipe: null), so "
              "--config with this file repeats the run.\n") if recipe else ""
    atomic_write_text(run_dir / "config.yaml", header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def write_metrics(run_dir: Path, history: list[dict[str, float]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k == "lr" else v) for k, v in row.items()})
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def default_run_dir(cfg: Config) -> Path:
    """``output.dir/output.name``, the name defaulting to ``<model>-<dataset>-<time>``."""
    import time

    return Path(cfg.output.dir) / (cfg.output.name or
                                   f"{cfg.model.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def write_status(run_dir: Path, status: str, why: str) -> None:
    """``status.json``: how a run that did not finish ended (``diverged``), for ``papernets runs``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "status.json", json.dumps({"status": status, "why": why}) + "\n")


def per_class(confusion: Any, classes: list[str]) -> list[dict[str, Any]]:
    """Per class, from a confusion matrix (rows true, columns predicted): images, correct, accuracy (the share of
    the class's images classified as it: its recall), precision (the share of the images predicted as it that
    are it) and recall."""
    m = [[int(v) for v in row] for row in confusion.tolist()]
    out = []
    for i, name in enumerate(classes):
        images, predicted = sum(m[i]), sum(row[i] for row in m)
        acc = m[i][i] / images if images else None
        out.append({"class": name, "images": images, "correct": m[i][i], "accuracy": acc,
                    "precision": m[i][i] / predicted if predicted else None, "recall": acc})
    return out


def most_confused(confusion: Any, classes: list[str], n: int = 3) -> list[tuple[str, str, int]]:
    """The ``n`` largest off-diagonal cells: (true class, predicted class, images)."""
    m = confusion.tolist()
    cells = [(int(m[i][j]), i, j) for i in range(len(m)) for j in range(len(m)) if i != j and m[i][j]]
    return [(classes[i], classes[j], c) for c, i, j in sorted(cells, key=lambda t: (-t[0], t[1], t[2]))[:n]]


def write_per_class(out_dir: Path, confusion: Any, classes: list[str], title: str = "test split",
                    plot: bool = True) -> list[str]:
    """``per_class.csv``, ``confusion.csv`` and (``plot``) ``plots/confusion.png`` in ``out_dir``; the lines to
    print (none without a matrix)."""
    if confusion is None:
        return []
    rows = per_class(confusion, classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["class", "images", "correct", "accuracy", "precision", "recall"])
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()})
    atomic_write_text(out_dir / "per_class.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion.tolist(), strict=True):
        w.writerow([name, *(int(v) for v in row)])
    atomic_write_text(out_dir / "confusion.csv", buf.getvalue())
    if plot:
        plot_confusion(confusion, classes, out_dir / "plots" / "confusion.png", f"confusion matrix, {title}")
    scored = [r for r in rows if r["accuracy"] is not None]
    worst = sorted(scored, key=lambda r: r["accuracy"])[:3]
    lines = ["per class (" + title + "): lowest accuracy " + ", ".join(f"{r['class']} {r['accuracy'] * 100:.1f}%"
                                                                        for r in worst)]
    pairs = most_confused(confusion, classes)
    if pairs:
        lines.append("most confused: " + ", ".join(f"{t} as {p} ({c})" for t, p, c in pairs)
                     + f" -> {out_dir / 'per_class.csv'}, confusion.csv" + (", plots/confusion.png" if plot else ""))
    return lines


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def write_plots(run_dir: Path, history: list[dict[str, float]], title: str) -> None:
    if history:
        plot_curves(history, run_dir / "plots", title)


MARKER = ".papernets-run"  # in every run directory: says it is one, and is locked while a process trains it


def claim_run_dir(run_dir: Path, resuming: bool) -> int:
    """Make ``run_dir`` this process's run directory, or raise a ``UsageError`` without writing anything.

    A new run takes a folder that does not exist or is empty (or holds only a run that stopped before its first
    epoch ended, or the bench's ``budget.json``), and creates the marker file with ``O_EXCL``, so that of two runs
    started at once into the same folder only one proceeds. A resumed run needs the marker (or, for runs written
    before markers, its ``config.yaml`` and ``checkpoints/``). Either way the marker is then locked (``lockf``)
    while the process trains: a second process training the same folder at the same time is refused. Returns the
    lock's file descriptor (the trainer closes it when it stops)."""
    import fcntl

    from papernets.errors import UsageError

    marker = run_dir / MARKER
    legacy = (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints").is_dir()
    if resuming:
        if not (marker.is_file() or legacy) or marker.is_symlink():
            raise UsageError(f"{str(run_dir)!r} is not a papernets run directory (no {MARKER}, config.yaml or "
                             "checkpoints/): a resumed run writes into its own run directory only, the folder of "
                             "checkpoints/last.pt.")
    elif run_dir.exists():
        if not run_dir.is_dir():
            raise UsageError(f"{str(run_dir)!r} exists and is not a folder; choose another --name or --out.")
        contents = {p.name for p in run_dir.iterdir()}
        # what a run leaves before its first epoch ends (and the bench's budget.json, written just before it)
        started_only = contents <= {MARKER, "config.yaml", "tensorboard", "budget.json"} and (
            MARKER in contents or "config.yaml" not in contents)
        if contents and not started_only:
            what = "already holds a run" if MARKER in contents or legacy else "is not empty and not a papernets run"
            raise UsageError(f"run directory {str(run_dir)!r} {what}; choose another --name (or --out)"
                             + (f", or continue it with --resume {run_dir}." if MARKER in contents or legacy
                                else ": papernets writes only into new folders and its own runs."))
    run_dir.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if not resuming and not marker.exists():
        flags |= os.O_EXCL
    try:
        fd = os.open(marker, flags, 0o644)
    except FileExistsError as exc:
        raise UsageError(f"run directory {str(run_dir)!r} was claimed by another run started at the same time; "
                         "choose another --name.") from exc
    except OSError as exc:
        raise UsageError(f"cannot claim run directory {str(run_dir)!r}: {exc.strerror} ({MARKER} must be a plain "
                         "file).") from exc
    try:  # a POSIX record lock: held by this process only (data-loading workers forked later do not inherit it)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise UsageError(f"run directory {str(run_dir)!r} is being trained by another papernets process; wait "
                         "for it, or stop it first.") from exc
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"papernets_run": 1, "pid": os.getpid()}).encode() + b"\n")
    return fd
