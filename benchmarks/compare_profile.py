"""Where our model and its reference implementation spend a training step or an inference, operator by operator.

    python benchmarks/compare_profile.py MODEL [--image-size 64] [--batch-size 32] [--steps 3] [--kind train|infer]
    python benchmarks/compare_profile.py MODEL --noise [--rounds 5] [--min-time 1.0]

The two models are built exactly as ``python -m papernets.bench.compare`` builds them (same settings, the memory
format the trainer picks for the family), profiled with ``torch.profiler`` over ``--steps`` steps after a warm-up,
and the aten operators are listed side by side: calls per step and self CPU milliseconds per step, the largest
differences first. This is how the causes of the ratios below 1.0 in docs/results/speed.md were found.

``--noise`` measures what a ratio means on this machine: it times two copies of our model against each other,
and two copies of the reference, exactly as the comparison times ours against the reference (alternating rounds,
``--rounds``, at least ``--min-time`` seconds per round), and prints each pair's per-round ratios. Identical
models should give 1.0; how far their rounds stray is the machine's noise for that model.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from papernets.bench.compare import (
    FIXED_SIZE_FAMILIES,
    IMAGENET_FORM_MIN_SIZE,
    _infer_step,
    _interleaved,
    _train_step,
)
from papernets.engine.runtime import default_runtime
from papernets.pretrained import reference_model
from papernets.registry import create_model, get_entry


def build(name: str, size: int, library: str | None = None):
    entry = get_entry(name)
    library = library or ("torchvision" if "torchvision" in entry.pretrained else next(iter(entry.pretrained)))
    source = entry.pretrained[library]
    torch.manual_seed(0)
    ours = create_model(entry.name, num_classes=10, img_size=size, **{"small_input": False, **source.kwargs})
    ref_kwargs = dict(source.ref_kwargs)
    if entry.family in FIXED_SIZE_FAMILIES:
        ref_kwargs["image_size" if library == "torchvision" else "img_size"] = size
    ref = reference_model(library, source.name, num_classes=10, **ref_kwargs)
    cl = default_runtime(entry.family).channels_last
    if cl:
        ours, ref = ours.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    return ours, ref, cl, f"{library} {source.name}"


def op_table(step, steps: int) -> dict[str, tuple[float, float]]:
    """{aten op: (calls per step, self CPU ms per step)} over ``steps`` profiled steps."""
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    calls: dict[str, float] = defaultdict(float)
    ms: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        calls[ev.key] += ev.count / steps
        ms[ev.key] += ev.self_cpu_time_total / 1000 / steps
    return {k: (calls[k], ms[k]) for k in calls}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--library", choices=["torchvision", "timm"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--kind", choices=["train", "infer"], default="train")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--noise", action="store_true", help="time identical copies against each other instead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0)
    args = parser.parse_args(argv)
    size = max(args.image_size, IMAGENET_FORM_MIN_SIZE.get(get_entry(args.model).family, 0))
    ours, ref, cl, ref_name = build(args.model, size, args.library)
    x = torch.randn(args.batch_size, 3, size, size)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    y = torch.randint(0, 10, (args.batch_size,))
    make = (lambda m: _train_step(m, x, y)) if args.kind == "train" else (lambda m: _infer_step(m, x))
    if args.noise:
        ours2, ref2, _, _ = build(args.model, size, args.library)
        for label, m1, m2 in (("ours / ours", ours, ours2), ("ref / ref", ref, ref2)):
            rates = _interleaved([make(m1), make(m2)], args.rounds, 1, args.batch_size, args.min_time)
            ratios = [r1 / r2 for r1, r2 in zip(*rates, strict=True)]
            print(f"{args.model} {args.kind} {label}: median {sorted(ratios)[len(ratios) // 2]:.2f}, rounds "
                  f"{min(ratios):.2f}-{max(ratios):.2f} ({' '.join(f'{r:.2f}' for r in ratios)})", flush=True)
        return
    a, b = op_table(make(ours), args.steps), op_table(make(ref), args.steps)
    total_a, total_b = sum(v[1] for v in a.values()), sum(v[1] for v in b.values())
    print(f"{args.model} vs {ref_name}, {args.kind}, {size} px, batch {args.batch_size}, "
          f"channels_last {'on' if cl else 'off'}: self CPU {total_a:.1f} ms vs {total_b:.1f} ms per step")
    keys = sorted(set(a) | set(b), key=lambda k: -abs(a.get(k, (0, 0))[1] - b.get(k, (0, 0))[1]))
    print(f"{'operator':44s} {'calls ours':>10s} {'calls ref':>10s} {'ms ours':>9s} {'ms ref':>9s} {'diff ms':>9s}")
    for k in keys[:args.top]:
        (ca, ta), (cb, tb) = a.get(k, (0, 0)), b.get(k, (0, 0))
        print(f"{k[:44]:44s} {ca:10.0f} {cb:10.0f} {ta:9.1f} {tb:9.1f} {ta - tb:+9.1f}")


if __name__ == "__main__":
    main()
