"""``papernets bench``: train every model of a protocol the same way, then tabulate, plot and report.

A protocol (``bench/protocol.py``) names the rows and the config of each. Each row trains through the ordinary
``Trainer`` into ``OUT/<protocol>/<row>/`` (a normal run directory, plus ``bench.json``, the row's record) and,
with ``paper_schedule``, again into ``OUT/<protocol>/<row>-paper_schedule/``.

Out of memory (``torch.cuda.OutOfMemoryError``, or an error saying memory cannot be allocated): the micro-batch
is halved and ``train.accum_steps`` doubled, so the effective batch, the data order and the schedule stay the
same, and the run continues from its last checkpoint; when the micro-batch cannot be halved any further (or SAM,
which needs whole batches, is on), activation checkpointing is turned on instead. A row that still fails records
the first line of its error.

Resuming: a run directory with ``summary.json`` is finished and kept; one with ``checkpoints/last.pt`` is resumed;
a row whose record (``bench.json``) is written is not touched again (``retry_failed`` retries the failed ones).
"""

from __future__ import annotations

import copy
import csv
import gc
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import IO, Any

import torch

from papernets.bench.budget import budget_config, calibrate
from papernets.bench.profile import measure_throughput, peak_memory_mb
from papernets.bench.protocol import (
    PROTOCOLS_DIR,
    SCHEDULE_SUFFIX,
    Protocol,
    Row,
    available_protocols,
    load_protocol,
    paper_schedule_config,
    row_config,
    select_rows,
)
from papernets.bench.report import write_report
from papernets.config import Config, ConfigError, load_config
from papernets.engine.build import build_model, model_kwargs
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.counting import meta_model_stats
from papernets.engine.distributed import resolve_device
from papernets.engine.rundir import atomic_write_text
from papernets.engine.runtime import Runtime, resolve_runtime
from papernets.engine.trainer import Trainer, TrainingInterrupted, config_from_checkpoint
from papernets.registry import get_entry

__all__ = ["PROTOCOLS_DIR", "Protocol", "Row", "available_protocols", "load_protocol", "select_rows", "row_config",
           "paper_schedule_config", "is_out_of_memory", "run_bench", "describe_config"]

# ------------------------------------------------------------------------------------------- out of memory


_OOM_TEXT = re.compile(r"out of memory|can(no|')t allocate memory|cannot allocate|not enough memory", re.I)


def is_out_of_memory(exc: BaseException) -> bool:
    """``torch.cuda.OutOfMemoryError``, ``MemoryError``, or a RuntimeError whose message says memory could not be
    allocated (PyTorch's CPU allocator: "DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and bool(_OOM_TEXT.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class RowFailed(RuntimeError):
    """A row that could not be trained; the message is the row's "why"."""


