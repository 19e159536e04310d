"""What each speed option does to a training step, one model per family: bf16 autocast, torch.compile,
activation checkpointing and gradient accumulation, against the trainer's default step.

    python benchmarks/speed_options.py [--image-size 28] [--in-chans 1] [--batch-size 128] [--rounds 3] [--out FILE.md]
                                       [--variants base bf16 ...] [--models NAME ...] [--resume]

This is the measurement behind the per-family defaults in ``papernets.engine.speed`` (``BF16_CPU_FAMILIES``,
``COMPILE_CPU_FAMILIES``, ``COMPILE_CPU_FP32_FAMILIES``). Every variant of a model starts from the same weights
and trains on the same batch in the memory format the trainer picks for the family; the variants are timed in
alternating rounds in one process and each figure is the median over the rounds. Columns:

- base: img/s of the default step (fp32, forward, backward, SGD step);
- bf16: ``torch.autocast("cpu", torch.bfloat16)`` around forward and loss, speed-up over base;
- compile: ``torch.compile`` of the model (default inductor backend), steady-state speed-up over base, and the
  one-off compile time (first compiled step minus a base step), with inductor's caches off, as on a first run;
- checkpointing: ``train.activation_checkpointing``, speed-up over base (below 1: the recomputation's cost) and
  the activations kept for the backward pass, against base's;
- accum 2: the same batch as 2 micro-batches (``train.accum_steps=2``), speed-up over base.

Then, on real Fashion-MNIST batches, whether bf16 training follows fp32 training (``--fidelity-steps``, 0: off):
the same weights take the same batches under Adam (lr 0.001, batch ``--fidelity-batch``, no augmentation) in fp32
and under bf16 autocast. Columns:

- grad cos: cosine similarity between the bf16 and the fp32 gradient of the first batch (all parameters as one
  vector; 1: the same direction);
- loss fp32 / bf16: mean training loss over the last 10 of the steps;
- val acc fp32 / bf16: accuracy on 1,000 validation images after the steps (the bf16 model evaluated under
  autocast, as the trainer does).

A family gets bf16 (``train.amp: auto``) by default when bf16 is at least 10% faster, its final training loss is
within 10% of fp32's and its validation accuracy at most 3 points below fp32's (the standard error of an accuracy
on 1,000 images is up to 1.6 points). The first gradient's cosine is shown but not part of the rule: one batch at
initialization says little about where training ends up. A family gets compile (``train.compile`` unset) by
default when compile is at least 10% faster and its compile time is paid back within one epoch of Fashion-MNIST
(54,000 images), unless the family trains in bf16 by default (compile is timed on the fp32 step only): those are
compiled only in runs that stay in fp32 (a CPU without bf16 instructions, or ``train.amp: off``). Checkpointing
trades time for memory. Accumulation is faster for some families (smaller micro-batches), but it changes what batch
norm normalizes over (each micro-batch's statistics) and so the training itself: both are memory
options (the benchmark turns them on when a model does not fit), off by default. The table is rewritten after
every model, so an interrupted run keeps what it measured, and ``--resume`` completes it: the rows of ``--out``
are kept, and only the models and variants they lack are measured (each speed-up against a default step timed in
the same process, so ratios from different runs stay comparable).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._inductor.config
import torch.nn.functional as F

import papernets
from papernets.engine.runtime import default_runtime
from papernets.engine.speed import FAMILY_REPRESENTATIVES as REPRESENTATIVES
from papernets.engine.speed import (
    cpu_label,
    enable_activation_checkpointing,
    kept_activation_bytes,
)
from papernets.registry import get_entry

FASTER = 1.10  # bf16 or compile must win by at least 10% to become a family's default
LOSS_GAP = 0.10  # bf16's final training loss within 10% of fp32's
ACC_GAP = 3.0  # bf16's validation accuracy at most 3 points below fp32's
EPOCH_IMAGES = 54_000  # compile time must be paid back within one Fashion-MNIST epoch
VARIANTS = ("base", "bf16", "compile", "checkpointing", "accum2")


def _logits(out):
    return out[0] if isinstance(out, tuple | list) else out


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool = False,
              accum: int = 1) -> Callable[[], None]:
    """One SGD training step of ``model`` on (x, y): optionally under bf16 autocast, optionally accumulated."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for xi, yi in zip(x.tensor_split(accum), y.tensor_split(accum), strict=True):
            ctx = torch.autocast("cpu", torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                loss = F.cross_entropy(_logits(model(xi)), yi) * (len(yi) / len(y))
            loss.backward()
        opt.step()

    return step


def measure(name: str, size: int, in_chans: int, batch: int, rounds: int,
            variants: tuple[str, ...] = VARIANTS) -> dict[str, float]:
    """img/s of the base step and each variant's speed-up over it (``variants`` always includes base)."""
    variants = ("base", *[v for v in variants if v != "base"])
    torch.manual_seed(0)
    base = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size).train()
    cl = default_runtime(get_entry(name).family).channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    base = base.to(memory_format=fmt)
    x = torch.randn(batch, in_chans, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    models = {v: copy.deepcopy(base) for v in variants}
    if "checkpointing" in models:
        enable_activation_checkpointing(models["checkpointing"])
    make = {
        "base": lambda: make_step(models["base"], x, y),
        "bf16": lambda: make_step(models["bf16"], x, y, bf16=True),
        "compile": lambda: make_step(torch.compile(models["compile"]), x, y),
        "checkpointing": lambda: make_step(models["checkpointing"], x, y),
        "accum2": lambda: make_step(models["accum2"], x, y, accum=2),
    }
    steps = {v: make[v]() for v in variants}
    first: dict[str, float] = {}
    for v, step in steps.items():  # warm-up; the compiled model compiles here
        t0 = time.perf_counter()
        step()
        first[v] = time.perf_counter() - t0
    rates: dict[str, list[float]] = {v: [] for v in variants}
    order = list(variants)
    for r in range(rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            steps[v]()
            rates[v].append(batch / (time.perf_counter() - t0))
    med = {v: statistics.median(rates[v]) for v in variants}
    out = {"channels_last": cl, "base": med["base"], **{v: med[v] / med["base"] for v in variants if v != "base"}}
    if "compile" in variants:
        out["compile_s"] = max(first["compile"] - batch / med["base"], 0.0)
    if "checkpointing" in variants:
        out["kept_base_mb"] = kept_activation_bytes(models["base"], x) / 2**20
        out["kept_ckpt_mb"] = kept_activation_bytes(models["checkpointing"], x) / 2**20
    return out


def bf16_fidelity(name: str, data, size: int, batch: int, steps: int) -> dict[str, float]:
    """Train the same weights on the same Fashion-MNIST batches in fp32 and under bf16 autocast (see above)."""
    from papernets.data import TensorLoader

    cl = default_runtime(get_entry(name).family).channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format
    torch.manual_seed(0)
    fp32 = papernets.create_model(name, num_classes=10, in_chans=1, img_size=size).to(memory_format=fmt)
    models = {"fp32": fp32, "bf16": copy.deepcopy(fp32)}
    train = TensorLoader(data.train_x, data.train_y, batch, size, data.mean, data.std, train=False,
                         device=torch.device("cpu"), channels_last=cl)
    val = TensorLoader(data.val_x[:1000], data.val_y[:1000], 250, size, data.mean, data.std, train=False,
                       device=torch.device("cpu"), channels_last=cl)
    batches = [b for _, b in zip(range(steps), train.batches(0), strict=False)]
    out: dict[str, float] = {}
    grads: dict[str, torch.Tensor] = {}
    for kind, model in models.items():
        ctx = (lambda: torch.autocast("cpu", torch.bfloat16)) if kind == "bf16" else contextlib.nullcontext
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        torch.manual_seed(1)  # the same dropout masks and stochastic depth in both runs
        losses = []
        for i, (x, y) in enumerate(batches):
            opt.zero_grad(set_to_none=True)
            with ctx():
                out_ = model(x)
            loss = F.cross_entropy(_logits(out_).float(), y)
            loss.backward()
            if i == 0:
                grads[kind] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            opt.step()
            losses.append(loss.item())
        model.eval()
        correct = seen = 0
        with torch.inference_mode():
            for x, y in val.batches(0):
                with ctx():
                    correct += (_logits(model(x)).float().argmax(1) == y).sum().item()
                seen += len(y)
        tail = losses[-10:]
        out[f"loss_{kind}"] = sum(tail) / len(tail)
        out[f"acc_{kind}"] = 100.0 * correct / seen
    out["grad_cos"] = F.cosine_similarity(grads["fp32"].double(), grads["bf16"].double(), dim=0).item()  # fp64 sums
    return out


def bf16_ok(row: dict[str, float]) -> bool:
    """bf16 by default: at least 10% faster, and training under it follows fp32 (when that was checked)."""
    if row.get("bf16", 0.0) < FASTER:
        return False
    if "loss_bf16" not in row:  # no fidelity check (--fidelity-steps 0): speed alone
        return True
    return (abs(row["loss_bf16"] - row["loss_fp32"]) <= LOSS_GAP * row["loss_fp32"]
            and row["acc_bf16"] >= row["acc_fp32"] - ACC_GAP)


def pays_back(row: dict[str, float]) -> bool:
    """Whether compile's one-off time is recovered within one Fashion-MNIST epoch at its measured speed-up."""
    if "compile" not in row:
        return False
    saved_per_epoch = EPOCH_IMAGES / row["base"] * (1 - 1 / row["compile"]) if row["compile"] > 0 else 0.0
    return row["compile"] >= FASTER and saved_per_epoch >= row["compile_s"]


Rows = list[tuple[str, str, dict[str, float]]]  # (family, model, figures)

# The table's figure columns after family, model and channels_last, and the row keys each holds ("a / b": two).
COLUMNS = [("base",), ("bf16",), ("compile",), ("compile_s",), ("checkpointing",), ("kept_ckpt_mb", "kept_base_mb"),
           ("accum2",), ("grad_cos",), ("loss_fp32", "loss_bf16"), ("acc_fp32", "acc_bf16")]


def read_table(text: str) -> tuple[Rows, list[str]]:
    """The rows of a table this script wrote (figures as printed, "-" cells left out) and the commands that wrote
    it."""
    rows: Rows = []
    for line in text.splitlines():
        if not re.match(r"^\| \w+ \| `\w+` \|", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        figures: dict[str, float] = {"channels_last": cells[2] == "on"}
        if len(cells) == 4 + len(COLUMNS):  # the CPU column (tables written before it lack it)
            figures["cpu"] = cells.pop()
        for names, cell in zip(COLUMNS, cells[3:], strict=True):
            if cell != "-":
                figures.update(zip(names, (float(v) for v in cell.split(" / ")), strict=True))
        rows.append((cells[0], cells[1].strip("`"), figures))
    written = re.search(r"^Written by (.*?) on \S+ \(", text, re.M)
    commands = re.findall(r"`([^`]+)`", written.group(1)) if written else []
    return rows, commands


def families_where(rows: Rows, rule: Callable[[dict[str, float]], bool]) -> list[str]:
    """The families all of whose measured models satisfy ``rule``."""
    families = {f for f, _, _ in rows}
    return sorted(f for f in families if all(rule(r) for g, _, r in rows if g == f))


def compile_families(rows: Rows) -> list[str]:
    """The families compiled by default: compile pays back on the fp32 step, and the family is not one that trains
    in bf16 by default (compile's gain on a bf16 step is not measured here)."""
    bf16 = set(families_where(rows, bf16_ok))
    return [f for f in families_where(rows, pays_back) if f not in bf16]


def write_table(rows: Rows, args: argparse.Namespace, commands: list[str]) -> None:
    bf16, compiled = families_where(rows, bf16_ok), compile_families(rows)
    lines = [
        f"# Speed options, training step at batch {args.batch_size}, {args.in_chans}x{args.image_size}x"
        f"{args.image_size}, small-image forms",
        "",
        "Written by " + ", then ".join(f"`{c}`" for c in commands)
        + f" on {platform.machine()} ({torch.get_num_threads()} threads), torch "
        f"{torch.__version__}: img/s of the default step, and each option's speed-up over it (above 1: faster), "
        f"median of {args.rounds} alternating rounds in one process (a speed-up is always against the default step "
        "timed in the same process; `--resume` measures only what the table lacks; CPU: the machine a row was timed "
        "on, \"not recorded\" for rows timed before the table named it). Compile time: the first compiled step minus a "
        "default step. Kept: activations autograd keeps for the backward pass, with checkpointing and without. "
        f"bf16 fidelity: {args.fidelity_steps} Adam steps at batch {args.fidelity_batch} on Fashion-MNIST from the "
        "same weights in fp32 and bf16: the first gradients' cosine, the mean loss of the last 10 steps, the "
        "accuracy on 1,000 validation images after them (see the script's docstring).",
        "",
        "| family | model | channels_last | base img/s | bf16 | compile | compile time s | checkpointing "
        "| kept MB (checkpointing / base) | accum 2 | bf16 grad cos | loss fp32 / bf16 | val acc fp32 / bf16 | CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    def cell(r: dict[str, float], *keys: str, fmt: str = ".2f") -> str:  # "-": not measured in this run
        return " / ".join(format(r[k], fmt) for k in keys) if all(k in r for k in keys) else "-"

    for f, n, r in rows:
        cells = [f, f"`{n}`", "on" if r["channels_last"] else "off", cell(r, "base", fmt=".1f"), cell(r, "bf16"),
                 cell(r, "compile"), cell(r, "compile_s", fmt=".0f"), cell(r, "checkpointing"),
                 cell(r, "kept_ckpt_mb", "kept_base_mb", fmt=".1f"), cell(r, "accum2"), cell(r, "grad_cos", fmt=".4f"),
                 cell(r, "loss_fp32", "loss_bf16", fmt=".3f"), cell(r, "acc_fp32", "acc_bf16", fmt=".1f"),
                 r.get("cpu", "not recorded")]
        lines.append("| " + " | ".join(cells) + " |")
    compile_measured = any("compile" in r for _, _, r in rows)
    lines += [
        "",
        "Families that qualify for bf16 autocast by default on the CPU (every measured model of the family at least "
        f"{FASTER:.2f}x, its final "
        f"loss within {LOSS_GAP:.0%} of fp32's and its accuracy at most {ACC_GAP:g} points below): "
        f"{', '.join(bf16) or 'none'}.",
        "Families that qualify for torch.compile by default on the CPU (every measured model of the family at least "
        f"{FASTER:.2f}x and its compile time paid back within one epoch of {EPOCH_IMAGES:,} images, and not a bf16 "
        f"family: compile was timed on the fp32 step): "
        + (f"{', '.join(compiled) or 'none'}." if compile_measured else "not measured in this run."),
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    # Compile time as a user's first run pays it: no FX graph or kernel caches from earlier runs on this machine.
    torch._inductor.config.force_disable_caches = True
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fidelity-steps", type=int, default=30, help="0: no bf16 fidelity check")
    parser.add_argument("--fidelity-batch", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=REPRESENTATIVES)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the steps to time (base always)")
    parser.add_argument("--out")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of --out and measure only the models and variants they lack")
    args = parser.parse_args(argv)
    command = "python benchmarks/speed_options.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.resume and not (args.out and Path(args.out).is_file()):
        parser.error(f"--resume needs an existing --out table, got {args.out!r}")
    kept: dict[str, dict[str, float]] = {}
    commands = [command]
    if args.resume:
        old_rows, old_commands = read_table(Path(args.out).read_text())
        kept = {n: r for _, n, r in old_rows}
        commands = old_commands  # this command joins them once it measures something
        args.models = [*[n for _, n, _ in old_rows], *[n for n in args.models if n not in kept]]
    data = None
    if args.fidelity_steps:
        from papernets.data import load_dataset

        data = load_dataset("fashion-mnist", image_size=args.image_size)
    rows: Rows = [(get_entry(n).family, n, r) for n, r in kept.items()]  # rewritten in place as they complete
    for name in args.models:
        family = get_entry(name).family
        r = dict(kept.get(name, {}))
        missing = tuple(v for v in args.variants if v not in r)
        if (missing or (data is not None and "grad_cos" not in r)) and command not in commands:
            commands = [*commands, command]
        if missing:
            fresh = measure(name, args.image_size, args.in_chans, args.batch_size, args.rounds, missing)
            if "base" in r:  # a kept row keeps its base img/s; each ratio is against its own process's base
                del fresh["base"]
            r.update(fresh)
            here = cpu_label()
            if name not in kept:
                r["cpu"] = here
            elif r.get("cpu") != here:  # a kept row completed on another machine says which figures came from where
                r["cpu"] = f"{r.get('cpu', 'not recorded')}; {', '.join(missing)} on {here}"
        if data is not None and "grad_cos" not in r:
            r.update(bf16_fidelity(name, data, args.image_size, args.fidelity_batch, args.fidelity_steps))
        if name in kept:
            rows[[n for _, n, _ in rows].index(name)] = (family, name, r)
        else:
            rows.append((family, name, r))
        fid = (f"  grad cos {r['grad_cos']:.4f}  loss {r['loss_fp32']:.3f}/{r['loss_bf16']:.3f}  acc "
               f"{r['acc_fp32']:.1f}/{r['acc_bf16']:.1f}") if "grad_cos" in r else ""
        speedups = "  ".join(f"{v} x{r[v]:.2f}" for v in VARIANTS if v in r and v != "base")
        print(f"{family:16s} {name:20s} base {r['base']:8.1f} img/s  {speedups}{fid}", flush=True)
        if args.out:
            write_table(rows, args, commands)
    if args.out and args.resume:  # a resume that measured nothing still rewrites the table with the current rules
        write_table(rows, args, commands)
    print(f"bf16 by default: {', '.join(families_where(rows, bf16_ok)) or 'none'}")
    print(f"compile by default: {', '.join(compile_families(rows)) or 'none'}")


if __name__ == "__main__":
    main()
