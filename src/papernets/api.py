"""The Python API in three calls: build a model, train a config, load what a run trained.

    import papernets
    model = papernets.create_model("resnet18", num_classes=10, in_chans=1, img_size=28)
    run = papernets.train("quickstart", epochs=1)           # a shipped config, a YAML path, a dict or a Config
    print(run.dir, run.summary["test_acc"], run.metrics[-1]["val_acc"])
    model, preprocess, classes = papernets.load(run.dir)    # or a checkpoint, or an exported .onnx file

``train`` runs exactly what ``papernets train --config ...`` runs (the same resolver, the same trainer and run
directory); keyword overrides name a config key by itself where it is unambiguous (``epochs=1``, ``lr=0.01``,
``batch_size=64``) or a whole section as a mapping (``model={"name": "resnet20"}``, ``data={"name": "mnist"}``).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papernets.config import Config, ConfigError, config_from_dict, load_config
from papernets.errors import UsageError

__all__ = ["Run", "train", "load"]


@dataclass
class Run:
    """A finished run: its directory, ``summary.json`` and ``metrics.csv`` (one dict per epoch), and its config."""

    dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, float]]
    config: Config

    @classmethod
    def read(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        with (run_dir / "metrics.csv").open() as f:
            metrics = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
        return cls(run_dir, json.loads((run_dir / "summary.json").read_text()), metrics,
                   load_config(run_dir / "config.yaml"))


def _overrides(cfg: Config, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword overrides as config sections: a section name takes a mapping, any other name the one key of that
    name (an error when no section or several have it)."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"papernets.train: {key}= takes a mapping of {key} keys, got {value!r}.")
            out.setdefault(key, {}).update(value)
            continue
        owners = [name for name, section in sections.items() if key in {f.name for f in dataclasses.fields(section)}]
        if len(owners) != 1:
            why = (f"is in several sections ({', '.join(owners)}): write {owners[0]}={{{key!r}: ...}}" if owners
                   else f"is not a config key (sections: {', '.join(sections)})")
            raise ConfigError(f"papernets.train: keyword {key!r} {why}.")
        out.setdefault(owners[0], {})[key] = value
    return out


def train(config: str | Path | dict[str, Any] | Config = "quickstart", run_dir: str | Path | None = None,
          **overrides: Any) -> Run:
    """Train ``config`` (a shipped config's name, a YAML path, a dict of sections, or a ``Config``), with keyword
    ``overrides``, into ``run_dir`` (default: ``output.dir/output.name``, as ``papernets train``); the finished
    ``Run``. A paper recipe (``train={"recipe": "paper"}``) is applied as ``--recipe paper`` applies it."""
    from papernets.engine.rundir import default_run_dir
    from papernets.engine.trainer import Trainer
    from papernets.optim.recipes import resolve_config

    if isinstance(config, Config):
        base = copy.deepcopy(config)
    elif isinstance(config, dict):
        base = config_from_dict(copy.deepcopy(config))
    else:
        base = load_config(config)
    cfg, recipe = resolve_config(base, _overrides(base, overrides), [])
    target = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if (target / "checkpoints").exists():
        raise UsageError(f"run directory {str(target)!r} already holds a run; choose another run_dir or "
                         f"output.name, or continue it with papernets train --resume {target}.")
    Trainer(cfg, target, recipe=recipe).fit()
    return Run.read(target)


def load(source: str | Path) -> tuple[Any, Callable[[Any], Any], list[str]]:
    """``(model, preprocess, class_names)`` of a run directory, a checkpoint or an exported ONNX file: the model in
    eval mode with the weights the run tested (an onnxruntime session wrapped as a module, for ONNX); ``preprocess``
    turns a PIL image into the batch of one the model expects (resized, normalized as the run was)."""
    from papernets.engine.export import load_any

    trained = load_any(source)
    return trained.model, trained.preprocess, trained.classes
