"""Speed of our models against the reference implementation of the same architecture, in one process.

Both models are built with the same settings (our model in the variant its weight import maps onto, the
ImageNet form, so the two compute the same function), then timed in alternating rounds so that both see the same
machine state; each figure is the median over rounds. ``python -m papernets.bench.compare --help``.

Each round also gives a paired ratio (ours / reference within the round). A median ratio below 1.0 whose rounds
do not all have ours behind is reported as inconsistent (the machine's noise is as large as the difference);
one that is below 1.0 in every round needs a cause, which ``--notes FILE.yaml`` supplies per model and kind
(``MODEL: {train: "...", infer: "..."}``, from profiling the two models); without one the row says so.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from papernets.engine.runtime import default_runtime
from papernets.engine.speed import cpu_label
from papernets.pretrained import reference_model
from papernets.registry import create_model, get_entry, list_models

__all__ = ["SpeedResult", "compare_speed", "main"]

# Families whose reference models are built for one input size (ViT's position embeddings, the MLP models'
# token-mixing layers): the reference is built at the compared size, as ours is.
FIXED_SIZE_FAMILIES = frozenset({"vit", "mlp_mixer", "resmlp", "gmlp"})
# The smallest input a family's models take in training where it is above the requested size: such a model is
# compared at this size. Inception-v3's auxiliary classifier (a 5x5 average pool, stride 3, then a 5x5
# convolution on the 17x17 grid) needs the paper's 299 px inputs, in torchvision's model as in ours.
IMAGENET_FORM_MIN_SIZE = {"inception": 299}


@dataclass
class SpeedResult:
    model: str
    library: str
    reference: str
    img_size: int
    batch_size: int
    channels_last: bool
    ours_train: float
    ref_train: float
    ours_infer: float
    ref_infer: float
    train_ratios: tuple[float, ...] = ()  # ours / reference in each round
    infer_ratios: tuple[float, ...] = ()

    @property
    def train_ratio(self) -> float:
        return self.ours_train / self.ref_train

    @property
    def infer_ratio(self) -> float:
        return self.ours_infer / self.ref_infer


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if isinstance(out, tuple | list):  # aux heads (ours) or InceptionOutputs (torchvision)
            out = out[0]
        nn.functional.cross_entropy(out, y).backward()
        opt.step()

    return step


def _infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return step


def _interleaved(fns: list[Callable[[], None]], rounds: int, steps: int, images: int,
                 min_time: float = 0.0) -> list[list[float]]:
    """img/s of each function in each round, the functions alternating in order from round to round. Each round
    runs ``steps`` steps of each function, or more where one step is short: enough for ``min_time`` seconds."""
    warm = []
    for fn in fns:  # warm-up
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    if min_time > 0:
        steps = max(steps, math.ceil(min_time / max(min(warm), 1e-6)))
    rates: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[i]()
            rates[i].append(steps * images / (time.perf_counter() - t0))
    return rates


def compare_speed(
    name: str,
    library: str | None = None,
    img_size: int = 32,
    batch_size: int = 128,
    channels_last: bool = False,
    rounds: int = 5,
    steps: int = 2,
    num_classes: int = 10,
    min_time: float = 0.0,
) -> SpeedResult:
    """Training and inference img/s of ``name`` and of its reference implementation (3-channel input)."""
    entry = get_entry(name)
    if not entry.pretrained:
        raise ValueError(f"{entry.name} has no reference implementation registered (no weight import).")
    library = library or ("torchvision" if "torchvision" in entry.pretrained else next(iter(entry.pretrained)))
    source = entry.pretrained[library]
    torch.manual_seed(0)
    ours = create_model(entry.name, num_classes=num_classes, img_size=img_size,
                        **{"small_input": False, **source.kwargs})
    ref_kwargs = dict(source.ref_kwargs)
    if entry.family in FIXED_SIZE_FAMILIES:  # position embeddings / token-mixing weights sized by the input
        ref_kwargs["image_size" if library == "torchvision" else "img_size"] = img_size
    ref = reference_model(library, source.name, num_classes=num_classes, **ref_kwargs)
    x = torch.randn(batch_size, 3, img_size, img_size)
    y = torch.randint(0, num_classes, (batch_size,))
    if channels_last:
        ours, ref = ours.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    train = _interleaved([_train_step(ours, x, y), _train_step(ref, x, y)], rounds, steps, batch_size, min_time)
    infer = _interleaved([_infer_step(ours, x), _infer_step(ref, x)], rounds, steps, batch_size, min_time)
    med = statistics.median
    return SpeedResult(entry.name, library, source.name, img_size, batch_size, channels_last,
                       med(train[0]), med(train[1]), med(infer[0]), med(infer[1]),
                       tuple(a / b for a, b in zip(*train, strict=True)),
                       tuple(a / b for a, b in zip(*infer, strict=True)))


def below_one(r: SpeedResult, kind: str, notes: dict[str, dict[str, str]]) -> str:
    """Why a median ratio is below 1.0 ('' when it is not): inconsistent across rounds, or the note for it."""
    ratio, rounds = (r.train_ratio, r.train_ratios) if kind == "train" else (r.infer_ratio, r.infer_ratios)
    if round(ratio, 2) >= 1.0:
        return ""
    if rounds and round(max(rounds), 2) >= 1.0:  # as printed, so a table read back judges the same
        return f"{kind}: inconsistent (rounds {_spread(rounds)})"
    note = notes.get(r.model, {}).get(kind)
    return f"{kind}: {note}" if note else f"{kind}: **not explained**"


def read_notes(path: str | Path) -> dict[str, dict[str, str]]:
    """The ``--notes`` file: ``{model: {"train"|"infer": text}}``."""
    notes = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(notes, dict) or not all(isinstance(v, dict) for v in notes.values()):
        raise ValueError(f"{path}: expected a mapping MODEL: {{train: TEXT, infer: TEXT}}")
    bad = [f"{m}.{k}" for m, v in notes.items() for k in v if k not in ("train", "infer")]
    if bad:
        raise ValueError(f"{path}: unknown keys {', '.join(bad)}; accepted: MODEL.train, MODEL.infer")
    return notes


def _rate(img_per_s: float) -> str:
    return f"{img_per_s:.1f}" if img_per_s >= 10 else f"{img_per_s:.3f}"


def _spread(rounds: tuple[float, ...]) -> str:
    return f"{min(rounds):.2f}-{max(rounds):.2f}" if rounds else "-"


def read_markdown(text: str) -> tuple[list[SpeedResult], str, list[str]]:
    """The results, title and timing commands of a table ``to_markdown`` wrote (a round's range as its two ends)."""
    def spread(cell: str) -> tuple[float, ...]:
        return tuple(float(v) for v in cell.split("-")) if cell != "-" else ()

    results = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        c = [v.strip() for v in line.strip().strip("|").split("|")]
        library, reference = c[1].split(" ", 1)
        results.append(SpeedResult(c[0].strip("`"), library, reference.strip("`"), int(c[2]), int(c[3]), c[4] == "on",
                                   float(c[5]), float(c[6]), float(c[9]), float(c[10]), spread(c[8]), spread(c[12])))
    title = text.splitlines()[0].removeprefix("# ")
    written = _WRITTEN.search(text)
    return results, title, re.findall(r"`([^`]+)`", written.group(1)) if written else []


# The header's first sentence: the timing commands, the command that added the causes, and the machine (``on
# MACHINE.``; tables written before the CPU was named say ``(MACHINE).``).
_WRITTEN = re.compile(r"^Written by ((?:`[^`]+`(?:, then )?)+)(?:; causes added by `[^`]+`)? "
                      r"(?:on (.+?)|\((.+?)\))\. img/s of", re.M)


def read_machine(text: str) -> str:
    """The machine a table ``to_markdown`` wrote names ('' if it names none)."""
    written = _WRITTEN.search(text)
    return (written.group(2) or written.group(3)) if written else ""


def machine_label() -> str:
    """This machine as a table's header names it: CPU (bf16 instructions), threads, torch."""
    return f"{cpu_label()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def to_markdown(results: list[SpeedResult], title: str, command: str | list[str] = "python -m papernets.bench.compare",
                notes: dict[str, dict[str, str]] | None = None, notes_command: str = "",
                machine: str | None = None) -> str:
    """The table; ``machine``: where the rows were timed (default: this machine)."""
    commands = [command] if isinstance(command, str) else command
    lines = [
        f"# {title}",
        "",
        "Written by " + ", then ".join(f"`{c}`" for c in commands)
        + (f"; causes added by `{notes_command}`" if notes_command else "")
        + f" on {machine or machine_label()}. img/s of a training step (forward, backward, SGD) and of "
        "inference; ratio = ours / reference (above 1: ours is faster). Both models in one process, timed in "
        "alternating rounds, median of the rounds; rounds: the lowest and highest ratio of a single round. "
        "A later command re-times only the models it names (`--merge`) and replaces their rows. "
        "Below 1.0: why a ratio is below 1.0, either inconsistent (in at least one round ours is level with the "
        "reference or ahead, at two decimals: the difference is within the machine's noise) or the cause found by "
        "profiling both models.",
        "",
        "| model | reference | size | batch | channels_last | train ours | train ref | train ratio | train rounds "
        "| infer ours | infer ref | infer ratio | infer rounds | below 1.0 |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        why = "; ".join(w for w in (below_one(r, "train", notes or {}), below_one(r, "infer", notes or {})) if w)
        lines.append(
            f"| `{r.model}` | {r.library} `{r.reference}` | {r.img_size} | {r.batch_size} | "
            f"{'on' if r.channels_last else 'off'} | {_rate(r.ours_train)} | {_rate(r.ref_train)} | "
            f"{r.train_ratio:.2f} | {_spread(r.train_ratios)} | {_rate(r.ours_infer)} | {_rate(r.ref_infer)} | "
            f"{r.infer_ratio:.2f} | {_spread(r.infer_ratios)} | {why} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papernets.bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names or fnmatch patterns")
    parser.add_argument("--library", choices=["torchvision", "timm"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels-last", choices=["on", "off", "both", "auto"], default="off",
                        help="auto: the memory format the trainer picks for the model's family on the CPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--min-time", type=float, default=0.0,
                        help="more steps per round where a step is short: at least this many seconds per round")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", help="write a Markdown table here")
    parser.add_argument("--title", default="Speed against the reference implementations")
    parser.add_argument("--notes", help="YAML file of causes for ratios below 1.0: MODEL: {train: TEXT, infer: TEXT}")
    parser.add_argument("--rewrite", action="store_true",
                        help="no timing: rewrite --out from the figures it holds with the current --notes")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --out and replace (or add) only those of the models timed now")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        notes = read_notes(args.notes) if args.notes else {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        parser.error(f"--notes: {e}".splitlines()[0])
    command = " ".join(["python -m papernets.bench.compare", *map(shlex.quote, argv or sys.argv[1:])])
    if args.rewrite:
        if not (args.out and Path(args.out).is_file()):
            parser.error(f"--rewrite needs an existing --out table, got {args.out!r}")
        text = Path(args.out).read_text()
        results, title, timing = read_markdown(text)  # timed elsewhere, maybe: the header keeps its machine
        Path(args.out).write_text(to_markdown(results, title, timing, notes, command, read_machine(text)))
        return 0
    if not args.models:
        parser.error("give at least one model name or pattern (or --rewrite)")
    commands, results, machine = [command], [], machine_label()
    if args.merge:
        if not (args.out and Path(args.out).is_file()):
            parser.error(f"--merge needs an existing --out table, got {args.out!r}")
        text = Path(args.out).read_text()
        results, old_title, old_commands = read_markdown(text)
        commands, args.title = [*old_commands, command], old_title
        if read_machine(text) != machine:  # the merged rows were timed on another machine: name both
            machine = f"{read_machine(text) or 'an unnamed machine'} (the rows the last command names: {machine})"
    names: list[str] = []
    for pattern in args.models:
        found = list_models(pattern) if any(c in pattern for c in "*?[") else [get_entry(pattern).name]
        names += [n for n in found if get_entry(n).pretrained and n not in names]
    for i, name in enumerate(names, 1):
        family = get_entry(name).family
        if args.channels_last == "auto":
            modes = [default_runtime(family, "cpu", training=False).channels_last]
        else:
            modes = {"on": [True], "off": [False], "both": [False, True]}[args.channels_last]
        size = max(args.image_size, IMAGENET_FORM_MIN_SIZE.get(family, 0))
        for cl in modes:
            r = compare_speed(name, args.library, size, args.batch_size, cl, args.rounds, args.steps,
                              min_time=args.min_time)
            same = [j for j, o in enumerate(results) if (o.model, o.channels_last) == (name, cl)]
            if same:  # --merge: the new figures take the old row's place
                results[same[0]] = r
            else:
                results.append(r)
            print(f"[{i}/{len(names)}] {name:24s} cl={'on ' if cl else 'off'} "
                  f"train {r.ours_train:8.1f} vs {r.ref_train:8.1f} ({r.train_ratio:.2f})  "
                  f"infer {r.ours_infer:8.1f} vs {r.ref_infer:8.1f} ({r.infer_ratio:.2f})",
                  flush=True)
            if args.out:  # rewritten after every model, so a stopped run keeps what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(to_markdown(results, args.title, commands, notes, machine=machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
