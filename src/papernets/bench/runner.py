"""``papernets bench``: train every model of a protocol the same way, then tabulate, plot and report.

A protocol is ``configs/bench/<name>.yaml`` (or any YAML file given by path)::

    description: one line for the report
    paper_schedule: true        # also run each row with only the schedule of its paper recipe
    base: {data: ..., optim: ..., schedule: ..., train: ...}   # a config, the sections of a config file
    models:                     # the default rows
      - resnet18                # id = model name
      - {id: resnet18_sam, model: resnet18, config: {optim: {sam: true}}}

A row's config is the base, then the paper recipe where the base sets ``train.recipe: paper``, then the row's own
``config``, then ``--set``. Each row trains through the ordinary ``Trainer`` into ``OUT/<protocol>/<row>/`` (a
normal run directory, plus ``bench.json``, the row's record) and, with ``paper_schedule``, again into
``OUT/<protocol>/<row>-paper_schedule/``.

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
import difflib
import fnmatch
import gc
import json
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from papernets.config import (
    CONFIGS_DIR,
    Config,
    ConfigError,
    ScheduleConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)

__all__ = ["PROTOCOLS_DIR", "Protocol", "Row", "available_protocols", "load_protocol", "select_rows", "row_config",
           "paper_schedule_config", "is_out_of_memory", "run_bench"]

PROTOCOLS_DIR = CONFIGS_DIR / "bench"
SCHEDULE_SUFFIX = "-paper_schedule"
_PROTOCOL_KEYS = {"description", "paper_schedule", "base", "models"}
_ROW_KEYS = {"id", "model", "config"}
_ROW_ID = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class Row:
    id: str
    model: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Protocol:
    name: str
    path: Path
    description: str
    base: dict[str, Any]
    rows: list[Row]
    paper_schedule: bool


def available_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOLS_DIR.glob("*.yaml"))


def _parse_row(item: Any, where: str) -> Row:
    if isinstance(item, str):
        return Row(item, item)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: a row must be a model name or a mapping with id, model, config; got {item!r}.")
    unknown = set(item) - _ROW_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown row keys {sorted(unknown)}; accepted: id, model, config.")
    model = item.get("model") or item.get("id")
    if not isinstance(model, str):
        raise ConfigError(f"{where}: a row needs a model name (model: or id:), got {item!r}.")
    config = item.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: a row's config must be a mapping of config sections, got {config!r}.")
    return Row(str(item.get("id") or model), model, config)


def load_protocol(name: str) -> Protocol:
    """The protocol ``configs/bench/<name>.yaml``, or the YAML file at path ``name``; ConfigError if unknown."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PROTOCOLS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = available_protocols()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown bench protocol {name!r}.{hint} Available: {', '.join(names)} (configs/bench/), "
                          f"or the path of a protocol YAML file.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"protocol {str(path)!r} is not valid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict) or set(raw) - _PROTOCOL_KEYS:
        bad = sorted(set(raw) - _PROTOCOL_KEYS) if isinstance(raw, dict) else raw
        raise ConfigError(f"protocol {str(path)!r}: unknown keys {bad}; accepted: {', '.join(sorted(_PROTOCOL_KEYS))}.")
    base = raw.get("base") or {}
    config_from_dict(copy.deepcopy(base))  # a bad base config fails now, naming its key
    rows = [_parse_row(item, f"protocol {path.name}") for item in raw.get("models") or []]
    if not rows:
        raise ConfigError(f"protocol {str(path)!r} lists no models.")
    ids = [r.id for r in rows]
    for r in rows:
        if not _ROW_ID.match(r.id) or r.id.endswith(SCHEDULE_SUFFIX):
            raise ConfigError(f"protocol {path.name}: row id {r.id!r} must be letters, digits and _ . + - (a folder "
                              f"name), not ending in {SCHEDULE_SUFFIX}.")
        if ids.count(r.id) > 1:
            raise ConfigError(f"protocol {path.name}: row id {r.id!r} appears twice.")
    paper_schedule = raw.get("paper_schedule", False)
    if not isinstance(paper_schedule, bool):
        raise ConfigError(f"protocol {path.name}: paper_schedule must be true or false, got {paper_schedule!r}.")
    return Protocol(path.stem, path, str(raw.get("description") or path.stem), base, rows, paper_schedule)