def _halved(cfg: Config) -> Config | None:
    """``cfg`` with half the micro-batch and twice the accumulation steps (the same batch), or None at the end."""
    t = cfg.train
    if t.batch_size % (2 * t.accum_steps) or cfg.optim.sam:  # SAM's two passes need whole batches
        return None
    out = copy.deepcopy(cfg)
    out.train.accum_steps = t.accum_steps * 2
    out.train.eval_batch_size = max(1, (t.eval_batch_size or 2 * t.batch_size) // 2)
    return out


def train_run(cfg: Config, run_dir: Path, recipe: str | None, log: IO[str]) -> tuple[dict[str, Any], Config, Any]:
    """Train ``cfg`` into ``run_dir`` (resuming its ``last.pt``; kept as is when it has ``summary.json``), halving
    the micro-batch on out-of-memory errors. Returns (summary, the config that ran, the trainer or None)."""

    if (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text()), load_config(run_dir / "config.yaml"), None
    last = run_dir / "checkpoints" / "last.pt"
    resume = None
    if last.is_file():
        resume = load_checkpoint(last)
        cfg = config_from_checkpoint(resume)  # the config it ran with, its accumulation included
        recipe = resume.get("recipe", recipe)
    while True:
        trainer = None
        try:
            trainer = Trainer(cfg, run_dir, resume=resume, stream=log, recipe=recipe)
            return trainer.fit(), cfg, trainer
        except TrainingInterrupted:
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise RowFailed(_first_line(exc)) from exc
            error = _first_line(exc)
        trainer = None  # outside the except block, so that the failed step's tensors can be freed
        _free_memory()
        micro = cfg.train.batch_size // cfg.train.accum_steps
        smaller = _halved(cfg)
        if smaller is not None:
            cfg = smaller
            print(f"bench: out of memory at micro-batch {micro}; retrying with batch {cfg.train.batch_size} = "
                  f"{cfg.train.accum_steps} x {cfg.train.batch_size // cfg.train.accum_steps} (gradient accumulation)",
                  file=log, flush=True)
        elif not cfg.train.activation_checkpointing:  # the micro-batch cannot shrink: keep fewer activations
            cfg = copy.deepcopy(cfg)
            cfg.train.activation_checkpointing = True
            print(f"bench: out of memory at micro-batch {micro}; retrying with activation checkpointing",
                  file=log, flush=True)
        else:
            why = "; SAM takes whole batches, no accumulation" if cfg.optim.sam else ""
            raise RowFailed(f"out of memory at micro-batch {micro} (batch {cfg.train.batch_size}{why}, with "
                            f"activation checkpointing): {error}")
        resume = load_checkpoint(last) if last.is_file() else None


# ------------------------------------------------------------------------------------------------ profile


def profile_row(cfg: Config, in_chans: int, num_classes: int, steps: int = 5) -> dict[str, Any]:
    """Inference img/s (eval batch) and the peak memory of one training step (SGD, at the micro-batch the run
    used), with ``bench/profile.py``'s meters; both batches halve on out-of-memory errors."""

    device = resolve_device(cfg.train.device)
    cfg = copy.deepcopy(cfg)
    cfg.model.pretrained = None
    size = cfg.data.image_size
    family = get_entry(cfg.model.name).family
    channels_last = resolve_runtime(cfg.train, family, device, training=False).channels_last
    resolve_runtime(cfg.train, family, device).apply()  # the CPU allocator as the row's training had it

    def build(batch: int):
        model = build_model(cfg, num_classes, in_chans).to(device)
        x = torch.randn(batch, in_chans, size, size, device=device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return model, x

    def halving(batch: int, fn):
        while True:
            try:
                return fn(batch), batch
            except Exception as exc:
                if not is_out_of_memory(exc) or batch == 1:
                    raise
            _free_memory()  # outside the except block: the failed attempt's tensors are free now
            batch //= 2

    micro = cfg.train.batch_size // cfg.train.accum_steps
    peak, peak_batch = halving(micro, lambda b: peak_memory_mb(
        lambda: measure_throughput(*build(b), train=True, steps=1, warmup=0), device))
    _free_memory()
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    infer, infer_batch = halving(eval_bs, lambda b: measure_throughput(*build(b), train=False, steps=steps,
                                                                       warmup=1))
    _free_memory()
    return {"infer_img_per_s": infer, "infer_batch": infer_batch, "peak_memory_mb": peak,
            "peak_memory_batch": peak_batch, "profile_device": str(device)}


# ---------------------------------------------------------------------------------------------------- rows


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def describe_config(cfg: Config, recipe: str | None = None, runtime: Runtime | None = None) -> str:
    """A short line: optimizer, learning rate, schedule, batch (with accumulation), regularization that is on, and
    the speed options of the run's ``runtime`` that change the arithmetic (autocast, compilation)."""
    o, s, t = cfg.optim, cfg.schedule, cfg.train
    parts = [f"{o.name} lr {o.lr:.3g}" + (f" wd {o.weight_decay:g}" if o.weight_decay else "")
             + (" + " + ("ASAM" if o.sam_adaptive else "SAM") if o.sam else "")]
    warmup = (f"{s.warmup:.0%}" if s.unit == "run" else f"{s.warmup:g} {s.unit}") if s.warmup else ""
    parts.append("constant lr" if s.name in ("none", "constant") else f"{s.name} schedule"
                 + (f" (warmup {warmup})" if warmup else ""))
    micro = t.batch_size // t.accum_steps
    parts.append(f"batch {t.batch_size}" + (f" = {t.accum_steps} x {micro} (accumulated)" if t.accum_steps > 1 else ""))
    parts.append(f"{t.steps:,} steps" if t.steps else f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}")
    extras = [f"{k} {v}" for k, v in sorted(cfg.model.kwargs.items())]  # e.g. "init he"
    extras += [f"{label} {v:g}" for label, v in (("dropout", cfg.model.drop_rate),
                                                 ("drop path", cfg.model.drop_path_rate)) if v is not None]
    if not cfg.data.augment:
        extras.append("no augmentation")
    extras += [name for name, on in ((f"label smoothing {t.label_smoothing:g}", t.label_smoothing),
                                    (f"gradient clipping {t.grad_clip or 0:g}", t.grad_clip),
                                    ("mixup", t.mixup_alpha),
                                    ("cutmix", t.cutmix_alpha), ("EMA", t.ema), ("progressive", t.progressive),
                                    ("RandAugment", cfg.data.randaugment_ops),
                                    ("activation checkpointing", t.activation_checkpointing)) if on]
    if extras:
        parts.append(", ".join(extras))
    rt = runtime
    speed = ([f"{rt.amp} autocast"] if rt and rt.amp != "off" else []) + (["compiled"] if rt and rt.compile else [])
    if speed:
        parts.append(", ".join(speed))
    if recipe:
        parts.append("paper recipe")
    return "; ".join(parts)


def _input_label(in_chans: int, size: int) -> str:
    return f"{in_chans}x{size}x{size}"


def _run_data(trainer: Any, run_dir: Path) -> tuple[int, int]:
    """(in_chans, num_classes) of a run: from its trainer, else from its checkpoint."""
    if trainer is not None:
        return trainer.cfg.model.in_chans or trainer.data.in_chans, trainer.num_classes

    data = load_checkpoint(run_dir, prefer="best")["data"]
    return data["in_chans"], data["num_classes"]


def bench_row(protocol: Protocol, row: Row, out: Path, overrides: list[str], log: IO[str]) -> dict[str, Any]:
    """Train (or resume) one row, its paper-schedule run, profile it; return its record (also bench.json)."""

    entry = get_entry(row.model)
    run_dir = out / protocol.name / row.id
    rec: dict[str, Any] = {
        "id": row.id, "model": entry.name, "family": entry.family, "year": entry.paper.year,
        "overrides": row.config, "run_dir": str(run_dir), "status": "failed", "error": None,
    }
    started = time.perf_counter()
    try:
        cfg, recipe = row_config(protocol, row, overrides)
        rec["recipe"] = recipe
        if protocol.bench:
            cfg, rec["calibration"] = _budget(cfg, protocol.bench, run_dir, log)
            rec["budget_min"] = protocol.bench["budget_min"]
        summary, used, trainer = train_run(cfg, run_dir, recipe, log)
        in_chans, num_classes = _run_data(trainer, run_dir)
        del trainer
        _free_memory()
        history = _metrics(run_dir)
        rec.update(
            status="ok", test_acc=summary["test_acc"], best_val_acc=summary["best_val_acc"],
            best_epoch=summary["best_epoch"], params=summary["params"], gmacs=summary["gmacs"],
            gflops=summary["gflops"], input=_input_label(in_chans, used.data.image_size),
            train_img_per_s=statistics.median(r["train_img_per_s"] for r in history) if history else None,
            train_time_s=_train_time(history),
            wall_time_s=summary["wall_time_s"], epochs=summary["epochs"], batch_size=used.train.batch_size,
            accum_steps=used.train.accum_steps, micro_batch=used.train.batch_size // used.train.accum_steps,
            device=summary["device"], schedule=used.schedule.name,
            configuration=describe_config(used, recipe, Runtime.from_dict(summary)),
            dataset=summary["dataset"], cpu=(summary.get("host") or {}).get("cpu"), steps=summary.get("steps"),
            images_seen=summary.get("images_seen"), data_epochs=summary.get("data_epochs"),
            curves=[{k: r.get(k) for k in ("epoch", "train_loss", "train_acc", "val_acc", "wall_time_s")}
                    for r in history],
        )
        notes = []
        if used.train.accum_steps > 1:
            notes.append(f"out of memory at micro-batch {cfg.train.batch_size // cfg.train.accum_steps}: "
                         f"{used.train.accum_steps} micro-batches of {rec['micro_batch']} per step")
        if used.train.activation_checkpointing and not cfg.train.activation_checkpointing:
            notes.append(f"out of memory at micro-batch {rec['micro_batch']}: activation checkpointing")
        if notes:
            rec["note"] = "; ".join(notes)
        rec["activation_checkpointing"] = used.train.activation_checkpointing
    except TrainingInterrupted:
        raise
    except RowFailed as exc:
        rec["error"] = str(exc)
    except Exception as exc:  # any failure of one model becomes its row's "why", never a gap or a crash
        rec["error"] = _first_line(exc)
    if rec["status"] == "ok":
        try:
            rec.update(profile_row(used, in_chans, num_classes))
        except Exception as exc:
            rec.update(infer_img_per_s=None, peak_memory_mb=None, profile_error=_first_line(exc))
    if rec["status"] != "ok":
        rec["error"] = rec["error"] or "unknown failure"
        try:  # what can be counted without training
            base, _ = row_config(protocol, row, overrides)
            chans, classes = _dataset_shape(base.data.name)
            chans, classes = base.model.in_chans or chans, base.model.num_classes or classes
            params, macs = meta_model_stats(entry.name, img_size=base.data.image_size, in_chans=chans,
                                            num_classes=classes, **model_kwargs(base))
            rec.update(params=params, gmacs=macs / 1e9, gflops=2 * macs / 1e9,
                       input=_input_label(chans, base.data.image_size), batch_size=base.train.batch_size,
                       configuration=describe_config(base))
        except Exception:  # a model that cannot even be built at this size: its error already says why
            pass
    if protocol.paper_schedule:
        rec.update(_paper_schedule_column(rec, protocol, row, out, overrides, log))
    rec["bench_time_s"] = time.perf_counter() - started
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "bench.json", json.dumps(rec, indent=2) + "\n")
    return rec


def _budget(cfg: Config, bench: dict[str, Any], run_dir: Path, log: IO[str]) -> tuple[Config, dict[str, Any]]:
    """``cfg`` with the row's budget as a step count: from the calibration in ``run_dir/budget.json`` when the row
    was started before (the same steps again), else from a new calibration, written there first."""
    path = run_dir / "budget.json"
    if path.is_file():
        kept = json.loads(path.read_text())
        if (kept["budget_min"], kept["segments"]) != (bench["budget_min"], bench["segments"]):
            raise ConfigError(f"{run_dir} was started with a budget of {kept['budget_min']} min in "
                              f"{kept['segments']} segments, not {bench['budget_min']} min in {bench['segments']}: "
                              "give the bench another --out, or remove that folder to run the row again.")
        calibration = kept["calibration"]
    else:
        calibration = calibrate(cfg, bench["calibration_s"], log)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"budget_min": bench["budget_min"], "segments": bench["segments"], "calibration": calibration}
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    out = budget_config(cfg, bench, calibration)
    print(f"budget: {bench['budget_min']:g} min = {out.train.steps} steps of batch {out.train.batch_size} "
          f"({calibration['seconds_per_step']:.3f} s per step on {calibration['cpu']})", file=log, flush=True)
    return out, calibration


