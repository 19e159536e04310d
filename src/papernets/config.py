"""The run configuration: one validated schema, loaded from YAML, then CLI flags, then ``--set`` overrides.

Sections: ``model``, ``data``, ``optim``, ``schedule``, ``train``, ``output``. Unknown keys and values of the
wrong type are errors that name the key, the value and what is accepted (with the closest valid key).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from papernets.errors import ConfigError

__all__ = ["CONFIGS_DIR", "Config", "ConfigError", "config_path", "packaged_configs", "load_config", "apply_overrides",
           "config_to_dict", "config_from_dict", "yaml_load", "YamlLoader"]


@dataclass
class ModelConfig:
    name: str = "resnet18"
    num_classes: int | None = None  # None: the dataset's number of classes
    in_chans: int | None = None  # None: the dataset's number of channels
    drop_rate: float | None = None  # None: the paper's default
    drop_path_rate: float | None = None
    small_input: bool | None = None  # None: small-image form below 64 px
    pretrained: str | None = None  # "torchvision" or "timm": map their weights onto ours
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra model keywords


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    root: str | None = None  # None: well-known locations (see docs/datasets.md)
    image_size: int = 224
    val_fraction: float = 0.1
    limit: int | None = None  # cap every split at this many images (quick runs)
    eval_limit: int | None = None  # cap validation and test at this many images instead (None: as limit)
    augment: bool = True  # false: no crop, no flip, no RandAugment/TrivialAugment/AutoAugment
    flip: bool | None = None  # horizontal flips in training; None: on, except for the digit datasets
    flip_mode: Literal["random", "alternating"] = "random"  # alternating: each image mirrored every other pass
    download: bool = False  # let torchvision download mnist/cifar into root
    split_seed: int = 0
    randaugment_ops: int = 0  # RandAugment: ops per image (Cubuk et al.'s N); 0: off
    randaugment_magnitude: float = 9  # RandAugment magnitude M on the papers' scale: 10 is each op's maximum
    auto_augment: Literal["trivialaugment", "autoaugment"] | None = None  # a learned/random policy instead
    random_erasing: float = 0.0  # probability of erasing a random rectangle of each image (Zhong et al.)
    pipeline: Literal["auto", "memory", "stream"] = "auto"  # auto: memory when the decoded folder fits the budget
    memory_budget_gb: float | None = None  # None: a quarter of the machine's memory
    workers: int | None = None  # stream pipeline: decoding processes; None: the usable cores
    crop_pct: float = 0.875  # stream pipeline: evaluation resizes to image_size / crop_pct, then center-crops
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # stream: random-resized crop area
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333333])  # stream: its aspect ratios
    skip_bad_images: bool = False  # leave out (and count) image files that cannot be decoded
    index_cache: str | None = None  # where folder indexes are cached; None: ~/.cache/papernets/index


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw", "rmsprop", "lamb"] = "adam"
    lr: float = 0.001
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd, rmsprop
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw, lamb
    eps: float = 1e-8
    alpha: float = 0.99  # rmsprop decay
    tf_style_eps: bool = False  # rmsprop: TensorFlow's form (eps inside the sqrt, mean square starts at 1)
    no_weight_decay_norm_bias: bool = False  # no weight decay on 1-D parameters (biases, norm weights)
    norm_bias_lr_scale: float = 1.0  # lr x this for batch-norm biases, their weight decay / this (airbench)
    sam: bool = False  # sharpness-aware minimization around the optimizer above
    sam_rho: float | None = None  # SAM neighbourhood radius; None: 0.05 (SAM), 0.5 (ASAM)
    sam_adaptive: bool = False  # ASAM: the neighbourhood scaled by |w| + sam_eta
    sam_eta: float = 0.01  # ASAM


@dataclass
class ScheduleConfig:
    name: Literal[
        "constant", "none", "step", "multistep", "exponential", "cosine", "poly", "warmup_linear",
        "warmup_cosine", "cyclic", "onecycle",
    ] = "none"
    unit: Literal["epochs", "steps", "run"] = "epochs"  # of warmup, step_size, milestones; run: fractions of the run
    warmup: float = 0.0  # linear warmup before the schedule (fractions of an epoch allowed)
    step_size: float = 30.0  # step, exponential: one gamma per step_size; cyclic: half a cycle
    milestones: list[float] = field(default_factory=list)  # multistep: x gamma at each
    gamma: float = 0.1  # step, multistep, exponential: decay factor; cyclic exp_range: amplitude x gamma per unit
    min_lr: float = 0.0  # cosine, poly, warmup_*: the final lr; cyclic: the lower bound
    power: float = 1.0  # poly: (1 - t/T) ** power
    cycle_mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"  # cyclic
    pct_start: float = 0.3  # onecycle: share of the run spent rising
    div_factor: float = 25.0  # onecycle: start at lr / div_factor
    final_div_factor: float = 1e4  # onecycle: end at lr / div_factor / final_div_factor


@dataclass
class TrainConfig:
    epochs: int = 10  # with train.steps: the number of segments (each ends in validation and a checkpoint)
    steps: int | None = None  # train exactly this many optimizer steps (a budget), in train.epochs equal segments
    batch_size: int = 128
    accum_steps: int = 1  # split each batch into this many equal micro-batches (gradient accumulation)
    eval_batch_size: int | None = None  # None: 2 x batch_size
    seed: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max gradient norm
    amp: Literal["auto", "off", "fp16", "bf16"] = "auto"  # auto: bf16/fp16 on CUDA; CPU: as measured per family
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    channels_last: bool | None = None  # None: per family, as measured (engine/speed.py)
    compile: bool | None = None  # torch.compile the training forward/backward; None: per family, as measured
    activation_checkpointing: bool = False  # recompute block activations in backward (less memory, more time)
    sync_bn: bool = False  # torchrun: batch-norm statistics over all processes' batches (SyncBatchNorm; CUDA only)
    threads: int | None = None  # CPU threads; None: PyTorch's default
    malloc_cache: bool | None = None  # CPU: glibc keeps freed memory; None: on in training (engine/allocator.py)
    log_every: int = 20  # progress updates per epoch (non-interactive output)
    val_every: int = 1  # validate every this many epochs (segments) and after the last; the others only checkpoint
    recipe: Literal["paper"] | None = None  # "paper": the model's paper recipe (configs/recipes/<family>.yaml)
    mixup_alpha: float = 0.0  # mixup Beta(alpha, alpha); 0: off
    cutmix_alpha: float = 0.0  # cutmix Beta(alpha, alpha); 0: off
    mix_prob: float = 1.0  # probability that a batch is mixed (when mixup or cutmix is on)
    mix_switch_prob: float = 0.5  # with both on: probability of cutmix rather than mixup for a batch
    ema: bool = False  # keep an exponential moving average of the weights
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + t) / (10 + t)) at step t, as TensorFlow's num_updates
    lookahead: int = 0  # k > 0: every k steps fold the weights into the EMA (decay ema_decay**k x (t/T)**3), copy back
    select_best_on: Literal["model", "ema"] = "model"  # which weights' val accuracy picks best.pt
    precise_bn: int = 0  # before each validation, recompute batch-norm statistics on this many training batches
    test: bool = True  # false: end without evaluating the test split (a sweep that chooses on validation)
    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard (pip install papernets[tensorboard])
    tta_flip: bool = False  # evaluate each image and its mirror image, averaging the logits
    tta_translate: int = 0  # also views shifted this many pixels up-left and down-right (airbench's multi-crop)
    progressive: bool = False  # EfficientNetV2 progressive learning (image size, regularization by stage)
    progressive_stages: int = 4
    progressive_image_size: list[float] = field(default_factory=lambda: [0.4267, 1.0])  # x data.image_size
    progressive_randaugment: list[int] | None = field(default_factory=lambda: [5, 15])  # magnitudes
    progressive_mixup: list[float] | None = field(default_factory=lambda: [0.0, 0.0])  # mixup alphas
    progressive_dropout: list[float] | None = field(default_factory=lambda: [0.1, 0.3])  # model.drop_rate


@dataclass
class OutputConfig:
    dir: str = "runs"
    name: str | None = None  # None: <model>-<dataset>-<time>
    save_best: bool = True  # write checkpoints/best.pt on a new best validation accuracy
    checkpoint: bool = True  # write checkpoints/last.pt after every epoch (needed for --resume)
    plots: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


_MISSING = object()


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or ``_MISSING`` if it does not fit (no lossy conversions)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value if value in typing.get_args(tp) else _MISSING
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            out = _coerce(value, arg)
            if out is not _MISSING:
                return out
        return _MISSING
    if origin is list:
        if not isinstance(value, list | tuple):
            return _MISSING
        (item_tp,) = typing.get_args(tp)
        items = [_coerce(v, item_tp) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else items
    if origin is dict:
        return dict(value) if isinstance(value, dict) else _MISSING
    if tp is bool:
        return value if isinstance(value, bool) else _MISSING
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _MISSING
    if tp is str:
        return value if isinstance(value, str) else _MISSING
    raise TypeError(f"unsupported config type {tp}")


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {where}{close[0]}?" if close else f" Valid keys: {', '.join(valid)}."
    return ConfigError(f"unknown config key {where}{key!r}.{hint}")


def _set_field(section: Any, key: str, value: Any, where: str, text: str | None = None) -> None:
    """Set one key; ``text`` is the value as the user spelled it (a YAML scalar or a ``--set`` value), if known.

    YAML 1.1 reads ``off``/``on``/``yes``/``no`` as booleans and ``2024`` as a number; a field that takes a string
    then gets the user's spelling (``train.amp: off`` is ``"off"``, ``output.name=2024`` is ``"2024"``)."""
    hints = _section_types(type(section))
    if key not in hints:
        raise _unknown_key(key, list(hints), where)
    tp = hints[key]
    out = _coerce(value, tp)
    shown = value
    if out is _MISSING and isinstance(text, str) and isinstance(value, bool | int | float):
        out = _coerce(text, tp)
        if isinstance(value, bool):
            shown = text  # 'on', not True
    if out is _MISSING:
        raise ConfigError(f"{where}{key} must be {_type_name(tp)}, got {shown!r}.")
    setattr(section, key, out)


