"""Bench protocols: which models a ``papernets bench`` run trains, and each row's config.

A protocol is a YAML file that ships with papernets (``configs/bench/<name>.yaml``), or any such file by path::

    description: one line for the report
    paper_schedule: true        # also run each row with only the schedule of its paper recipe
    base: {data: ..., optim: ..., schedule: ..., train: ...}   # a config, the sections of a config file
    families: {resnet: {optim: ...}}   # optional: config sections for every row of a model family
    models:                     # the default rows
      - resnet18                # id = model name
      - {id: resnet18_sam, model: resnet18, config: {optim: {sam: true}}}
    bench: {budget_min: 5}      # optional: a wall-clock budget per row (bench/budget.py); --set bench.KEY=VALUE
    sweep: {...}                # optional: how the family settings were chosen (bench/budget.py, --sweep)

A row's config is the base, then the paper recipe where the base sets ``train.recipe: paper``, then its family's
settings, then the row's own ``config``, then ``--set`` (``optim.recipes.resolve_config``, the resolver
``papernets train`` uses too).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from papernets.config import CONFIGS_DIR, Config, ConfigError, ScheduleConfig, config_from_dict, yaml_load
from papernets.optim.recipes import recipe_overrides, resolve_config
from papernets.registry import UnknownModelError, get_entry, list_models, resolve_name

__all__ = ["PROTOCOLS_DIR", "SCHEDULE_SUFFIX", "Protocol", "Row", "available_protocols", "load_protocol",
           "select_rows", "row_config", "paper_schedule_config"]

PROTOCOLS_DIR = CONFIGS_DIR / "bench"
SCHEDULE_SUFFIX = "-paper_schedule"
_PROTOCOL_KEYS = {"description", "paper_schedule", "base", "models", "families", "bench", "sweep"}
_BENCH_KEYS = {"budget_min": 5.0, "calibration_s": 20.0, "segments": 2}  # the budget's settings and defaults
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
    families: dict[str, dict[str, Any]] = field(default_factory=dict)
    bench: dict[str, Any] | None = None  # the budget (budget_min, calibration_s, segments); None: epochs as configured
    sweep: dict[str, Any] | None = None

    def with_bench_overrides(self, overrides: list[str]) -> tuple[Protocol, list[str]]:
        """This protocol with the ``bench.KEY=VALUE`` items of ``overrides`` applied to its budget; and the other
        items (config overrides for every row)."""
        rest, changed = [], dict(self.bench or {})
        for item in overrides:
            key, sep, value = item.partition("=")
            if not key.startswith("bench."):
                rest.append(item)
                continue
            name = key[len("bench."):]
            if not sep or name not in _BENCH_KEYS:
                raise ConfigError(f"--set {item!r}: accepted bench keys are "
                                  f"{', '.join('bench.' + k for k in _BENCH_KEYS)} (bench.KEY=VALUE).")
            changed[name] = yaml_load(value)
        if changed == (self.bench or {}):
            return self, rest
        return dataclasses.replace(self, bench=_check_bench(changed, f"protocol {self.name} (--set)")), rest


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


def _check_bench(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) - set(_BENCH_KEYS):
        bad = sorted(set(raw) - set(_BENCH_KEYS)) if isinstance(raw, dict) else raw
        raise ConfigError(f"{where}: bench: unknown keys {bad}; accepted: {', '.join(_BENCH_KEYS)}.")
    out = {**_BENCH_KEYS, **raw}
    for key in ("budget_min", "calibration_s"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
            raise ConfigError(f"{where}: bench.{key} must be a positive number (minutes for budget_min, seconds "
                              f"for calibration_s), got {value!r}.")
    if isinstance(out["segments"], bool) or not isinstance(out["segments"], int) or out["segments"] < 1:
        raise ConfigError(f"{where}: bench.segments must be a whole number >= 1 (validations per row: 2 is midway "
                          f"and at the end), got {out['segments']!r}.")
    return out


def _check_families(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    from papernets.registry import list_families

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: families must map a model family to config sections, got {raw!r}.")
    known = list_families()
    for family, config in raw.items():
        if family not in known:
            close = difflib.get_close_matches(str(family), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown family {family!r}{hint}; see `papernets models` for the families.")
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: families.{family} must be a mapping of config sections, got {config!r}.")
        config_from_dict(copy.deepcopy(config))  # a bad key fails now, naming it
    return raw


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
        raw = yaml_load(path.read_text()) or {}
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
    where = f"protocol {path.name}"
    families = _check_families(raw.get("families") or {}, where)
    bench = _check_bench(raw["bench"], where) if raw.get("bench") is not None else None
    sweep = raw.get("sweep")
    if sweep is not None and not isinstance(sweep, dict):
        raise ConfigError(f"{where}: sweep must be a mapping, got {sweep!r}.")
    return Protocol(path.stem, path, str(raw.get("description") or path.stem), base, rows, paper_schedule,
                    families, bench, sweep)


def select_rows(protocol: Protocol, models: str | None) -> list[Row]:
    """The protocol's rows narrowed or widened by ``--models``: a comma list of row ids, model names and fnmatch
    patterns. An item that matches rows of the protocol selects them; one that matches none selects the registered
    models it names or matches (new rows: the model with the base config)."""
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
    """A row's config, in order: the protocol's base, the paper recipe (if the base asks for it), the settings of
    the row's family, the row's config, ``overrides`` (``section.key=value``); and the recipe's line (None
    without one)."""
    base = config_from_dict(copy.deepcopy(protocol.base))
    entry = get_entry(row.model)
    base.model.name = entry.name
    if base.output.name is not None:
        raise ConfigError(f"protocol {protocol.name}: output.name is chosen by the bench (the row id); remove it.")
    return resolve_config(base, merge(protocol.families.get(entry.family, {}), row.config), overrides or [])


def merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``under``, section by section (a copy; neither changes)."""
    out = copy.deepcopy(under)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def paper_schedule_config(cfg: Config) -> tuple[Config, str]:
    """``cfg`` with only the schedule section of its model's paper recipe, scaled to the run's epochs and batch as
    ``--recipe paper`` scales it (``recipes.recipe_overrides``); and a line naming it."""
    overrides, source = recipe_overrides(cfg.model.name, cfg.train.epochs, cfg.train.batch_size)
    if "schedule" not in overrides:
        raise ConfigError(f"the paper recipe of {cfg.model.name} has no schedule section.")
    out = copy.deepcopy(cfg)
    out.schedule = ScheduleConfig()
    out = config_from_dict({"schedule": overrides["schedule"]}, base=out)
    return out, f"schedule of {source}"
