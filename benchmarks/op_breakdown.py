"""Where a model's training step spends its time, by kind of operator, and how fast its convolutions run against
the machine's matmul peak: the "why" behind a low row of ``docs/results/mfu.md``.

    python benchmarks/op_breakdown.py [--models NAME ...] [--lowest 5] [--mfu docs/results/mfu.json]
                                      [--steps 3] [--out docs/results/op_breakdown.md]

Each model is built as ``benchmarks/mfu.py`` builds its 28 px row (the small-image form, 1 channel, 10 classes,
batch 128, the memory format and precision the trainer chooses for the family on this CPU), warmed up for two
steps, then ``--steps`` training steps (forward, cross-entropy, backward, SGD step) run under ``torch.profiler``
with shapes recorded. Every aten operator's self CPU time goes to one kind:

- convolutions, by shape (forward and backward together): dense k x k (k > 1, one group), pointwise 1 x 1,
  grouped (1 < groups < input channels) and depthwise (groups = input channels);
- matmuls (linear layers, attention), normalization (batch norm, layer norm, forward and backward), activations
  (and their backward), pooling, memory (copies, clones, concatenation, channel shuffles, fills, allocations),
  other elementwise and reductions, the optimizer step (everything under ``Optimizer.step``), and the rest.

The shares are of the profiled step; the step time in the table is timed without the profiler, as the median of
``--steps`` steps. For each kind of convolution the table gives its achieved GFLOP/s as a share of the matmul peak
(``mfu.py``'s peak, measured again here): its forward FLOPs are 2 x its MACs (from the shapes: output elements x
input channels per group x kernel area), its backward 4 x (the input and the weight gradients), so that a kind's
FLOP/s is 6 x its MACs over its time. A model whose convolutions run near the peak but whose step is mostly
normalization, activations and copies is limited by memory traffic, which the counted MACs do not see.

Without ``--models`` it takes the ``--lowest`` rows of the training column of ``--mfu`` (28 px rows). The table names
the CPU; profile shares move less with a busy machine than timings do, but keep the cores quiet anyway.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from papernets.engine.rundir import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when loaded by file path
from mfu import _rel, describe_run, measure_peaks  # noqa: E402  (the MFU table's peak and path rule)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "op_breakdown.md"
DEFAULT_MFU = ROOT / "docs" / "results" / "mfu.json"
BATCH = 128
CONV_KINDS = ["conv k x k", "conv 1 x 1", "conv grouped", "conv depthwise"]
KINDS = [*CONV_KINDS, "matmul", "normalization", "activation", "pooling", "memory", "elementwise", "optimizer", "other"]

_NAMES = {
    "matmul": ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm", "_scaled_dot_product", "scaled_dot_product"),
    "normalization": ("batch_norm", "layer_norm", "group_norm", "_native_batch_norm", "native_batch_norm"),
    "activation": ("relu", "threshold_backward", "clamp_min", "hardtanh", "silu", "gelu", "sigmoid", "tanh",
                   "hardswish", "hardsigmoid", "elu", "leaky_relu", "softmax", "_softmax"),
    "pooling": ("pool", "adaptive_avg", "adaptive_max"),
    "memory": ("copy_", "clone", "cat", "channel_shuffle", "contiguous", "_to_copy", "fill_", "zero_", "empty",
               "empty_strided", "index", "resize_", "stack", "pad", "constant_pad", "permute", "transpose", "view",
               "reshape", "as_strided", "narrow", "slice", "select", "split", "unsqueeze", "squeeze", "flatten",
               "expand", "t", "detach", "new_zeros", "zeros_like", "ones_like"),
    "elementwise": ("add", "add_", "mul", "mul_", "div", "div_", "sub", "sum", "mean", "pow", "sqrt", "rsqrt",
                    "addcmul", "addcdiv", "neg", "exp", "log", "where", "lerp", "max", "min", "sign", "abs"),
}


def name_kind(op: str) -> str:
    """The kind of a (non-convolution) aten operator, from its name."""
    base = op.split("::", 1)[-1]
    for kind in ("normalization", "activation", "pooling", "matmul", "memory", "elementwise"):
        for word in _NAMES[kind]:
            if kind in ("normalization", "activation", "pooling"):
                if word in base:
                    return kind
            elif base == word or base.rstrip("_") == word.rstrip("_") or base.startswith(word + "_backward"):
                return kind
    return "other"


def conv_kind(input_channels: int, weight_shape: list[int]) -> str:
    """The kind of a convolution from its input's channels and its weight's shape (out, in / groups, kh, kw)."""
    groups = input_channels // max(weight_shape[1], 1)
    if groups > 1:
        return "conv depthwise" if groups == input_channels else "conv grouped"
    return "conv 1 x 1" if list(weight_shape[2:]) == [1, 1] else "conv k x k"


def conv_macs(grad_output_shape: list[int], weight_shape: list[int]) -> int:
    """Multiply-adds of one convolution's forward: output elements x input channels per group x kernel area."""
    n, c_out, *spatial = grad_output_shape
    out = n * c_out
    for s in spatial:
        out *= s
    k = 1
    for s in weight_shape[2:]:
        k *= s
    return out * weight_shape[1] * k


