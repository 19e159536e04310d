"""The ``papernets`` command line.

Exit codes: 0 success, 1 a failure while running, 2 a usage or configuration error, 130 interrupted (the state
was saved; ``--resume`` continues). Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from papernets.errors import PapernetsError, UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------------------------------- train

TRAIN_FLAGS = {  # flag attribute -> (section, key)
    "model": ("model", "name"),
    "dataset": ("data", "name"),
    "data_root": ("data", "root"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr": ("optim", "lr"),
    "image_size": ("data", "image_size"),
    "optimizer": ("optim", "name"),
    "device": ("train", "device"),
    "seed": ("train", "seed"),
    "out": ("output", "dir"),
    "name": ("output", "name"),
    "sam": ("optim", "sam"),
    "recipe": ("train", "recipe"),
}


def _resolve_config(args: argparse.Namespace, flags: dict[str, tuple[str, str]]):
    """The config file (a path or a shipped name), the paper recipe where asked for, the flags, then ``--set``
    (``optim.recipes.resolve_config``). Returns the config and the recipe line (None without a recipe)."""
    from papernets.config import load_config
    from papernets.optim.recipes import resolve_config

    raw: dict[str, dict[str, Any]] = {}
    for attr, (section, key) in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            raw.setdefault(section, {})[key] = value
    return resolve_config(load_config(args.config), raw, args.set or [])


def _train_config(args: argparse.Namespace):
    return _resolve_config(args, TRAIN_FLAGS)


def _check_model(cfg) -> None:
    from papernets.registry import ModelConfigError, get_entry

    entry = get_entry(cfg.model.name)
    if cfg.data.image_size < entry.min_img_size:
        raise ModelConfigError(
            f"image size {cfg.data.image_size} is below {entry.name}'s minimum of {entry.min_img_size} px; "
            f"use --image-size {entry.min_img_size} or more."
        )
    cfg.model.name = entry.name


def cmd_train(args: argparse.Namespace) -> int:
    from papernets.engine.checkpoint import load_checkpoint
    from papernets.engine.trainer import Trainer, TrainingInterrupted, config_from_checkpoint

    if args.resume:
        given = [f"--{a.replace('_', '-')}" for a in TRAIN_FLAGS if a != "epochs" and getattr(args, a) is not None]
        if args.config or args.set or given:
            raise UsageError(
                f"--resume continues a run with its saved config; only --epochs may change "
                f"(got {', '.join(given + (['--config'] if args.config else []) + (['--set'] if args.set else []))})."
            )
        ckpt = load_checkpoint(args.resume)
        cfg = config_from_checkpoint(ckpt)
        if args.epochs is not None:
            if args.epochs < ckpt["epoch"]:
                raise UsageError(f"--epochs {args.epochs} is below the {ckpt['epoch']} epochs already done.")
            cfg.train.epochs = args.epochs
        ckpt_path = Path(ckpt["path"])
        run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
        recipe = None
    else:
        cfg, recipe = _train_config(args)
        _check_model(cfg)
        from papernets.engine.rundir import default_run_dir

        run_dir = default_run_dir(cfg)
        if (run_dir / "checkpoints").exists():
            raise UsageError(
                f"run directory {str(run_dir)!r} already holds a run; continue it with --resume {run_dir} "
                f"or choose another --name."
            )
        ckpt = None
    trainer = Trainer(cfg, run_dir, resume=ckpt, stream=sys.stderr, recipe=recipe)
    try:
        trainer.fit()
    except TrainingInterrupted as exc:
        if trainer.info.is_main:
            print(f"papernets: {exc}; saved {run_dir}/checkpoints/last.pt. "
                  f"Continue with: papernets train --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        from papernets.engine.distributed import cleanup

        cleanup(trainer.info)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ schedule

SCHEDULE_FLAGS = {k: TRAIN_FLAGS[k] for k in ("model", "dataset", "data_root", "epochs", "batch_size", "lr",
                                               "recipe")}


def _steps_per_epoch(cfg) -> int:
    """Optimizer steps per epoch of a single-process run: the training split (after the validation hold-out and
    data.limit) in batches, a last batch of one image dropped, as the trainer's loader does."""
    from papernets.data import DatasetError, load_dataset

    try:
        data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.val_fraction, cfg.data.limit, cfg.data.download,
                            cfg.data.split_seed, cfg.data.image_size, cfg.data.eval_limit)
    except DatasetError as exc:
        raise UsageError(f"{exc} (or give --steps-per-epoch N)") from exc
    full, rest = divmod(len(data.train_x), cfg.train.batch_size)
    return max(1, full + (1 if rest >= 2 else 0))


