"""How close each benchmark model comes to this machine's matrix-multiply peak (model FLOP/s utilization).

    python benchmarks/mfu.py [--models NAME ...] [--sizes 28 224] [--rounds 3] [--steps 2] [--peak-n 2048]
                             [--out docs/results/mfu.md] [--resume]

First the peak: the median time of an n x n fp32 ``torch.mm`` (n = ``--peak-n``, 2 n^3 FLOPs) over the rounds, with
torch's default number of threads, and the same in bf16 where the CPU has bf16 instructions. Then, for every model of
the ``fashion-budget`` protocol's rows (or ``--models``) at 28 px (1 channel, 10 classes, batch 128: the small-image
forms the benchmark trains) and at 224 px (3 channels, 1,000 classes, batch 32): training img/s (forward, backward,
SGD step) and inference img/s, timed by ``papernets.bench.profile.measure_throughput`` in the memory format and
precision the trainer chooses for the family on this machine (``engine/runtime.py``), the median over the rounds.
Utilization is the model's FLOP/s over the peak of the precision it ran in:

- training FLOP/s = 3 x forward FLOPs x img/s (backward costs about twice the forward), forward FLOPs = 2 x MACs
  per image as ``engine/counting.py`` counts them;
- inference FLOP/s = forward FLOPs x img/s.

Counted MACs are those of convolutions, linear layers and attention matmuls; normalizations, activations, pooling
and the optimizer step are not counted, so a model whose time goes there shows a low utilization, which is the
point: it names where the machine's arithmetic is not being used. Rows are kept in a JSON file beside ``--out``
(each with the peak measured in its own run and its CPU), the table is rewritten after every model, and
``--resume`` measures only the rows the file lacks. Keep the cores quiet while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "mfu.md"
SETTINGS = {28: (1, 10, 128), 224: (3, 1000, 32)}  # size -> (channels, classes, batch)


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return path.name


def matmul_peak(n: int, dtype: torch.dtype, rounds: int) -> float:
    """GFLOP/s of an n x n ``torch.mm`` in ``dtype``: 2 n^3 over the median time of ``rounds`` timed products."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(max(rounds, 3)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure_row(name: str, size: int, rounds: int, steps: int) -> dict:
    """One model at one size: img/s of training and inference in the trainer's runtime for the family."""
    from papernets.bench.profile import measure_throughput
    from papernets.config import TrainConfig
    from papernets.engine.counting import meta_model_stats
    from papernets.engine.runtime import resolve_runtime
    from papernets.registry import create_model, get_entry

    entry = get_entry(name)
    chans, classes, batch = SETTINGS[size]
    _, macs = meta_model_stats(entry.name, img_size=size, in_chans=chans, num_classes=classes)
    rt = resolve_runtime(TrainConfig(), entry.family, torch.device("cpu"), training=True)
    model = create_model(entry.name, num_classes=classes, in_chans=chans, img_size=size)
    x = torch.randn(batch, chans, size, size)
    if rt.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", torch.bfloat16) if rt.amp == "bf16" else contextlib.nullcontext()
    train, infer = [], []
    with amp:
        for r in range(rounds):  # training and inference alternate, so that a slow spell hits both
            for kind in ("train", "infer") if r % 2 == 0 else ("infer", "train"):
                ips = measure_throughput(model, x, kind == "train", steps=steps, warmup=1 if r == 0 else 0)
                (train if kind == "train" else infer).append(ips)
    fwd = 2 * macs  # FLOPs per image
    t, i = statistics.median(train), statistics.median(infer)
    return {"model": entry.name, "family": entry.family, "size": size, "batch": batch, "gmacs": macs / 1e9,
            "train_ips": t, "train_gflops": 3 * fwd * t / 1e9, "infer_ips": i, "infer_gflops": fwd * i / 1e9,
            "memory_format": "channels_last" if rt.channels_last else "NCHW",
            "precision": "bf16" if rt.amp == "bf16" else "fp32"}


