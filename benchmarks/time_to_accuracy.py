"""Time to accuracy: train one config with several seeds and report wall time and test accuracy.

    python benchmarks/time_to_accuracy.py [--config fashion-mnist-fast] [--seeds 0 1 2]
        [--target 94.0] [--runs runs/time-to-accuracy] [--out docs/results/fashion-mnist-fast.md]
        [--set section.key=value ...]

Each seed is an ordinary training run (the trainer's own clock: ``summary.json`` ``wall_time_s`` covers the
data loading, every epoch's training and validation, checkpoints and the final test) in ``RUNS/seed<S>``, one
after the other, so that each has the machine to itself. A finished run is kept and an interrupted one resumes,
as in ``papernets bench``. The table gives each seed's test accuracy (best-validation weights, tested once at the
end), the wall time of the whole run, and the time at which validation accuracy first reached the target; the
plot (``OUT`` with ``.png``) draws validation accuracy against wall time for every seed, the target and each
run's final test accuracy, and on the left the training accuracy of every epoch (dashed), which a run that
validates only every few epochs (``train.val_every``) still records.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papernets.bench.runner import train_run  # noqa: E402
from papernets.config import apply_overrides, load_config  # noqa: E402


def run_seed(config: str, seed: int, runs: Path, overrides: list[str]) -> dict[str, Any]:
    """Train ``config`` with ``seed`` into ``runs/seed<seed>`` (kept if finished); return its figures."""
    cfg = apply_overrides(load_config(config), [*overrides, f"train.seed={seed}"])
    run_dir = runs / f"seed{seed}"
    summary, _, _ = train_run(cfg, run_dir, None, sys.stdout)
    with (run_dir / "metrics.csv").open() as f:
        history = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    return {"seed": seed, "run_dir": str(run_dir), "test_acc": summary["test_acc"] * 100,
            "best_val_acc": summary["best_val_acc"] * 100, "wall_time_s": summary["wall_time_s"],
            "epochs": len(history), "history": history, "host": summary.get("host")}


def time_to(history: list[dict[str, float]], target: float) -> float | None:
    """Wall time (s) at the end of the first epoch whose validation accuracy reached ``target`` (%)."""
    for row in history:
        if row["val_acc"] * 100 >= target:
            return row["wall_time_s"]
    return None


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "not reached"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def machine(results: list[dict[str, Any]]) -> str:
    """Where the runs trained, from their ``summary.json`` (runs from before it recorded the host: this machine's
    architecture and threads)."""
    hosts = [r.get("host") for r in results]
    if not all(hosts):
        return f"{platform.machine()} ({torch.get_num_threads()} threads, no GPU)"
    return "; ".join(dict.fromkeys(f"{h['cpu']}, {h['threads']} threads, {h['gpu'] or 'no GPU'}" for h in hosts))


def validated(results: list[dict[str, Any]]) -> str:
    """What the table says of the validations, where a run skipped some (``train.val_every``)."""
    counts = {sum(not math.isnan(row["val_acc"]) for row in r["history"]) for r in results}
    epochs = {r["epochs"] for r in results}
    if counts == epochs:
        return ""
    times = " or ".join("once" if c == 1 else f"{c} times" for c in sorted(counts))
    return (f" (these runs validate {times} in "
            + " or ".join(map(str, sorted(epochs))) + " epochs, `train.val_every`: the time is that of the first "
            "validated epoch to reach it, and the per-epoch validations the runs skip are time they do not spend)")


def write_table(results: list[dict[str, Any]], target: float, command: str, out: Path) -> None:
    tests = [r["test_acc"] for r in results]
    walls = [r["wall_time_s"] for r in results]
    lines = [
        f"# Time to {target:.1f}% on Fashion-MNIST",
        "",
        f"Written by `{command}` on {machine(results)}, torch "
        f"{torch.__version__}. One run per seed, one after the other. Wall time: the trainer's clock for the whole "
        "run (loading, training, validation, checkpoints, the final test). Test accuracy: the best-validation "
        f"weights, tested once at the end. Validation reached {target:.1f}%: the run's wall time at the end of the "
        "first epoch whose validation accuracy (6,000 images held out of the training set) reached it"
        + validated(results) + ".",
        "",
        f"| seed | test acc (%) | best val acc (%) | epochs | wall time | validation reached {target:.1f}% at |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['seed']} | {r['test_acc']:.2f} | {r['best_val_acc']:.2f} | {r['epochs']} | "
                     f"{_mmss(r['wall_time_s'])} ({r['wall_time_s']:.0f} s) | {_mmss(time_to(r['history'], target))} |")
    spread = f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else ""
    lines += [
        "",
        f"Test accuracy: mean {statistics.mean(tests):.2f}%{spread} (min {min(tests):.2f}%, max {max(tests):.2f}%); "
        f"{sum(t >= target for t in tests)} of {len(tests)} runs at or above {target:.1f}%. Wall time: mean "
        f"{_mmss(statistics.mean(walls))} (max {_mmss(max(walls))}).",
        "",
        f"![validation accuracy against wall time]({out.with_suffix('.png').name})",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def plot(results: list[dict[str, Any]], target: float, title: str, path: Path) -> None:
    """Validation accuracy against wall time, every seed: the whole run (left) and the last points (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for ax, zoom in zip(axes, (False, True), strict=True):
        for r in results:
            h = [row for row in r["history"] if not math.isnan(row["val_acc"])]  # train.val_every skips some
            line, = ax.plot([row["wall_time_s"] / 60 for row in h], [row["val_acc"] * 100 for row in h], "o-",
                            ms=3, label=f"seed {r['seed']}: test {r['test_acc']:.2f}%")
            ax.plot([r["wall_time_s"] / 60], [r["test_acc"]], "*", ms=11, color=line.get_color())
            if not zoom:  # the training accuracy of every epoch, also where validation skipped it
                ax.plot([row["wall_time_s"] / 60 for row in r["history"]],
                        [row["train_acc"] * 100 for row in r["history"]], "--", lw=1, color=line.get_color())
        ax.axhline(target, color="0.3", ls="--", lw=1, label=f"target {target:.1f}%")
        if zoom:
            tops = [row["val_acc"] * 100 for r in results for row in r["history"] if not math.isnan(row["val_acc"])]
            tops += [r["test_acc"] for r in results]
            ax.set_ylim(target - 3, max(max(tops), target) + 0.5)
            near = [row["wall_time_s"] / 60 for r in results for row in r["history"]
                    if row["val_acc"] * 100 >= target - 3]
            ends = [r["wall_time_s"] / 60 for r in results]
            if near:
                ax.set_xlim(min(near) - 0.5, max(ends) + 0.5)
            ax.set_title("the last epochs")
        else:
            ax.set_ylim(0, 100)
            ax.set_xlim(left=0)
            ax.set_title(title + "\n(dashed: training accuracy)", fontsize=10)
        ax.set_xlabel("wall time (minutes)")
        ax.set_ylabel("validation accuracy (%)  (star: final test accuracy)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fashion-mnist-fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=94.0, help="accuracy in percent")
    parser.add_argument("--runs", default="runs/time-to-accuracy", help="one run directory per seed goes here")
    parser.add_argument("--out", default="docs/results/fashion-mnist-fast.md")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    results = [run_seed(args.config, s, Path(args.runs), args.overrides) for s in args.seeds]
    for r in results:
        reached = _mmss(time_to(r["history"], args.target))
        print(f"seed {r['seed']}: test {r['test_acc']:.2f}% (best val {r['best_val_acc']:.2f}%), "
              f"{r['wall_time_s']:.0f} s, validation reached {args.target}% at {reached}")
    out = Path(args.out)
    command = " ".join(["python benchmarks/time_to_accuracy.py", "--config", args.config,
                        "--seeds", *map(str, args.seeds), "--target", f"{args.target:g}", "--out", args.out]
                       + [f"--set {o}" for o in args.overrides])
    write_table(results, args.target, command, out)
    plot(results, args.target, f"{Path(args.config).stem}: validation accuracy over time", out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