def cmd_schedule(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from papernets.optim.schedules import schedule_factor

    cfg, recipe = _resolve_config(args, SCHEDULE_FLAGS)
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UsageError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}.")
    spe = args.steps_per_epoch or _steps_per_epoch(cfg)
    epochs, lr = cfg.train.epochs, cfg.optim.lr
    factor = schedule_factor(cfg.schedule, spe, epochs, lr)
    total = spe * epochs
    lrs = [lr * factor(t) for t in range(total)]
    s = cfg.schedule
    print(f"schedule {s.name} for {cfg.model.name}: {epochs} epochs x {spe} steps = {total} optimizer steps, "
          f"optim.lr {lr:g}" + (f", warmup {s.warmup:g} {s.unit}" if s.warmup else ""))
    if recipe:
        print(f"recipe: {recipe}")
    shown = sorted({round(e * (epochs - 1) / 9) for e in range(10)} if epochs > 10 else set(range(epochs)))
    print(f"{'epoch':>7}  {'step':>8}  lr")
    for e in shown:
        print(f"{e:>7}  {e * spe:>8}  {lrs[e * spe]:.6g}")
    peak = max(range(total), key=lrs.__getitem__)
    print(f"   peak  {peak:>8}  {lrs[peak]:.6g}\n   last  {total - 1:>8}  {lrs[-1]:.6g}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([t / spe for t in range(total)], lrs, lw=1.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{cfg.model.name}: {s.name} schedule, {epochs} epochs x {spe} steps")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- eval, predict


def cmd_eval(args: argparse.Namespace) -> int:
    from papernets.engine.distributed import resolve_device
    from papernets.engine.export import load_onnx
    from papernets.engine.inference import evaluate_split, load_trained

    for flag, value in (("--limit", args.limit), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    device = resolve_device(args.device, key="--device")
    if args.checkpoint.lower().endswith(".onnx"):
        if device.type != "cpu" and args.device != "auto":
            raise UsageError(f"--device {args.device}: an ONNX file runs on the CPU (onnxruntime); use --device cpu.")
        trained = load_onnx(args.checkpoint)
    else:
        trained = load_trained(args.checkpoint, device)
    out = evaluate_split(trained, args.dataset, args.data_root, args.split, args.limit, args.batch_size)
    from papernets.engine import rundir

    confusion = out.pop("confusion")
    where = Path(args.out) if args.out else _eval_dir(trained.ckpt["path"], out["dataset"], args.split)
    lines = rundir.write_per_class(where, confusion, trained.classes, f"{out['dataset']} {args.split}")
    if args.json:
        out.update(per_class=rundir.per_class(confusion, trained.classes), confusion=confusion.tolist(),
                   most_confused=rundir.most_confused(confusion, trained.classes), files=str(where))
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['model']} on {out['dataset']} {args.split} ({out['images']} images): top-1 "
              f"{out['top1'] * 100:.2f}%  top-5 {out['top5'] * 100:.2f}%  loss {out['loss']:.4f}")
        rows = [[r["class"], str(r["images"]), *("-" if r[k] is None else f"{r[k] * 100:.1f}"
                                                 for k in ("accuracy", "precision", "recall"))]
                for r in rundir.per_class(confusion, trained.classes)]
        print(_fmt_table(rows, ["class", "images", "accuracy %", "precision %", "recall %"], right={1, 2, 3, 4}))
        print("\n".join(lines))
    return EXIT_OK


