"""How close each benchmark model's training and inference come to this machine's matrix-multiply peak (model
FLOP/s utilization).

    python benchmarks/mfu.py [--models NAME ...] [--sizes 28 224] [--rounds 3] [--steps 2] [--peak-n 2048]
                             [--out docs/results/mfu.md] [--resume]

First the peak: ``--rounds`` rounds of a few n x n fp32 ``torch.mm`` products (n = ``--peak-n``, 2 n^3 FLOPs each)
with torch's default number of threads, GFLOP/s of the median round; the same in bf16 where the CPU has bf16
instructions (``cpu_supports_bf16``), otherwise the output says that it has none. Then, for every model of the
``fashion-budget`` protocol's rows (each once; or ``--models``), at 28 px (1 channel, 10 classes, batch 128: the
small-image forms the benchmark trains, ``create_model(name, num_classes=10, in_chans=1, img_size=28)``) and at
224 px (3 channels, 1,000 classes, batch 32), ``--sizes`` to choose: training img/s (forward, backward, SGD step)
and inference img/s, timed by ``papernets.bench.profile.measure_throughput`` in the memory format and precision the
trainer chooses for the family on this CPU (``resolve_runtime``: channels_last per family; bf16 autocast for the
bf16 families on a CPU with bf16 instructions, fp32 otherwise). Each row's own peak (one round of the product in the
row's precision), training and inference alternate over the rounds (``--steps`` timed steps each), so that a slow
spell hits both sides of the ratio; img/s are the median over the rounds and the row's peak the highest of its
peak rounds (``settle``). The machine's peak is not a constant (runs on the same kind of CPU measured 139 to 179
GFLOP/s at their start, and single rounds 92 to 188), and a row set against a peak timed minutes earlier showed
more than 100%. The step is timed eager, and for the families the trainer compiles by default on this CPU (in runs
of an epoch or more) also compiled as the trainer compiles it, in the same rounds (``--eager-only`` leaves that
out); the summary gives the median and the lowest rows both ways.
The trainer keeps freed memory in the process on the CPU (``engine/allocator.py``, the malloc cache), and so do
these rows (each records whether it was timed with it); its effect is measured in fresh processes by
``benchmarks/malloc_cache.py``, since a process cannot go back to glibc's untouched allocator once it has changed
it.

Utilization is a model's FLOP/s over the peak of the precision it ran in, timed beside it:

- forward FLOPs = 2 x MACs per image, as ``meta_model_stats`` (``engine/counting.py``) counts them;
- training FLOP/s = 3 x forward FLOPs x img/s (the backward pass costs about twice the forward);
- inference FLOP/s = forward FLOPs x img/s.

Counted MACs are those of convolutions, linear layers and attention matmuls; normalizations, activations, pooling,
memory traffic and the optimizer step are not counted, so a model whose time goes there shows a low utilization,
which is the point: it names where the machine's arithmetic goes unused. A model that fails at a size gets a row
saying why. The rows live in a JSON file beside ``--out`` (``mfu.json``), each with the peak timed beside it (and
its run's CPU, threads, torch and start peaks), and the table is rendered from it and rewritten after every row,
so an interrupted run keeps what it measured; ``--resume`` keeps the rows of that file and measures only the
missing ones (and those that failed); with ``--again`` also
the ``--models`` rows it has (measured again after a change to those models). Keep the cores quiet while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from papernets.engine.rundir import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "mfu.md"
SETTINGS = {28: (1, 10, 128), 224: (3, 1000, 32)}  # size -> (channels, classes, batch)
PEAK_REPS = 3  # products per timed round of the peak
COLUMNS = ["model", "family", "size", "batch", "GMACs/image", "train img/s", "train GFLOP/s", "train % of peak",
           "compiled train img/s", "compiled train % of peak", "infer img/s", "infer GFLOP/s", "infer % of peak",
           "peak GFLOP/s", "memory format", "precision", "CPU"]


def _rel(path: Path | str) -> str:
    """``path`` relative to the repository; a path outside it by its name only (results never hold absolute
    paths)."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(ROOT).as_posix()
    return path.name


