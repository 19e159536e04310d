"""The training step of the models with local response normalization (AlexNet, GoogLeNet) with PyTorch's
``nn.LocalResponseNorm`` against ``papernets.layers.lrn`` (the same function in fewer passes, its backward written
out), alternating in one process.

    python benchmarks/lrn_speed.py [--models googlenet alexnet] [--rounds 5] [--steps 2] [--batch-size 128]

Each model is built once at 28 px (1 channel, 10 classes; AlexNet with He initialization, as the benchmark trains it)
in the memory format the trainer picks for its family, and copied; in the copy every LRN layer runs PyTorch's
forward (the layers are a subclass of it, so only the forward differs). Training img/s (forward, backward, SGD
step) of the two alternate over ``--rounds`` rounds of ``--steps`` steps; printed: the medians and the speed-up of
each round. Keep the cores quiet while it runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from torch import nn


def compare(name: str, rounds: int, steps: int, batch: int) -> tuple[float, float, list[float]]:
    """(PyTorch LRN img/s, ours, per-round speed-ups)."""
    import papernets
    from papernets.bench.profile import measure_throughput
    from papernets.engine.runtime import default_runtime
    from papernets.registry import get_entry

    torch.manual_seed(0)
    kwargs = {"init": "he"} if name == "alexnet" else {}
    ours = papernets.create_model(name, num_classes=10, in_chans=1, img_size=28, **kwargs)
    theirs = copy.deepcopy(ours)
    swapped = 0
    for m in theirs.modules():
        if isinstance(m, nn.LocalResponseNorm):
            m.__class__ = nn.LocalResponseNorm
            swapped += 1
    if not swapped:
        raise SystemExit(f"lrn_speed: {name} has no local response normalization")
    x = torch.randn(batch, 1, 28, 28)
    if default_runtime(get_entry(name).family).channels_last:
        fmt = torch.channels_last
        ours, theirs, x = ours.to(memory_format=fmt), theirs.to(memory_format=fmt), x.contiguous(memory_format=fmt)
    rates: dict[str, list[float]] = {"torch": [], "ours": []}
    for r in range(rounds):
        for key, model in [("torch", theirs), ("ours", ours)][:: 1 if r % 2 == 0 else -1]:
            rates[key].append(measure_throughput(model, x, True, steps=steps, warmup=1))
    return (statistics.median(rates["torch"]), statistics.median(rates["ours"]),
            [b / a for a, b in zip(rates["torch"], rates["ours"], strict=True)])


def main(argv: list[str] | None = None) -> int:
    from papernets.engine.speed import cpu_label

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--models", nargs="+", default=["googlenet", "alexnet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    print(f"{cpu_label()}, {torch.get_num_threads()} threads, torch {torch.__version__}; batch {args.batch_size}, "
          f"28 px, median of {args.rounds} alternating rounds")
    for name in args.models:
        old, new, ratios = compare(name, args.rounds, args.steps, args.batch_size)
        print(f"{name}: training {old:.1f} img/s with torch.nn.LocalResponseNorm, {new:.1f} with "
              f"papernets.layers.lrn: x{statistics.median(ratios):.2f} (rounds {' '.join(f'{q:.2f}' for q in ratios)})",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
