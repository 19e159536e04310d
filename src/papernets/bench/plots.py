"""The bench's figures: accuracy against GMACs and against parameters, training time, and every row's curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["PLOT_NAMES", "family_colors", "plot_accuracy_vs", "plot_train_time", "plot_curves_grid", "write_plots"]


PLOT_NAMES = ("acc_vs_time", "acc_vs_gmacs", "acc_vs_params", "speed_vs_gmacs", "train_time", "curves")



def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

def family_colors(records: list[dict[str, Any]]) -> dict[str, Any]:
    families = list(dict.fromkeys(r["family"] for r in records))
    cmap = plt.get_cmap("tab20")
    return {f: cmap(i % 20) for i, f in enumerate(families)}


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok" and r.get("test_acc") is not None]


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_accuracy_vs(records: list[dict[str, Any]], key: str, xlabel: str, title: str, path: Path) -> Path:
    """Test accuracy against ``key`` (log x), one labelled point per row, coloured by family."""
    colors = family_colors(records)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    rows = [r for r in _ok(records) if (r.get(key) or 0) > 0]
    if not rows:
        _empty(ax, "no finished rows")
    seen: set[str] = set()
    for r in rows:
        family = r["family"]
        ax.scatter(r[key], r["test_acc"] * 100, color=colors[family], s=40, zorder=3,
                   label=family if family not in seen else None, edgecolors="black", linewidths=0.4)
        seen.add(family)
        ax.annotate(r["id"], (r[key], r["test_acc"] * 100), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if rows:
        ax.set_xscale("log")
        ax.legend(fontsize=7, ncol=2, loc="best", title="family", title_fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_accuracy_vs_time(records: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Left: validation accuracy at each validation point against the run's wall time (one curve per row), the
    test accuracy as a star at the end; right: the mean training loss of each segment or epoch."""
    colors = family_colors(records)
    rows = [r for r in _ok(records) if r.get("curves")]
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(13, 6), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    if not rows:
        _empty(ax, "no finished rows")
        _empty(ax_loss, "no finished rows")
    for r in rows:
        curves = [c for c in r["curves"] if c.get("wall_time_s") is not None]
        if not curves:
            continue
        color = colors[r["family"]]
        t = [c["wall_time_s"] / 60 for c in curves]
        acc = [(c.get("val_acc") or float("nan")) * 100 for c in curves]
        ax.plot(t, acc, "o-", color=color, ms=3, lw=1.1)
        ax.scatter([t[-1]], [r["test_acc"] * 100], marker="*", s=70, color=color, edgecolors="black",
                   linewidths=0.4, zorder=3)
        ax.annotate(r["id"], (t[-1], acc[-1]), xytext=(4, 0), textcoords="offset points", fontsize=6)
        ax_loss.plot(t, [c.get("train_loss") or float("nan") for c in curves], "o-", color=color, ms=3, lw=1.1,
                     label=r["id"])
    if rows:
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=6, ncol=2)
    ax.set_xlabel("wall time of the run (minutes)")
    ax.set_ylabel("validation accuracy (%); star: test accuracy")
    ax.set_title(f"{title}: accuracy against wall time")
    ax_loss.set_xlabel("wall time of the run (minutes)")
    ax_loss.set_ylabel("training loss (mean over the segment or epoch)")
    ax_loss.set_title("training loss")
    for a in (ax, ax_loss):
        a.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_speed_vs_gmacs(records: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Training and inference images/s against GMACs per image (log-log): which architectures are CPU-efficient
    (points above the others at the same compute)."""
    colors = family_colors(records)
    rows = [r for r in _ok(records) if (r.get("gmacs") or 0) > 0]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    if not rows:
        _empty(ax, "no finished rows")
    for key, marker, label in (("train_img_per_s", "o", "training"), ("infer_img_per_s", "^", "inference")):
        pts = [r for r in rows if r.get(key)]
        for i, r in enumerate(pts):
            ax.scatter(r["gmacs"], r[key], marker=marker, color=colors[r["family"]], s=36, edgecolors="black",
                       linewidths=0.4, label=label if i == 0 else None, zorder=3)
            if key == "train_img_per_s":
                ax.annotate(r["id"], (r["gmacs"], r[key]), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if rows:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("GMACs per image (log scale)")
    ax.set_ylabel("images per second (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_train_time(records: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Training wall time per row (and of its paper-schedule run, stacked), coloured by family."""
    colors = family_colors(records)
    rows = _ok(records)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(rows) + 1.2)), dpi=110)
    if not rows:
        _empty(ax, "no finished rows")
    else:
        ys = list(range(len(rows)))
        shades = [colors[r["family"]] for r in rows]
        main = [r["wall_time_s"] / 60 for r in rows]
        ax.barh(ys, main, color=shades, edgecolor="black", linewidth=0.4, label="run")
        extra = [(r.get("paper_schedule_wall_time_s") or 0) / 60 for r in rows]
        if any(extra):
            ax.barh(ys, extra, left=main, color=shades, alpha=0.45, edgecolor="black", linewidth=0.4,
                    label="paper-schedule run")
            ax.legend(fontsize=8)
        ax.set_yticks(ys, [r["id"] for r in rows], fontsize=8)
        ax.invert_yaxis()
    ax.set_xlabel("training wall time (minutes)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_curves_grid(records: list[dict[str, Any]], title: str, path: Path) -> Path:
    """One panel per row: train and validation accuracy per epoch (a failed row says so)."""
    n = max(1, len(records))
    cols = min(6, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.1 * nrows + 0.6), dpi=100, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if not records:
        _empty(axes.flat[0], "no rows")
    for ax, r in zip(axes.flat, records, strict=False):
        curves = r.get("curves") or []
        ax.set_title(r["id"], fontsize=8)
        if r.get("status") != "ok" or not curves:
            _empty(ax, "failed" if r.get("status") != "ok" else "no epochs")
            continue
        epochs = [c["epoch"] for c in curves]
        ax.plot(epochs, [c["train_acc"] * 100 for c in curves], "o-", ms=3, lw=1.2, label="train")
        ax.plot(epochs, [(c.get("val_acc") or float("nan")) * 100 for c in curves], "s-", ms=3, lw=1.2,
                label="validation")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(epochs) < 12:
            ax.set_xticks(epochs)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if not handles:
        for ax in axes.flat:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                break
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(f"{title}: accuracy (%) per epoch", fontsize=10)
    return _save(fig, path)


def write_plots(records: list[dict[str, Any]], name: str, input_label: str, out: Path) -> dict[str, Path]:
    """All the figures as ``out/<name>_<figure>.png``; returns them by figure."""
    out.mkdir(parents=True, exist_ok=True)
    return {
        "acc_vs_time": plot_accuracy_vs_time(records, name, out / f"{name}_acc_vs_time.png"),
        "acc_vs_gmacs": plot_accuracy_vs(records, "gmacs", f"GMACs per image at {input_label} (log scale)",
                                         f"{name}: test accuracy against compute", out / f"{name}_acc_vs_gmacs.png"),
        "acc_vs_params": plot_accuracy_vs(records, "params", "parameters (log scale)",
                                          f"{name}: test accuracy against size", out / f"{name}_acc_vs_params.png"),
        "speed_vs_gmacs": plot_speed_vs_gmacs(records, f"{name}: images/s against compute at {input_label}",
                                              out / f"{name}_speed_vs_gmacs.png"),
        "train_time": plot_train_time(records, f"{name}: training time per model", out / f"{name}_train_time.png"),
        "curves": plot_curves_grid(records, name, out / f"{name}_curves.png"),
    }
