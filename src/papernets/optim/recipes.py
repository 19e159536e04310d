"""The papers' training recipes (``--recipe paper``), scaled to the run's epochs and batch size.

Each model family has ``configs/recipes/<family>.yaml``: the optimizer, schedule and regularization its paper
used, with ``source`` (the paper and section) and ``reference`` (the epochs and batch size of the paper's run).
An optional ``models`` mapping overrides the family's values (``reference`` and config sections) for some models
(fnmatch patterns of model names, applied in order), e.g. MobileNetV1 and V2 or the EfficientNetV2 sizes.

Scaling rules (the papers ran hundreds of ImageNet epochs at batch sizes in the thousands; a papernets run is
usually a few epochs at 128):

- learning rate (``optim.lr`` and ``schedule.min_lr``): linear scaling rule (Goyal et al. 2017), lr x global
  batch / reference batch, where the global batch is ``train.batch_size`` (per process) x the number of processes
  (``WORLD_SIZE``, set by ``torchrun``; 1 otherwise);
- durations (``schedule.warmup``, ``step_size``, ``milestones``, given in the paper's epochs): x run epochs /
  reference epochs, so warmup, decay periods and milestones keep their share of the run (EfficientNet's 0.97
  every 2.4 of 350 epochs is 0.97 every 0.069 epochs of a 10-epoch run: the same total decay);
- ``train.progressive_stages``: at most the run's epochs;
- everything else (momentum, weight decay, epsilon, label smoothing, dropout, EMA decay, augmentation) as the
  paper has it. The EMA uses TensorFlow's ``num_updates`` warmup (``train.ema_warmup``), as the papers' code did,
  which shortens its window in short runs.

Precedence: the config file < the recipe < command-line flags and ``--set``. The recipe's ``optim`` and
``schedule`` sections replace the file's whole sections (SAM's keys excepted); in the other sections it replaces
the keys it names. The resolved config is what the run
saves (with ``train.recipe`` null, so that ``--config runs/<run>/config.yaml`` repeats the run exactly).
"""

from __future__ import annotations

import copy
import fnmatch
import os
from pathlib import Path
from typing import Any

import yaml

from papernets.config import (
    CONFIGS_DIR,
    Config,
    ConfigError,
    OptimConfig,
    ScheduleConfig,
    apply_overrides,
    config_from_dict,
    yaml_load,
)

__all__ = ["RECIPES_DIR", "recipe_file", "load_recipe", "recipe_overrides", "apply_recipe", "resolve_config",
           "world_size"]

RECIPES_DIR = CONFIGS_DIR / "recipes"

_SECTIONS = ("model", "data", "optim", "schedule", "train")
_TOP_KEYS = {"source", "reference", "models", *_SECTIONS}
_FIXED = {("train", "epochs"), ("train", "batch_size"), ("model", "name"), ("data", "name"),
          ("data", "image_size"), ("schedule", "unit")}


def recipe_file(model_name: str) -> Path:
    from papernets.registry import get_entry

    family = get_entry(model_name).family
    path = RECIPES_DIR / f"{family}.yaml"
    if not path.is_file():
        raise ConfigError(f"no paper recipe for {model_name} (family {family!r}): {path} does not exist.")
    return path


def _merge(into: dict[str, Any], part: dict[str, Any], where: str) -> None:
    for key, value in part.items():
        if key not in _TOP_KEYS or key == "models":
            raise ConfigError(f"{where}: unknown or misplaced recipe key {key!r}; accepted: source, reference, "
                              f"{', '.join(_SECTIONS)}.")
        if key == "source":
            into["source"] = f"{into['source']}; {value}" if into.get("source") else value
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: recipe section {key!r} must be a mapping.")
        into.setdefault(key, {}).update(value)


