"""bf16 decided on runs that learn: for one model per family, the same training run in fp32, under bf16 autocast and
under oneDNN's implicit bf16 for fp32 convolutions and matmuls, with the validation accuracy each reaches and each
one's speed.

    python benchmarks/bf16_runs.py [--models NAME ...] [--images 12000] [--rounds 3] [--steps 3]
                                   [--out docs/results/bf16_runs.md] [--resume [--again]]

Each row trains ``--images`` Fashion-MNIST training images for one epoch with the trainer (``papernets.train``) at
28 px, in the settings the ``fashion-budget`` protocol gives the model (its base, its family's sweep-chosen
optimizer, lr, batch, warmup and label smoothing, the row's own config such as AlexNet's and VGG's He
initialization), validated on all 6,000 validation images, no test. Three runs from the same seed:

- fp32: ``train.amp=off``;
- bf16: ``train.amp=bf16``, ``torch.autocast("cpu", torch.bfloat16)`` around forward and loss (the trainer's bf16);
- implicit: ``train.amp=off`` with ``torch.backends.mkldnn.conv.fp32_precision`` and ``...matmul.fp32_precision``
  set to ``"bf16"``: fp32 tensors and weights, oneDNN computes convolutions and matmuls in bf16 internally.

The speed-ups are measured apart from the runs, in alternating rounds in one process (``--rounds``, ``--steps``
timed training steps each, median of the rounds): the training step (forward, backward, SGD step) of the model at
the row's batch in each precision, over fp32's.

Rule (``decide``): a family trains in bf16 by default (``bf16_cpu`` in ``configs/defaults/speed.yaml``) when its fp32
run reached at least 70% validation accuracy, so that the comparison is between runs that learn, bf16 is at least 10%
faster, and its validation accuracy is at most 1.5 points below fp32's (on 6,000 images the standard error of one
accuracy near 85% is 0.5 points). A row whose fp32 run stayed below 70% is "undecided" (``--resume --again
--models NAME --images N`` runs it again on more images). A family with several rows (MobileNet v1 and v2) is in
bf16 when one of them decides bf16 and bf16 harms none of them (none slower than fp32 or more than 1.5 points
below it). The implicit column is judged by the same rule, for the record: the trainer has no switch for it.

Rows go to a JSON file beside ``--out`` (``bf16_runs.json``), each with its CPU and torch, and the table is rendered
from it after every row; ``--resume`` keeps those rows and runs only the missing models. On a CPU without bf16
instructions (AVX2 only) both bf16 forms are emulated and slower than fp32: the table says so, and the decisions
that matter come from a CPU with AVX-512 BF16 or AMX.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from papernets.engine.rundir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when loaded by file path
from mfu import _rel  # noqa: E402  (results hold paths relative to the repository)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "bf16_runs.md"
VARIANTS = ("fp32", "bf16", "implicit")
MIN_FP32_ACC = 70.0  # a comparison between runs that learn
FASTER = 1.10
ACC_GAP = 1.5  # points of validation accuracy bf16 may lose
SIZE = 28


@contextlib.contextmanager
def precision(variant: str) -> Iterator[None]:
    """The process-wide setting a variant's run needs: oneDNN's fp32 precision for ``implicit``, nothing for the
    others (autocast is the trainer's ``train.amp``)."""
    if variant != "implicit":
        yield
        return
    mk = torch.backends.mkldnn
    before = (mk.conv.fp32_precision, mk.matmul.fp32_precision)
    mk.conv.fp32_precision, mk.matmul.fp32_precision = "bf16", "bf16"
    try:
        yield
    finally:
        mk.conv.fp32_precision, mk.matmul.fp32_precision = before


def run_config(name: str, images: int, variant: str):
    """The config of a variant's run: the fashion-budget row of ``name`` (or a row made for it) over ``images``
    training images, one epoch, no test."""
    from papernets.bench.protocol import Row, load_protocol, row_config
    from papernets.registry import get_entry

    protocol = load_protocol("fashion-budget")
    entry = get_entry(name)
    row = next((r for r in protocol.rows if get_entry(r.model).name == entry.name), Row(entry.name, entry.name))
    overrides = [f"data.limit={images}", "data.eval_limit=6000", "train.epochs=1", "train.test=false",
                 f"train.amp={'bf16' if variant == 'bf16' else 'off'}", "output.plots=false",
                 "output.save_best=false", "output.checkpoint=false"]
    cfg, _ = row_config(protocol, row, overrides)
    return cfg


def learning_run(name: str, images: int, variant: str, workdir: Path) -> dict:
    """Train one variant; its final validation accuracy (%), training img/s and the images it saw."""
    import papernets

    cfg = run_config(name, images, variant)
    with precision(variant):
        run = papernets.train(cfg, run_dir=workdir / f"{name}-{variant}")
    last = run.metrics[-1]
    return {"val_acc": 100.0 * float(last["val_acc"]), "train_ips": float(last["train_img_per_s"]),
            "images_seen": int(run.summary["images_seen"]), "batch": cfg.train.batch_size,
            "amp": run.summary["runtime"]["amp"]}


def speedups(name: str, batch: int, rounds: int, steps: int) -> dict[str, float]:
    """Training-step img/s of each variant in alternating rounds; bf16's and implicit's over fp32's (medians)."""
    from papernets.bench.profile import measure_throughput
    from papernets.config import TrainConfig
    from papernets.engine.runtime import resolve_runtime
    from papernets.registry import create_model, get_entry

    entry = get_entry(name)
    rt = resolve_runtime(TrainConfig(), entry.family, torch.device("cpu"), training=True)
    torch.manual_seed(0)
    model = create_model(entry.name, num_classes=10, in_chans=1, img_size=SIZE)
    x = torch.randn(batch, 1, SIZE, SIZE)
    if rt.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            amp = torch.autocast("cpu", torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()
            with precision(variant), amp:
                rates[variant].append(measure_throughput(model, x, True, steps=steps, warmup=1))
    med = {v: statistics.median(rates[v]) for v in VARIANTS}
    return {"fp32_ips": med["fp32"], "bf16_speedup": med["bf16"] / med["fp32"],
            "implicit_speedup": med["implicit"] / med["fp32"]}


def decide(row: dict, variant: str = "bf16") -> str:
    """``"bf16"``, ``"fp32 (why)"`` or ``"undecided (why)"`` for a row, by the rule of the module docstring."""
    fp32 = row["fp32"]["val_acc"]
    if fp32 < MIN_FP32_ACC:
        return f"undecided (fp32 reached {fp32:.1f}% < {MIN_FP32_ACC:.0f}%)"
    speed, gap = row[f"{variant}_speedup"], fp32 - row[variant]["val_acc"]
    why = []
    if speed < FASTER:
        why.append(f"x{speed:.2f} < x{FASTER:.2f}")
    if gap > ACC_GAP:
        why.append(f"{gap:.1f} points below fp32")
    return "bf16" if not why else f"fp32 ({', '.join(why)})"


def harmed(row: dict) -> bool:
    """Whether bf16 harms a row that learns: slower than fp32, or more than ``ACC_GAP`` points below it."""
    return (row["fp32"]["val_acc"] >= MIN_FP32_ACC
            and (row["bf16_speedup"] < 1.0 or row["fp32"]["val_acc"] - row["bf16"]["val_acc"] > ACC_GAP))


def bf16_families(rows: list[dict]) -> list[str]:
    """The families in bf16 by the rule: a row of the family decides bf16 and bf16 harms none of its rows (a row
    that gains less than x1.10 without losing accuracy does not keep its family from the other's gain; an undecided
    row, whose fp32 run did not learn enough, neither qualifies nor vetoes)."""
    vetoed = {r["family"] for r in rows if harmed(r)}
    return sorted({r["family"] for r in rows if decide(r) == "bf16"} - vetoed)


def decided_families(rows: list[dict]) -> list[str]:
    """The families with at least one decided row (bf16 or fp32): the ones this table speaks for."""
    return sorted({r["family"] for r in rows if not decide(r).startswith("undecided")})


def render(data: dict) -> str:
    rows = sorted(data["rows"], key=lambda r: (r["family"], r["model"]))
    cols = ["family", "model", "images", "batch", "fp32 val acc", "bf16 val acc", "bf16 gap", "implicit val acc",
            "implicit gap", "bf16 speed-up", "implicit speed-up", "bf16 decision", "implicit decision", "CPU"]
    cpus = sorted({r["cpu"] for r in rows})
    lines = [
        "# bf16 on runs that learn: fp32, bf16 autocast and oneDNN's implicit bf16", "",
        "Written by " + ", then ".join(f"`{c}`" for c in data["commands"]) + ". Each row: one epoch over the first "
        "images of the Fashion-MNIST training split at 28 px, in the model's `fashion-budget` settings, validated on "
        "all 6,000 validation images, the same seed in each precision; gap = fp32's accuracy minus the other's "
        "(points). Speed-ups: the training step at the row's batch, alternating rounds in one process, over fp32. "
        f"Rule: bf16 when fp32 reached at least {MIN_FP32_ACC:.0f}%, bf16 is at least x{FASTER:.2f} and at most "
        f"{ACC_GAP} points below (`benchmarks/bf16_runs.py`).", "",
    ]
    if any("no bf16 instructions" in c for c in cpus):
        lines += ["Rows on a CPU with no bf16 instructions run both bf16 forms emulated: their speed-ups say nothing "
                  "about a CPU with AVX-512 BF16 or AMX, and their decisions are not the defaults'.", ""]
    lines += ["| " + " | ".join(cols) + " |", "|---|---|" + "---:|" * 9 + "---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['family']} | `{r['model']}` | {r.get('images', '-')} | - | failed: "
                         f"{r['error'].replace('|', '/')} |" + " - |" * 8 + f" {r['cpu']} |")
            continue
        lines.append("| " + " | ".join([
            r["family"], f"`{r['model']}`", f"{r['fp32']['images_seen']:,}", str(r["fp32"]["batch"]),
            f"{r['fp32']['val_acc']:.2f}", f"{r['bf16']['val_acc']:.2f}",
            f"{r['fp32']['val_acc'] - r['bf16']['val_acc']:+.2f}", f"{r['implicit']['val_acc']:.2f}",
            f"{r['fp32']['val_acc'] - r['implicit']['val_acc']:+.2f}", f"x{r['bf16_speedup']:.2f}",
            f"x{r['implicit_speedup']:.2f}", decide(r), decide(r, "implicit"), r["cpu"]]) + " |")
    ok = [r for r in rows if not r.get("error")]
    lines += ["", f"Families in bf16 by this rule: {', '.join(bf16_families(ok)) or 'none'} (a family is in bf16 when "
              "one of its rows decides bf16 and bf16 harms none of them: none slower than fp32 or more than "
              f"{ACC_GAP} points below it). Families decided here: {', '.join(decided_families(ok)) or 'none'}; the "
              "others' defaults still come from `speed_options.md`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from papernets.engine.speed import FAMILY_REPRESENTATIVES, cpu_label
    from papernets.registry import get_entry

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "), allow_abbrev=False)
    parser.add_argument("--models", nargs="+", help="default: one model per family (the speed defaults' list)")
    parser.add_argument("--images", type=int, default=12000, help="training images of each run (one epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the speed measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant and round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the table; its rows go to the .json beside it")
    parser.add_argument("--resume", action="store_true", help="keep --out's rows and run only the missing models")
    parser.add_argument("--again", action="store_true",
                        help="with --resume: run the --models again (e.g. with more --images), keep the other rows")
    args = parser.parse_args(argv)
    for flag, value in (("--images", args.images), ("--rounds", args.rounds), ("--steps", args.steps)):
        if value < 1:
            print(f"bf16_runs: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    try:
        names = list(dict.fromkeys(get_entry(n).name for n in (args.models or FAMILY_REPRESENTATIVES)))
    except Exception as exc:
        print(f"bf16_runs: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    json_path = args.out.with_suffix(".json")
    data: dict = {"commands": [], "rows": []}
    if args.resume and json_path.is_file():
        data = json.loads(json_path.read_text())
    words = [shlex.quote(_rel(w) if i and argv[i - 1] == "--out" else w) for i, w in enumerate(argv)]
    command = " ".join(["python benchmarks/bf16_runs.py", *words])
    done = {r["model"] for r in data["rows"] if not r.get("error")} - (set(names) if args.again else set())
    todo = [n for n in names if n not in done]
    if todo and command not in data["commands"]:
        data["commands"].append(command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in todo:
        row: dict = {"model": name, "family": get_entry(name).family, "images": args.images, "cpu": cpu_label(),
                     "threads": torch.get_num_threads(), "torch": torch.__version__}
        try:
            with tempfile.TemporaryDirectory(prefix="bf16_runs-") as tmp:
                for variant in VARIANTS:
                    row[variant] = learning_run(name, args.images, variant, Path(tmp))
            row.update(speedups(name, row["fp32"]["batch"], args.rounds, args.steps))
            print(f"{name}: val acc fp32 {row['fp32']['val_acc']:.2f}%, bf16 {row['bf16']['val_acc']:.2f}%, "
                  f"implicit {row['implicit']['val_acc']:.2f}%; speed-up bf16 x{row['bf16_speedup']:.2f}, implicit "
                  f"x{row['implicit_speedup']:.2f}: {decide(row)}", flush=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a row that fails says why and the others go on
            lines = str(exc).strip().splitlines() or [""]
            row["error"] = f"{type(exc).__name__}: {lines[0][:200]}".rstrip(": ")
            print(f"{name}: failed: {row['error']}", flush=True)
        data["rows"] = [r for r in data["rows"] if r["model"] != name] + [row]
        atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write_text(args.out, render(data))
    if not todo and data["rows"]:
        atomic_write_text(args.out, render(data))
    print(f"bf16 families by this rule: {', '.join(bf16_families([r for r in data['rows'] if not r.get('error')]))}")
    print(f"wrote {_rel(args.out)} and {_rel(json_path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
