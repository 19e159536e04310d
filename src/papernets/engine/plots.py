"""Training curves of a run (accuracy and loss per epoch, train against validation) and its confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves", "plot_confusion", "save_figure"]


def save_figure(fig: Any, path: Path) -> None:
    """Save a figure through a fresh temporary file renamed over ``path`` (a file planted at ``path``, a symlink
    included, is replaced, never written through)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_curves(history: list[dict[str, float]], out_dir: Path, title: str) -> list[Path]:
    """Write ``accuracy.png`` and ``loss.png`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [int(r["epoch"]) for r in history]
    paths = []
    for metric, label, scale in (("acc", "accuracy (%)", 100.0), ("loss", "loss", 1.0)):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        ax.plot(epochs, [r[f"train_{metric}"] * scale for r in history], "o-", label="train")
        ax.plot(epochs, [r[f"val_{metric}"] * scale for r in history], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) < 15:
            ax.set_xticks(epochs)
        fig.tight_layout()
        path = out_dir / ("accuracy.png" if metric == "acc" else "loss.png")
        save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_confusion(matrix: Any, classes: list[str], path: Path, title: str) -> Path:
    """The confusion matrix as an image: rows the true class, columns the prediction, each row normalized to the
    share of its images (the counts written in the cells up to 30 classes, the class names up to 60)."""
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    side = min(14.0, max(5.0, 0.55 * k + 2))
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=110)
    im = ax.imshow(shares * 100, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's images (%)")
    if k <= 60:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=7 if k > 15 else 8)
        ax.set_yticks(range(k), classes, fontsize=7 if k > 15 else 8)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=6 if k > 12 else 7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
    return path
