"""The training loop: config in, run directory out.

    config -> dataset, model, optimizer, schedule -> epochs of (train, validate, checkpoint) -> test once
    -> run directory (config.yaml, metrics.csv, summary.json, checkpoints/, plots/)

Nothing here knows a model's name: the model comes from the registry. The loop runs unchanged in one process
or under ``torchrun`` (see ``distributed.py``). Resuming is exact: every random number comes from a saved RNG
state or from the (seed, epoch, batch) of the loader, so an interrupted and resumed run ends with the same
metrics and weights as the same run done in one go (on CPU; GPU kernels may be non-deterministic).

A training step is one forward and backward pass and an optimizer step; with SAM (``optim.sam``) two passes, the
second at the perturbed weights (``training_step``). Batches may be mixed (mixup/cutmix, ``data/mixing.py``) with
soft targets; an EMA of the weights (``optim/ema.py``) is updated after every step and evaluated every epoch;
progressive learning (EfficientNetV2) sets image size, RandAugment magnitude, mixup and dropout per epoch from
the epoch's stage (``progressive_plan``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import platform
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import papernets
from papernets.config import SYNC_BN_CPU, Config, ConfigError, config_from_dict, config_to_dict
from papernets.data import Splits, TensorLoader, load_dataset
from papernets.data.loader import stream_seed
from papernets.data.mixing import MixConfig, mix_batch
from papernets.engine import distributed as dist_utils
from papernets.engine.checkpoint import load_checkpoint, save_checkpoint
from papernets.engine.counting import meta_model_stats
from papernets.engine.plots import plot_curves
from papernets.engine.progress import Progress, format_seconds
from papernets.engine.speed import (
    cpu_label,
    enable_activation_checkpointing,
    use_bf16,
    use_channels_last,
    use_compile,
)
from papernets.optim import create_optimizer, create_schedule
from papernets.optim.ema import ModelEma
from papernets.optim.sam import SAM, frozen_bn_stats
from papernets.registry import ModelConfigError, ModelEntry, create_model, get_entry

__all__ = [
    "Trainer", "TrainingDiverged", "TrainingInterrupted", "METRIC_COLUMNS", "TIMING_COLUMNS", "EMA_COLUMNS",
    "PROGRESSIVE_COLUMNS", "Stage", "amp_dtype", "evaluate", "build_model", "progressive_plan", "training_loss",
    "training_step",
]

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "train_img_per_s", "wall_time_s",
]
# The columns that measure time (they differ between two runs of the same config; the others repeat exactly).
# epoch_time_s: the epoch's training steps; wall_time_s: the run's time so far, at the end of the epoch's validation.
TIMING_COLUMNS = ["epoch_time_s", "train_img_per_s", "wall_time_s"]
EMA_COLUMNS = ["ema_val_loss", "ema_val_acc"]  # added when train.ema is on
PROGRESSIVE_COLUMNS = ["image_size", "randaugment_magnitude", "mixup_alpha", "dropout"]  # train.progressive


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (SIGINT) or SIGTERM: the state at the current step was saved to ``last.pt``."""


@dataclass
class EpochProgress:
    """Running sums of the epoch in progress (saved in a mid-epoch checkpoint)."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    time_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    wall_time_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: EpochProgress = field(default_factory=EpochProgress)


def build_model(cfg: Config, num_classes: int, in_chans: int, image_size: int | None = None) -> nn.Module:
    """The configured model for a dataset with ``num_classes`` classes and ``in_chans`` channels.

    Raises ModelConfigError for a keyword the model does not take (a ``model.kwargs`` key, or
    ``model.drop_path_rate`` for a model without stochastic depth)."""
    m = cfg.model
    kwargs: dict[str, Any] = dict(m.kwargs)
    for key in ("drop_rate", "drop_path_rate", "small_input"):
        if getattr(m, key) is not None:
            kwargs[key] = getattr(m, key)
    if m.pretrained:
        kwargs["pretrained"] = m.pretrained
    try:
        return create_model(
            m.name,
            num_classes=m.num_classes or num_classes,
            in_chans=m.in_chans or in_chans,
            img_size=image_size or cfg.data.image_size,
            **kwargs,
        )
    except TypeError as exc:
        name = get_entry(m.name).name
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if bad:
            key = bad.group(1)
            where = f"model.{key}" if key in ("drop_rate", "drop_path_rate", "small_input") else f"model.kwargs.{key}"
            raise ModelConfigError(f"{name} does not take the keyword {key!r} ({where}); remove it.") from exc
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelConfigError(
            f"{name} rejected its keywords {sorted(kwargs)}: {first}; check model.kwargs and model.drop_rate, "
            f"drop_path_rate, small_input."
        ) from exc


def split_output(output: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and auxiliary logits (GoogLeNet, Inception-v3 return ``(logits, [aux, ...])`` in training)."""
    if isinstance(output, tuple | list):
        logits, aux = output
        return logits, list(aux)
    return output, []


