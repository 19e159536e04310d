"""A wall-clock budget per bench row, made a step count once, and the sweep that chose each family's settings.

Budget (a protocol with a ``bench`` section, e.g. ``fashion-budget``): every row gets the same training time,
``bench.budget_min`` minutes. At the start of a row, ``calibrate`` times a few training steps of the row's own
config through the ordinary ``Trainer`` (the same data, model, runtime and optimizer; the first steps are not
timed), and ``budget_config`` turns the budget into ``train.steps``: the row then trains exactly that many
optimizer steps in ``bench.segments`` segments (each ending in a validation), and its learning-rate schedule (a
warmup, then a decay to zero, configured in fractions of the run: ``schedule.unit: run``) spans exactly those
steps. The step count is written to the row's ``config.yaml``, so the row can be repeated exactly from its config
on any machine (taking another time there); the calibration is kept in the row's ``budget.json``.

Sweep (``papernets bench --protocol P --sweep``): for each family of the protocol's rows (its first row stands for
it), short runs try the settings the protocol's ``sweep`` section lists, round by round: round 1 tries each
candidate over ``sweep.start``; each later round tries its candidates over the best so far, which stays in the
race. Every run of a family sees the same number of images: the steps that fit in ``sweep.budget_min`` by one
timed calibration at the start settings' batch, scaled to each run's batch (so the choice does not depend on the
machine's load). Every run validates once at its end, on the first ``sweep.eval_limit`` validation images, and
never evaluates the test split (``train.test: false``). The best settings of each family go into the protocol's
``families`` section (by hand, checked by a test against the committed sweep results), and every tried value
with its validation accuracy is written next to the table (``<protocol>-sweep.md`` and ``.json``).
"""

from __future__ import annotations

import copy
import gc
import io
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from papernets.bench.protocol import Protocol, Row, merge
from papernets.config import Config, config_from_dict
from papernets.engine.rundir import atomic_write_text, cpu_label
from papernets.engine.trainer import Trainer, TrainingInterrupted
from papernets.errors import ConfigError
from papernets.optim.recipes import resolve_config
from papernets.registry import get_entry

__all__ = ["calibrate", "budget_config", "budget_steps", "run_sweep", "sweep_choices", "flat_settings"]