def command_line(argv: list[str]) -> str:
    """The command as run, with the ``--out`` path relative to the repository."""
    words = []
    for i, word in enumerate(argv):
        if i and argv[i - 1] == "--out":
            word = _rel(word)
        elif word.startswith("--out="):
            word = "--out=" + _rel(word[len("--out="):])
        words.append(shlex.quote(word))
    return " ".join(["python benchmarks/mfu.py", *words])


class MatmulPeak:
    """Timed rounds of an n x n ``torch.mm`` in ``dtype`` (2 n^3 FLOPs per product), ``reps`` products a round,
    after one untimed product (oneDNN/BLAS picks its kernel, the output buffer is allocated)."""

    def __init__(self, n: int, dtype: torch.dtype, reps: int = PEAK_REPS):
        gen = torch.Generator().manual_seed(0)
        self.n, self.reps = n, reps
        self.a, self.b = torch.randn(n, n, generator=gen).to(dtype), torch.randn(n, n, generator=gen).to(dtype)
        self.out = torch.mm(self.a, self.b)

    def round(self) -> float:
        """GFLOP/s of one timed round."""
        t0 = time.perf_counter()
        for _ in range(self.reps):
            torch.mm(self.a, self.b, out=self.out)
        return 2 * self.n**3 / ((time.perf_counter() - t0) / self.reps) / 1e9


def matmul_peak(n: int, dtype: torch.dtype, rounds: int, reps: int = PEAK_REPS) -> float:
    """GFLOP/s of an n x n ``torch.mm`` in ``dtype``: the median of ``rounds`` (at least 3) timed rounds."""
    peak = MatmulPeak(n, dtype, reps)
    return statistics.median(peak.round() for _ in range(max(rounds, 3)))


def measure_peaks(n: int, rounds: int) -> dict:
    """This run's CPU, threads, torch and matmul peaks (``peak_bf16`` None where the CPU has no bf16)."""
    from papernets.engine.speed import cpu_label, cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    return {"cpu": cpu_label(), "threads": torch.get_num_threads(), "torch": torch.__version__, "peak_n": n,
            "peak_fp32": matmul_peak(n, torch.float32, rounds),
            "peak_bf16": matmul_peak(n, torch.bfloat16, rounds) if bf16 else None}


def describe_run(run: dict) -> str:
    return (f"{run['cpu']}, {run['threads']} threads, torch {run['torch']}: fp32 peak {run['peak_fp32']:.1f} GFLOP/s"
            + (f", bf16 peak {run['peak_bf16']:.1f} GFLOP/s" if run.get("peak_bf16")
               else ", bf16: not supported by this CPU")
            + f" ({run['peak_n']} x {run['peak_n']} torch.mm)")


def trainer_runtime(family: str) -> tuple[bool, str, bool, bool]:
    """(channels_last, "bf16" or "fp32", whether the trainer compiles the step, whether it keeps freed memory with
    the malloc cache) for a family on this CPU, as the trainer resolves a config that leaves every speed option
    unset; the malloc cache is put in force here when the runtime has it, as the trainer does."""
    from papernets.config import TrainConfig
    from papernets.engine.runtime import resolve_runtime

    rt = resolve_runtime(TrainConfig(), family, torch.device("cpu"), training=True)
    rt.apply()
    return rt.channels_last, "bf16" if rt.amp == "bf16" else "fp32", rt.compile, rt.malloc_cache