def _ancestors(event):
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def classify(events) -> tuple[dict[str, float], dict[str, int]]:
    """Self CPU microseconds per kind over the profiled ``events``, and forward MACs per convolution kind (from
    the convolutions' backward passes: one per convolution and step)."""
    times: dict[str, float] = defaultdict(float)
    macs: dict[str, int] = defaultdict(int)
    for e in events:
        if not e.name.startswith("aten::"):  # record_function ranges (Optimizer.step#SGD.step, autograd nodes)
            continue
        kind = None
        for a in _ancestors(e):
            if a.name.startswith("Optimizer.step") or a.name.startswith("Optimizer.zero_grad"):
                kind = "optimizer"
                break
        if kind is None:
            conv = e if e.name in ("aten::convolution", "aten::convolution_backward") else None
            if conv is None:
                conv = next((a for a in _ancestors(e)
                             if a.name in ("aten::convolution", "aten::convolution_backward")), None)
            if conv is not None:
                shapes = conv.input_shapes
                if conv.name == "aten::convolution":  # (input, weight, bias, ...)
                    kind = conv_kind(shapes[0][1], shapes[1])
                else:  # (grad_output, input, weight, ...)
                    kind = conv_kind(shapes[1][1], shapes[2])
                    if e is conv:
                        macs[kind] += conv_macs(shapes[0], shapes[2])
            else:
                kind = name_kind(e.name)
        times[kind] += e.self_cpu_time_total
    return times, macs


def breakdown(name: str, steps: int) -> dict:
    """Profile ``steps`` training steps of ``name`` at 28 px and time the same steps without the profiler."""
    import contextlib

    from papernets.bench.profile import meta_model_stats
    from papernets.config import TrainConfig
    from papernets.engine.runtime import resolve_runtime
    from papernets.registry import create_model, get_entry

    entry = get_entry(name)
    rt = resolve_runtime(TrainConfig(), entry.family, torch.device("cpu"), training=True)
    torch.manual_seed(0)
    model = create_model(entry.name, num_classes=10, in_chans=1, img_size=28)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    if rt.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", torch.bfloat16) if rt.amp == "bf16" else contextlib.nullcontext()
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            out = model(x)
        out = out[0] if isinstance(out, tuple | list) else out
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()

    for _ in range(2):
        step()
    walls = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    times, macs = classify(prof.events())
    total = sum(times.values())
    _, counted = meta_model_stats(entry.name, img_size=28, in_chans=1, num_classes=10)
    return {"model": entry.name, "family": entry.family, "step_ms": 1e3 * statistics.median(walls),
            "profiled_ms": total / 1e3 / steps, "shares": {k: times.get(k, 0.0) / total for k in KINDS},
            "conv_macs": {k: macs.get(k, 0) / steps for k in CONV_KINDS},
            "conv_s": {k: times.get(k, 0.0) / 1e6 / steps for k in CONV_KINDS},
            "counted_macs": counted * BATCH, "memory_format": "channels_last" if rt.channels_last else "NCHW",
            "precision": "bf16" if rt.amp == "bf16" else "fp32"}