def config_from_dict(
    raw: dict[str, Any], base: Config | None = None, spelled: dict[str, Any] | None = None
) -> Config:
    """Merge a nested mapping into a config (a fresh default one unless ``base`` is given), validating it.

    ``spelled`` is the same mapping with the scalars as the user wrote them (strings), where known: a string
    field that YAML read as a boolean or a number takes that spelling instead."""
    cfg = base if base is not None else Config()
    spelled = spelled if isinstance(spelled, dict) else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}.")
    sections = [f.name for f in dataclasses.fields(Config)]
    for name, values in raw.items():
        if name not in sections:
            raise _unknown_key(str(name), sections, "")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of keys, got {values!r}.")
        section = getattr(cfg, name)
        texts = spelled.get(name) if isinstance(spelled.get(name), dict) else {}
        for key, value in values.items():
            text = texts.get(str(key))
            key = _RENAMED.get((name, str(key)), str(key))
            _set_field(section, key, value, f"{name}.", text if isinstance(text, str) else None)
    validate(cfg)
    return cfg


# Keys renamed since runs were first saved (schedules configured in epochs or steps): old run directories and
# checkpoints still load. Both old keys were in epochs, the default schedule.unit.
_RENAMED = {("schedule", "step_epochs"): "step_size", ("schedule", "warmup_epochs"): "warmup"}


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# The configs that ship inside the package: base.yaml, quickstart.yaml, ..., recipes/<family>.yaml (``--recipe
# paper``), bench/<protocol>.yaml (``papernets bench --protocol``). Installed with the package, so they are found
# wherever papernets is installed, not only in a checkout of the repository.
CONFIGS_DIR = Path(str(importlib.resources.files("papernets") / "configs"))


