"""The malloc cache's effect on the training and inference step: glibc's allocator as it comes against the
trainer's default on the CPU (``engine/allocator.py``), each side in fresh processes taking turns.

    python benchmarks/malloc_cache.py [--models NAME ...] [--size 28] [--batch 128] [--rounds 3] [--steps 3]
                                      [--out docs/results/malloc_cache.md] [--resume]

A process cannot go back to glibc's untouched allocator once ``mallopt`` has changed it (glibc's dynamic mmap
threshold stays off, and the heap the cache grew stays warm), so the two sides cannot alternate inside one process.
Instead every round starts two fresh Python processes, one after the other (off then on in even rounds, on then off
in odd ones), so that only one runs at a time and a slow spell hits both sides alike. Each child builds the model
(``create_model(name, num_classes=10, in_chans=1, img_size=28)`` at 28 px, the small-image form the benchmark
trains; at 224 px 3 channels and 1,000 classes) in the memory format and precision the trainer resolves for the
family on this CPU, with ``train.malloc_cache`` false (off: the process never calls ``mallopt``) or true (on), and
times ``--steps`` training steps (forward, backward, SGD step; after one warm-up step) and as many inference steps
(``papernets.bench.profile.measure_throughput``). Each figure is the median over the rounds, the speed-up the
median of the rounds' on / off ratios, with the lowest and highest. The share of the peak uses the counted MACs
(``meta_model_stats``) and this run's fp32 (or bf16) matmul peak, as ``benchmarks/mfu.py`` does.

Default models: the lowest rows of the MFU table at 28 px and two whose step is dominated by dense matrix products
(ResNet-18, ViT-S/16). Rows live in a JSON file beside ``--out`` (``malloc_cache.json``) and the table is rewritten
after each row; ``--resume`` keeps the rows there and measures only the missing ones. Keep the cores quiet while it
runs. Needs glibc (the cache's own requirement).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "malloc_cache.md"
DEFAULT_MODELS = ["lenet5_bn", "shufflenet_v1_g3", "efficientnet_b0", "mobilenet_v2", "densenet40_k12",
                  "squeezenet1_1", "resnet18", "vit_s_16"]
SETTINGS = {28: (1, 10), 224: (3, 1000)}  # size -> (channels, classes)
COLUMNS = ["model", "size", "batch", "memory format", "precision", "train img/s, off", "train img/s, on",
           "train speed-up", "train % of peak, off -> on", "infer img/s, off", "infer img/s, on", "infer speed-up",
           "rounds", "CPU"]


def child(name: str, cache: bool, size: int, batch: int, steps: int) -> dict:
    """One side in this (fresh) process: img/s of training and inference in the trainer's runtime."""
    from papernets.bench.profile import measure_throughput
    from papernets.config import TrainConfig
    from papernets.engine.runtime import resolve_runtime
    from papernets.registry import create_model, get_entry

    entry = get_entry(name)
    rt = resolve_runtime(TrainConfig(malloc_cache=cache), entry.family, torch.device("cpu"), training=True)
    rt.apply()
    chans, classes = SETTINGS[size]
    torch.manual_seed(0)
    model = create_model(entry.name, num_classes=classes, in_chans=chans, img_size=size)
    x = torch.randn(batch, chans, size, size)
    if rt.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        train = measure_throughput(model, x, True, steps=steps, warmup=1)
        infer = measure_throughput(model, x, False, steps=steps, warmup=1)
    return {"train_ips": train, "infer_ips": infer, "malloc_cache": rt.malloc_cache,
            "memory_format": "channels_last" if rt.channels_last else "NCHW",
            "precision": "bf16" if rt.amp == "bf16" else "fp32"}