def render(data: dict) -> str:
    rows = data["rows"]
    lines = [
        "# Utilization: model FLOP/s against the measured matmul peak", "",
        f"Written by `{data['command']}`. Peak of the run that timed each row: an n x n `torch.mm` (n = "
        f"{data['peak_n']}), median of the rounds, torch's default threads. Training FLOP/s = 3 x forward FLOPs x "
        "img/s (forward FLOPs = 2 x counted MACs per image); inference FLOP/s = forward FLOPs x img/s; each as a share "
        "of the peak of the precision the row ran in (the trainer's choice for the family on that CPU). 28 px: the "
        "small-image form, 1 channel, 10 classes, batch 128; 224 px: 3 channels, 1,000 classes, batch 32. How it "
        "is measured and what the counted MACs leave out: `benchmarks/mfu.py`.", "",
    ]
    runs = {(r["cpu"], r["threads"], r["torch"], r["peak_fp32"], r.get("peak_bf16")) for r in rows}
    for cpu, threads, version, p32, p16 in sorted(runs, key=str):
        lines.append(f"- {cpu}, {threads} threads, torch {version}: fp32 peak {p32:.1f} GFLOP/s"
                     + (f", bf16 peak {p16:.1f} GFLOP/s" if p16 else ", bf16: not supported by this CPU"))
    lines += ["", "| model | family | size | batch | GMACs/image | train img/s | train GFLOP/s | train % of peak | "
              "infer img/s | infer GFLOP/s | infer % of peak | memory format | precision | CPU |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["size"], r["model"])):
        if r.get("error"):
            lines.append(f"| `{r['model']}` | {r.get('family', '')} | {r['size']} | | | | | | | | | | | failed: "
                         f"{r['error']} |")
            continue
        lines.append(f"| `{r['model']}` | {r['family']} | {r['size']} | {r['batch']} | {r['gmacs']:.3g} | "
                     f"{r['train_ips']:.1f} | {r['train_gflops']:.1f} | {r['train_pct']:.0f}% | {r['infer_ips']:.1f} | "
                     f"{r['infer_gflops']:.1f} | {r['infer_pct']:.0f}% | {r['memory_format']} | {r['precision']} | "
                     f"{r['cpu']} |")
    good = [r for r in rows if not r.get("error")]
    if good:
        for size in sorted({r["size"] for r in good}):
            at = [r for r in good if r["size"] == size]
            lowest = sorted(at, key=lambda r: r["train_pct"])[:5]
            median = statistics.median(r["train_pct"] for r in at)
            lines += ["", f"{size} px: median training utilization {median:.0f}% of peak ({len(at)} models; inference "
                      f"{statistics.median(r['infer_pct'] for r in at):.0f}%); the five lowest in training: "
                      + ", ".join(f"`{r['model']}` {r['train_pct']:.0f}%" for r in lowest) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from papernets.bench.protocol import load_protocol
    from papernets.engine.speed import cpu_label, cpu_supports_bf16
    from papernets.registry import get_entry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--sizes", nargs="+", type=int, default=[28, 224], choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round and kind")
    parser.add_argument("--peak-n", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    for flag, value in (("--rounds", args.rounds), ("--steps", args.steps), ("--peak-n", args.peak_n)):
        if value < 1:
            print(f"mfu: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    try:
        names = list(dict.fromkeys(get_entry(n).name for n in (
            args.models or [row.model for row in load_protocol("fashion-budget").rows])))
    except Exception as exc:  # an unknown model name
        print(f"mfu: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    json_path = args.out.with_suffix(".json")
    command = "python benchmarks/mfu.py" + (f" --models {' '.join(args.models)}" if args.models else "") + (
        f" --sizes {' '.join(map(str, args.sizes))} --rounds {args.rounds} --steps {args.steps} "
        f"--peak-n {args.peak_n} --out {_rel(args.out)}")
    data = json.loads(json_path.read_text()) if args.resume and json_path.is_file() else {"rows": []}
    data.update(command=command, peak_n=args.peak_n)
    done = {(r["model"], r["size"]) for r in data["rows"]}
    run = {"cpu": cpu_label(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "peak_fp32": matmul_peak(args.peak_n, torch.float32, args.rounds),
           "peak_bf16": matmul_peak(args.peak_n, torch.bfloat16, args.rounds) if cpu_supports_bf16() else None}
    print(f"{run['cpu']}, {run['threads']} threads: fp32 peak {run['peak_fp32']:.1f} GFLOP/s"
          + (f", bf16 peak {run['peak_bf16']:.1f} GFLOP/s" if run["peak_bf16"] else ", bf16: not supported"),
          flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        for size in args.sizes:
            if (name, size) in done:
                continue
            try:
                row = measure_row(name, size, args.rounds, args.steps)
                peak = run["peak_bf16"] if row["precision"] == "bf16" else run["peak_fp32"]
                row.update(train_pct=100 * row["train_gflops"] / peak, infer_pct=100 * row["infer_gflops"] / peak)
                print(f"{name} @ {size}: train {row['train_ips']:.1f} img/s = {row['train_pct']:.0f}% of peak, "
                      f"infer {row['infer_ips']:.1f} img/s = {row['infer_pct']:.0f}%", flush=True)
            except Exception as exc:  # a model that does not run at a size gets a row saying why
                row = {"model": name, "size": size, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                print(f"{name} @ {size}: {row['error']}", flush=True)
            data["rows"].append({**row, **run})
            for path, text in ((json_path, json.dumps(data, indent=2) + "\n"), (args.out, render(data))):
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text)
                tmp.replace(path)
    print(f"wrote {_rel(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