def packaged_configs(folder: str = "") -> list[str]:
    """Names of the YAML files that ship in ``configs/<folder>`` (``--config NAME``, protocols, recipes)."""
    return sorted(p.stem for p in (CONFIGS_DIR / folder).glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """The config file ``name``: a path to a YAML file, or the name of one that ships with papernets:
    ``quickstart`` (or ``configs/quickstart.yaml``, its place in the package) is the package's
    ``configs/quickstart.yaml``."""
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config {str(name)!r} is a folder; give a YAML file or one of: "
                          f"{', '.join(packaged_configs())}.")
    if not path.is_absolute():  # a shipped config by name, or by its place in the package (configs/bench/x.yaml)
        inside = path.relative_to("configs") if path.parts[0] == "configs" else path
        packaged = CONFIGS_DIR / inside.with_suffix(".yaml")
        if inside.suffix in ("", ".yaml", ".yml") and packaged.is_file():
            return packaged
    close = difflib.get_close_matches(path.stem, packaged_configs(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"config file {str(name)!r} does not exist, and papernets ships no config of that name.{hint} "
                      f"Shipped configs: {', '.join(packaged_configs())}.")


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule: ``1e-4``, ``5E-5`` and ``1.0e30`` are numbers (YAML 1.1,
    PyYAML's default, reads them as strings because they lack a dot or an exponent sign)."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML safely, numbers as people write them (``YamlLoader``)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader subclass: no Python objects)


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML config file (a path, or the name of a shipped config) over the defaults; None gives the
    defaults."""
    if path is None:
        return Config()
    path = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not text (UTF-8 YAML): byte {exc.start} cannot be read; "
                          "give a YAML file.") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}.") from exc
    try:
        raw = yaml_load(text) or {}
        spelled = yaml.load(text, Loader=yaml.BaseLoader)  # the same tree, every scalar as written
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}".splitlines()[0]) from exc
    return config_from_dict(raw, spelled=spelled)


def _split_override(item: str) -> tuple[str, str, str]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value.")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override key {dotted!r} must be section.key, e.g. optim.lr.")
    return parts[0], parts[1], text.strip()


def parse_override(item: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; the value is parsed as YAML (so 0.1, true, null, [1, 2] work).

    A value that is not valid YAML stays a plain string (``@host``, ``*.png``), unless it holds brackets or
    quotes: then it was meant as a list, mapping or quoted string, and is an error rather than a silent string."""
    section, key, text = _split_override(item)
    if not text:
        return section, key, ""
    try:
        value = yaml_load(text)
    except yaml.YAMLError as exc:
        if any(c in text for c in "[]{}\"'"):
            problem = ": ".join(str(getattr(exc, a)) for a in ("context", "problem") if getattr(exc, a, None))
            problem = problem or str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"--set {section}.{key}={text}: the value is not valid YAML ({problem}); write a list as [a, b], "
                f"a mapping as {{k: v}}, or quote a plain string."
            ) from exc
        value = text
    return section, key, value


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply ``section.key=value`` overrides in order, validating each."""
    raw: dict[str, dict[str, Any]] = {}
    spelled: dict[str, dict[str, str]] = {}
    for item in items:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})[key] = value
        spelled.setdefault(section, {})[key] = _split_override(item)[2]
    return config_from_dict(raw, base=cfg, spelled=spelled)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


SYNC_BN_CPU = ("train.sync_bn needs CUDA devices: PyTorch's SyncBatchNorm does not run on CPU tensors; set "
               "train.sync_bn=false on CPU (each process then normalizes with its own batch's statistics).")


def validate(cfg: Config) -> None:
    """Range checks that the types alone do not express."""
    _check(cfg.data.image_size >= 8, f"data.image_size must be at least 8, got {cfg.data.image_size}.")
    _check(0.0 <= cfg.data.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}.")
    _check(cfg.data.limit is None or cfg.data.limit > 0, f"data.limit must be positive, got {cfg.data.limit}.")
    _check(cfg.data.eval_limit is None or cfg.data.eval_limit > 0,
           f"data.eval_limit must be positive or null, got {cfg.data.eval_limit}.")
    _check(cfg.train.epochs >= 1, f"train.epochs must be at least 1, got {cfg.train.epochs}.")
    _check(cfg.train.batch_size >= 1, f"train.batch_size must be at least 1, got {cfg.train.batch_size}.")
    _check(cfg.train.steps is None or (cfg.train.steps >= 1 and cfg.train.steps % cfg.train.epochs == 0),
           f"train.steps must be null or a positive multiple of train.epochs ({cfg.train.epochs}, the number of "
           f"segments), got {cfg.train.steps}.")
    _check(cfg.train.precise_bn >= 0, f"train.precise_bn must be >= 0 (training batches), got {cfg.train.precise_bn}.")
    _check(cfg.train.accum_steps >= 1, f"train.accum_steps must be at least 1, got {cfg.train.accum_steps}.")
    _check(cfg.train.batch_size % cfg.train.accum_steps == 0,
           f"train.accum_steps ({cfg.train.accum_steps}) must divide train.batch_size ({cfg.train.batch_size}) into "
           "equal micro-batches.")
    _check(cfg.train.accum_steps == 1 or not cfg.optim.sam,
           f"optim.sam cannot be combined with train.accum_steps={cfg.train.accum_steps}: SAM's two passes would "
           "each need every micro-batch; use train.accum_steps=1 with SAM.")
    _check(not (cfg.train.sync_bn and cfg.train.device == "cpu"), SYNC_BN_CPU)
    _check(cfg.optim.lr > 0 and math.isfinite(cfg.optim.lr), f"optim.lr must be a positive finite number, got "
           f"{cfg.optim.lr}.")
    name = cfg.output.name
    _check(name is None or (name not in ("", ".", "..") and not any(c in name for c in "/\\\0")),
           f"output.name (--name) must be one folder name inside output.dir (--out), without / or \\, not . or "
           f"..; got {name!r}.")
    _check(cfg.model.num_classes is None or cfg.model.num_classes >= 2,
           f"model.num_classes must be at least 2 (or null: the dataset's), got {cfg.model.num_classes}.")
    _check(cfg.optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}.")
    _check(0 <= cfg.train.tta_translate < cfg.data.image_size / 2,
           f"train.tta_translate must be 0 (off) or a shift in pixels below half of data.image_size "
           f"({cfg.data.image_size}), got {cfg.train.tta_translate}.")
    _check(cfg.optim.norm_bias_lr_scale > 0 and math.isfinite(cfg.optim.norm_bias_lr_scale),
           f"optim.norm_bias_lr_scale must be a positive finite number, got {cfg.optim.norm_bias_lr_scale}.")
    _check(len(cfg.optim.betas) == 2, f"optim.betas must be two numbers, got {cfg.optim.betas}.")
    _check(
        0.0 <= cfg.train.label_smoothing < 1.0,
        f"train.label_smoothing must be in [0, 1), got {cfg.train.label_smoothing}.",
    )
    _check(
        cfg.train.grad_clip is None or cfg.train.grad_clip > 0,
        f"train.grad_clip must be positive or null, got {cfg.train.grad_clip}.",
    )
    _validate_optim(cfg)
    _validate_schedule(cfg)
    _validate_regularization(cfg)
    _validate_progressive(cfg)
    for key in ("drop_rate", "drop_path_rate"):
        value = getattr(cfg.model, key)
        _check(value is None or 0.0 <= value < 1.0, f"model.{key} must be in [0, 1) or null, got {value}.")


def _validate_optim(cfg: Config) -> None:
    o = cfg.optim
    _check(o.eps > 0, f"optim.eps must be positive, got {o.eps}.")
    _check(0.0 <= o.momentum < 1.0, f"optim.momentum must be in [0, 1), got {o.momentum}.")
    _check(all(0.0 <= b < 1.0 for b in o.betas), f"optim.betas must be in [0, 1), got {o.betas}.")
    _check(0.0 <= o.alpha < 1.0, f"optim.alpha must be in [0, 1), got {o.alpha}.")
    _check(not o.tf_style_eps or o.name == "rmsprop",
           f"optim.tf_style_eps applies to rmsprop only, not to optim.name={o.name!r}.")
    _check(o.sam_rho is None or o.sam_rho > 0, f"optim.sam_rho must be positive or null, got {o.sam_rho}.")
    _check(o.sam_eta >= 0, f"optim.sam_eta must be >= 0, got {o.sam_eta}.")


def _validate_schedule(cfg: Config) -> None:
    s = cfg.schedule
    _check(s.warmup >= 0, f"schedule.warmup must be >= 0, got {s.warmup}.")
    _check(s.step_size > 0, f"schedule.step_size must be positive, got {s.step_size}.")
    _check(s.gamma > 0, f"schedule.gamma must be positive, got {s.gamma}.")
    _check(s.min_lr >= 0, f"schedule.min_lr must be >= 0, got {s.min_lr}.")
    _check(s.power > 0, f"schedule.power must be positive, got {s.power}.")
    _check(0.0 < s.pct_start < 1.0, f"schedule.pct_start must be in (0, 1), got {s.pct_start}.")
    _check(s.div_factor > 0 and s.final_div_factor > 0,
           f"schedule.div_factor and final_div_factor must be positive, got {s.div_factor}, {s.final_div_factor}.")
    _check(all(m >= 0 for m in s.milestones) and s.milestones == sorted(s.milestones),
           f"schedule.milestones must be increasing and >= 0, got {s.milestones}.")
    if s.name == "multistep":
        _check(bool(s.milestones), "schedule.name=multistep needs schedule.milestones, e.g. [30, 60, 80].")
    if s.name.startswith("warmup_"):
        _check(s.warmup > 0, f"schedule.name={s.name} needs schedule.warmup > 0 (the warmup length).")
    if s.name == "cyclic":
        _check(s.min_lr < cfg.optim.lr,
               f"schedule.name=cyclic cycles between schedule.min_lr ({s.min_lr}) and optim.lr ({cfg.optim.lr}); "
               "min_lr must be the smaller.")


def _validate_regularization(cfg: Config) -> None:
    d, t = cfg.data, cfg.train
    _check(d.randaugment_ops >= 0, f"data.randaugment_ops must be >= 0, got {d.randaugment_ops}.")
    _check(0 <= d.randaugment_magnitude <= 30,
           f"data.randaugment_magnitude must be in 0..30 (the papers' scale: 10 is each op's maximum), got "
           f"{d.randaugment_magnitude}.")
    _check(not (d.auto_augment and d.randaugment_ops), "data.auto_augment and data.randaugment_ops > 0 are two "
           "augmentation policies; choose one.")
    _check(0.0 < d.crop_pct <= 1.0, f"data.crop_pct must be in (0, 1], got {d.crop_pct}.")
    _check(len(d.crop_scale) == 2 and 0.0 < d.crop_scale[0] <= d.crop_scale[1] <= 1.0,
           f"data.crop_scale must be [min, max] area fractions with 0 < min <= max <= 1, got {d.crop_scale}.")
    _check(len(d.crop_ratio) == 2 and 0.0 < d.crop_ratio[0] <= d.crop_ratio[1],
           f"data.crop_ratio must be [min, max] aspect ratios with 0 < min <= max, got {d.crop_ratio}.")
    _check(d.workers is None or d.workers >= 0, f"data.workers must be >= 0 or null, got {d.workers}.")
    _check(d.memory_budget_gb is None or d.memory_budget_gb > 0,
           f"data.memory_budget_gb must be positive or null, got {d.memory_budget_gb}.")
    _check(d.pipeline != "stream" or d.name == "imagefolder",
           f"data.pipeline=stream reads image folders (data.name=imagefolder); {d.name!r} is read whole into "
           "memory: use data.pipeline=auto or memory.")
    _check(0.0 <= d.random_erasing <= 1.0, f"data.random_erasing must be in [0, 1], got {d.random_erasing}.")
    for key in ("mixup_alpha", "cutmix_alpha"):
        _check(getattr(t, key) >= 0, f"train.{key} must be >= 0, got {getattr(t, key)}.")
    for key in ("mix_prob", "mix_switch_prob"):
        _check(0.0 <= getattr(t, key) <= 1.0, f"train.{key} must be in [0, 1], got {getattr(t, key)}.")
    _check(0.0 <= t.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {t.ema_decay}.")
    _check(t.lookahead >= 0, f"train.lookahead must be 0 (off) or a number of steps, got {t.lookahead}.")
    _check(t.val_every >= 1, f"train.val_every must be a whole number of epochs, at least 1, got {t.val_every}.")
    _check(t.select_best_on != "ema" or t.ema, "train.select_best_on=ema needs train.ema=true.")


def _validate_progressive(cfg: Config) -> None:
    t = cfg.train
    _check(t.progressive_stages >= 1, f"train.progressive_stages must be at least 1, got {t.progressive_stages}.")
    ranges = {"progressive_image_size": t.progressive_image_size, "progressive_randaugment": t.progressive_randaugment,
              "progressive_mixup": t.progressive_mixup, "progressive_dropout": t.progressive_dropout}
    for key, value in ranges.items():
        _check(value is None or len(value) == 2,
               f"train.{key} must be two values [first stage, last stage] or null, got {value}.")
    _check(t.progressive_image_size is not None and all(v > 0 for v in t.progressive_image_size),
           f"train.progressive_image_size must be two positive fractions of data.image_size, got "
           f"{t.progressive_image_size}.")
    if t.progressive_randaugment is not None:
        _check(all(0 <= v <= 30 for v in t.progressive_randaugment),
               f"train.progressive_randaugment magnitudes must be in 0..30, got {t.progressive_randaugment}.")
    if t.progressive_mixup is not None:
        _check(all(v >= 0 for v in t.progressive_mixup),
               f"train.progressive_mixup alphas must be >= 0, got {t.progressive_mixup}.")
    if t.progressive_dropout is not None:
        _check(all(0.0 <= v < 1.0 for v in t.progressive_dropout),
               f"train.progressive_dropout rates must be in [0, 1), got {t.progressive_dropout}.")
    if t.progressive:
        _check(t.epochs >= t.progressive_stages,
               f"train.progressive splits training into train.progressive_stages={t.progressive_stages} stages; "
               f"train.epochs ({t.epochs}) must be at least that.")
