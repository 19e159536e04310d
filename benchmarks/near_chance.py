"""Why did rows of the fashion-quick smoke test stay near chance? Train each at the protocol's common settings
(its row fix removed) and look at what the network outputs.

    python benchmarks/near_chance.py [--models nin,vgg16,...] [--out docs/results/near_chance.md]

For each model: the fashion-quick run (2 epochs on 2,500 Fashion-MNIST images at 28 px, Adam lr 0.001, batch 32,
constant lr) with only the protocol's base config, then on the 1,000 validation images:

- validation accuracy as trained;
- the share of images whose ten logits are all exactly 0 (dead class maps: a ReLU before the pooling, as in NiN and
  SqueezeNet, outputs 0 once every pre-activation is negative);
- the spread of the logits across images (their standard deviation over the images, averaged over the classes): near
  0, the network gives every image the same output (a collapse);
- for networks with batch norm, the validation accuracy again after the running statistics are recomputed on 16
  training batches (``engine.evaluation.recompute_bn_stats``): a large gain means the running averages were stale.

Writes a Markdown table; prints it too.
"""

from __future__ import annotations

import argparse
import copy
import io
import itertools
import sys
import tempfile
from pathlib import Path

import torch

from papernets.bench.protocol import Row, load_protocol, row_config
from papernets.engine.evaluation import evaluate, recompute_bn_stats
from papernets.engine.rundir import versions
from papernets.engine.speed import cpu_label
from papernets.engine.step import split_output
from papernets.engine.trainer import Trainer

ROWS = "nin,vgg16,squeezenet1_1,googlenet,vit_s_16,efficientnet_b0"


@torch.no_grad()
def outputs(model: torch.nn.Module, loader) -> torch.Tensor:
    model.eval()
    return torch.cat([split_output(model(x))[0].float() for x, _ in loader.batches(0)])


def diagnose(model_name: str, log, overrides: list[str] | None = None) -> dict:
    """The diagnosis of one model at fashion-quick's common settings (then ``overrides``, for tests)."""
    protocol = load_protocol("fashion-quick")
    cfg, _ = row_config(protocol, Row(model_name, model_name), ["output.plots=false", "output.checkpoint=false",
                                                                 "output.save_best=false", *(overrides or [])])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / model_name, stream=log)
        trainer.fit()
        model = trainer.model
        logits = outputs(model, trainer.val_loader)
        val = evaluate(model, trainer.val_loader, trainer.info)["acc"]
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        recomputed = None
        if has_bn:
            fresh = copy.deepcopy(model)
            recompute_bn_stats(fresh, itertools.islice(trainer.train_loader.batches(cfg.train.epochs), 16))
            recomputed = evaluate(fresh, trainer.val_loader, trainer.info)["acc"]
    return {"model": model_name, "val_acc": val, **output_stats(logits), "recomputed_bn_acc": recomputed}


def output_stats(logits: torch.Tensor) -> dict:
    """Of an (images, classes) logit matrix: the share of images whose logits are all 0, the logits' spread across
    the images (their standard deviation per class, averaged), and how many classes are predicted at all."""
    return {"zero_rows": float((logits.abs().sum(1) == 0).float().mean()), "spread": float(logits.std(0).mean()),
            "classes_predicted": int(logits.argmax(1).unique().numel())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=ROWS)
    parser.add_argument("--out", default="docs/results/near_chance.md")
    args = parser.parse_args(argv)
    rows = [diagnose(m.strip(), io.StringIO()) for m in args.models.split(",") if m.strip()]
    v = versions()
    lines = ["# Why fashion-quick rows stayed near chance", "",
             f"Written by `python benchmarks/near_chance.py --models {args.models}` on {cpu_label()}, torch "
             f"{v['torch']}: each model trained as fashion-quick's common settings train it (2 epochs on 2,500 "
             "images, Adam lr 0.001, batch 32, constant lr, no row fix), then looked at on the 1,000 validation "
             "images. Zero-logit images: all ten logits exactly 0. Logit spread: the standard deviation of each "
             "logit across the images, averaged over the classes (near 0: the same output for every image). "
             "Recomputed BN: validation accuracy after the batch-norm running statistics are recomputed on 16 "
             "training batches.", "",
             "| model | val acc (%) | zero-logit images (%) | logit spread | classes predicted "
             "| val acc, recomputed BN (%) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        bn = "no batch norm" if r["recomputed_bn_acc"] is None else f"{r['recomputed_bn_acc'] * 100:.1f}"
        lines.append(f"| `{r['model']}` | {r['val_acc'] * 100:.1f} | {r['zero_rows'] * 100:.1f} | {r['spread']:.3g} | "
                     f"{r['classes_predicted']} | {bn} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