def load_recipe(model_name: str) -> dict[str, Any]:
    """The family's recipe with the model's ``models`` overrides merged in (unscaled)."""
    from papernets.registry import get_entry

    name = get_entry(model_name).name
    path = recipe_file(name)
    try:
        raw = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}".splitlines()[0]) from exc
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"recipe {path}: unknown keys {sorted(unknown)}; accepted: {sorted(_TOP_KEYS)}.")
    ref = raw.get("reference") or {}
    if not {"epochs", "batch_size"} <= set(ref):
        raise ConfigError(f"recipe {path} needs reference.epochs and reference.batch_size.")
    recipe: dict[str, Any] = {"source": raw.get("source", ""), "reference": dict(ref), "file": str(path)}
    _merge(recipe, {k: v for k, v in raw.items() if k in _SECTIONS}, str(path))
    for pattern, part in (raw.get("models") or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            _merge(recipe, part or {}, f"{path} models[{pattern!r}]")
    for section in _SECTIONS:
        for key in recipe.get(section, {}):
            if (section, key) in _FIXED:
                raise ConfigError(f"recipe {path} must not set {section}.{key}: the run chooses it.")
    return recipe


def world_size() -> int:
    """The number of training processes: ``torchrun``'s ``WORLD_SIZE``, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE must be a whole number, got {os.environ['WORLD_SIZE']!r}.") from exc


def recipe_overrides(
    model_name: str, epochs: int, batch_size: int, processes: int | None = None
) -> tuple[dict[str, dict[str, Any]], str]:
    """The recipe's config sections scaled to ``epochs`` and the global batch, ``batch_size`` (per process) x
    ``processes`` (default: ``world_size()``), and its source line."""
    recipe = load_recipe(model_name)
    ref = recipe["reference"]
    processes = world_size() if processes is None else processes
    global_batch = batch_size * processes
    lr_scale = global_batch / float(ref["batch_size"])
    time_scale = epochs / float(ref["epochs"])
    out = {s: copy.deepcopy(recipe[s]) for s in _SECTIONS if s in recipe}
    optim, sched, train = out.get("optim", {}), out.get("schedule", {}), out.get("train", {})
    if "lr" in optim:
        optim["lr"] = float(optim["lr"]) * lr_scale
    if "min_lr" in sched:
        sched["min_lr"] = float(sched["min_lr"]) * lr_scale
    for key in ("warmup", "step_size"):
        if key in sched:
            sched[key] = float(sched[key]) * time_scale
    if "milestones" in sched:
        sched["milestones"] = [float(m) * time_scale for m in sched["milestones"]]
    if out.get("schedule") is not None:
        sched["unit"] = "epochs"
    if train.get("progressive"):
        train["progressive_stages"] = min(int(train.get("progressive_stages", 4)), epochs)
    at = f"{global_batch} ({batch_size} x {processes} processes)" if processes > 1 else f"{batch_size}"
    return out, f"{recipe['source']} ({Path(recipe['file']).name}, scaled from {ref['epochs']} epochs at batch " \
                f"{ref['batch_size']} to {epochs} at {at})"


def apply_recipe(cfg: Config, base: Config | None = None) -> tuple[Config, str]:
    """Put the paper recipe for ``cfg``'s model, epochs and batch size over ``base`` (default: ``cfg`` itself).

    The learning rate scales with the global batch, ``train.batch_size`` x ``WORLD_SIZE`` processes (the recipe is
    applied before the process group starts, so the count comes from the environment ``torchrun`` sets).
    Returns the new config (``train.recipe`` cleared) and a line naming the recipe and its scaling. The recipe's
    ``optim`` and ``schedule`` replace those whole sections (the SAM keys excepted: SAM goes with any recipe);
    ``model.kwargs`` are merged key by key; any other key the recipe names replaces the base's value."""
    overrides, source = recipe_overrides(cfg.model.name, cfg.train.epochs, cfg.train.batch_size)
    out = copy.deepcopy(base if base is not None else cfg)
    if "optim" in overrides:
        fresh = OptimConfig()
        for key in ("sam", "sam_rho", "sam_adaptive", "sam_eta"):
            setattr(fresh, key, getattr(out.optim, key))
        out.optim = fresh
    if "schedule" in overrides:
        out.schedule = ScheduleConfig()
    if "kwargs" in overrides.get("model", {}):
        overrides["model"]["kwargs"] = {**out.model.kwargs, **overrides["model"]["kwargs"]}
    out = config_from_dict(overrides, base=out)
    out.train.recipe = None
    return out, source


def resolve_config(base: Config, raw: dict[str, Any], overrides: list[str]) -> tuple[Config, str | None]:
    """The one config resolver of ``train``, ``schedule`` and ``bench``: ``base`` (a config file, or a bench
    protocol's base), then the model's paper recipe where the layers above ask for it (``train.recipe: paper``),
    then ``raw`` (command-line flags, or a bench row's config), then ``overrides`` (``--set section.key=value``).

    The recipe is scaled to the epochs and batch size the run ends up with, so it is looked up after a first pass
    through all the layers. Returns the config (``train.recipe`` cleared) and the recipe's line (None without)."""
    from papernets.registry import get_entry

    def layered(cfg: Config) -> Config:
        return apply_overrides(config_from_dict(copy.deepcopy(raw), base=cfg), overrides)

    cfg = layered(copy.deepcopy(base))
    if not cfg.train.recipe:
        return cfg, None
    cfg.model.name = get_entry(cfg.model.name).name
    with_recipe, source = apply_recipe(cfg, base=base)
    cfg = layered(with_recipe)
    cfg.train.recipe = None
    return cfg, source
