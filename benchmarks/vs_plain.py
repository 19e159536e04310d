"""papernets' trainer end to end against the plain PyTorch way: the training loop a reader of the official PyTorch
tutorial ("Training a classifier") writes, on the same model, data, batch size, epochs and optimizer.

    python benchmarks/vs_plain.py [--models resnet18 mobilenet_v2 efficientnet_b0] [--epochs 1] [--batch-size 128]
        [--images 12000] [--rounds 3] [--out docs/results/speed.md] [--json FILE] [--resume [--again]]

Both sides train a fresh model (``papernets.create_model(name, num_classes=10, in_chans=1, img_size=28)``, the
small-image form) on the same first ``--images`` images of papernets' Fashion-MNIST training split (the 54,000
images left after its seeded 10% validation hold-out, in index order: what ``data.limit`` keeps), at 28 px, with
Adam at lr 0.001 (papernets' default optimizer), for ``--epochs`` epochs at batch ``--batch-size``, with the same
augmentation (papernets' default for Fashion-MNIST: random crop with zero padding 2 and horizontal flip), and
neither evaluates anything inside the timed region.

The plain side, written as the tutorial writes it: ``torchvision.datasets.FashionMNIST(root, train=True,
download=False, transform=...)`` on the installed files (papernets finds them where ``data/datasets.py`` looks,
e.g. Debian's ``dataset-fashion-mnist`` under /usr/share/datasets/fashion-mnist, gzipped; they are copied once,
uncompressed, into torchvision's ``FashionMNIST/raw`` layout in a temporary folder, as ``download=True`` would have
left them), ``transforms.Compose([RandomCrop(28, padding=2), RandomHorizontalFlip(), ToTensor(),
Normalize((0.2860,), (0.3530,))])``, a ``torch.utils.data.Subset`` of the same image indices,
``DataLoader(..., batch_size=B, shuffle=True, num_workers=2)``, the model in fp32 and NCHW on the tutorial's
``device`` (CUDA when there is one, else the CPU), ``nn.CrossEntropyLoss`` and ``optim.Adam(net.parameters(),
lr=0.001)``, and per batch ``optimizer.zero_grad(); outputs = net(inputs); loss = criterion(outputs, labels);
loss.backward(); optimizer.step(); running_loss += loss.item()``. No AMP, no channels_last, no compile, and glibc's
malloc as it comes: the papernets side's runtime keeps freed memory for the whole process (``engine/allocator.py``),
so every plain round first sets glibc's settled defaults again (``set_malloc_cache(False)``). (A model
whose training forward returns auxiliary logits is trained on its main logits.)

The papernets side: ``papernets.train({...})`` with the same model, dataset (``fashion-mnist``), ``data.image_size:
28``, ``data.limit: N``, ``optim: adam, lr 0.001``, ``train.epochs``, ``train.batch_size`` and ``train.test: false``
(no test split at the end); everything else at papernets' defaults, so its runtime chooses precision (bf16 autocast
for the families that train in bf16 on a CPU with bf16 instructions), memory format (channels_last for the
families measured faster in it) and compilation; the output and the table say what it chose. Its run directories
go to a temporary folder, deleted afterwards.

What each side's time includes (the figure compared: the wall time a user waits for the training epochs, with the
data loading of every batch included on both sides):

- plain, per epoch: from the start of ``for inputs, labels in trainloader`` (the DataLoader starting its two
  worker processes, which it does every epoch, and their per-image work: PIL image, crop, flip, ToTensor,
  Normalize, collation) through the epoch's last ``optimizer.step()`` and ``loss.item()``;
- papernets, per epoch: ``epoch_time_s`` of the run's metrics.csv: the trainer's loop over the epoch's batches,
  from before its first batch is cut from the in-memory uint8 tensors (crop, flip and normalization as
  whole-batch tensor operations in the training process, then the memory format) through the last step (forward,
  backward and Adam step in the chosen runtime, a one-off compilation where it compiles, loss and accuracy
  bookkeeping, progress output). Not the validation after each epoch, the checkpoints or metrics.csv.
- Neither includes reading the files into memory or building the model and optimizer. Those are in the "whole"
  columns, shown for information: plain, from constructing the dataset (torchvision reads the uncompressed IDX
  files) to the end of the last epoch; papernets, the whole ``papernets.train`` call: reading and decompressing
  the installed files, the validation split, model, loaders, the epochs, validation after each epoch on the
  held-out images (at most ``--images`` of them), checkpoints, metrics, plots and summary.json.

img/s: the images trained (epochs x images) over the sum of the epoch times; s/epoch: that sum over the epochs. A
last batch of a single image is dropped by papernets (batch norm needs two), so ``--images`` must not leave one:
both sides then train exactly the same number of images and steps, which the script checks. Per model the two
sides run in alternating rounds in one process (plain, papernets, plain, papernets, ...; ``--rounds``, default 3)
and each figure is the median over the rounds; ratio: the median of the rounds' ours / plain img/s (above 1:
papernets is faster), with the lowest and highest round.

Results: a section of ``--out`` (default docs/results/speed.md) between the markers ``<!-- vs_plain:start -->``
and ``<!-- vs_plain:end -->``, appended at the end of the file when absent and otherwise replaced, the rest of the
file untouched; its rows start with the bare model name (no backticks), so the reference-comparison table's parser
(``papernets.bench.compare.read_markdown``, which reads every line starting with "| `") does not take them for
its rows. ``python -m papernets.bench.compare`` rewrites that whole file (``--merge``, ``--rewrite``); afterwards
``python benchmarks/vs_plain.py --resume`` with the same settings writes the section back from the JSON sidecar
without measuring anything. The measured rows are kept in the sidecar (``--json``, default ``vs_plain.json`` next to
``--out``: docs/results/vs_plain.json), and the section is rewritten after every model, so an interrupted run keeps
what it measured; ``--resume`` keeps the sidecar's rows (same epochs, batch and images, or it refuses) and measures
only the models it lacks; with ``--again`` it measures the ``--models`` rows again (after a change to the
trainer) and keeps the others in their places. The section names the commands that measured its rows, the CPU
(``papernets.engine.speed.cpu_label()``), threads and torch version of each row.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms

import papernets
from papernets.config import DataConfig
from papernets.data.datasets import DATASETS, DatasetError, _candidate_roots, _find_file
from papernets.engine import allocator
from papernets.engine.rundir import atomic_write_text
from papernets.engine.speed import cpu_label

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- vs_plain:start -->", "<!-- vs_plain:end -->"
DEFAULT_MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0"]
IMAGE_SIZE = 28
LR = 0.001  # papernets' default optimizer (optim.name: adam, optim.lr: 0.001), set explicitly on both sides
PLAIN_WORKERS = 2
# The plain side's literal transform values (the tutorial writes them out); check_same_work() ties them to papernets'.
FASHION_MEAN, FASHION_STD, FASHION_PADDING = (0.2860,), (0.3530,), 2
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_same_work() -> None:
    """The plain side's transforms do what papernets does by default to Fashion-MNIST (crop padding, flip, mean,
    std); a change in papernets' defaults stops the script rather than comparing different work."""
    mean, std, flip, padding = DATASETS["fashion-mnist"]
    if (mean, std, flip, padding) != (FASHION_MEAN, FASHION_STD, True, FASHION_PADDING):
        raise SystemExit(f"papernets' Fashion-MNIST defaults changed to mean {mean}, std {std}, flip {flip}, crop "
                         f"padding {padding}: update the plain side's transforms in benchmarks/vs_plain.py.")


