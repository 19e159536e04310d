"""Training speed in contiguous (NCHW) against channels_last (NHWC) memory format, one model per family.

    python benchmarks/memory_format.py [--image-size 28] [--in-chans 1] [--batch-size 128] [--out FILE.md]

This is the measurement behind ``papernets.engine.speed.CHANNELS_LAST_CPU_FAMILIES``: the families whose
training step is faster in channels_last on the CPU train and profile in it by default. Each representative is
built in its small-image form (as the trainer builds it for Fashion-MNIST), both formats are timed in
alternating rounds in one process, and each figure is the median over the rounds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import papernets
from papernets.engine.speed import FAMILY_REPRESENTATIVES as REPRESENTATIVES
from papernets.registry import get_entry

FASTER = 1.05  # channels_last must win by at least 5% to become a family's default


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        logits = out[0] if isinstance(out, tuple | list) else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()

    return step


def measure(name: str, size: int, in_chans: int, batch: int, rounds: int) -> tuple[float, float]:
    """Training img/s of ``name`` in contiguous and in channels_last format (same weights, same batch)."""
    torch.manual_seed(0)
    base = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size).train()
    last = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size).train()
    last.load_state_dict(base.state_dict())
    last = last.to(memory_format=torch.channels_last)
    x = torch.randn(batch, in_chans, size, size)
    y = torch.randint(0, 10, (batch,))
    steps = [_train_step(base, x, y), _train_step(last, x.contiguous(memory_format=torch.channels_last), y)]
    for step in steps:
        step()  # warm-up
    rates: list[list[float]] = [[], []]
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            steps[i]()
            rates[i].append(batch / (time.perf_counter() - t0))
    return statistics.median(rates[0]), statistics.median(rates[1])


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
        nchw, nhwc = measure(name, args.image_size, args.in_chans, args.batch_size, args.rounds)
        rows.append((family, name, nchw, nhwc))
        print(f"{family:16s} {name:22s} contiguous {nchw:8.1f} img/s  channels_last {nhwc:8.1f} img/s  "
              f"x{nhwc / nchw:.2f}", flush=True)
    faster = sorted({f for f, _, a, b in rows if b / a >= FASTER})
    print(f"faster in channels_last (>= x{FASTER:.2f}): {', '.join(faster) or 'none'}")
    if args.out:
        lines = [
            f"# Training speed by memory format, batch {args.batch_size} at {args.in_chans}x{args.image_size}x"
            f"{args.image_size}, small-image forms",
            "",
            f"Written by `python benchmarks/memory_format.py --out {args.out}` on {platform.machine()} "
            f"({torch.get_num_threads()} threads), torch {torch.__version__}: training img/s (forward, backward, "
            f"SGD step), median of {args.rounds} alternating rounds in one process.",
            "",
            "| family | model | contiguous img/s | channels_last img/s | channels_last / contiguous |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [f"| {f} | `{n}` | {a:.1f} | {b:.1f} | {b / a:.2f} |" for f, n, a, b in rows]
        lines += ["", f"Faster in channels_last by at least {FASTER:.2f}x: {', '.join(faster) or 'none'}."]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