def _eval_dir(source: str, dataset: str, split: str) -> Path:
    """Where ``eval`` writes its per-class files: ``<run>/eval-<dataset>-<split>/`` (beside an ONNX file:
    ``<name>-eval-<dataset>-<split>/``)."""
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        return path.with_name(f"{path.stem}-eval-{dataset}-{split}")
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run / f"eval-{dataset}-{split}"


def cmd_predict(args: argparse.Namespace) -> int:
    from papernets.engine.export import load_any
    from papernets.engine.inference import predict_images

    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}.")
    results = predict_images(load_any(args.checkpoint), args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{p['label']} {p['probability'] * 100:.1f}%" for p in r["top"]))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from papernets.engine.export import export_trained

    for flag, value in (("--image-size", args.image_size), ("--opset", args.opset)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    r = export_trained(args.checkpoint, args.format, args.out, args.image_size, args.opset, check=not args.no_check)
    size = r.path.stat().st_size / 1e6
    check = ("not checked (--no-check)" if r.max_abs_diff is None else
             f"checked with {r.checked_with} on 8 images: largest absolute logit difference {r.max_abs_diff:.3g} "
             f"(limit {r.limit:.3g})")
    batch = ", any batch size" if r.format != "safetensors" else ""
    print(f"{r.path} ({r.format}, {size:.1f} MB, input {r.image_size}x{r.image_size}{batch}); {check}")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from papernets.engine.progress import format_seconds
    from papernets.engine.runs import find_runs

    root = Path(args.dir)
    if not root.is_dir():
        raise UsageError(f"{args.dir!r} is not a folder (the runs are in runs/ by default, or --out of train).")
    records = find_runs(root)
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    if not records:
        print(f"no runs under {root}")
        return EXIT_OK

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.2f}"

    rows = [[r["run"], r["model"] or "?", r["dataset"] or "?", f"{r['epochs']}/{r['epochs_planned'] or '?'}",
             pct(r["best_val_acc"]), pct(r["test_acc"]),
             "-" if r["wall_time_s"] is None else format_seconds(r["wall_time_s"]), r["status"]] for r in records]
    print(_fmt_table(rows, ["run", "model", "dataset", "epochs", "best val %", "test %", "time", "status"],
                     right={3, 4, 5, 6}))
    return EXIT_OK


# ------------------------------------------------------------------------------------------ models, profile


def _fmt_table(rows: list[list[str]], headers: list[str], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cmd_models(args: argparse.Namespace) -> int:
    from papernets.bench.zoo import model_rows, models_markdown
    from papernets.registry import list_models

    if not list_models(args.pattern):
        raise UsageError(f"no model matches {args.pattern!r}; run `papernets models` to list them all.")
    rows = model_rows(args.pattern, small=args.markdown)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if args.markdown:
        print(models_markdown(rows))
        return EXIT_OK
    table = [[r["name"], r["family"], r["paper"][:58], str(r["year"]), f"{r['params']:,}", f"{r['gmacs']:.3f}",
              str(r["default_img_size"])] for r in rows]
    print(_fmt_table(table, ["model", "family", "paper", "year", "params", "GMACs", "size"], {3, 4, 5, 6}))
    print(f"\n{len(rows)} models; params and GMACs at the ImageNet configuration (1000 classes, 3 channels, "
          "the paper's input size).")
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    from papernets.bench.profile import profile_model
    from papernets.engine.distributed import resolve_device

    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--in-chans", args.in_chans),
                        ("--num-classes", args.num_classes), ("--image-size", args.image_size)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}.")
    device = resolve_device(args.device, key="--device")
    res = profile_model(args.model, img_size=args.image_size, batch_size=args.batch_size, in_chans=args.in_chans,
                        num_classes=args.num_classes, device=device, steps=args.steps,
                        timing=not args.no_timing, channels_last=args.channels_last)
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
        return EXIT_OK

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    print(f"{res.model} at {res.in_chans}x{res.img_size}x{res.img_size}, {res.num_classes} classes, "
          f"batch {res.batch_size}, {res.device}{', channels_last' if res.channels_last else ''}")
    print(f"  params            {res.params:,}")
    print(f"  GMACs / image     {res.gmacs:.4f}   (multiply-accumulates)")
    print(f"  GFLOPs / image    {res.gflops:.4f}   (= 2 x GMACs)")
    print(f"  train img/s       {num(res.train_img_per_s, '.1f')}   (forward + backward + SGD step)")
    print(f"  inference img/s   {num(res.infer_img_per_s, '.1f')}")
    print(f"  peak memory (MB)  {num(res.peak_memory_mb, '.1f')}   (model, gradients and "
          f"activations of one training step; {'process RSS high-water' if res.device == 'cpu' else 'CUDA allocator'})")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from papernets.bench.runner import load_protocol, run_bench, select_rows
    from papernets.engine.trainer import TrainingInterrupted

    name = args.protocol or ("classic" if torch.cuda.is_available() else "fashion-budget")
    protocol = load_protocol(name)
    rows = select_rows(protocol, args.models)
    results = Path(args.results)
    try:
        if args.sweep:
            from papernets.bench.budget import run_sweep

            if args.set:
                raise UsageError("--sweep takes its settings from the protocol's sweep section, not --set.")
            families = run_sweep(protocol, rows, Path(args.out), results, sys.stderr)
            print(f"sweep {protocol.name}: {len(families)} families -> {results / protocol.name}-sweep.md, .json")
            return EXIT_OK
        records = run_bench(protocol, rows, Path(args.out), results, args.set or [], sys.stderr, args.retry_failed)
    except TrainingInterrupted as exc:
        print(f"papernets: {exc}; the run's state is saved. Run the same command again to continue the bench.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = [r["id"] for r in records if r.get("status") != "ok"]
    print(f"bench {protocol.name}: {len(records)} models" + (f", {len(failed)} failed ({', '.join(failed)})"
                                                             if failed else "")
          + f" -> {results / protocol.name}.md, .csv, .json, .html and plots")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad argument and where the accepted ones are listed, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="papernets", description=__doc__.splitlines()[0].strip('"`. '))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from papernets._version import __version__

    parser.add_argument("--version", action="version", version=f"papernets {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model; writes a run directory")
    t.add_argument("--config", help="a YAML config file, or a shipped one by name: quickstart, base, "
                                    "fashion-mnist-fast, fashion-mnist-airbench")
    t.add_argument("--model", help="model name (see `papernets models`)")
    t.add_argument("--dataset", help="fashion-mnist, mnist, cifar10, cifar100, imagefolder, synthetic")
    t.add_argument("--data-root", dest="data_root", help="folder holding the dataset")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--image-size", dest="image_size", type=int)
    t.add_argument("--optimizer", help="sgd, adam, adamw, rmsprop, lamb")
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="parent folder of the run directory (default runs/)")
    t.add_argument("--name", help="run directory name (default <model>-<dataset>-<time>)")
    t.add_argument("--sam", action="store_true", default=None, help="sharpness-aware minimization (optim.sam=true)")
    t.add_argument("--recipe", choices=["paper"],
                   help="the model paper's optimizer, schedule and regularization (papernets/configs/recipes/)")
    t.add_argument("--resume", metavar="RUN|CKPT", help="continue a run from its directory or a checkpoint")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=0.1")
    t.set_defaults(func=cmd_train)

    sc = sub.add_parser("schedule", help="plot the learning rate per step of a config (PNG) and print values")
    sc.add_argument("--config", help="YAML config file")
    sc.add_argument("--model", help="model name (for --recipe)")
    sc.add_argument("--dataset", help="dataset (for the steps per epoch)")
    sc.add_argument("--data-root", dest="data_root")
    sc.add_argument("--epochs", type=int)
    sc.add_argument("--batch-size", dest="batch_size", type=int)
    sc.add_argument("--lr", type=float)
    sc.add_argument("--recipe", choices=["paper"], help="show the paper recipe's schedule")
    sc.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int,
                    help="optimizer steps per epoch (default: from the dataset, data.limit and the batch size)")
    sc.add_argument("--out", default="schedule.png", help="PNG file to write (default schedule.png)")
    sc.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    sc.set_defaults(func=cmd_schedule)

    e = sub.add_parser("eval", help="evaluate a checkpoint or exported ONNX file (top-1, top-5, loss)")
    e.add_argument("checkpoint", help="checkpoint file, run directory, or .onnx file (papernets export)")
    e.add_argument("--dataset", help="evaluate on another dataset with the same classes")
    e.add_argument("--data-root", dest="data_root")
    e.add_argument("--split", choices=["test", "val", "train"], default="test")
    e.add_argument("--limit", type=int, help="only the first N images of the split (as data.limit)")
    e.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="where to write per_class.csv, confusion.csv and plots/confusion.png (default: "
                                 "RUN/eval-<dataset>-<split>/)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k labels of images with a trained checkpoint or exported ONNX file")
    p.add_argument("checkpoint", help="checkpoint file, run directory, or .onnx file (papernets export)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", dest="top_k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    x = sub.add_parser("export", help="write a trained model as ONNX, TorchScript or safetensors, checked")
    x.add_argument("checkpoint", help="checkpoint file or run directory")
    x.add_argument("--format", required=True, choices=["onnx", "torchscript", "safetensors"])
    x.add_argument("--out", help="the file to write (default: RUN/<model>.onnx, .ts or .safetensors)")
    x.add_argument("--image-size", dest="image_size", type=int, help="input size (default: the run's)")
    x.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    x.add_argument("--no-check", dest="no_check", action="store_true",
                   help="keep the file even if its logits differ from the model's by more than "
                        "1e-4 x max(1, largest |logit|)")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("runs", help="one line per run under a folder: model, epochs, accuracy, time, status")
    r.add_argument("dir", nargs="?", default="runs", help="the folder to search (default runs)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)

    m = sub.add_parser("models", help="list models: paper, year, params, GMACs")
    m.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    m.add_argument("--json", action="store_true")
    m.add_argument("--markdown", action="store_true", help="the table of docs/models.md (adds 28x28 grayscale figures)")
    m.set_defaults(func=cmd_models)

    pr = sub.add_parser("profile", help="params, GMACs, GFLOPs, img/s and peak memory of a model")
    pr.add_argument("model")
    pr.add_argument("--image-size", dest="image_size", type=int)
    pr.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    pr.add_argument("--in-chans", dest="in_chans", type=int, default=3)
    pr.add_argument("--num-classes", dest="num_classes", type=int, default=1000)
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--steps", type=int, default=5, help="timed steps")
    pr.add_argument("--no-timing", dest="no_timing", action="store_true", help="only count params and MACs")
    cl = pr.add_mutually_exclusive_group()
    cl.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    cl.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_profile)

    b = sub.add_parser("bench", help="train and profile every model of a protocol; tables, plots, HTML report")
    b.add_argument("--protocol", help="a shipped protocol (fashion-budget, fashion-quick, fashion-paper, classic) "
                                      "or a protocol YAML file (default: fashion-budget on a CPU, classic on a GPU)")
    b.add_argument("--models", help="narrow or widen the default rows: comma list of row ids, model names or "
                                    "fnmatch patterns, e.g. 'resnet*,vit_b_16'")
    b.add_argument("--out", default="runs/bench", help="parent of the run directories, OUT/<protocol>/<row>/ "
                                                        "(default runs/bench)")
    b.add_argument("--results", default="docs/results", help="where the tables, plots and report go "
                                                             "(default docs/results)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key for every row")
    b.add_argument("--retry-failed", dest="retry_failed", action="store_true",
                   help="train the rows that failed before again (by default a recorded failure is kept)")
    b.add_argument("--sweep", action="store_true",
                   help="run the protocol's sweep (short runs choosing each family's settings on validation) "
                        "instead of the table")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("papernets: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("papernets: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from papernets.engine.trainer import TrainingDiverged

        if args.debug:  # the traceback, and the same exit code as without --debug
            import traceback

            traceback.print_exc()
            return EXIT_USAGE if isinstance(exc, PapernetsError) else EXIT_FAILURE
        if isinstance(exc, PapernetsError):
            print(f"papernets: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, TrainingDiverged):
            print(f"papernets: training diverged: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"papernets: failed: {type(exc).__name__}: {message} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