def fashion_files() -> list[Path] | None:
    """The installed Fashion-MNIST files (train images, train labels, test images, test labels) from the first
    folder papernets' loader would read them from (``data/datasets.py``'s search order), or None."""
    for directory in _candidate_roots("fashion-mnist", None):
        files = [_find_file(directory, s) for s in STEMS]
        if all(files):
            return files  # type: ignore[return-value]
    return None


def torchvision_root(folder: Path) -> Path:
    """A root for ``torchvision.datasets.FashionMNIST`` (``root/FashionMNIST/raw/<uncompressed IDX files>``, as its
    ``download=True`` leaves it) holding the installed files."""
    files = fashion_files()
    if files is None:
        raise DatasetError("Fashion-MNIST not found where papernets looks (docs/datasets.md); install Debian's "
                           "dataset-fashion-mnist package (apt-get install dataset-fashion-mnist).")
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path, stem in zip(files, STEMS, strict=True):
        data = path.read_bytes()
        (raw / stem).write_bytes(gzip.decompress(data) if path.suffix == ".gz" else data)
    return folder


def train_indices(total: int, images: int) -> list[int]:
    """The indices (into the 60,000 official training images) of the first ``images`` images of papernets'
    training split: ``load_dataset`` holds out a seeded ``val_fraction`` for validation, keeps the rest in index
    order and ``data.limit`` keeps the first ``images`` of them."""
    d = DataConfig()
    n_val = int(round(total * d.val_fraction))
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(d.split_seed))
    return perm[n_val:].sort().values[:images].tolist()


# ----------------------------------------------------------------------------------------------- the two sides


