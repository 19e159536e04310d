"""Forward+backward time of one batch for every registered model (small-image form), on this machine.

    python benchmarks/step_time.py [--image-size 28] [--in-chans 1] [--batch-size 32] [--out FILE.md]

Prints one line per model as it goes; with --out writes a Markdown table. Median of --repeats timed steps after
one warm-up step. Each model runs in the memory format the trainer uses for its family on the CPU
(``papernets.engine.runtime.default_runtime``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import papernets
from papernets.engine.runtime import default_runtime
from papernets.registry import get_entry


def step_time(name: str, size: int, in_chans: int, batch: int, repeats: int, channels_last: bool) -> float:
    model = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size).train()
    x = torch.randn(batch, in_chans, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = model(x)
        logits = out[0] if isinstance(out, tuple | list) else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        model.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    for name in papernets.list_models(args.pattern):
        fmt = default_runtime(get_entry(name).family).channels_last
        t = step_time(name, args.image_size, args.in_chans, args.batch_size, args.repeats, fmt)
        rows.append((name, t, fmt))
        print(f"{name:24s} {t * 1000:9.1f} ms  ({args.batch_size / t:8.1f} img/s){'  channels_last' * fmt}",
              flush=True)
    if args.out:
        lines = [
            f"# Forward+backward time, batch {args.batch_size} at {args.in_chans}x{args.image_size}x"
            f"{args.image_size}, 10 classes",
            "",
            f"Written by `python benchmarks/step_time.py --out {args.out}` on {platform.processor() or 'CPU'}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}: median of {args.repeats} steps.",
            "",
            "| model | ms / step | img/s | memory format |",
            "|---|---:|---:|---|",
        ]
        lines += [f"| `{n}` | {t * 1000:.1f} | {args.batch_size / t:.1f} | {'channels_last' if f else 'contiguous'} |"
                  for n, t, f in rows]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
