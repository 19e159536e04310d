"""How much the input pipeline costs: training img/s from the real loader against the pure model step.

    python benchmarks/pipeline_overhead.py --model resnet18 --image-size 28 --batch-size 128 --steps 20

Both loops run the same model, batch and size in one process, alternating; the loader loop cuts, augments,
resizes and normalizes real Fashion-MNIST batches, the pure loop reuses one ready tensor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import papernets
from papernets.data import TensorLoader, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    loader = TensorLoader(data.train_x, data.train_y, args.batch_size, args.image_size, data.mean, data.std,
                          train=True, device=torch.device("cpu"), flip=True, crop_padding=2)
    model = papernets.create_model(args.model, num_classes=10, in_chans=1, img_size=args.image_size).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fixed_x, fixed_y = next(loader.batches(0))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step(fixed_x, fixed_y)
    pure, real, load_only = [], [], []
    batches = loader.batches(1)
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(fixed_x, fixed_y)
        pure.append(args.steps * args.batch_size / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(*next(batches))
        real.append(args.steps * args.batch_size / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            next(batches)
        load_only.append(args.steps * args.batch_size / (time.perf_counter() - t0))
    p, r, lo = statistics.median(pure), statistics.median(real), statistics.median(load_only)
    print(f"{args.model} {args.image_size}px batch {args.batch_size}: pure model step {p:.1f} img/s, "
          f"with the loader {r:.1f} img/s, loader alone {lo:.0f} img/s -> pipeline cost {100 * (1 - r / p):.1f}%")


if __name__ == "__main__":
    main()
