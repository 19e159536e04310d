"""The streaming input pipeline against the in-memory one, on generated folders of JPEGs.

    python benchmarks/stream_pipeline.py --folder /tmp/jpegs --out docs/results/stream_pipeline.md

Writes folders of JPEG (and some PNG) images of mixed sizes (100-600 px a side, a fifth of them grayscale, 10
classes) with 2,500 and 5,000 training images (``--sizes``), then measures, one measurement after the other:

1. peak memory of a 1-epoch training run at 224 px (``papernets train``, LeNet-5 so that the data dominates): the
   largest proportional set size (PSS, shared pages split between the processes that share them) of the run's
   whole process tree, sampled every 0.1 s, for each folder size and pipeline;
2. the time from the command's start to the end of the first training step (5,000 images), per pipeline;
3. the pipeline alone (decode + random-resized crop + flip to 224 px), images/s with 1 and with 2 workers;
4. ResNet-18 at 224 px: training images/s end to end with the stream pipeline (2 workers) against the model's
   training step alone on a random batch of the same size, in the same process session.

Every figure names the machine's CPU; nothing else should run on the cores meanwhile.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from papernets.engine.speed import cpu_label

CLASSES = [f"class{i}" for i in range(10)]


def make_folder(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """``train`` and ``test`` images split evenly over the classes; kept when already written."""
    marker = root / ".complete"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count // len(CLASSES)):
                w, h = (int(v) for v in rng.integers(100, 601, 2))
                base = rng.random((h // 8 + 1, w // 8 + 1, 3)) * 160 + c * 9  # smooth blobs, like a photo
                arr = np.kron(base, np.ones((8, 8, 1)))[:h, :w] + rng.random((h, w, 3)) * 40
                img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
                if i % 5 == 0:
                    img = img.convert("L")
                if i % 7 == 0:
                    img.save(folder / f"{i:05d}.png")
                else:
                    img.save(folder / f"{i:05d}.jpg", quality=90)
    marker.write_text("")
    return root


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def run_train(args: list[str], cwd: Path) -> dict[str, float]:
    """Run ``papernets train ARGS``; its peak PSS (MB, process tree), seconds to the first step, and wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "papernets", "train", *args], cwd=cwd, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    peak, first, lines = 0, None, []

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, sum(_pss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for line in proc.stderr:
        lines.append(line)
        if first is None and re.match(r"epoch 1/\d+ 1/\d+ ", line):
            first = time.perf_counter() - start
    proc.wait()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"papernets train {' '.join(args)} failed:\n{''.join(lines[-20:])}")
    return {"peak_mb": peak / 1024, "first_step_s": first or float("nan"), "wall_s": time.perf_counter() - start}


