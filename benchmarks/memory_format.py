"""Training speed in contiguous (NCHW) against channels_last (NHWC) memory format, one model per family.

    python benchmarks/memory_format.py [--image-size 28] [--in-chans 1] [--batch-size 128] [--out FILE.md]
                                       [--models NAME ...] [--resume]

This is the measurement behind ``papernets.engine.speed.CHANNELS_LAST_CPU_FAMILIES``: the families whose
training step is faster in channels_last on the CPU train and profile in it by default. Each representative is
built in its small-image form (as the trainer builds it for Fashion-MNIST), both formats are timed in
alternating rounds in one process, and each figure is the median over the rounds. ``--resume`` keeps the rows of
``--out`` and measures only the models it lacks (a new family), adding a line under the table that names the
command and the CPU of the added rows.
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import papernets
from papernets.engine.speed import FAMILY_REPRESENTATIVES as REPRESENTATIVES
from papernets.engine.speed import cpu_label
from papernets.registry import get_entry

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when loaded by file path
from mfu import _rel  # noqa: E402  (results hold paths relative to the repository)

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


ROW = re.compile(r"^\| (\w+) \| `(\w+)` \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", re.M)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=REPRESENTATIVES)
    parser.add_argument("--out")
    parser.add_argument("--resume", action="store_true", help="keep --out's rows and measure only missing models")
    args = parser.parse_args(argv)
    old = Path(args.out).read_text() if args.resume and args.out and Path(args.out).is_file() else None
    if args.resume and old is None:
        raise SystemExit(f"memory_format: --resume needs the table --out {args.out} to add to")
    kept = [(f, n, float(a), float(b)) for f, n, a, b, _ in ROW.findall(old)] if old else []
    ratios = {n: r for _, n, _, _, r in ROW.findall(old)} if old else {}  # kept rows keep their measured ratio
    done = {n for _, n, _, _ in kept}
    rows = list(kept)
    for name in args.models:
        if get_entry(name).name in done:
            continue
        family = get_entry(name).family
        nchw, nhwc = measure(name, args.image_size, args.in_chans, args.batch_size, args.rounds)
        rows.append((family, get_entry(name).name, nchw, nhwc))
        print(f"{family:16s} {name:22s} contiguous {nchw:8.1f} img/s  channels_last {nhwc:8.1f} img/s  "
              f"x{nhwc / nchw:.2f}", flush=True)
    faster = sorted({f for f, _, a, b in rows if b / a >= FASTER})
    print(f"faster in channels_last (>= x{FASTER:.2f}): {', '.join(faster) or 'none'}")
    if args.out:
        table = [f"| {f} | `{n}` | {a:.1f} | {b:.1f} | {ratios.get(n, f'{b / a:.2f}')} |" for f, n, a, b in rows]
        summary = f"Faster in channels_last by at least {FASTER:.2f}x: {', '.join(faster) or 'none'}."
        if old:
            head = old[:old.index("| family |")]
            added = [line for line in old.splitlines() if line.startswith("Rows added by")]
            new = [n for _, n, _, _ in rows[len(kept):]]
            if new:
                words = [_rel(w) if i and argv[i - 1] == "--out" else w for i, w in enumerate(argv)]
                command = " ".join(["python benchmarks/memory_format.py", *map(shlex.quote, words)])
                added.append(f"Rows added by `{command}` on {cpu_label()} ({torch.get_num_threads()} threads), "
                             f"torch {torch.__version__}: {', '.join(f'`{n}`' for n in new)}.")
            lines = [head.rstrip("\n"), "", "| family | model | contiguous img/s | channels_last img/s | "
                     "channels_last / contiguous |", "|---|---|---:|---:|---:|", *table, "", summary,
                     *(["", *added] if added else [])]
        else:
            lines = [
                f"# Training speed by memory format, batch {args.batch_size} at {args.in_chans}x{args.image_size}x"
                f"{args.image_size}, small-image forms",
                "",
                f"Written by `python benchmarks/memory_format.py --out {_rel(args.out)}` on {platform.machine()} "
                f"({torch.get_num_threads()} threads), torch {torch.__version__}: training img/s (forward, backward, "
                f"SGD step), median of {args.rounds} alternating rounds in one process.",
                "",
                "| family | model | contiguous img/s | channels_last img/s | channels_last / contiguous |",
                "|---|---|---:|---:|---:|",
                *table, "", summary,
            ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