def run_child(name: str, cache: bool, size: int, batch: int, steps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--cache", "on" if cache else "off",
           "--size", str(size), "--batch", str(batch), "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()
        raise RuntimeError(f"{name} ({'on' if cache else 'off'}): {lines[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, size: int, batch: int, rounds: int, steps: int) -> dict:
    sides: dict[bool, list[dict]] = {False: [], True: []}
    for r in range(rounds):
        for cache in (False, True) if r % 2 == 0 else (True, False):
            sides[cache].append(run_child(name, cache, size, batch, steps))
        print(f"  {name} round {r + 1}/{rounds}: train off {sides[False][-1]['train_ips']:.1f}, on "
              f"{sides[True][-1]['train_ips']:.1f} img/s", flush=True)
    if sides[False][0]["malloc_cache"] or not sides[True][0]["malloc_cache"]:
        raise RuntimeError("the children did not run with the allocator settings asked for")
    ratios = {k: [on[k] / off[k] for off, on in zip(sides[False], sides[True], strict=True)]
              for k in ("train_ips", "infer_ips")}

    def med(cache: bool, key: str) -> float:
        return statistics.median(s[key] for s in sides[cache])

    return {"train_off": med(False, "train_ips"), "train_on": med(True, "train_ips"),
            "infer_off": med(False, "infer_ips"), "infer_on": med(True, "infer_ips"),
            "train_ratio": statistics.median(ratios["train_ips"]), "train_ratio_min": min(ratios["train_ips"]),
            "train_ratio_max": max(ratios["train_ips"]), "infer_ratio": statistics.median(ratios["infer_ips"]),
            "memory_format": sides[True][0]["memory_format"], "precision": sides[True][0]["precision"],
            "rounds": rounds}


def render(data: dict) -> str:
    from mfu import _pct

    rows = data["rows"]
    runs = sorted({r["run"] for r in rows})
    lines = [
        "# The malloc cache: glibc's allocator as it comes against the trainer's default on the CPU", "",
        "Written by " + ", then ".join(f"`{c}`" for c in data["commands"]) + ". Each side in fresh processes "
        "taking turns, one round after the other (off, on; on, off; ...): off, a process that never calls "
        "`mallopt`; on, `train.malloc_cache: true` (`engine/allocator.py`: no mmap, no trimming, freed memory kept "
        "for the next step). The trainer's memory format and precision for the family; training (forward, "
        "backward, SGD step) and inference img/s, the median of the rounds; speed-up: the median of the rounds' "
        "on / off ratios (lowest and highest in brackets); share of the peak as in `mfu.md` (3 x 2 x counted MACs "
        "x img/s over this run's matmul peak). Runs:", "",
        *[f"- {run}" for run in runs], "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["size"], r["model"])):
        if r.get("error"):
            lines.append("| " + " | ".join([f"`{r['model']}`", str(r["size"]), str(r["batch"]),
                                            f"failed: {r['error']}".replace("|", "\\|"), *["-"] * 9, r["cpu"]]) + " |")
            continue
        lines.append("| " + " | ".join([
            f"`{r['model']}`", str(r["size"]), str(r["batch"]), r["memory_format"], r["precision"],
            f"{r['train_off']:.1f}", f"{r['train_on']:.1f}",
            f"x{r['train_ratio']:.2f} ({r['train_ratio_min']:.2f}-{r['train_ratio_max']:.2f})",
            f"{_pct(r['train_pct_off'])} -> {_pct(r['train_pct_on'])}", f"{r['infer_off']:.1f}",
            f"{r['infer_on']:.1f}", f"x{r['infer_ratio']:.2f}", str(r["rounds"]), r["cpu"]]) + " |")
    good = [r for r in rows if not r.get("error")]
    if good:
        lines += ["", f"Training speed-up, median over {len(good)} rows: "
                  f"x{statistics.median(r['train_ratio'] for r in good):.2f} (lowest "
                  f"x{min(r['train_ratio'] for r in good):.2f}, highest x{max(r['train_ratio'] for r in good):.2f}); "
                  f"inference x{statistics.median(r['infer_ratio'] for r in good):.2f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "), allow_abbrev=False)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--size", type=int, default=28, choices=sorted(SETTINGS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side and round, after one warm-up")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true", help="keep the rows of --out's .json, measure the rest")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.cache == "on", args.size, args.batch, args.steps)))
        return 0
    for flag, value in (("--rounds", args.rounds), ("--steps", args.steps), ("--batch", args.batch)):
        if value < 1:
            print(f"malloc_cache: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mfu import _rel, describe_run, measure_peaks

    from papernets.engine import allocator
    from papernets.engine.counting import meta_model_stats
    from papernets.engine.rundir import atomic_write_text
    from papernets.registry import get_entry

    if not allocator.available():
        print(f"malloc_cache: the malloc cache {allocator.UNAVAILABLE}; this Python does not use it", file=sys.stderr)
        return 2
    try:
        names = list(dict.fromkeys(get_entry(n).name for n in args.models))
    except Exception as exc:  # an unknown model name
        print(f"malloc_cache: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    json_path = args.out.with_suffix(".json")
    data: dict = {"commands": [], "rows": []}
    if args.resume and json_path.is_file():
        data = json.loads(json_path.read_text())
    done = {(r["model"], r["size"]) for r in data["rows"] if not r.get("error")}
    todo = [n for n in names if (n, args.size) not in done]
    words = []
    for i, w in enumerate(argv):
        words.append(shlex.quote(_rel(w) if i and argv[i - 1] == "--out" else w))
    command = " ".join(["python benchmarks/malloc_cache.py", *words])
    run = measure_peaks(2048, 3)
    label = describe_run(run)
    print(label, flush=True)
    if todo and command not in data["commands"]:
        data["commands"].append(command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chans, classes = SETTINGS[args.size]
    for name in todo:
        row = {"model": name, "size": args.size, "batch": args.batch, "cpu": run["cpu"], "run": label}
        try:
            row.update(measure(name, args.size, args.batch, args.rounds, args.steps))
            _, macs = meta_model_stats(name, img_size=args.size, in_chans=chans, num_classes=classes)
            peak = run["peak_bf16"] if row["precision"] == "bf16" else run["peak_fp32"]
            row.update(gmacs=macs / 1e9, train_pct_off=100 * 6 * macs * row["train_off"] / 1e9 / peak,
                       train_pct_on=100 * 6 * macs * row["train_on"] / 1e9 / peak)
            print(f"{name}: train {row['train_off']:.1f} -> {row['train_on']:.1f} img/s (x{row['train_ratio']:.2f}),"
                  f" infer {row['infer_off']:.1f} -> {row['infer_on']:.1f} (x{row['infer_ratio']:.2f})", flush=True)
        except Exception as exc:  # a model that fails gets a row saying why
            row["error"] = str(exc).splitlines()[0][:200]
            print(f"{name}: failed: {row['error']}", flush=True)
        data["rows"] = [r for r in data["rows"] if (r["model"], r["size"]) != (name, args.size)] + [row]
        atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write_text(args.out, render(data))
    if not todo:
        print("malloc_cache: every requested row is already in " + _rel(json_path))
    print(f"wrote {_rel(args.out)} and {_rel(json_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