class _Timed:
    """The trainer's loader, stopping its epoch once ``seconds`` have passed over at least ``min_steps`` timed
    steps after an untimed warmup of at least ``warmup`` steps and ``warmup_s`` seconds; ``stamps`` are the moments
    each batch was asked for (a step's end), ``warmup`` ends as the index of the first timed stamp."""

    def __init__(self, loader: Any, seconds: float, warmup: int, min_steps: int, warmup_s: float = 0.0) -> None:
        self.loader, self.seconds, self.warmup, self.min_steps = loader, seconds, warmup, min_steps
        self.warmup_s = warmup_s
        self.stamps: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["loader"], name)

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[Any]:
        for batch in self.loader.batches(epoch, start):
            self.stamps.append(time.perf_counter())
            if (len(self.stamps) - 1 == self.warmup and self.stamps[-1] - self.stamps[0] < self.warmup_s
                    and len(self.stamps) < len(self.loader) // 2):  # half the pass at most: the rest is timed
                self.warmup += 1  # still warming up: the first steps of a model run slower (allocator, kernels)
            timed = len(self.stamps) - 1 - self.warmup
            if timed >= self.min_steps and self.stamps[-1] - self.stamps[self.warmup] >= self.seconds:
                return
            yield batch


def calibrate(cfg: Config, seconds: float, log: IO[str], warmup: int = 2, min_steps: int = 3,
              warmup_s: float | None = None) -> dict[str, Any]:
    """Seconds per optimizer step of ``cfg``'s training, timed over at least ``seconds`` (and ``min_steps`` steps)
    after an untimed warmup of at least ``warmup`` steps and ``warmup_s`` seconds (default: a quarter of
    ``seconds``; the first steps of a model are slower than its steady pace, e.g. DenseNet-40's first ten on an
    AVX2 CPU by up to a quarter), through a throwaway ``Trainer`` that writes nothing."""
    warmup_s = seconds / 4 if warmup_s is None else warmup_s
    probe = copy.deepcopy(cfg)
    probe.train.steps, probe.train.epochs, probe.train.precise_bn = None, 1, 0
    probe.train.compile = eager_unless_set(cfg)
    probe.output.checkpoint = probe.output.save_best = probe.output.plots = False
    started = time.perf_counter()
    trainer = Trainer(probe, Path("calibration-not-written"), stream=io.StringIO())
    timed = _Timed(trainer.train_loader, seconds, warmup, min_steps, warmup_s)
    trainer.train_loader = timed
    trainer.train_epoch(0)
    warmup = timed.warmup
    steps = len(timed.stamps) - 1 - warmup
    if steps < 1:
        raise ConfigError(f"calibration: one pass over the training set of {cfg.model.name} is only "
                          f"{len(timed.stamps)} batches; at least {warmup + 2} are needed to time a step.")
    per_step = (timed.stamps[-1] - timed.stamps[warmup]) / steps
    del trainer, timed
    gc.collect()
    out = {"seconds_per_step": per_step, "timed_steps": steps, "warmup_steps": warmup,
           "calibration_s": time.perf_counter() - started, "batch_size": cfg.train.batch_size, "cpu": cpu_label(),
           "load_avg_1min": os.getloadavg()[0], "cpu_count": os.cpu_count()}  # other work on the cores shows here
    print(f"budget: calibration of {cfg.model.name} at batch {cfg.train.batch_size}: {per_step:.3f} s per step "
          f"({steps} steps timed)", file=log, flush=True)
    return out


def budget_steps(budget_min: float, seconds_per_step: float, segments: int) -> int:
    """The steps that fit in the budget, a multiple of ``segments`` (at least one step per segment)."""
    steps = math.floor(budget_min * 60.0 / seconds_per_step) // segments * segments
    return max(segments, steps)


def eager_unless_set(cfg: Config) -> bool:
    """The ``train.compile`` of a budget row and of its calibration: the config's, else eager. Left to the trainer,
    the choice would depend on the images a run sees, which differ between the calibration (a whole pass) and the
    row (its budget's), so the calibration could time a compiled model for a row that then runs eager."""
    return bool(cfg.train.compile)  # None (unset): eager


def budget_config(cfg: Config, budget: dict[str, Any], calibration: dict[str, Any]) -> Config:
    """``cfg`` with the budget as ``train.steps`` in ``budget['segments']`` segments (``train.epochs``), and
    ``train.compile`` pinned to what the calibration timed."""
    out = copy.deepcopy(cfg)
    out.train.compile = eager_unless_set(cfg)
    out.train.epochs = budget["segments"]
    out.train.steps = budget_steps(budget["budget_min"], calibration["seconds_per_step"], budget["segments"])
    return out


# ------------------------------------------------------------------------------------------------ the sweep


def flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` as ``{"optim.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in flat_settings(settings).items()) or "(start)"


def _sweep_spec(protocol: Protocol) -> dict[str, Any]:
    spec = protocol.sweep
    if not spec:
        raise ConfigError(f"protocol {protocol.name} has no sweep section; --sweep needs one.")
    unknown = set(spec) - {"budget_min", "calibration_s", "eval_limit", "start", "rounds"}
    if unknown:
        raise ConfigError(f"protocol {protocol.name}: sweep: unknown keys {sorted(unknown)}; accepted: budget_min, "
                          "calibration_s, eval_limit, start, rounds.")
    rounds = spec.get("rounds") or []
    if not rounds or not all(isinstance(r, dict) and isinstance(r.get("try"), list) and r["try"] for r in rounds):
        raise ConfigError(f"protocol {protocol.name}: sweep.rounds must be a list of {{name, try: [settings...]}}.")
    return spec


def _representatives(protocol: Protocol, rows: list[Row]) -> dict[str, Row]:
    """Each family's first plain row (no config of its own), else its first row, in the protocol's order; a row's
    config (e.g. VGG-16's He initialization) is laid over every trial of its family."""
    out: dict[str, Row] = {}
    for row in rows:
        family = get_entry(row.model).family
        if family not in out or (out[family].config and not row.config):
            out[family] = row
    return dict(sorted(out.items(), key=lambda kv: rows.index(kv[1])))


def _trial(protocol: Protocol, row: Row, settings: dict[str, Any], spec: dict[str, Any], run_dir: Path,
           calibrations: dict[str, Any], log: IO[str]) -> dict[str, Any]:
    """One sweep run (kept when its ``trial.json`` exists): its settings, steps and validation accuracy."""
    record_path = run_dir / "trial.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        same = json.loads(json.dumps({"settings": settings, "row_config": row.config}))
        if {k: record.get(k) for k in same} == same:
            return record
        print(f"sweep: {run_dir} was run with other settings (the protocol's sweep changed); running it again",
              file=log, flush=True)
    base = config_from_dict(copy.deepcopy(protocol.base))
    base.model.name = get_entry(row.model).name
    fixed = {"train": {"test": False, "epochs": 1}, "data": {"eval_limit": spec.get("eval_limit")},
             "output": {"checkpoint": False, "save_best": False, "plots": False}}
    cfg, _ = resolve_config(base, merge(merge(settings, row.config), fixed), [])
    if "start" not in calibrations:  # once per family, at the start settings' batch
        start_cfg, _ = resolve_config(base, merge(merge(spec.get("start") or {}, row.config), fixed), [])
        calibrations["start"] = calibrate(start_cfg, float(spec.get("calibration_s", 10)), log)
    cal = calibrations["start"]
    # every trial of a family sees the same number of images: the start batch's steps, scaled to its own batch
    images = budget_steps(float(spec.get("budget_min", 1)), cal["seconds_per_step"], 1) * cal["batch_size"]
    cfg = copy.deepcopy(cfg)
    cfg.train.steps = max(1, round(images / cfg.train.batch_size))
    cfg.train.precise_bn = min(cfg.train.precise_bn, 4)  # 4 batches: enough for a run validated on a subset
    if run_dir.exists():  # an unfinished trial: start it again
        import shutil

        shutil.rmtree(run_dir)
    classes = None
    try:
        trainer = Trainer(cfg, run_dir, stream=log)
        classes = trainer.num_classes
        summary = trainer.fit()
        val, error = summary["best_val_acc"], None
    except TrainingInterrupted:  # stopped from outside: not a result; the next sweep runs this trial again
        raise
    except Exception as exc:  # a diverged trial is a result (its settings lose), not the end of the sweep
        val, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    record = {"settings": settings, "row_config": row.config, "label": _label(settings), "steps": cfg.train.steps,
              "batch_size": cfg.train.batch_size, "images_seen": cfg.train.steps * cfg.train.batch_size,
              "seconds_per_step": cal["seconds_per_step"], "calibration_load": cal.get("load_avg_1min"),
              "val_acc": val, "error": error, "num_classes": classes, "cpu": cpu_label()}
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    gc.collect()
    return record


def run_sweep(protocol: Protocol, rows: list[Row], out: Path, results: Path, log: IO[str]) -> dict[str, Any]:
    """Sweep the families of ``rows`` (see the module docstring); write ``results/<protocol>-sweep.{md,json}``
    after each family and return what they hold."""
    spec = _sweep_spec(protocol)
    start = spec.get("start") or {}
    families: dict[str, Any] = {}
    root = out / f"{protocol.name}-sweep"
    for family, row in _representatives(protocol, rows).items():
        fam_dir = root / family
        cal_path = fam_dir / "calibration.json"
        calibrations = json.loads(cal_path.read_text()) if cal_path.is_file() else {}
        best: dict[str, Any] | None = None
        rounds = []
        for r, rnd in enumerate(spec["rounds"], 1):
            trials = [] if best is None else [{**best, "incumbent": True}]
            for c, candidate in enumerate(rnd["try"], 1):
                settings = merge(best["settings"] if best else start, candidate)
                print(f"sweep {family} ({row.model}) round {r} [{c}/{len(rnd['try'])}]: {_label(candidate)}",
                      file=log, flush=True)
                trial = _trial(protocol, row, settings, spec, fam_dir / f"r{r}-c{c}", calibrations, log)
                fam_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(cal_path, json.dumps(calibrations, indent=2) + "\n")
                trials.append({**trial, "candidate": _label(candidate)})
                print(f"sweep {family} round {r} [{c}]: val acc "
                      + (f"{trial['val_acc'] * 100:.2f}%" if trial["val_acc"] is not None else trial["error"]),
                      file=log, flush=True)
            scored = [t for t in trials if t["val_acc"] is not None]
            if not scored:
                raise ConfigError(f"sweep: every trial of {family} round {r} failed: {trials[0]['error']}")
            best = max(scored, key=lambda t: t["val_acc"])  # the first of equals: the incumbent stays
            rounds.append({"name": rnd.get("name", f"round {r}"), "trials": trials, "best": best["label"]})
        assert best is not None
        families[family] = {"model": get_entry(row.model).name, "row_config": row.config, "rounds": rounds,
                            "chosen": best["settings"], "val_acc": best["val_acc"],
                            "near_chance": _near_chance(best)}
        write_sweep(protocol, spec, families, results)
    return families


def _near_chance(trial: dict[str, Any]) -> bool:
    """Validation accuracy below twice chance (20% for 10 classes): the run did not learn, and its rank among
    other such runs is noise."""
    classes = trial.get("num_classes") or 10
    return trial["val_acc"] is not None and trial["val_acc"] < 2.0 / classes


def write_sweep(protocol: Protocol, spec: dict[str, Any], families: dict[str, Any], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    name = f"{protocol.name}-sweep"
    data = {"protocol": protocol.name, "budget_min": spec.get("budget_min"), "eval_limit": spec.get("eval_limit"),
            "start": spec.get("start") or {}, "families": families}
    atomic_write_text(results / f"{name}.json", json.dumps(data, indent=2) + "\n")
    lines = [f"# Sweep: {protocol.name}", "",
             f"Written by `papernets bench --protocol {protocol.name} --sweep`: for each family (its first row of "
             f"the protocol), short runs validated once at the end on the first {spec.get('eval_limit') or 'all'} "
             "validation images; the test split is never evaluated. Every run of a family sees the same number of "
             f"images: the steps that fit in {spec.get('budget_min')} minutes by one calibration at the start "
             "settings' batch, scaled to each run's batch. Round 1 tries each candidate over the start settings "
             f"({_label(spec.get('start') or {})}); each later round its candidates over the best so far "
             "(marked incumbent). The chosen settings are the protocol's `families` section.", ""]
    lines += ["| family | model | round | settings tried | steps | images | val acc (%) | CPU (load at calibration) |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for family, f in families.items():
        for rnd in f["rounds"]:
            for t in rnd["trials"]:
                mark = " (incumbent)" if t.get("incumbent") else ""
                chosen = "**" if t["label"] == rnd["best"] else ""
                acc = (f"{chosen}{t['val_acc'] * 100:.2f}{chosen}" + (" (near chance)" if _near_chance(t) else "")
                       if t["val_acc"] is not None else f"failed: {t['error']}")
                lines.append(f"| {family} | `{f['model']}` | {rnd['name']} | {t['candidate']}{mark} | {t['steps']} | "
                             f"{t['images_seen']:,} | {acc} | {t['cpu']} ({t.get('calibration_load', 0):.1f}) |")
    lines += ["", "Chosen per family (best validation accuracy of the last round, in bold above):", ""]
    lines += [f"- {family}: {_label(f['chosen'])} ({f['val_acc'] * 100:.2f}%"
              + ("; no run left chance, so this choice is noise: the family needs a longer sweep or a fix"
                 if f.get("near_chance") else "") + ")"
              + (f"; every run with the row's config {json.dumps(f['row_config'])}" if f.get("row_config") else "")
              for family, f in families.items()]
    atomic_write_text(results / f"{name}.md", "\n".join(lines) + "\n")


def sweep_choices(path: Path) -> dict[str, dict[str, Any]]:
    """The chosen settings per family of a written sweep (``<protocol>-sweep.json``)."""
    return {family: f["chosen"] for family, f in json.loads(path.read_text())["families"].items()}
