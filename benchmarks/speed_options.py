"""What each speed option does to a training step, one model per family: bf16 autocast, torch.compile,
activation checkpointing and gradient accumulation, against the trainer's default step.

    python benchmarks/speed_options.py [--image-size 28] [--in-chans 1] [--batch-size 128] [--rounds 3] [--out FILE.md]

This is the measurement behind the per-family defaults in ``papernets.engine.speed`` (``BF16_CPU_FAMILIES``,
``COMPILE_CPU_FAMILIES``). Every variant of a model starts from the same weights and trains on the same batch in
the memory format the trainer picks for the family; the variants are timed in alternating rounds in one process
and each figure is the median over the rounds. Columns:

- base: img/s of the default step (fp32, forward, backward, SGD step);
- bf16: ``torch.autocast("cpu", torch.bfloat16)`` around forward and loss, speed-up over base;
- compile: ``torch.compile`` of the model (default inductor backend), steady-state speed-up over base, and the
  one-off compile time (first compiled step minus a base step);
- checkpointing: ``train.activation_checkpointing``, speed-up over base (below 1: the recomputation's cost) and
  the activations kept for the backward pass, against base's;
- accum 2: the same batch as 2 micro-batches (``train.accum_steps=2``), speed-up over base.

A family gets bf16 (``train.amp: auto``) or compile (``train.compile`` unset) by default when that option is at
least 10% faster and, for compile, when its compile time is paid back within one epoch of Fashion-MNIST
(54,000 images). Checkpointing and accumulation only ever cost time; they are memory options (the benchmark
turns them on when a model does not fit), off by default.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import papernets
from papernets.engine.speed import FAMILY_REPRESENTATIVES as REPRESENTATIVES
from papernets.engine.speed import enable_activation_checkpointing, kept_activation_bytes, use_channels_last
from papernets.registry import get_entry

FASTER = 1.10  # bf16 or compile must win by at least 10% to become a family's default
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


def measure(name: str, size: int, in_chans: int, batch: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    base = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size).train()
    cl = use_channels_last(get_entry(name).family, torch.device("cpu"))
    fmt = torch.channels_last if cl else torch.contiguous_format
    base = base.to(memory_format=fmt)
    x = torch.randn(batch, in_chans, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    models = {v: copy.deepcopy(base) for v in VARIANTS}
    enable_activation_checkpointing(models["checkpointing"])
    compiled = torch.compile(models["compile"])
    steps = {
        "base": make_step(models["base"], x, y),
        "bf16": make_step(models["bf16"], x, y, bf16=True),
        "compile": make_step(compiled, x, y),
        "checkpointing": make_step(models["checkpointing"], x, y),
        "accum2": make_step(models["accum2"], x, y, accum=2),
    }
    first: dict[str, float] = {}
    for v, step in steps.items():  # warm-up; the compiled model compiles here
        t0 = time.perf_counter()
        step()
        first[v] = time.perf_counter() - t0
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for r in range(rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            steps[v]()
            rates[v].append(batch / (time.perf_counter() - t0))
    med = {v: statistics.median(rates[v]) for v in VARIANTS}
    kept_base = kept_activation_bytes(models["base"], x)
    kept_ckpt = kept_activation_bytes(models["checkpointing"], x)
    return {
        "channels_last": cl, "base": med["base"],
        **{v: med[v] / med["base"] for v in VARIANTS if v != "base"},
        "compile_s": max(first["compile"] - batch / med["base"], 0.0),
        "kept_base_mb": kept_base / 2**20, "kept_ckpt_mb": kept_ckpt / 2**20,
    }


def pays_back(row: dict[str, float]) -> bool:
    """Whether compile's one-off time is recovered within one Fashion-MNIST epoch at its measured speed-up."""
    saved_per_epoch = EPOCH_IMAGES / row["base"] * (1 - 1 / row["compile"]) if row["compile"] > 0 else 0.0
    return row["compile"] >= FASTER and saved_per_epoch >= row["compile_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=REPRESENTATIVES)
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        family = get_entry(name).family
        r = measure(name, args.image_size, args.in_chans, args.batch_size, args.rounds)
        rows.append((family, name, r))
        print(f"{family:16s} {name:20s} base {r['base']:8.1f} img/s  bf16 x{r['bf16']:.2f}  compile "
              f"x{r['compile']:.2f} ({r['compile_s']:.0f} s)  checkpointing x{r['checkpointing']:.2f} "
              f"({r['kept_ckpt_mb']:.0f} of {r['kept_base_mb']:.0f} MB kept)  accum2 x{r['accum2']:.2f}", flush=True)
    bf16 = sorted({f for f, _, r in rows if r["bf16"] >= FASTER})
    compiled = sorted({f for f, _, r in rows if pays_back(r)})
    print(f"bf16 by default (>= x{FASTER:.2f}): {', '.join(bf16) or 'none'}")
    print(f"compile by default (>= x{FASTER:.2f}, paid back in one epoch): {', '.join(compiled) or 'none'}")
    if args.out:
        lines = [
            f"# Speed options, training step at batch {args.batch_size}, {args.in_chans}x{args.image_size}x"
            f"{args.image_size}, small-image forms",
            "",
            f"Written by `python benchmarks/speed_options.py --out {args.out}` on {platform.machine()} "
            f"({torch.get_num_threads()} threads), torch {torch.__version__}: img/s of the default step, and each "
            f"option's speed-up over it (above 1: faster), median of {args.rounds} alternating rounds in one "
            "process. Compile time: the first compiled step minus a default step. Kept: activations autograd "
            "keeps for the backward pass, with checkpointing and without.",
            "",
            "| family | model | channels_last | base img/s | bf16 | compile | compile time s | checkpointing "
            "| kept MB (checkpointing / base) | accum 2 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {f} | `{n}` | {'on' if r['channels_last'] else 'off'} | {r['base']:.1f} | {r['bf16']:.2f} "
                  f"| {r['compile']:.2f} | {r['compile_s']:.0f} | {r['checkpointing']:.2f} "
                  f"| {r['kept_ckpt_mb']:.1f} / {r['kept_base_mb']:.1f} | {r['accum2']:.2f} |" for f, n, r in rows]
        lines += [
            "",
            f"bf16 autocast by default on the CPU (at least {FASTER:.2f}x): {', '.join(bf16) or 'none'}.",
            f"torch.compile by default on the CPU (at least {FASTER:.2f}x and its compile time paid back within one "
            f"epoch of {EPOCH_IMAGES:,} images): {', '.join(compiled) or 'none'}.",
        ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