def select_rows(protocol: Protocol, models: str | None) -> list[Row]:
    """The protocol's rows narrowed or widened by ``--models``: a comma list of row ids, model names and fnmatch
    patterns. An item that matches rows of the protocol selects them; one that matches none selects the registered
    models it names or matches (new rows: the model with the base config)."""
    from papernets.registry import UnknownModelError, list_models, resolve_name

    if not models:
        return list(protocol.rows)
    chosen: dict[str, Row] = {}
    for item in (m.strip() for m in models.split(",")):
        if not item:
            continue
        hits = [r for r in protocol.rows if fnmatch.fnmatchcase(r.id, item)]
        if not hits:
            try:
                names = list_models(item) if any(c in item for c in "*?[") else [resolve_name(item)]
            except UnknownModelError:
                names = []
            if not names:
                close = difflib.get_close_matches(item, [r.id for r in protocol.rows] + list_models(), n=3)
                hint = f" Close matches: {', '.join(close)}." if close else ""
                raise ConfigError(f"--models: {item!r} is neither a row of protocol {protocol.name!r} nor a registered "
                                  f"model (see `papernets models`).{hint}")
            hits = [Row(n, n) for n in names]
        for r in hits:
            chosen.setdefault(r.id, r)
    if not chosen:
        raise ConfigError(f"--models {models!r} selects no rows; give row ids, model names or patterns.")
    return list(chosen.values())


def row_config(protocol: Protocol, row: Row, overrides: list[str] | None = None) -> tuple[Config, str | None]:
    """A row's config, in order: the protocol's base, the paper recipe (if the base asks for it), the row's config,
    ``overrides`` (``section.key=value``); and the recipe's line (None without one)."""
    from papernets.optim.recipes import apply_recipe
    from papernets.registry import get_entry

    base = config_from_dict(copy.deepcopy(protocol.base))
    base.model.name = get_entry(row.model).name
    if base.output.name is not None:
        raise ConfigError(f"protocol {protocol.name}: output.name is chosen by the bench (the row id); remove it.")

    def layered(cfg: Config) -> Config:
        return apply_overrides(config_from_dict(copy.deepcopy(row.config), base=cfg), overrides or [])

    cfg = layered(copy.deepcopy(base))
    if not cfg.train.recipe:
        return cfg, None
    with_recipe, source = apply_recipe(cfg, base=base)
    cfg = layered(with_recipe)
    cfg.train.recipe = None
    return cfg, source


def paper_schedule_config(cfg: Config) -> tuple[Config, str]:
    """``cfg`` with only the schedule section of its model's paper recipe, scaled to the run's epochs and batch as
    ``--recipe paper`` scales it (``recipes.recipe_overrides``); and a line naming it."""
    from papernets.optim.recipes import recipe_overrides

    overrides, source = recipe_overrides(cfg.model.name, cfg.train.epochs, cfg.train.batch_size)
    if "schedule" not in overrides:
        raise ConfigError(f"the paper recipe of {cfg.model.name} has no schedule section.")
    out = copy.deepcopy(cfg)
    out.schedule = ScheduleConfig()
    out = config_from_dict({"schedule": overrides["schedule"]}, base=out)
    return out, f"schedule of {source}"


# ------------------------------------------------------------------------------------------- out of memory


_OOM_TEXT = re.compile(r"out of memory|can(no|')t allocate memory|cannot allocate|not enough memory", re.I)