def run_plain(name: str, tv_root: Path, indices: list[int], epochs: int, batch_size: int) -> dict[str, Any]:
    """The tutorial's loop (see the docstring); times per epoch and the images and steps it trained."""
    if allocator.malloc_cache_enabled():  # left on by the papernets side's runtime in an earlier round
        allocator.set_malloc_cache(False)
    t_whole = time.perf_counter()
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose([
        transforms.RandomCrop(28, padding=2),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.2860,), (0.3530,)),
    ])
    trainset = torchvision.datasets.FashionMNIST(root=str(tv_root), train=True, download=False, transform=transform)
    trainset = torch.utils.data.Subset(trainset, indices)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True,
                                              num_workers=PLAIN_WORKERS)
    net = papernets.create_model(name, num_classes=10, in_chans=1, img_size=IMAGE_SIZE).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(net.parameters(), lr=LR)
    epoch_s, images, steps = [], 0, 0
    for _epoch in range(epochs):
        net.train()
        running_loss = 0.0
        t0 = time.perf_counter()
        for inputs, labels in trainloader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            if isinstance(outputs, tuple | list):  # auxiliary heads (GoogLeNet, Inception-v3): the main logits
                outputs = outputs[0]
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # the tutorial keeps the running loss (and prints it now and then)
            images += len(labels)
            steps += 1
        epoch_s.append(time.perf_counter() - t0)
    return {"epoch_s": epoch_s, "images": images, "steps": steps, "whole_s": time.perf_counter() - t_whole}


def run_ours(name: str, epochs: int, batch_size: int, images: int, run_dir: Path) -> dict[str, Any]:
    """``papernets.train`` with the same model, data, batch, epochs and optimizer, the rest at its defaults."""
    config = {
        "model": {"name": name},
        "data": {"name": "fashion-mnist", "image_size": IMAGE_SIZE, "limit": images},
        "optim": {"name": "adam", "lr": LR},
        "train": {"epochs": epochs, "batch_size": batch_size, "test": False},
    }
    t_whole = time.perf_counter()
    run = papernets.train(config, run_dir=run_dir)
    whole = time.perf_counter() - t_whole
    epoch_s = [m["epoch_time_s"] for m in run.metrics]
    seen = sum(round(m["train_img_per_s"] * m["epoch_time_s"]) for m in run.metrics)
    return {"epoch_s": epoch_s, "images": seen, "steps": int(run.summary["steps"]), "whole_s": whole,
            "runtime": run.summary["runtime"]}


def runtime_label(rt: dict[str, Any]) -> str:
    return (f"{'fp32' if rt['amp'] == 'off' else rt['amp']}, {'channels_last' if rt['channels_last'] else 'NCHW'}"
            + (", compiled" if rt.get("compile") else "") + (", malloc cache" if rt.get("malloc_cache") else ""))


