"""How much the input pipeline costs: training img/s from the real loader against the pure model step.

    python benchmarks/pipeline_overhead.py --model resnet18 --image-size 28 --batch-size 128 --steps 30

One process, the model in the memory format the trainer uses for its family. Step by step it alternates three
timed pieces of work: a training step on one ready tensor (the pure model step), a training step on the next
batch of the real loader (cut, crop, flip, resize and normalize of in-memory uint8 Fashion-MNIST: end to end),
and the loader alone. Alternating every step puts both loops under the same machine state, so the ratio holds
even on a busy machine. Prints img/s of each and the pipeline's cost: 1 - end-to-end / pure, and the loader's
own time as a share of an end-to-end step.
"""

from __future__ import annotations

import argparse
import time

import torch

import papernets
from papernets.data import TensorLoader, load_dataset
from papernets.engine.speed import use_channels_last
from papernets.registry import get_entry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each kind")
    args = parser.parse_args()
    channels_last = use_channels_last(get_entry(args.model).family, torch.device("cpu"))
    data = load_dataset("fashion-mnist")
    loader = TensorLoader(data.train_x, data.train_y, args.batch_size, args.image_size, data.mean, data.std,
                          train=True, device=torch.device("cpu"), flip=True, crop_padding=2,
                          channels_last=channels_last)
    model = papernets.create_model(args.model, num_classes=10, in_chans=1, img_size=args.image_size).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fixed_x, fixed_y = next(loader.batches(0))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
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
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(fixed_x, fixed_y)
        t1 = time.perf_counter()
        step(*next(stream))
        t2 = time.perf_counter()
        next(stream)
        t3 = time.perf_counter()
        pure, real, load = pure + t1 - t0, real + t2 - t1, load + t3 - t2
    n = args.steps * args.batch_size
    print(f"{args.model} {args.image_size}px batch {args.batch_size} "
          f"({'channels_last' if channels_last else 'contiguous'}, {torch.get_num_threads()} threads): "
          f"pure model step {n / pure:.1f} img/s, end to end {n / real:.1f} img/s, loader alone {n / load:.0f} "
          f"img/s -> pipeline cost {100 * (1 - pure / real):.1f}% (loader share of a step "
          f"{100 * load / real:.2f}%)")


if __name__ == "__main__":
    main()