def is_out_of_memory(exc: BaseException) -> bool:
    """``torch.cuda.OutOfMemoryError``, ``MemoryError``, or a RuntimeError whose message says memory could not be
    allocated (PyTorch's CPU allocator: "DefaultCPUAllocator: can't allocate memory")."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and bool(_OOM_TEXT.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


def _free_memory() -> None:
    import torch

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
    from papernets.engine.checkpoint import load_checkpoint
    from papernets.engine.trainer import Trainer, TrainingInterrupted, config_from_checkpoint

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
    import torch

    from papernets.bench.profile import measure_throughput, peak_memory_mb
    from papernets.engine.distributed import resolve_device
    from papernets.engine.speed import use_channels_last
    from papernets.engine.trainer import build_model
    from papernets.registry import get_entry

    device = resolve_device(cfg.train.device)
    cfg = copy.deepcopy(cfg)
    cfg.model.pretrained = None
    size = cfg.data.image_size
    channels_last = cfg.train.channels_last
    if channels_last is None:
        channels_last = use_channels_last(get_entry(cfg.model.name).family, device)

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


def describe_config(cfg: Config, recipe: str | None = None, amp: str = "off", compiled: bool = False) -> str:
    """A short line: optimizer, learning rate, schedule, batch (with accumulation), regularization that is on, and
    the speed options that change the arithmetic (``amp``: the autocast dtype the run used, "off" for fp32)."""
    o, s, t = cfg.optim, cfg.schedule, cfg.train
    parts = [f"{o.name} lr {o.lr:.3g}" + (f" wd {o.weight_decay:g}" if o.weight_decay else "")
             + (" + " + ("ASAM" if o.sam_adaptive else "SAM") if o.sam else "")]
    parts.append("constant lr" if s.name in ("none", "constant") else f"{s.name} schedule")
    micro = t.batch_size // t.accum_steps
    parts.append(f"batch {t.batch_size}" + (f" = {t.accum_steps} x {micro} (accumulated)" if t.accum_steps > 1 else ""))
    parts.append(f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}")
    extras = [name for name, on in (("label smoothing", t.label_smoothing), ("mixup", t.mixup_alpha),
                                    ("cutmix", t.cutmix_alpha), ("EMA", t.ema), ("progressive", t.progressive),
                                    ("RandAugment", cfg.data.randaugment_ops),
                                    ("activation checkpointing", t.activation_checkpointing)) if on]
    if extras:
        parts.append(", ".join(extras))
    speed = ([f"{amp} autocast"] if amp != "off" else []) + (["compiled"] if compiled else [])
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
    from papernets.engine.checkpoint import load_checkpoint

    data = load_checkpoint(run_dir, prefer="best")["data"]
    return data["in_chans"], data["num_classes"]


def bench_row(protocol: Protocol, row: Row, out: Path, overrides: list[str], log: IO[str]) -> dict[str, Any]:
    """Train (or resume) one row, its paper-schedule run, profile it; return its record (also bench.json)."""
    from papernets.bench.profile import meta_model_stats
    from papernets.engine.trainer import TrainingInterrupted
    from papernets.registry import get_entry

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
            wall_time_s=summary["wall_time_s"], epochs=summary["epochs"], batch_size=used.train.batch_size,
            accum_steps=used.train.accum_steps, micro_batch=used.train.batch_size // used.train.accum_steps,
            device=summary["device"], schedule=used.schedule.name,
            configuration=describe_config(used, recipe, summary.get("amp", "off"), summary.get("compile", False)),
            dataset=summary["dataset"], curves=[{k: r.get(k) for k in ("epoch", "train_acc", "val_acc")}
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
                                            num_classes=classes, **base.model.kwargs)
            rec.update(params=params, gmacs=macs / 1e9, gflops=2 * macs / 1e9,
                       input=_input_label(chans, base.data.image_size), batch_size=base.train.batch_size,
                       configuration=describe_config(base))
        except Exception:  # a model that cannot even be built at this size: its error already says why
            pass
    if protocol.paper_schedule:
        rec.update(_paper_schedule_column(rec, protocol, row, out, overrides, log))
    rec["bench_time_s"] = time.perf_counter() - started
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench.json").write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def _dataset_shape(name: str) -> tuple[int, int]:
    """(channels, classes) of a dataset by name, for the figures of a row that could not load it."""
    return 1 if name in ("mnist", "fashion-mnist") else 3, 100 if name == "cifar100" else 10


def _paper_schedule_column(rec: dict[str, Any], protocol: Protocol, row: Row, out: Path, overrides: list[str],
                           log: IO[str]) -> dict[str, Any]:
    from papernets.engine.trainer import TrainingInterrupted

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
    return rec


def run_bench(
    protocol: Protocol, rows: list[Row], out: Path, results: Path, overrides: list[str] | None = None,
    log: IO[str] = sys.stderr, retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Bench ``rows`` (kept, resumed or trained), writing the tables after each and the plots and HTML report at
    the end; return their records."""
    from papernets.bench.report import write_report

    overrides = list(overrides or [])
    for row in rows:  # a bad --set or row config is a usage error before anything trains
        row_config(protocol, row, overrides)
    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows, 1):
        run_dir = out / protocol.name / row.id
        rec = _kept(run_dir, retry_failed)
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