def pipeline_rate(root: Path, workers: int, images: int, size: int = 224) -> float:
    """Images/s of the stream pipeline alone: decode, random-resized crop and flip, batches of 32."""
    from papernets.data.stream import Augment, StreamLoader, index_folder

    index = index_folder(root)
    loader = StreamLoader(index.root, index.train[:images], index.gray, 32, size, (0.5,) * 3, (0.25,) * 3, True,
                          torch.device("cpu"), augment=Augment(), workers=workers)
    seen = 0
    it = loader.batches(0)
    x, _ = next(it)  # the workers start
    t0 = time.perf_counter()
    for x, _ in it:
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def model_rate(name: str, batch: int, size: int, steps: int = 5) -> float:
    from papernets.bench.profile import measure_throughput
    from papernets.registry import create_model

    model = create_model(name, num_classes=10, img_size=size).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    return measure_throughput(model, x, train=True, steps=steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/papernets-jpegs"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000])
    parser.add_argument("--out", type=Path, default=Path("docs/results/stream_pipeline.md"))
    parser.add_argument("--resnet-images", type=int, default=352, help="images of the ResNet-18 end-to-end run")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = args.folder / "runs"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        root = make_folder(args.folder / f"train{n}", n, 500)
        cache = args.folder / f"index-cache-{time.time_ns()}"  # the first run on the folder builds the index
        for pipeline, label in (("stream", "stream, index built"), ("stream", "stream, index cached"),
                                ("memory", "memory")):
            res = run_train(["--model", "lenet5", "--dataset", "imagefolder", "--data-root", str(root), "--epochs",
                             "1", "--image-size", "224", "--batch-size", "64", "--out", str(work), "--name",
                             f"{pipeline}-{n}-{time.time_ns()}", "--set", f"data.pipeline={pipeline}", "--set",
                             f"data.index_cache={cache}", "--set", "train.log_every=100000", "--set",
                             "output.plots=false"], work)
            rows.append((n, label, res))
            print(f"{n} images, {label}: peak {res['peak_mb']:.0f} MB, first step after "
                  f"{res['first_step_s']:.1f} s, {res['wall_s']:.0f} s in all", flush=True)
    biggest = args.folder / f"train{max(args.sizes)}"
    rates = {w: pipeline_rate(biggest, w, 1000) for w in (1, 2)}
    for w, r in rates.items():
        print(f"pipeline alone, {w} worker(s): {r:.1f} img/s ({r / w:.1f} per worker)", flush=True)
    name = f"resnet18-{time.time_ns()}"
    run_train(["--model", "resnet18", "--dataset", "imagefolder", "--data-root", str(biggest), "--epochs", "1",
               "--image-size", "224", "--batch-size", "32", "--out", str(work), "--name", name, "--set",
               "data.pipeline=stream", "--set", "data.workers=2", "--set", f"data.limit={args.resnet_images}",
               "--set", "data.eval_limit=32", "--set", f"data.index_cache={cache}", "--set", "output.plots=false",
               "--set", "output.checkpoint=false", "--set", "output.save_best=false"], work)
    with (work / name / "metrics.csv").open() as f:
        e2e_rate = float(next(csv.DictReader(f))["train_img_per_s"])
    alone = model_rate("resnet18", 32, 224)
    print(f"ResNet-18 224 px: {e2e_rate:.1f} img/s end to end, {alone:.1f} img/s the model step alone", flush=True)
    write_table(args, rows, rates, e2e_rate, alone)
    return 0


def write_table(args, rows, rates, e2e_rate, alone) -> None:
    lines = [
        "# Streaming pipeline against in-memory pipeline",
        "",
        f"Written by `python benchmarks/stream_pipeline.py --out {args.out}` on {cpu_label()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}. Generated folders of JPEG and PNG images "
        "(100-600 px a side, a fifth grayscale, 10 classes, 500 test images), trained at 224 px.",
        "",
        "## Peak memory of a 1-epoch run (LeNet-5, batch 64)",
        "",
        "Peak PSS of the run's process tree (the trainer and its decoding workers; shared pages split between them), "
        "sampled every 0.1 s. Time to the first step: from the command's start (imports, index, normalization "
        "statistics, decoding for the memory pipeline, model) to the end of the first training step. The first run "
        "on a folder builds its index (image headers and the statistics of 1,000 images); later runs read it.",
        "",
        "| training images | pipeline | peak memory (MB) | first training step after (s) | whole run (s) |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, pipeline, r in rows:
        lines.append(f"| {n:,} | {pipeline} | {r['peak_mb']:.0f} | {r['first_step_s']:.1f} | {r['wall_s']:.0f} |")
    lines += [
        "",
        "## The pipeline alone (decode, random-resized crop and flip to 224 px)",
        "",
        "| workers | images/s | per worker |",
        "|---:|---:|---:|",
    ]
    for w, r in rates.items():
        lines.append(f"| {w} | {r:.1f} | {r / w:.1f} |")
    lines += [
        "",
        "## ResNet-18 at 224 px, batch 32",
        "",
        "| | images/s |",
        "|---|---:|",
        f"| training end to end, stream pipeline, 2 workers ({args.resnet_images} images, 1 epoch) | {e2e_rate:.1f} |",
        f"| the training step alone (random batch, same process threads) | {alone:.1f} |",
        f"| overhead of the input pipeline | {(1 - e2e_rate / alone) * 100:.1f}% |",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
