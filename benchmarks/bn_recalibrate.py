"""Does a checkpoint's evaluation accuracy suffer from stale batch-norm running statistics?

    python benchmarks/bn_recalibrate.py CHECKPOINT_OR_RUN_DIR [--split val|test] [--batch-size 100]

Evaluates the checkpoint as trained, then replaces every BatchNorm layer's running mean and variance by the exact
average over the run's own training images (the same `data` section, unaugmented; the weights do not change) and
evaluates again. A large gap means the running averages had not caught up with the weights: after n optimizer
steps a BatchNorm with PyTorch momentum m still holds (1 - m)^n of its initial statistics (mean 0, variance 1), so a
short run with m = 0.01 (EfficientNet-B0's TF decay 0.99) carries 21% of them after 156 steps, and the weights
moved since the rest was averaged in. Prints both accuracies; writes nothing.
"""

from __future__ import annotations

import argparse

import torch

from papernets.data import TensorLoader, load_dataset
from papernets.engine.distributed import DistInfo
from papernets.engine.evaluation import evaluate
from papernets.engine.inference import load_trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint file or a run directory (its best.pt)")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    trained = load_trained(args.checkpoint)
    model, cfg, ckpt = trained.model, trained.cfg, trained.ckpt
    d = cfg.data
    data = load_dataset(d.name, d.root, d.val_fraction, d.limit, False, d.split_seed, d.image_size, d.eval_limit)
    mean, std = tuple(ckpt["data"]["mean"]), tuple(ckpt["data"]["std"])
    cpu = torch.device("cpu")
    dist = DistInfo(0, 1, 0, cpu)
    x, y = (data.val_x, data.val_y) if args.split == "val" else (data.test_x, data.test_y)
    held_out = TensorLoader(x, y, args.batch_size, d.image_size, mean, std, train=False, device=cpu)
    before = evaluate(model, held_out, dist)["acc"]

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise SystemExit(f"{cfg.model.name} has no BatchNorm layers: nothing to recompute.")
    momenta = sorted({m.momentum for m in norms})
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch that follows
        m.train()  # only the BatchNorm layers: dropout and stochastic depth stay off
    train = TensorLoader(data.train_x, data.train_y, args.batch_size, d.image_size, mean, std, train=False,
                         device=cpu)
    with torch.no_grad():
        for images, _ in train:
            model(images)
    model.eval()
    after = evaluate(model, held_out, dist)["acc"]
    print(f"{cfg.model.name}: {len(norms)} BatchNorm layers, momentum {momenta}; {args.split} accuracy as trained "
          f"{before * 100:.2f}%, with running statistics recomputed on the {len(data.train_x):,} training images "
          f"{after * 100:.2f}%")


if __name__ == "__main__":
    main()