def training_loss(
    output: Any, y: torch.Tensor, targets: torch.Tensor | None, aux_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The loss of a training forward pass: cross-entropy of the logits, plus ``aux_weight`` times that of each
    auxiliary head (GoogLeNet, Inception-v3). ``targets`` are a mixed batch's soft targets (label smoothing
    already in them); without them the hard labels ``y`` are smoothed by ``label_smoothing``."""
    logits, aux = split_output(output)

    def ce(z: torch.Tensor) -> torch.Tensor:
        if targets is not None:
            return F.cross_entropy(z.float(), targets)
        return F.cross_entropy(z.float(), y, label_smoothing=label_smoothing)

    loss = ce(logits)
    for a in aux:
        loss = loss + aux_weight * ce(a)
    return loss


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass(frozen=True)
class Stage:
    """The training settings of one progressive-learning stage."""

    image_size: int
    randaugment_magnitude: int | None  # None: data.randaugment_magnitude
    mixup_alpha: float | None  # None: train.mixup_alpha
    dropout: float | None  # None: the model's own drop_rate


def _lerp(pair: list[float] | None, ratio: float) -> float | None:
    return None if pair is None else pair[0] + (pair[1] - pair[0]) * ratio


def progressive_plan(cfg: Config, entry: ModelEntry, size_multiple: int = 1) -> list[Stage]:
    """EfficientNetV2's progressive learning (Tan & Le 2021, section 4, Algorithm 1): stage ``i`` of ``M`` uses
    ``S_0 + (S_e - S_0) * i / (M - 1)`` for image size, RandAugment magnitude, mixup alpha and dropout.

    Image sizes are fractions of ``data.image_size`` (the final size, used for evaluation), rounded to a multiple
    of ``size_multiple`` (a ViT's patch size). Raises ConfigError for models built for one input size."""
    t = cfg.train
    if not entry.variable_img_size:
        raise ConfigError(
            f"train.progressive changes the image size from stage to stage, but {entry.name} (family "
            f"{entry.family!r}) is built for one input size (its token-mixing weights fix the number of patches); "
            f"train it without train.progressive, or pick a convnet or ViT."
        )
    m = t.progressive_stages
    stages = []
    for i in range(m):
        ratio = i / (m - 1) if m > 1 else 1.0
        frac = _lerp(t.progressive_image_size, ratio)
        size = max(size_multiple, int(round(frac * cfg.data.image_size / size_multiple)) * size_multiple)
        if size < entry.min_img_size:
            raise ConfigError(
                f"progressive stage {i + 1} would train {entry.name} at {size} px ({frac:.3g} x data.image_size "
                f"{cfg.data.image_size}), below its minimum of {entry.min_img_size} px; raise "
                f"train.progressive_image_size[0] or data.image_size."
            )
        magnitude = _lerp(t.progressive_randaugment, ratio)
        stages.append(Stage(size, None if magnitude is None else int(round(magnitude)),
                            _lerp(t.progressive_mixup, ratio), _lerp(t.progressive_dropout, ratio)))
    return stages


def stage_index(epoch: int, epochs: int, stages: int) -> int:
    """The stage of 0-based ``epoch``: the epochs split into ``stages`` equal runs (the first ones shorter)."""
    return min(stages - 1, epoch * stages // max(epochs, 1))


Forward = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> (loss, logits) of a batch or micro-batch


def training_step(
    net: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    forward: Forward | Sequence[Forward],
    check: Callable[[float], None],
    sam: SAM | None = None,
    grad_clip: float | None = None,
    any_process: Callable[[bool], bool] = lambda flag: flag,
) -> tuple[float, torch.Tensor]:
    """One optimizer step; ``forward()`` returns (loss, logits) of the batch, ``check(loss)`` may raise.

    Gradient accumulation (``train.accum_steps``): ``forward`` is then a sequence, one callable per micro-batch,
    each returning its loss already weighted by its share of the batch; their gradients add up (synchronized
    under DDP on the last one only) before the one optimizer step, and the returned loss is their sum, the batch
    mean. SAM takes a single callable.

    With ``sam``: the first backward pass (local to each process under DDP: SAM's per-device m-sharpness) gives
    e(w) from the unscaled gradients; the weights move to w + e(w); the second forward and backward run there with
    batch-norm running statistics frozen (the first pass updated them); the weights are restored; then the
    gradients are unscaled, clipped and stepped as usual. A non-finite first gradient (an fp16 overflow) on any
    process skips the step everywhere and lowers the gradient scale, as the scaler does for one pass. The second
    pass's loss goes through ``check`` too, so a non-finite loss there raises before any weight changes.
    ``any_process(flag)`` is true where ``flag`` is true on any process."""
    if not callable(forward):
        if sam is not None:
            raise ConfigError("optim.sam cannot be combined with train.accum_steps > 1.")
        loss_value, logits = _accumulate(net, optimizer, scaler, list(forward), check)
    else:
        loss, logits = forward()
        loss_value = loss.item()
        check(loss_value)
        optimizer.zero_grad(set_to_none=True)
        if sam is None:
            scaler.scale(loss).backward()
    if sam is not None:
        sync = net.no_sync() if isinstance(net, nn.parallel.DistributedDataParallel) else contextlib.nullcontext()
        with sync:
            scaler.scale(loss).backward()
        perturbed = sam.perturb(grad_scale=scaler.get_scale())
        if any_process(not perturbed):
            sam.restore()
            optimizer.zero_grad(set_to_none=True)
            if scaler.is_enabled():
                scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
            return loss_value, logits
        optimizer.zero_grad(set_to_none=True)
        try:
            with frozen_bn_stats(model):  # the backward too: activation checkpointing recomputes in it
                loss2, _ = forward()
                check(loss2.item())
                scaler.scale(loss2).backward()
        finally:
            sam.restore()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss_value, logits


def _accumulate(
    net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    forwards: list[Forward], check: Callable[[float], None],
) -> tuple[float, torch.Tensor]:
    """Forward and backward each micro-batch, summing their (weighted) gradients; (batch loss, batch logits)."""
    optimizer.zero_grad(set_to_none=True)
    loss_value, parts = 0.0, []
    for i, forward in enumerate(forwards):
        loss, logits = forward()
        value = loss.item()
        check(value * len(forwards))  # about the unweighted micro-batch loss; only its finiteness matters
        last = i == len(forwards) - 1
        ddp = isinstance(net, nn.parallel.DistributedDataParallel)
        with net.no_sync() if ddp and not last else contextlib.nullcontext():
            scaler.scale(loss).backward()
        loss_value += value
        parts.append(logits.detach())
    return loss_value, torch.cat(parts)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: TensorLoader, info: dist_utils.DistInfo, amp_dtype: torch.dtype | None = None,
    flip: bool = False,
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over a split (summed across processes). ``flip``: test-time augmentation,
    the logits of each image averaged with those of its mirror image."""
    model.eval()
    loss_sum = correct = correct5 = seen = 0.0
    for x, y in loader.batches(0):
        with _autocast(x.device, amp_dtype):
            logits = split_output(model(x))[0].float()
            if flip:
                logits = (logits + split_output(model(x.flip(-1)))[0].float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
    loss_sum, correct, correct5, seen = dist_utils.all_reduce_sum([loss_sum, correct, correct5, seen], info)
    seen = max(seen, 1.0)
    return {"loss": loss_sum / seen, "acc": correct / seen, "top5": correct5 / seen, "images": seen}


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def amp_dtype(mode: str, device: torch.device, family: str = "") -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` for a model family (None: fp32)."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if use_bf16(family, device) else None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use 'bf16' or 'off'.")
    return torch.float16 if mode == "fp16" else torch.bfloat16


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def host(device: torch.device) -> dict[str, Any]:
    """The machine a run trained on (rank 0's), as timings depend on it: CPU model and bf16 instructions, threads
    per process, and the GPU where there is one."""
    return {"cpu": cpu_label(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def versions() -> dict[str, str]:
    import torchvision

    return {
        "papernets": papernets.__version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


class Trainer:
    """Train ``cfg`` into ``run_dir``; ``resume`` is a loaded checkpoint to continue from.

    ``recipe`` names the paper recipe already applied to ``cfg`` (the CLI applies it between the config file and
    the flags); a ``cfg`` with ``train.recipe`` still set gets the recipe applied here, over all of ``cfg``."""

    def __init__(
        self, cfg: Config, run_dir: Path, resume: dict[str, Any] | None = None, stream=sys.stderr,
        recipe: str | None = None,
    ) -> None:
        if cfg.train.recipe:
            from papernets.optim.recipes import apply_recipe

            cfg, recipe = apply_recipe(cfg)
        self.cfg, self.run_dir, self.stream = cfg, Path(run_dir), stream
        self.recipe = recipe
        self.info = dist_utils.init_distributed(cfg.train.device)
        self.run_dir = Path(dist_utils.broadcast_object(str(self.run_dir), self.info))  # rank 0's (its timestamp)
        self.device = self.info.device
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.sync_bn and self.device.type == "cpu":
            raise ConfigError(SYNC_BN_CPU)

        self.entry = get_entry(cfg.model.name)
        self.amp_dtype = amp_dtype(cfg.train.amp, self.device, self.entry.family)
        self.plan: list[Stage] = []
        if cfg.train.progressive:  # a model that cannot take it fails here, before the data is loaded
            progressive_plan(cfg, self.entry)
        torch.manual_seed(cfg.train.seed)
        self.data: Splits = load_dataset(
            cfg.data.name, cfg.data.root, cfg.data.val_fraction, cfg.data.limit, cfg.data.download,
            cfg.data.split_seed, cfg.data.image_size, cfg.data.eval_limit,
        )
        self.model = build_model(cfg, self.data.num_classes, self.data.in_chans).to(self.device)
        channels_last = cfg.train.channels_last
        if channels_last is None:
            channels_last = use_channels_last(self.entry.family, self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.train.sync_bn and self.info.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if cfg.train.progressive:
            self.plan = progressive_plan(cfg, self.entry, _patch_multiple(self.model))
            self._check_stage_sizes()
        self.ema = ModelEma(self.model, cfg.train.ema_decay, cfg.train.ema_warmup) if cfg.train.ema else None
        self.net: nn.Module = self.model
        if self.info.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.train.activation_checkpointing and enable_activation_checkpointing(self.model) == 0:
            raise ConfigError(f"train.activation_checkpointing: {self.entry.name} has no blocks to checkpoint; "
                              "set it to false.")
        self.compiled = cfg.train.compile
        if self.compiled is None:
            self.compiled = use_compile(self.entry.family, self.device, len(self.data.train_y) * cfg.train.epochs,
                                        fixed_shapes=not cfg.train.progressive)
        if self.compiled:
            self.net = torch.compile(self.net)  # the training passes; evaluation and checkpoints use self.model
        torch.manual_seed(cfg.train.seed + 1000 * self.info.rank)  # dropout etc. differ per process

        common = dict(image_size=cfg.data.image_size, mean=self.data.mean, std=self.data.std, device=self.device,
                      channels_last=channels_last, rank=self.info.rank, world_size=self.info.world_size)
        ra_ops = cfg.data.randaugment_ops
        if self.plan and cfg.train.progressive_randaugment is not None and ra_ops == 0:
            ra_ops = 2  # EfficientNetV2's RandAugment has 2 ops
        self.train_loader = TensorLoader(
            self.data.train_x, self.data.train_y, cfg.train.batch_size, train=True, seed=cfg.train.seed,
            flip=self.data.flip and cfg.data.augment, crop_padding=self.data.crop_padding if cfg.data.augment else 0,
            randaugment_ops=ra_ops, randaugment_magnitude=cfg.data.randaugment_magnitude,
            random_erasing=cfg.data.random_erasing, **common,
        )
        if cfg.train.tta_flip and not self.data.flip:
            raise ConfigError(f"train.tta_flip=true mirrors the images, which changes the labels of "
                              f"{self.data.name!r} (digits); use it only where horizontal flips keep the label.")
        self.num_classes = cfg.model.num_classes or self.data.num_classes
        self.mix = MixConfig(cfg.train.mixup_alpha, cfg.train.cutmix_alpha, cfg.train.mix_prob,
                             cfg.train.mix_switch_prob)
        eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
        self.val_loader = TensorLoader(self.data.val_x, self.data.val_y, eval_bs, train=False, **common)
        self.test_loader = TensorLoader(self.data.test_x, self.data.test_y, eval_bs, train=False, **common)
        if len(self.train_loader) == 0:
            raise ConfigError(
                f"train.batch_size {cfg.train.batch_size} leaves no training batch: only "
                f"{self.train_loader.num_samples} training images per process."
            )

        self.optimizer = create_optimizer(self.model, cfg.optim)
        o = cfg.optim
        self.sam = SAM(list(self.model.parameters()), o.sam_rho, o.sam_adaptive, o.sam_eta) if o.sam else None
        self.schedule = create_schedule(
            self.optimizer, cfg.schedule, len(self.train_loader), cfg.train.epochs, cfg.optim.lr
        )
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.state = TrainState()
        self.stop_requested = False
        if resume is not None:
            self._restore(resume)

    def _check_stage_sizes(self) -> None:
        """A forward pass at each progressive stage's size, so that a size the model cannot take is a clear
        config error now rather than a crash in a later epoch."""
        was_training = self.model.training
        self.model.eval()
        in_chans = self.cfg.model.in_chans or self.data.in_chans
        try:
            with torch.no_grad():
                for i, st in enumerate(self.plan):
                    try:
                        self.model(torch.zeros(1, in_chans, st.image_size, st.image_size, device=self.device))
                    except Exception as exc:  # the models raise many kinds for sizes they cannot take
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                        raise ConfigError(
                            f"train.progressive: {self.entry.name} cannot take the {st.image_size} px images of "
                            f"stage {i + 1} ({first}); change train.progressive_image_size."
                        ) from exc
        finally:
            self.model.train(was_training)

    @property
    def metric_columns(self) -> list[str]:
        """metrics.csv's columns: the fixed ones, then EMA and progressive-learning columns when those are on."""
        return METRIC_COLUMNS + (EMA_COLUMNS if self.ema else []) + (PROGRESSIVE_COLUMNS if self.plan else [])

    def _apply_stage(self, epoch: int) -> None:
        """Set the image size and regularization of ``epoch``'s progressive-learning stage."""
        if not self.plan:
            return
        st = self.plan[stage_index(epoch, self.cfg.train.epochs, len(self.plan))]
        self.train_loader.image_size = st.image_size
        if st.randaugment_magnitude is not None:
            self.train_loader.randaugment_magnitude = st.randaugment_magnitude
        if st.mixup_alpha is not None:
            self.mix.mixup_alpha = st.mixup_alpha
        if st.dropout is not None:
            self.model.drop_rate = st.dropout

    def _stage_row(self) -> dict[str, float]:
        loader = self.train_loader
        return {
            "image_size": loader.image_size,
            "randaugment_magnitude": loader.randaugment_magnitude if loader.randaugment_ops > 0 else 0,
            "mixup_alpha": self.mix.mixup_alpha,
            "dropout": float(getattr(self.model, "drop_rate", float("nan"))),
        }

    # ------------------------------------------------------------------------------------------ checkpoints

    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "recipe": self.recipe,
            "rng": _rng_state(self.device),
            "epoch": s.epoch,
            "global_step": s.global_step,
            "best_val_acc": s.best_val_acc,
            "best_epoch": s.best_epoch,
            "wall_time_s": s.wall_time_s,
            "history": s.history,
            "partial": s.partial.as_dict(),
            "config": config_to_dict(self.cfg),
            "model_name": self.entry.name,
            "data": {
                "name": self.data.name, "classes": self.data.classes, "mean": list(self.data.mean),
                "std": list(self.data.std), "in_chans": self.data.in_chans, "native_size": self.data.native_size,
                "num_classes": self.data.num_classes,
            },
            "world_size": self.info.world_size,
            "versions": versions(),
        }

    def _save(self, name: str) -> None:
        """Rank 0 writes; every process calls this, as it gathers each process's RNG state (``rng_ranks``)."""
        rngs = dist_utils.all_gather_object(_rng_state(self.device), self.info)
        if self.info.is_main:
            save_checkpoint({**self._checkpoint_state(), "rng_ranks": rngs}, self.run_dir / "checkpoints" / name)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt``. With the process count it was saved with, exactly (each process gets its own
        RNG state back); with another count only from an epoch boundary: the schedule continues from the same
        epoch at the new number of steps per epoch, and dropout from fresh streams seeded by (seed, epoch, rank)."""
        saved_world, world = int(ckpt.get("world_size", 1)), self.info.world_size
        partial = EpochProgress(**ckpt["partial"])
        if partial.step and saved_world != world:
            raise ConfigError(
                f"{ckpt.get('path', 'the checkpoint')} was saved in the middle of epoch {int(ckpt['epoch']) + 1} "
                f"(step {partial.step}) by {saved_world} process{'es' if saved_world > 1 else ''}; a run continues "
                f"mid-epoch only with the same number of processes, not {world}: resume it with "
                + ("papernets train --resume" if saved_world == 1 else f"torchrun --nproc_per_node {saved_world}")
                + " (processes may change at the next epoch boundary)."
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:  # a checkpoint without an average starts one from its weights
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:
                self.ema = ModelEma(self.model, self.cfg.train.ema_decay, self.cfg.train.ema_warmup)
        self.recipe = ckpt.get("recipe", self.recipe)
        s = self.state
        s.epoch, s.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        s.best_val_acc, s.best_epoch = float(ckpt["best_val_acc"]), int(ckpt["best_epoch"])
        s.wall_time_s, s.history = float(ckpt["wall_time_s"]), list(ckpt["history"])
        s.partial = partial
        if saved_world == world:
            rngs = ckpt.get("rng_ranks")
            _set_rng_state(rngs[self.info.rank] if rngs else ckpt["rng"], self.device)
            return
        torch.manual_seed(stream_seed(self.cfg.train.seed, s.epoch, self.info.rank, 4))
        steps = len(self.train_loader)
        self.schedule.load_state_dict({"step_count": s.epoch * steps})
        bs = self.cfg.train.batch_size
        self._log(
            f"the checkpoint was saved by {saved_world} process(es), this run has {world}: train.batch_size {bs} "
            f"per process makes the global batch {bs * world} (was {bs * saved_world}) and {steps} steps per epoch; "
            f"the schedule continues from epoch {s.epoch}."
        )

    # ------------------------------------------------------------------------------------------ the loop

    def _log(self, text: str) -> None:
        if self.info.is_main:
            print(text, file=self.stream, flush=True)

    def _handle_signal(self, signum: int, frame: Any) -> None:
        if self.stop_requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_requested = True
        self._log("\nstopping: saving the current state to checkpoints/last.pt (press Ctrl-C again to abort)")

    def train_epoch(self, epoch: int) -> None:
        """One epoch (or its remainder, when resuming mid-epoch); updates ``self.state.partial``."""
        cfg, p = self.cfg, self.state.partial
        self.net.train()
        total = len(self.train_loader)
        bar = Progress(f"epoch {epoch + 1}/{cfg.train.epochs}", total, p.step, self.info.is_main,
                       cfg.train.log_every, self.stream)
        aux_weight = float(getattr(self.model, "aux_weight", 0.0))
        self._apply_stage(epoch)
        t_start = time.perf_counter() - p.time_s

        for step, (x, y) in enumerate(self.train_loader.batches(epoch, p.step), start=p.step):
            targets = None
            if self.mix.active:
                x, targets, _ = mix_batch(x, y, self.num_classes, self.mix, stream_seed(cfg.train.seed, epoch, step, 3),
                                          cfg.train.label_smoothing)

            def forward(x=x, y=y, targets=targets, weight=1.0) -> tuple[torch.Tensor, torch.Tensor]:
                with _autocast(self.device, self.amp_dtype):
                    output = self.net(x)
                    loss = training_loss(output, y, targets, aux_weight, cfg.train.label_smoothing)
                return (loss if weight == 1.0 else loss * weight), split_output(output)[0]

            passes: Forward | list[Forward] = forward
            k = cfg.train.accum_steps
            if k > 1:  # equal micro-batches of this batch (a shorter last batch: near equal), losses by share
                soft = targets.tensor_split(k) if targets is not None else [None] * k
                passes = [functools.partial(forward, xi, yi, ti, len(yi) / len(y))
                          for xi, yi, ti in zip(x.tensor_split(k), y.tensor_split(k), soft, strict=True) if len(yi)]

            def check(loss_value: float, step=step) -> None:
                if not math.isfinite(loss_value):
                    raise self._diverged(f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1}")

            loss_value, logits = training_step(
                self.net, self.model, self.optimizer, self.scaler, passes, check, self.sam, cfg.train.grad_clip,
                lambda flag: dist_utils.broadcast_flag(flag, self.info),
            )
            if self.ema is not None:
                self.ema.update(self.model, self.state.global_step)
            self.schedule.step()
            self.state.global_step += 1
            n = len(y)
            p.step = step + 1
            p.loss_sum += loss_value * n
            p.correct += (logits.argmax(1) == y).sum().item()
            p.seen += n
            p.time_s = time.perf_counter() - t_start
            bar.update(step, n * self.info.world_size, p.loss_sum / p.seen, p.correct / p.seen)
            if dist_utils.broadcast_flag(self.stop_requested, self.info) and p.step < total:
                self.stop_requested = True
                self.state.wall_time_s += time.perf_counter() - self._session_start
                self._session_start = time.perf_counter()
                self._save("last.pt")
                raise TrainingInterrupted(f"interrupted at epoch {epoch + 1}, step {p.step}/{total}")

    def fit(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            header = (f"# The paper recipe was applied: {self.recipe}.\n# This is the resolved config (train.recipe: "
                      "null), so --config with this file repeats the run.\n") if self.recipe else ""
            (self.run_dir / "config.yaml").write_text(header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        params = sum(p.numel() for p in self.model.parameters())
        self._log(
            f"papernets: {self.entry.name} on {self.data.name} ({len(self.data.train_x)} train / "
            f"{len(self.data.val_x)} val / {len(self.data.test_x)} test, {self.data.in_chans}x{cfg.data.image_size}"
            f"x{cfg.data.image_size}), {params:,} params, {self.device}"
            + (f" x{self.info.world_size} processes" if self.info.enabled else "")
            + f" -> {self.run_dir}"
        )
        if s.epoch or s.partial.step:
            self._log(f"resuming after epoch {s.epoch}" + (f", step {s.partial.step}" if s.partial.step else ""))
        self._session_start = time.perf_counter()
        old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                old_handlers[sig] = signal.signal(sig, self._handle_signal)
        try:
            for epoch in range(s.epoch, cfg.train.epochs):
                self.train_epoch(epoch)
                p = s.partial
                train_loss, train_acc, seen, epoch_time = dist_utils.all_reduce_sum(
                    [p.loss_sum, p.correct, p.seen, p.time_s], self.info
                )
                epoch_time /= self.info.world_size
                has_val = len(self.data.val_x) > 0
                dist_utils.broadcast_module(self.model, self.info, buffers_only=True)  # rank 0's BN statistics
                if self.ema is not None:
                    dist_utils.broadcast_module(self.ema.module, self.info, buffers_only=True)
                flip = cfg.train.tta_flip
                val = evaluate(self.model, self.val_loader, self.info, self.amp_dtype, flip) if has_val else None
                self._check_finite(epoch, val)
                ema_val = evaluate(self.ema.module, self.val_loader, self.info, self.amp_dtype, flip) \
                    if has_val and self.ema else None
                row = {
                    "epoch": epoch + 1,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "train_loss": train_loss / seen,
                    "train_acc": train_acc / seen,
                    "val_loss": val["loss"] if val else float("nan"),
                    "val_acc": val["acc"] if val else float("nan"),
                    "epoch_time_s": epoch_time,
                    "train_img_per_s": seen / epoch_time if epoch_time > 0 else 0.0,
                }
                if self.ema:
                    row["ema_val_loss"] = ema_val["loss"] if ema_val else float("nan")
                    row["ema_val_acc"] = ema_val["acc"] if ema_val else float("nan")
                if self.plan:
                    row.update(self._stage_row())
                s.history.append(row)
                s.epoch, s.partial = epoch + 1, EpochProgress()
                selected = ema_val if self.cfg.train.select_best_on == "ema" else val
                improved = selected is not None and selected["acc"] > s.best_val_acc
                if improved:
                    s.best_val_acc, s.best_epoch = selected["acc"], epoch + 1
                now = time.perf_counter()
                s.wall_time_s += now - self._session_start
                self._session_start = now
                row["wall_time_s"] = s.wall_time_s
                if cfg.output.checkpoint:
                    self._save("last.pt")
                if improved and cfg.output.save_best:
                    self._save("best.pt")
                self._write_metrics()
                left = epoch_time * (cfg.train.epochs - epoch - 1)
                self._log(
                    f"epoch {epoch + 1}/{cfg.train.epochs}: train loss {row['train_loss']:.4f} "
                    f"acc {row['train_acc'] * 100:.2f}% | val loss {row['val_loss']:.4f} "
                    f"acc {row['val_acc'] * 100:.2f}%"
                    + (f" | EMA val acc {row['ema_val_acc'] * 100:.2f}%" if self.ema else "")
                    + f"{' (best)' if improved else ''} | {epoch_time:.1f}s, "
                    f"{row['train_img_per_s']:.0f} img/s, left {format_seconds(left)}"
                )
                if dist_utils.broadcast_flag(self.stop_requested, self.info) and epoch + 1 < cfg.train.epochs:
                    if not cfg.output.checkpoint:
                        self._save("last.pt")
                    raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}")
            return self._finish()
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def _check_finite(self, epoch: int, val: dict[str, float] | None) -> None:
        """Raise TrainingDiverged, before anything is saved, when an epoch ends with a non-finite validation loss
        or weight (a NaN that slipped past the loss checks, e.g. from an fp16 overflow), so that ``last.pt``
        keeps the last good state."""
        bad = None
        if val is not None and not math.isfinite(val["loss"]):
            bad = f"the validation loss became {val['loss']}"
        else:
            tensors = [*self.model.named_parameters(), *self.model.named_buffers()]
            for name, t in tensors:
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad = f"{self.entry.name}'s {name} became non-finite"
                    break
        if bad:
            raise self._diverged(f"{bad} at the end of epoch {epoch + 1}")

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = (f"the last good checkpoint (epoch {self.state.epoch}) is kept" if self.state.epoch
                else "no checkpoint had been written yet")
        return TrainingDiverged(f"{what}; stopped, and {kept}. Try a lower optim.lr or set train.grad_clip.")

    def _write_metrics(self) -> None:
        if not self.info.is_main:
            return
        path = self.run_dir / "metrics.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metric_columns, extrasaction="ignore")
            writer.writeheader()
            for row in self.state.history:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and k == "lr" else v) for k, v in row.items()})
        tmp.replace(path)

    def _finish(self) -> dict[str, Any]:
        """Test the best-validation weights once, write summary.json and the plots."""
        cfg, s = self.cfg, self.state
        best_path = self.run_dir / "checkpoints" / "best.pt"
        dist_utils.barrier(self.info)
        use_ema = self.ema is not None and cfg.train.select_best_on == "ema"
        tested = "last"
        if dist_utils.broadcast_object(cfg.output.save_best and best_path.is_file(), self.info):
            if self.info.is_main:  # read by rank 0 and broadcast: other nodes need not see the run directory
                best = load_checkpoint(best_path, self.device)
                self.model.load_state_dict(best["model"])
                if self.ema is not None and best.get("ema") is not None:
                    self.ema.load_state_dict(best["ema"])
            dist_utils.broadcast_module(self.model, self.info)
            if self.ema is not None:
                dist_utils.broadcast_module(self.ema.module, self.info)
            tested = f"best (epoch {s.best_epoch})"
        if use_ema:
            tested += " EMA"
        test = evaluate(self.ema.module if use_ema else self.model, self.test_loader, self.info, self.amp_dtype,
                        cfg.train.tta_flip)
        in_chans = cfg.model.in_chans or self.data.in_chans
        kwargs = {k: v for k, v in cfg.model.kwargs.items()}
        if cfg.model.small_input is not None:
            kwargs["small_input"] = cfg.model.small_input
        _, macs = meta_model_stats(
            self.entry.name, img_size=cfg.data.image_size, in_chans=in_chans,
            num_classes=cfg.model.num_classes or self.data.num_classes, **kwargs,
        )
        s.wall_time_s += time.perf_counter() - self._session_start
        self._session_start = time.perf_counter()
        summary = {
            "model": self.entry.name,
            "dataset": self.data.name,
            "image_size": cfg.data.image_size,
            "batch_size": cfg.train.batch_size,
            "epochs": s.epoch,
            "best_val_acc": s.best_val_acc if s.best_val_acc >= 0 else None,
            "best_epoch": s.best_epoch,
            "test_acc": test["acc"],
            "test_top5": test["top5"],
            "test_loss": test["loss"],
            "tested_weights": tested,
            "params": sum(p.numel() for p in self.model.parameters()),
            "gmacs": macs / 1e9,
            "gflops": 2 * macs / 1e9,
            "wall_time_s": s.wall_time_s,
            "device": str(self.device),
            "host": host(self.device),
            "world_size": self.info.world_size,
            "channels_last": self.channels_last,
            "compile": bool(self.compiled),
            "activation_checkpointing": cfg.train.activation_checkpointing,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
            "recipe": self.recipe,
            "versions": versions(),
        }
        if self.info.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            if cfg.output.plots and s.history:
                plot_curves(s.history, self.run_dir / "plots", f"{self.entry.name} on {self.data.name}")
            self._log(
                f"test accuracy {test['acc'] * 100:.2f}% (top-5 {test['top5'] * 100:.2f}%, {tested} weights), "
                f"best val {s.best_val_acc * 100:.2f}% at epoch {s.best_epoch}, wall time "
                f"{format_seconds(s.wall_time_s)} -> {self.run_dir}"
            )
        dist_utils.barrier(self.info)
        return summary


def _patch_multiple(model: nn.Module) -> int:
    """A ViT's patch size (the multiple its image sizes must be), else 1."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", 1)
    if isinstance(patch, tuple | list):
        patch = patch[0] if len(set(patch)) == 1 else 1
    return patch if isinstance(patch, int) and patch > 0 else 1


def config_from_checkpoint(ckpt: dict[str, Any]) -> Config:
    return config_from_dict(ckpt["config"])