def measure(name: str, args: argparse.Namespace, tv_root: Path, work: Path) -> dict[str, Any]:
    """``args.rounds`` alternating rounds (plain, then papernets) of one model; the row of medians."""
    indices = train_indices(60_000, args.images)
    rounds = []
    for r in range(args.rounds):
        plain = run_plain(name, tv_root, indices, args.epochs, args.batch_size)
        run_dir = work / f"{name}-round{r}"
        try:
            ours = run_ours(name, args.epochs, args.batch_size, args.images, run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        if (plain["images"], plain["steps"]) != (ours["images"], ours["steps"]):
            raise RuntimeError(f"{name}: the sides trained different work: plain {plain['images']} images in "
                               f"{plain['steps']} steps, papernets {ours['images']} in {ours['steps']}")
        p_s, o_s = sum(plain["epoch_s"]), sum(ours["epoch_s"])
        rounds.append({"plain_img_s": plain["images"] / p_s, "ours_img_s": ours["images"] / o_s,
                       "plain_epoch_s": p_s / args.epochs, "ours_epoch_s": o_s / args.epochs,
                       "plain_whole_s": plain["whole_s"], "ours_whole_s": ours["whole_s"],
                       "ratio": (ours["images"] / o_s) / (plain["images"] / p_s),
                       "images": plain["images"], "steps": plain["steps"], "runtime": ours["runtime"]})
        print(f"  round {r + 1}/{args.rounds}: plain {rounds[-1]['plain_img_s']:.1f} img/s, papernets "
              f"{rounds[-1]['ours_img_s']:.1f} img/s ({runtime_label(ours['runtime'])}), ratio "
              f"{rounds[-1]['ratio']:.2f}", flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    rt = rounds[-1]["runtime"]
    return {
        "model": name, "images": rounds[0]["images"], "steps": rounds[0]["steps"],
        "runtime": {k: rt.get(k, False) for k in ("amp", "channels_last", "compile", "malloc_cache")},
        "runtime_why": rt.get("why", {}),
        **{k: med(k) for k in ("plain_img_s", "ours_img_s", "plain_epoch_s", "ours_epoch_s", "plain_whole_s",
                               "ours_whole_s", "ratio")},
        "ratio_min": min(r["ratio"] for r in rounds), "ratio_max": max(r["ratio"] for r in rounds),
        "rounds": len(rounds), "cpu": machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def machine() -> str:
    """The CPU (``cpu_label``), and the GPU where both sides trained on one (the tutorial's ``device``)."""
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return cpu_label() + gpu


# ------------------------------------------------------------------------------------------------- publishing


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository; a path outside it by its name only (never an absolute path)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return p.name


def command_of(args: argparse.Namespace) -> str:
    parts = ["python benchmarks/vs_plain.py", "--models", *args.models, "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--images", str(args.images), "--rounds", str(args.rounds),
             "--out", repo_relative(args.out)]
    if args.json:
        parts += ["--json", repo_relative(args.json)]
    if args.resume:
        parts.append("--resume")
    if args.again:
        parts.append("--again")
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def settings_of(args: argparse.Namespace) -> dict[str, int]:
    return {"epochs": args.epochs, "batch_size": args.batch_size, "images": args.images, "image_size": IMAGE_SIZE}


COLUMNS = ("| model | images | steps | papernets runtime | plain img/s | papernets img/s | papernets / plain "
           "| rounds | plain s/epoch | papernets s/epoch | plain whole s | papernets whole s | CPU |")


def section(rows: list[dict[str, Any]], settings: dict[str, int], commands: list[str],
            json_name: str = "vs_plain.json") -> str:
    """The Markdown section, markers included."""
    machines = list(dict.fromkeys(f"{r['cpu']}, {r['threads']} threads, torch {r['torch']}" for r in rows))
    e, b, n = settings["epochs"], settings["batch_size"], settings["images"]
    lines = [
        START,
        "",
        f"## papernets' trainer against the plain PyTorch loop, Fashion-MNIST at {settings['image_size']} px, "
        f"batch {b}, {n:,} images, {e} epoch{'s' if e != 1 else ''}",
        "",
        "Measured by " + ", then ".join(f"`{c}`" for c in commands) + " on " + "; ".join(machines or ["-"])
        + ". Both sides train the same model (small-image form) on the same first "
        f"{n:,} images of papernets' Fashion-MNIST training split, at batch {b}, for {e} epoch{'s' if e != 1 else ''}, "
        "with Adam (lr 0.001), random crop (padding 2) and horizontal flip, and evaluate nothing in the timed "
        "region. Plain: the loop of PyTorch's \"Training a classifier\" tutorial (torchvision `FashionMNIST`, "
        f"transforms, `DataLoader(shuffle=True, num_workers={PLAIN_WORKERS})`, fp32, NCHW, `loss.backward(); "
        "optimizer.step()` per batch). papernets: `papernets.train` with `train.test: false` and everything else "
        "at its defaults (its runtime's choice of precision, memory format and compilation in the runtime column). "
        "Timed: the training epochs with all their data loading (plain: from the start of the loop over the "
        "DataLoader, its worker start-up included, to the last step; papernets: metrics.csv's `epoch_time_s`, "
        "from the first batch cut from the in-memory images to the last step); neither the reading of the files "
        "nor building the model, nor papernets' validation after each epoch and its checkpoints. img/s: images "
        "trained over the epochs' time; ratio: papernets img/s / plain img/s (above 1: papernets is faster), the "
        "median of alternating rounds in one process (plain, papernets, ...), with the lowest and highest round "
        "and the number of rounds. Whole (for information, not the comparison): plain from constructing the "
        "dataset to the last step; papernets the whole `papernets.train` call (loading, validation, checkpoints, "
        "plots included). Written by `benchmarks/vs_plain.py` (its docstring has the details); rows kept in "
        f"`{json_name}` next to this file for `--resume`.",
        "",
        COLUMNS,
        "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:  # the first cell without backticks: papernets.bench.compare.read_markdown reads "| `" rows
        cells = [r["model"], str(r["images"]), str(r["steps"]), runtime_label(r["runtime"]),
                 f"{r['plain_img_s']:.1f}", f"{r['ours_img_s']:.1f}", f"{r['ratio']:.2f}",
                 f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f} ({r['rounds']})", f"{r['plain_epoch_s']:.1f}",
                 f"{r['ours_epoch_s']:.1f}", f"{r['plain_whole_s']:.1f}", f"{r['ours_whole_s']:.1f}", r["cpu"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def publish(out: Path, text: str) -> None:
    """Put ``text`` (a section between START and END) into ``out``: in place of the old section, or at the end."""
    old = out.read_text() if out.is_file() else ""
    start, end = old.find(START), old.find(END)
    if start != -1 and end > start:
        new = old[:start] + text.rstrip("\n") + old[end + len(END):]
        if not new.endswith("\n"):
            new += "\n"
    elif START in old or END in old:
        raise SystemExit(f"{repo_relative(out)} has one {START} / {END} marker without the other; fix it by hand.")
    else:
        new = (old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, new)


def save(json_path: Path, out: Path, rows: list[dict[str, Any]], settings: dict[str, int],
         commands: list[str]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"settings": settings, "commands": commands, "rows": rows}
    atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
    publish(out, section(rows, settings, commands, json_path.name))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=12_000, help="training images per epoch (data.limit)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="docs/results/speed.md", help="the Markdown file that gets the section")
    parser.add_argument("--json", help="the rows' sidecar (default: vs_plain.json next to --out)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the sidecar's rows and measure only the models it lacks")
    parser.add_argument("--again", action="store_true",
                        help="with --resume: measure the --models rows again (after a change), keeping the others")
    args = parser.parse_args(argv)
    if args.again and not args.resume:
        parser.error("--again measures the --models rows of a --resume run again; give both")
    if min(args.epochs, args.batch_size, args.images, args.rounds) < 1:
        parser.error("--epochs, --batch-size, --images and --rounds must be at least 1")
    train_split = 60_000 - int(round(60_000 * DataConfig().val_fraction))
    if args.images > train_split:
        parser.error(f"--images {args.images}: papernets' training split has {train_split:,} images")
    if args.images % args.batch_size == 1:
        parser.error(f"--images {args.images} at --batch-size {args.batch_size} leaves a last batch of one image, "
                     "which papernets drops (batch norm needs two): choose another --images")
    check_same_work()
    out = Path(args.out)
    json_path = Path(args.json) if args.json else out.with_name("vs_plain.json")
    settings, command = settings_of(args), command_of(args)
    kept: dict[str, dict[str, Any]] = {}
    commands: list[str] = []
    order: list[str] = []  # the sidecar's row order, which a row measured --again keeps
    if args.resume:
        if not json_path.is_file():
            parser.error(f"--resume needs the rows of an earlier run in {repo_relative(json_path)}")
        saved = json.loads(json_path.read_text())
        if saved["settings"] != settings:
            parser.error(f"--resume: {repo_relative(json_path)} was measured with {saved['settings']}, not "
                         f"{settings}; use the same --epochs, --batch-size and --images, or a new --out/--json")
        kept = {r["model"]: r for r in saved["rows"] if not (args.again and r["model"] in args.models)}
        order = [r["model"] for r in saved["rows"]]
        commands = list(saved["commands"])
    models = [*kept, *[m for m in dict.fromkeys(args.models) if m not in kept]]
    rows = [kept[m] for m in kept]
    todo = [m for m in models if m not in kept]
    if not todo:  # nothing to measure: write the section back (e.g. after bench.compare rewrote the file)
        save(json_path, out, rows, settings, commands)
        print(f"nothing to measure; section written to {repo_relative(out)}")
        return
    with tempfile.TemporaryDirectory(prefix="vs_plain-") as tmp:
        tv_root = torchvision_root(Path(tmp) / "data")
        for name in todo:
            print(f"{name}: {args.rounds} round(s) of plain then papernets, {args.epochs} epoch(s) of "
                  f"{args.images:,} images at batch {args.batch_size}", flush=True)
            row = measure(name, args, tv_root, Path(tmp))
            if command not in commands:
                commands.append(command)
            rows.append(row)
            rows.sort(key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))
            print(f"{name}: plain {row['plain_img_s']:.1f} img/s ({row['plain_epoch_s']:.1f} s/epoch), papernets "
                  f"{row['ours_img_s']:.1f} img/s ({row['ours_epoch_s']:.1f} s/epoch) -> papernets / plain "
                  f"{row['ratio']:.2f} (rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f}); papernets' runtime: "
                  f"{runtime_label(row['runtime'])} ({'; '.join(row['runtime_why'].values())}); "
                  f"{row['images']} images in {row['steps']} steps on each side; {row['cpu']}, "
                  f"{row['threads']} threads, torch {row['torch']}", flush=True)
            save(json_path, out, rows, settings, commands)
    print(f"section written to {repo_relative(out)}, rows to {repo_relative(json_path)}")


if __name__ == "__main__":
    main()