def lowest_models(mfu_json: Path, n: int) -> list[str]:
    rows = [r for r in json.loads(mfu_json.read_text())["rows"] if r["size"] == 28 and not r.get("error")]
    return [r["model"] for r in sorted(rows, key=lambda r: r["train_pct"])[:n]]


def table(rows: list[dict], command: str, run: dict, run_line: str) -> str:
    head = ["model", "step ms", *KINDS, *[f"{k} % of peak" for k in CONV_KINDS]]
    lines = [
        "# Where the training step goes: time by kind of operator, and the convolutions against the peak", "",
        f"Written by `{command}`: 28 px, 1 channel, 10 classes, batch {BATCH}, the trainer's memory format and "
        "precision for each family; shares of the profiled step's self CPU time by kind of operator, and each kind of "
        "convolution's FLOP/s (6 x its MACs over its forward and backward time) as a share of the matmul peak. "
        "How the kinds are told apart: `benchmarks/op_breakdown.py`. Run: " + run_line + ".", "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for r in rows:
        cells = [f"`{r['model']}` ({r['memory_format']}, {r['precision']})", f"{r['step_ms']:.1f}"]
        cells += [f"{100 * r['shares'][k]:.1f}%" for k in KINDS]
        peak = run["peak_bf16"] if r["precision"] == "bf16" else run["peak_fp32"]
        for k in CONV_KINDS:
            s, m = r["conv_s"][k], r["conv_macs"][k]
            cells.append(f"{100 * 6 * m / s / 1e9 / peak:.0f}%" if s > 0 and m > 0 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Columns 3 to 14 add up to 100% of each profiled step (rounding aside)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from papernets.registry import get_entry

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "), allow_abbrev=False)
    parser.add_argument("--models", nargs="+", help="default: the --lowest rows of --mfu's training column")
    parser.add_argument("--lowest", type=int, default=5)
    parser.add_argument("--mfu", type=Path, default=DEFAULT_MFU, help="the MFU table's rows (benchmarks/mfu.py)")
    parser.add_argument("--steps", type=int, default=3, help="profiled (and timed) training steps per model")
    parser.add_argument("--peak-n", type=int, default=2048, help="matrix size of the peak's torch.mm (as mfu.py)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for flag, value in (("--steps", args.steps), ("--lowest", args.lowest), ("--peak-n", args.peak_n)):
        if value < 1:
            print(f"op_breakdown: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    if args.models:
        try:
            names = [get_entry(n).name for n in args.models]
        except Exception as exc:
            print(f"op_breakdown: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
    elif not args.mfu.is_file():
        print(f"op_breakdown: no MFU rows at {_rel(args.mfu)}; run benchmarks/mfu.py first or name --models",
              file=sys.stderr)
        return 2
    else:
        names = lowest_models(args.mfu, args.lowest)
    run = measure_peaks(args.peak_n, 3)
    words = [shlex.quote(_rel(w) if i and argv[i - 1] in ("--out", "--mfu") else w) for i, w in enumerate(argv)]
    command = " ".join(["python benchmarks/op_breakdown.py", *words])
    rows = []
    for name in names:
        r = breakdown(name, args.steps)
        rows.append(r)
        top = sorted(r["shares"].items(), key=lambda kv: -kv[1])[:4]
        print(f"{name}: step {r['step_ms']:.1f} ms; " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in top), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table(rows, command, run, describe_run(run)))
    print(f"wrote {_rel(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