def _dataset_shape(name: str) -> tuple[int, int]:
    """(channels, classes) of a dataset by name, for the figures of a row that could not load it."""
    return 1 if name in ("mnist", "fashion-mnist") else 3, 100 if name == "cifar100" else 10


def _paper_schedule_column(rec: dict[str, Any], protocol: Protocol, row: Row, out: Path, overrides: list[str],
                           log: IO[str]) -> dict[str, Any]:

    if rec["status"] != "ok":
        return {"paper_schedule_error": "not run: the row failed"}
    run_dir = out / protocol.name / f"{row.id}{SCHEDULE_SUFFIX}"
    try:
        cfg, recipe = row_config(protocol, row, overrides)
        cfg, source = paper_schedule_config(cfg)
        if rec.get("accum_steps", 1) > 1:  # start where the row's own run ended up
            cfg.train.accum_steps = rec["accum_steps"]
            cfg.train.eval_batch_size = max(1, (cfg.train.eval_batch_size or 2 * cfg.train.batch_size)
                                            // rec["accum_steps"])
        if rec.get("activation_checkpointing"):
            cfg.train.activation_checkpointing = True
        summary, used, trainer = train_run(cfg, run_dir, recipe, log)
        del trainer
        _free_memory()
    except TrainingInterrupted:
        raise
    except Exception as exc:
        return {"paper_schedule_error": str(exc) if isinstance(exc, RowFailed) else _first_line(exc),
                "paper_schedule_run_dir": str(run_dir)}
    return {"paper_schedule_test_acc": summary["test_acc"], "paper_schedule_best_val_acc": summary["best_val_acc"],
            "paper_schedule": used.schedule.name, "paper_schedule_source": source,
            "paper_schedule_wall_time_s": summary["wall_time_s"], "paper_schedule_run_dir": str(run_dir),
            "paper_schedule_accum_steps": used.train.accum_steps}


def _train_time(history: list[dict[str, float]]) -> float | None:
    """Seconds the run spent in its training steps (its epochs' times, validation left out): what a budget row's
    calibration aimed at ``budget_min`` minutes."""
    times = [r["epoch_time_s"] for r in history if "epoch_time_s" in r]
    return sum(times) if times else None


def _kept(run_dir: Path, retry_failed: bool) -> dict[str, Any] | None:
    path = run_dir / "bench.json"
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if retry_failed and (rec.get("status") != "ok" or "paper_schedule_error" in rec):
        return None
    if rec.get("status") == "ok" and "train_time_s" not in rec:  # a row benched before the column existed
        rec["train_time_s"] = _train_time(_metrics(run_dir))
    return rec


def run_bench(
    protocol: Protocol, rows: list[Row], out: Path, results: Path, overrides: list[str] | None = None,
    log: IO[str] = sys.stderr, retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Bench ``rows`` (kept, resumed or trained), writing the tables after each and the plots and HTML report at
    the end; return their records."""

    protocol, overrides = protocol.with_bench_overrides(list(overrides or []))
    for row in rows:  # a bad --set or row config is a usage error before anything trains
        row_config(protocol, row, overrides)
    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows, 1):
        run_dir = out / protocol.name / row.id
        rec = _kept(run_dir, retry_failed)
        if rec is not None and protocol.bench and rec.get("budget_min") != protocol.bench["budget_min"]:
            raise ConfigError(f"{run_dir} holds a row of a {rec.get('budget_min')}-minute budget, not "
                              f"{protocol.bench['budget_min']:g}: give the bench another --out.")
        if rec is not None:
            print(f"bench [{i}/{len(rows)}] {row.id}: kept ({run_dir}/bench.json)", file=log, flush=True)
        else:
            if retry_failed and (run_dir / "bench.json").is_file():
                _clear_failed(run_dir)
                _clear_failed(out / protocol.name / f"{row.id}{SCHEDULE_SUFFIX}")
            print(f"bench [{i}/{len(rows)}] {row.id}: training -> {run_dir}", file=log, flush=True)
            rec = bench_row(protocol, row, out, overrides, log)
            line = (f"test acc {rec['test_acc'] * 100:.2f}%" if rec["status"] == "ok" else f"failed: {rec['error']}")
            print(f"bench [{i}/{len(rows)}] {row.id}: {line}", file=log, flush=True)
        records.append(rec)
        write_report(protocol, records, results, final=i == len(rows))
    return records


def _clear_failed(run_dir: Path) -> None:
    """Remove the record and any unfinished run of a failed row, so that it is trained again from scratch."""
    if (run_dir / "summary.json").is_file():
        (run_dir / "bench.json").unlink(missing_ok=True)
        return
    if run_dir.is_dir():
        shutil.rmtree(run_dir)
