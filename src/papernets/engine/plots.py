"""Training curves of a run: accuracy and loss per epoch, train against validation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves"]


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
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