def measure_row(name: str, size: int, rounds: int, steps: int, peak_round: Callable[[], float],
                compiled: bool = False) -> dict:
    """One model at one size: training and inference img/s in the trainer's runtime for the family, the counted
    MACs per image, and the matmul peak of the row's precision timed beside them: each round times the peak
    (``peak_round``, GFLOP/s of one round), training and inference, so that a slow or fast spell of the machine
    moves both sides of the ratio; img/s are the median over the rounds, the peak the highest round (``settle``).

    ``compiled``: also the training step with the model compiled as the trainer compiles it (``torch.compile`` of
    the model; the optimizer step stays eager), in the same rounds beside the eager step; the compile itself (its
    first steps) runs before the rounds and is reported as ``compile_s``, not timed in img/s."""
    from papernets.bench.profile import measure_throughput, meta_model_stats
    from papernets.registry import create_model, get_entry

    entry = get_entry(name)
    chans, classes, batch = SETTINGS[size]
    channels_last, precision, _, _ = trainer_runtime(entry.family)
    _, macs = meta_model_stats(entry.name, img_size=size, in_chans=chans, num_classes=classes)
    torch.manual_seed(0)
    model = create_model(entry.name, num_classes=classes, in_chans=chans, img_size=size)
    x = torch.randn(batch, chans, size, size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    rates: dict[str, list[float]] = {"train": [], "infer": [], "peak": [], "compiled": []}
    kinds = ("peak", "train", "compiled", "infer") if compiled else ("peak", "train", "infer")
    net, compile_s = None, None
    try:
        if compiled:
            torch._dynamo.reset()  # each row compiles afresh, as a new training run does
            net = torch.compile(model)
            t0 = time.perf_counter()
            with amp:
                measure_throughput(net, x, True, steps=1, warmup=1)  # compiles forward and backward
            compile_s = time.perf_counter() - t0
        for r in range(rounds):  # the peak, training (eager, compiled) and inference alternate
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                if kind == "peak":
                    rates["peak"].append(peak_round())
                    continue
                with amp:
                    rates[kind].append(measure_throughput(net if kind == "compiled" else model, x, kind != "infer",
                                                          steps=steps, warmup=1 if r == 0 else 0))
    finally:
        del model, x, net
        gc.collect()
    t, i = statistics.median(rates["train"]), statistics.median(rates["infer"])
    fwd = 2 * macs  # forward FLOPs per image
    row = {"gmacs": macs / 1e9, "train_ips": t, "train_gflops": 3 * fwd * t / 1e9, "infer_ips": i,
           "infer_gflops": fwd * i / 1e9, "peak_rounds": rates["peak"]}
    if compiled:
        c = statistics.median(rates["compiled"])
        row.update(train_compiled_ips=c, train_compiled_gflops=3 * fwd * c / 1e9, compile_s=compile_s)
    return row


def settle(row: dict) -> dict:
    """A measured row's peak and utilization: the peak is the highest of the rounds of the product timed beside
    the row. The host's pace dips for a moment now and then (rounds of one row measured 92 and 176 GFLOP/s), and
    a dip in one round of three moved a median peak far enough to put a row at 122%; the highest round is the
    pace the cores reached beside the row, so a dip can lower a row's share, never raise it past the peak."""
    if row.get("peak_rounds"):
        row["peak"] = max(row["peak_rounds"])
        row["train_pct"] = 100 * row["train_gflops"] / row["peak"]
        row["infer_pct"] = 100 * row["infer_gflops"] / row["peak"]
        if row.get("train_compiled_gflops"):
            row["train_compiled_pct"] = 100 * row["train_compiled_gflops"] / row["peak"]
    return row


def trainer_compiles(row: dict) -> bool:
    """Whether the trainer, with today's defaults, compiles the row's family in a run of an epoch or more in the
    row's precision on the CPU (the defaults can change after a row was timed: ``--resume`` applies them again)."""
    from papernets.engine.speed import use_compile

    return use_compile(row["family"], torch.device("cpu"), fp32=row["precision"] == "fp32")


def trainer_pct(row: dict) -> float:
    """A row's training utilization in the runtime the trainer uses in a run of a full epoch or more: the compiled
    step's where the trainer compiles the family and the row timed it, the eager step's otherwise."""
    if row.get("trainer_compiles") and row.get("train_compiled_pct"):
        return row["train_compiled_pct"]
    return row["train_pct"]


def row_peak(row: dict) -> float:
    """The peak a row is measured against: the one timed beside it, or (rows written before the peak was timed
    beside each row) its run's peak of the row's precision."""
    if row.get("peak"):
        return row["peak"]
    return row["peak_bf16"] if row["precision"] == "bf16" else row["peak_fp32"]


def _pct(x: float) -> str:
    return f"{x:.1f}%" if x >= 1 else f"{x:.2f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


def summary_lines(rows: list[dict]) -> list[str]:
    """The median training utilization over all measured rows (and per size), and the five lowest rows."""
    good = [r for r in rows if not r.get("error")]
    if not good:
        return ["No row measured yet."]
    sizes = sorted({r["size"] for r in good})
    per_size = "; ".join(f"{s} px {_pct(statistics.median(r['train_pct'] for r in good if r['size'] == s))} "
                         f"({_rows(sum(r['size'] == s for r in good))})" for s in sizes)
    lowest = sorted(good, key=lambda r: r["train_pct"])[:5]
    return [
        f"Median training utilization over all {_rows(len(good))} measured: "
        f"{_pct(statistics.median(r['train_pct'] for r in good))} of peak (inference: "
        f"{_pct(statistics.median(r['infer_pct'] for r in good))}); by size: {per_size}.",
        "Five lowest in training: " + ", ".join(f"`{r['model']}` at {r['size']} px {_pct(r['train_pct'])}"
                                                for r in lowest) + ".",
        *compiled_summary(good),
    ]


def compiled_summary(good: list[dict]) -> list[str]:
    """The same two figures in the trainer's runtime, where some rows timed the compiled step."""
    compiled = [r for r in good if r.get("trainer_compiles") and r.get("train_compiled_pct")]
    if not compiled:
        return []
    lowest = sorted(good, key=trainer_pct)[:5]
    return [
        f"With the compiled step for the {_rows(len(compiled))} whose family the trainer compiles (its runtime in a "
        f"run of an epoch or more): median training utilization {_pct(statistics.median(map(trainer_pct, good)))}; "
        "five lowest: " + ", ".join(f"`{r['model']}` at {r['size']} px {_pct(trainer_pct(r))}" for r in lowest)
        + ".",
    ]


def render(data: dict) -> str:
    """The markdown table of ``data`` (the JSON file's content)."""
    rows = sorted(data["rows"], key=lambda r: (r["size"], r["model"]))
    runs = []
    for r in rows:
        run = {k: r.get(k) for k in ("cpu", "threads", "torch", "peak_n", "peak_fp32", "peak_bf16")}
        if run not in runs:
            runs.append(run)
    lines = [
        "# Model FLOP/s utilization: training and inference against the measured matmul peak", "",
        "Written by " + ", then ".join(f"`{c}`" for c in data["commands"]) + ". The peak of each row (peak "
        "GFLOP/s): an n x n `torch.mm` in the row's precision with torch's default threads, GFLOP/s (2 n^3 per "
        "product), timed in rounds that alternate with the row's training and inference rounds, the highest of "
        "those rounds: the machine's pace moves from minute to minute, and a peak timed beside the row moves with "
        "it"
        + ("" if all(r.get("peak") for r in rows) else
           " (rows timed before the peak was timed beside each row: the peak of the start of their run)")
        + ". Training FLOP/s = 3 x forward FLOPs x img/s (forward, backward, SGD step), inference FLOP/s = "
        "forward FLOPs x img/s, forward FLOPs = 2 x counted MACs per image; each as a share of the row's peak, in "
        "the memory format and precision the trainer chooses for the family on that CPU. "
        "28 px: the small-image form, 1 channel, 10 classes, batch "
        f"{SETTINGS[28][2]}; 224 px: 3 channels, 1,000 classes, batch {SETTINGS[224][2]}. Median of the rounds. "
        "What the counted MACs leave out: `benchmarks/mfu.py`. Runs (CPU, threads, torch, the peaks timed at the "
        "start of the run):",
        "",
        *[f"- {describe_run(run)}" for run in runs],
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        head = [f"`{r['model']}`", r.get("family", ""), str(r["size"]), str(r.get("batch", ""))]
        if r.get("error"):
            gmacs = f"{r['gmacs']:.3g}" if r.get("gmacs") is not None else "-"
            cells = [*head, gmacs, _cell(f"failed: {r['error']}"), *["-"] * 8, r.get("memory_format", "-"),
                     r.get("precision", "-"), r["cpu"]]
        else:
            comp = ([f"{r['train_compiled_ips']:.1f}", _pct(r["train_compiled_pct"])]
                    if r.get("train_compiled_pct") else ["-", "-"])
            cells = [*head, f"{r['gmacs']:.3g}", f"{r['train_ips']:.1f}", f"{r['train_gflops']:.2f}",
                     _pct(r["train_pct"]), *comp, f"{r['infer_ips']:.1f}", f"{r['infer_gflops']:.2f}",
                     _pct(r["infer_pct"]),
                     f"{row_peak(r):.1f}", r["memory_format"], r["precision"], r["cpu"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *summary_lines(rows)]
    cached = [r for r in rows if r.get("malloc_cache")]
    if cached and len(cached) < len(rows):
        names = ", ".join(f"`{r['model']}` at {r['size']} px" for r in cached)
        lines.append(f"Timed with the malloc cache (the trainer's default on the CPU since it was added, "
                     f"`engine/allocator.py`): {names}; "
                     f"the other {_rows(len(rows) - len(cached))} "
                     f"{'was' if len(rows) - len(cached) == 1 else 'were'} timed before it, with glibc's default "
                     "allocator. Its effect in fresh processes, off and on: `malloc_cache.md`.")
    elif cached:
        lines.append("Every row timed with the malloc cache (the trainer's default on the CPU, "
                     "`engine/allocator.py`); its effect in fresh processes, off and on: `malloc_cache.md`.")
    timed = sorted({r["family"] for r in rows if r.get("train_compiled_pct")})
    if timed:
        now = sorted({r["family"] for r in rows if r.get("train_compiled_pct") and r.get("trainer_compiles")})
        lines.append(f"Compiled train: the training step with the model compiled as the trainer compiles it "
                     f"(`torch.compile`), timed in the same rounds as the eager step, for the families the trainer "
                     f"compiled by default in fp32 runs of an epoch or more when the row was timed "
                     f"({', '.join(timed)}); the compile time itself is left out. With today's defaults the "
                     f"trainer compiles {', '.join(now) if now else 'none'} of them.")
    eager = sorted({r["family"] for r in rows if r.get("trainer_compiles") and not r.get("train_compiled_pct")
                    and not r.get("error")})
    if eager:
        lines.append(f"Timed eager only: by default the trainer compiles the training step of {', '.join(eager)} "
                     "(`torch.compile`, in runs that pay the compile time back), which these rows do not include.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from papernets.bench.protocol import load_protocol
    from papernets.registry import get_entry

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "), allow_abbrev=False)
    parser.add_argument("--models", nargs="+", help="default: the models of the fashion-budget protocol's rows")
    parser.add_argument("--sizes", nargs="+", type=int, default=[28, 224], choices=sorted(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (and peak rounds, at least 3)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round, training and inference each")
    parser.add_argument("--peak-n", type=int, default=2048, help="matrix size of the peak's torch.mm")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the table; its rows go to the .json beside it")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of --out's .json and measure only the missing ones (and failed ones)")
    parser.add_argument("--eager-only", action="store_true",
                        help="do not also time the compiled step of the families the trainer compiles")
    parser.add_argument("--again", action="store_true",
                        help="with --resume: measure the --models rows again (after a change), keeping the others")
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
    command = command_line(argv)
    data: dict = {"commands": [], "rows": []}
    if args.resume:
        if json_path.is_file():
            data = json.loads(json_path.read_text())
            data.setdefault("commands", [])
            data["rows"] = [settle(r) for r in data["rows"]]  # rows of an earlier rule for the peak: this one
            for r in data["rows"]:  # and the trainer's compile defaults of today
                if not r.get("error"):
                    r["trainer_compiles"] = trainer_compiles(r)
        elif args.out.is_file():
            print(f"mfu: --resume needs the rows of {_rel(args.out)} in {_rel(json_path)}, which is missing",
                  file=sys.stderr)
            return 2
    if args.again and not (args.resume and args.models):
        print("mfu: --again re-measures the --models rows of a --resume run; give both", file=sys.stderr)
        return 2
    done = {(r["model"], r["size"]) for r in data["rows"] if not r.get("error")}
    if args.again:
        done -= {(n, s) for n in names for s in args.sizes}
    todo = [(n, s) for n in names for s in args.sizes if (n, s) not in done]

    run = measure_peaks(args.peak_n, args.rounds)
    print(f"{describe_run(run)}; peak median of {max(args.rounds, 3)} rounds", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if todo and command not in data["commands"]:
        data["commands"].append(command)
    peaks: dict[str, MatmulPeak] = {}  # precision -> the product timed beside each row of that precision
    for name, size in todo:
        family = get_entry(name).family
        channels_last, precision, compiles, cache = trainer_runtime(family)
        row = {"model": name, "family": family, "size": size, "batch": SETTINGS[size][2],
               "memory_format": "channels_last" if channels_last else "NCHW", "precision": precision,
               "trainer_compiles": compiles, "malloc_cache": cache}
        try:
            if precision not in peaks:
                peaks[precision] = MatmulPeak(args.peak_n, torch.bfloat16 if precision == "bf16" else torch.float32)
            row.update(measure_row(name, size, args.rounds, args.steps, peaks[precision].round,
                                   compiled=compiles and not args.eager_only))
            settle(row)
            peak = row["peak"]
            comp = (f" (compiled {row['train_compiled_ips']:.1f} img/s = {_pct(row['train_compiled_pct'])}, "
                    f"compile {row['compile_s']:.0f} s)" if row.get("train_compiled_pct") else "")
            print(f"{name} @ {size} px ({row['memory_format']}, {precision}): train {row['train_ips']:.1f} img/s "
                  f"{row['train_gflops']:.2f} GFLOP/s = {_pct(row['train_pct'])} of peak{comp}, infer "
                  f"{row['infer_ips']:.1f} img/s {row['infer_gflops']:.2f} GFLOP/s = {_pct(row['infer_pct'])}; "
                  f"peak beside it {peak:.1f} GFLOP/s", flush=True)
        except Exception as exc:  # a model that does not run at a size gets a row saying why
            lines = str(exc).strip().splitlines() or [""]
            row["error"] = f"{type(exc).__name__}: {lines[0][:200]}".rstrip(": ")
            print(f"{name} @ {size} px: failed: {row['error']}", flush=True)
        data["rows"] = [r for r in data["rows"] if (r["model"], r["size"]) != (name, size)] + [{**row, **run}]
        atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write_text(args.out, render(data))
    if not todo:  # nothing left to measure: the rows are settled and rendered again (after a change of format or rule)
        if data["rows"]:
            atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
            atomic_write_text(args.out, render(data))
        print("mfu: every requested row is already in " + _rel(json_path))
    for line in summary_lines(data["rows"]):
        print(line)
    print(f"wrote {_rel(args.out)} and {_rel(json_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
