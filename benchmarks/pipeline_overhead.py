"""How much the input pipeline costs: training img/s from the real loader against the pure model step.

    python benchmarks/pipeline_overhead.py [--models NAME...] [--image-size 28] [--batch-size 32] [--steps 20]
        [--amp off|auto] [--out docs/results/pipeline_overhead.md]

By default the models are the default rows of the fashion-quick benchmark protocol (each model once). One process;
each model in the memory format the trainer uses for its family. Step by step it alternates three timed pieces
of work: a training step on one ready tensor (the pure model step), a training step on the next batch of the real
loader (cut, crop, flip, resize and normalize of in-memory uint8 Fashion-MNIST: end to end), and the loader
alone. Alternating every step puts both loops under the same machine state, so the ratio holds even on a busy
machine. Prints, per model, img/s of each and the pipeline's cost: 1 - pure / end-to-end (the share of an
end-to-end step that the pipeline adds), and the loader's own time as a share of an end-to-end step. ``--amp off``
(the default) times fp32 steps, as the fashion-quick benchmark trains; ``--amp auto`` times the trainer's default
precision (bf16 autocast for the families that train in bf16 on this CPU), whose faster steps leave the pipeline
a larger share.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import papernets
from papernets.bench.runner import load_protocol
from papernets.data import TensorLoader, load_dataset
from papernets.engine.runtime import default_runtime
from papernets.engine.speed import cpu_label
from papernets.registry import get_entry

LIMIT = 0.10  # the pipeline may cost at most this share of a training step


def measure(name: str, data, image_size: int, batch_size: int, steps: int, amp: str = "off") -> dict[str, float]:
    runtime = default_runtime(get_entry(name).family)  # as the trainer's defaults (train.amp: auto) do
    channels_last = runtime.channels_last
    bf16 = amp == "auto" and runtime.amp == "bf16"
    loader = TensorLoader(data.train_x, data.train_y, batch_size, image_size, data.mean, data.std,
                          train=True, device=torch.device("cpu"), flip=True, crop_padding=2,
                          channels_last=channels_last)
    torch.manual_seed(0)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=image_size).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fixed_x, fixed_y = next(loader.batches(0))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out = model(x)
            if isinstance(out, tuple | list):  # auxiliary heads (GoogLeNet, Inception-v3) in training mode
                out = out[0]
            loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()

    def batches():
        epoch = 1
        while True:
            yield from loader.batches(epoch)
            epoch += 1

    stream = batches()
    for _ in range(2):  # warm-up
        step(fixed_x, fixed_y)
        step(*next(stream))
    pure = real = load = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        step(fixed_x, fixed_y)
        t1 = time.perf_counter()
        step(*next(stream))
        t2 = time.perf_counter()
        next(stream)
        t3 = time.perf_counter()
        pure, real, load = pure + t1 - t0, real + t2 - t1, load + t3 - t2
    n = steps * batch_size
    return {"channels_last": channels_last, "bf16": bf16, "pure": n / pure, "real": n / real, "load": n / load,
            "cost": 1 - pure / real, "load_share": load / real}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="default: the fashion-quick protocol's rows")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--amp", choices=["off", "auto"], default="off",
                        help="auto: bf16 autocast for the families the trainer trains in bf16 on this CPU")
    parser.add_argument("--out", help="write a Markdown table here")
    args = parser.parse_args()
    models = args.models or list(dict.fromkeys(r.model for r in load_protocol("fashion-quick").rows))
    data = load_dataset("fashion-mnist")
    rows = []
    for name in models:
        r = measure(name, data, args.image_size, args.batch_size, args.steps, args.amp)
        rows.append((name, r))
        print(f"{name} {args.image_size}px batch {args.batch_size} "
              f"({'channels_last' if r['channels_last'] else 'contiguous'}, {'bf16' if r['bf16'] else 'fp32'}, "
              f"{torch.get_num_threads()} threads): "
              f"pure model step {r['pure']:.1f} img/s, end to end {r['real']:.1f} img/s, loader alone "
              f"{r['load']:.0f} img/s -> pipeline cost {100 * r['cost']:.1f}% (loader share of a step "
              f"{100 * r['load_share']:.2f}%)", flush=True)
    worst = max(rows, key=lambda nr: nr[1]["cost"])
    print(f"largest pipeline cost: {worst[0]} {100 * worst[1]['cost']:.1f}% (limit {100 * LIMIT:.0f}%)")
    if args.out:
        lines = [
            f"# Input pipeline cost, Fashion-MNIST at {args.image_size}x{args.image_size}, batch {args.batch_size}",
            "",
            f"Written by `python benchmarks/pipeline_overhead.py --image-size {args.image_size} --batch-size "
            f"{args.batch_size} --steps {args.steps}{' --amp auto' if args.amp == 'auto' else ''} --out {args.out}` "
            f"on {cpu_label()}, {torch.get_num_threads()} threads, torch {torch.__version__}. Pure: training steps "
            "on one ready tensor; end to end: training steps on the real loader's batches; loader: the loader alone; "
            "the three alternate step by step. Cost: 1 - pure time / end-to-end time (negative: within the noise). "
            "Precision: the "
            + ("trainer's default (`train.amp: auto`: bf16 autocast for the families in `BF16_CPU_FAMILIES` on a CPU "
               "with bf16 instructions)." if args.amp == "auto" else "fp32 (as the fashion-quick benchmark trains)."),
            "",
            "| model | channels_last | pure img/s | end-to-end img/s | loader img/s | pipeline cost (%) "
            "| loader share of a step (%) |" + (" precision |" if args.amp == "auto" else ""),
            "|---|---|---:|---:|---:|---:|---:|" + ("---|" if args.amp == "auto" else ""),
        ]
        lines += [f"| `{n}` | {'on' if r['channels_last'] else 'off'} | {r['pure']:.1f} | {r['real']:.1f} | "
                  f"{r['load']:.0f} | {100 * r['cost']:.1f} | {100 * r['load_share']:.2f} |"
                  + ((" bf16 |" if r["bf16"] else " fp32 |") if args.amp == "auto" else "") for n, r in rows]
        lines += ["", f"Largest pipeline cost: `{worst[0]}`, {100 * worst[1]['cost']:.1f}% "
                      f"(the limit is {100 * LIMIT:.0f}%)."]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
