"""The training loop: config in, run directory out.

    config -> dataset, model, optimizer, schedule -> epochs of (train, validate, checkpoint) -> test once
    -> run directory (config.yaml, metrics.csv, summary.json, checkpoints/, plots/)

Nothing here knows a model's name: the model comes from the registry. The loop runs unchanged in one process
or under ``torchrun`` (see ``distributed.py``). Resuming is exact: every random number comes from a saved RNG
state or from the (seed, epoch, batch) of the loader, so an interrupted and resumed run ends with the same
metrics and weights as the same run done in one go (on CPU; GPU kernels may be non-deterministic).

This file holds the loop, checkpointing and resume; each other job has its module: ``build.py`` (the model),
``runtime.py`` (device, autocast, memory format, compile), ``step.py`` (one optimizer step: accumulation, SAM,
clipping), ``progressive.py`` (EfficientNetV2's stages), ``evaluation.py`` and ``rundir.py`` (the files a run
writes). An EMA of the weights (``optim/ema.py``) is updated after every step and validated with the weights.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papernets.config import SYNC_BN_CPU, Config, config_from_dict, config_to_dict
from papernets.data.loader import SegmentLoader, stream_seed
from papernets.data.mixing import MixConfig, mix_batch
from papernets.engine import distributed as dist_utils
from papernets.engine import pipeline, rundir
from papernets.engine.build import build_model, model_kwargs
from papernets.engine.checkpoint import NEXT_BEST, load_checkpoint, promote_best, reconcile_best, save_checkpoint
from papernets.engine.counting import meta_model_stats
from papernets.engine.evaluation import evaluate, nonfinite_end, recompute_bn_stats, tta_of
from papernets.engine.progress import Progress, epoch_line, format_seconds
from papernets.engine.progressive import apply_stage, check_stage_sizes, progressive_plan, stage_index, stage_row
from papernets.engine.rundir import EMA_COLUMNS, METRIC_COLUMNS, PROGRESSIVE_COLUMNS, TIMING_COLUMNS
from papernets.engine.runtime import Runtime, resolve_runtime
from papernets.engine.speed import enable_activation_checkpointing
from papernets.engine.state import EpochProgress, TrainState, rng_state, set_rng_state
from papernets.engine.step import batch_passes, training_step
from papernets.engine.tblog import TensorBoardLog
from papernets.errors import CheckpointError, ConfigError
from papernets.layers.interface import ModelInterface
from papernets.optim import create_optimizer, create_schedule
from papernets.optim.ema import ModelEma
from papernets.optim.recipes import apply_recipe
from papernets.optim.sam import SAM
from papernets.registry import get_entry

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "config_from_checkpoint",
           "METRIC_COLUMNS", "TIMING_COLUMNS", "EMA_COLUMNS", "PROGRESSIVE_COLUMNS"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (SIGINT) or SIGTERM: the state at the current step was saved to ``last.pt``."""


def config_from_checkpoint(ckpt: dict[str, Any]) -> Config:
    return config_from_dict(ckpt["config"])


class Trainer:
    """Train ``cfg`` into ``run_dir``; ``resume`` is a loaded checkpoint to continue from.

    ``recipe`` names the paper recipe already applied to ``cfg`` (the CLI applies it between the config file and
    the flags); a ``cfg`` with ``train.recipe`` still set gets the recipe applied here, over all of ``cfg``."""

    def __init__(
        self, cfg: Config, run_dir: Path, resume: dict[str, Any] | None = None, stream=sys.stderr,
        recipe: str | None = None,
    ) -> None:
        if cfg.train.recipe:
            cfg, recipe = apply_recipe(cfg)
        self.cfg, self.stream, self.recipe = cfg, stream, recipe
        self.info = dist_utils.init_distributed(cfg.train.device)
        self.run_dir = Path(dist_utils.broadcast_object(str(run_dir), self.info))  # rank 0's (its timestamp)
        self.device = self.info.device
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.sync_bn and self.device.type == "cpu":
            raise ConfigError(SYNC_BN_CPU)
        self.entry = get_entry(cfg.model.name)
        if cfg.train.progressive:  # a model that cannot take it fails here, before the data is loaded
            progressive_plan(cfg, self.entry)
        torch.manual_seed(cfg.train.seed)
        self.source = pipeline.open_data(cfg, stream if self.info.is_main else None)
        self.data = self.source.splits
        trained_images = (cfg.train.steps * cfg.train.batch_size if cfg.train.steps
                          else self.data.num_train * cfg.train.epochs)
        self.runtime: Runtime = resolve_runtime(cfg.train, self.entry.family, self.device, train_images=trained_images)
        self.runtime.apply()
        self._build_model()
        torch.manual_seed(cfg.train.seed + 1000 * self.info.rank)  # dropout etc. differ per process
        self._build_loaders()
        self.optimizer = create_optimizer(self.model, cfg.optim)
        o = cfg.optim
        self.sam = SAM(list(self.model.parameters()), o.sam_rho, o.sam_adaptive, o.sam_eta) if o.sam else None
        self.schedule = create_schedule(self.optimizer, cfg.schedule, len(self.train_loader), cfg.train.epochs, o.lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.runtime.amp == "fp16")
        self.state = TrainState()
        self.stop_requested, self.tb, self.resumed = False, None, resume is not None
        if resume is not None:
            self._restore(resume)

    def _build_model(self) -> None:
        """The model on its device and memory format, its EMA, and the module the training passes run through
        (``self.net``: the model, wrapped in DDP under torchrun and compiled where the runtime says so)."""
        cfg, rt = self.cfg, self.runtime
        self.model: ModelInterface = build_model(cfg, self.data.num_classes, self.data.in_chans).to(self.device)
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.train.sync_bn and self.info.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.plan = progressive_plan(cfg, self.entry, self.model.patch_size) if cfg.train.progressive else []
        if self.plan:
            check_stage_sizes(self.model, self.plan, cfg.model.in_chans or self.data.in_chans, self.device,
                              self.entry.name)
        self.ema = ModelEma.of(self.model, cfg.train) if cfg.train.ema or cfg.train.lookahead else None
        self.net: nn.Module = self.model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if rt.activation_checkpointing and enable_activation_checkpointing(self.model) == 0:
            raise ConfigError(f"train.activation_checkpointing: {self.entry.name} has no blocks to checkpoint; "
                              "set it to false.")
        if rt.compile:
            self.net = torch.compile(self.net)  # the training passes; evaluation and checkpoints use self.model

    def _build_loaders(self) -> None:
        cfg = self.cfg
        ra_ops = cfg.data.randaugment_ops
        if self.plan and cfg.train.progressive_randaugment is not None and ra_ops == 0 and not cfg.data.auto_augment:
            ra_ops = 2  # EfficientNetV2's RandAugment has 2 ops
        self.ra_ops = ra_ops
        self.train_loader, self.val_loader, self.test_loader = pipeline.make_loaders(
            self.source, cfg, self.device, self.info.rank, self.info.world_size, self.runtime.channels_last, ra_ops)
        pipeline.check_tta(self.source, cfg)
        if cfg.train.steps:  # a step budget: train.epochs segments of steps / epochs batches, validated at each end
            self.train_loader = SegmentLoader(self.train_loader, cfg.train.steps // cfg.train.epochs)
        self.num_classes = cfg.model.num_classes or self.data.num_classes
        self.mix = MixConfig(cfg.train.mixup_alpha, cfg.train.cutmix_alpha, cfg.train.mix_prob,
                             cfg.train.mix_switch_prob)
        if len(self.train_loader) == 0:
            raise ConfigError(f"train.batch_size {cfg.train.batch_size} leaves no training batch: only "
                              f"{self.train_loader.num_samples} training images per process.")

    @property
    def unit(self) -> str:  # what the loop's epochs are: passes over the data, or a step budget's segments
        return "segment" if self.cfg.train.steps else "epoch"

    @property
    def metric_columns(self) -> list[str]:
        """metrics.csv's columns: the fixed ones, then EMA and progressive-learning columns when those are on."""
        return METRIC_COLUMNS + (EMA_COLUMNS if self.ema else []) + (PROGRESSIVE_COLUMNS if self.plan else [])

    # ------------------------------------------------------------------------------------------ checkpoints

    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None, "recipe": self.recipe, "rng": rng_state(self.device),
            "epoch": s.epoch, "global_step": s.global_step, "best_val_acc": s.best_val_acc,
            "best_epoch": s.best_epoch, "wall_time_s": s.wall_time_s, "history": s.history,
            "partial": s.partial.as_dict(), "config": config_to_dict(self.cfg), "model_name": self.entry.name,
            "data": pipeline.checkpoint_data(self.source, self.cfg),
            "world_size": self.info.world_size, "versions": rundir.versions(),
        }

    def _save(self, name: str) -> None:
        """Rank 0 writes; every process calls this, as it gathers each process's RNG state (``rng_ranks``)."""
        rngs = dist_utils.all_gather_object(rng_state(self.device), self.info)
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
                self.ema = ModelEma.of(self.model, self.cfg.train)
        self.recipe = ckpt.get("recipe", self.recipe)
        s = self.state
        s.epoch, s.global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        s.best_val_acc, s.best_epoch = float(ckpt["best_val_acc"]), int(ckpt["best_epoch"])
        s.wall_time_s, s.history = float(ckpt["wall_time_s"]), list(ckpt["history"])
        s.partial = partial
        if saved_world == world:
            rngs = ckpt.get("rng_ranks")
            set_rng_state(rngs[self.info.rank] if rngs else ckpt["rng"], self.device)
            return
        torch.manual_seed(stream_seed(self.cfg.train.seed, s.epoch, self.info.rank, 4))
        steps, bs = len(self.train_loader), self.cfg.train.batch_size
        self.schedule.load_state_dict({"step_count": s.epoch * steps})
        self._log(f"the checkpoint was saved by {saved_world} process(es), this run has {world}: train.batch_size "
                  f"{bs} per process makes the global batch {bs * world} (was {bs * saved_world}) and {steps} steps "
                  f"per epoch; the schedule continues from epoch {s.epoch}.")

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
        bar = Progress(f"{self.unit} {epoch + 1}/{cfg.train.epochs}", total, p.step, self.info.is_main,
                       cfg.train.log_every, self.stream)
        if self.plan:
            stage = self.plan[stage_index(epoch, cfg.train.epochs, len(self.plan))]
            apply_stage(stage, self.train_loader, self.mix, self.model)
        t_start = time.perf_counter() - p.time_s
        for step, (x, y) in enumerate(self.train_loader.batches(epoch, p.step), start=p.step):
            targets = None
            if self.mix.active:
                x, targets, _ = mix_batch(x, y, self.num_classes, self.mix, stream_seed(cfg.train.seed, epoch, step, 3),
                                          cfg.train.label_smoothing)

            def check(loss_value: float, step=step) -> None:
                if not math.isfinite(loss_value):
                    raise self._diverged(f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1}")

            passes = batch_passes(self.net, self.runtime, x, y, targets, float(self.model.aux_weight),
                                  cfg.train.label_smoothing, cfg.train.accum_steps)
            loss_value, logits = training_step(
                self.net, self.model, self.optimizer, self.scaler, passes, check, self.sam, cfg.train.grad_clip,
                lambda flag: dist_utils.broadcast_flag(flag, self.info),
            )
            if self.ema is not None:
                self.ema.update(self.model, self.state.global_step, total * cfg.train.epochs)
            self.schedule.step()
            self.state.global_step += 1
            correct = (logits.argmax(1) == y).sum().item()
            p.add(step, loss_value, correct, len(y), time.perf_counter() - t_start)
            if self.tb:
                self.tb.step(self.state.global_step, loss_value, correct, len(y), self.optimizer.param_groups[0]["lr"])
            bar.update(step, len(y) * self.info.world_size, p.loss_sum / p.seen, p.correct / p.seen)
            if dist_utils.broadcast_flag(self.stop_requested, self.info) and p.step < total:
                self.stop_requested = True
                self._tick()
                self._save("last.pt")
                raise TrainingInterrupted(f"interrupted at epoch {epoch + 1}, step {p.step}/{total}")

    def _tick(self) -> None:
        """Add the time since the last tick to the run's wall time (which survives resumes)."""
        now = time.perf_counter()
        self.state.wall_time_s += now - self._session_start
        self._session_start = now

    def _validate(self, epoch: int) -> tuple[dict[str, float] | None, dict[str, float] | None]:
        """Validation of the weights and of their EMA, with rank 0's batch-norm statistics (recomputed first on
        the epoch's first ``train.precise_bn`` training batches, where that is on); none where val_every skips."""
        t = self.cfg.train
        if (epoch + 1) % t.val_every and epoch + 1 < t.epochs:
            return None, None
        if t.precise_bn:
            batches = itertools.islice(self.train_loader.batches(epoch), t.precise_bn)
            recompute_bn_stats(self.model, batches, self.runtime.amp_dtype)
        for module in (self.model, *([self.ema.module] if self.ema is not None else [])):
            dist_utils.broadcast_module(module, self.info, buffers_only=True)
        if self.data.num_val == 0:
            return None, None
        flip, amp = tta_of(t), self.runtime.amp_dtype
        return (evaluate(self.model, self.val_loader, self.info, amp, flip),
                evaluate(self.ema.module, self.val_loader, self.info, amp, flip) if self.ema else None)

    def _end_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Validate, record the epoch's row, and checkpoint; returns (row, whether validation improved)."""
        cfg, s, p = self.cfg, self.state, self.state.partial
        train_loss, train_acc, seen, epoch_time = dist_utils.all_reduce_sum([p.loss_sum, p.correct, p.seen, p.time_s],
                                                                            self.info)
        epoch_time /= self.info.world_size
        val, ema_val = self._validate(epoch)
        if bad := nonfinite_end(val, self.model, self.entry.name):  # before anything is saved: last.pt stays good
            raise self._diverged(f"{bad} at the end of epoch {epoch + 1}")
        nan = float("nan")
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss / seen,
               "train_acc": train_acc / seen, "val_loss": val["loss"] if val else nan,
               "val_acc": val["acc"] if val else nan, "epoch_time_s": epoch_time,
               "train_img_per_s": seen / epoch_time if epoch_time > 0 else 0.0}
        if self.ema:
            row.update(ema_val_loss=ema_val["loss"] if ema_val else nan, ema_val_acc=ema_val["acc"] if ema_val else nan)
        if self.plan:
            row.update(stage_row(self.train_loader, self.mix, self.model))
        s.history.append(row)
        s.epoch, s.partial = epoch + 1, EpochProgress()
        selected = ema_val if cfg.train.select_best_on == "ema" else val
        improved = selected is not None and selected["acc"] > s.best_val_acc
        if improved:
            s.best_val_acc, s.best_epoch = selected["acc"], epoch + 1
        self._tick()
        row["wall_time_s"] = s.wall_time_s
        if improved and cfg.output.save_best:  # best.pt.next, last.pt, then the rename: see checkpoint.py
            self._save(NEXT_BEST)
        if cfg.output.checkpoint:
            self._save("last.pt")
        if improved and cfg.output.save_best and self.info.is_main:
            promote_best(self.run_dir / "checkpoints")
        if self.info.is_main:
            rundir.write_metrics(self.run_dir, s.history, self.metric_columns)
            if self.tb:
                self.tb.epoch(row, s.global_step)
        return row, improved

    def fit(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        if self.info.is_main:  # the folder is this run's, or nothing is written
            self._lock = rundir.claim_run_dir(self.run_dir, resuming=self.resumed)
            if self.resumed and (fixed := reconcile_best(self.run_dir / "checkpoints", s.best_epoch)):
                self._log(f"resume: {fixed}")  # a kill between the writes of the best checkpoint
            rundir.write_config(self.run_dir, cfg, self.recipe)
            self.tb = TensorBoardLog(self.run_dir, cfg, s.global_step) if cfg.train.tensorboard else None
        params, d = sum(p.numel() for p in self.model.parameters()), self.data
        self._log(
            f"papernets: {self.entry.name} on {d.name} ({d.num_train} train / {d.num_val} val / {d.num_test} test, "
            f"{d.in_chans}x{cfg.data.image_size}x{cfg.data.image_size}), {params:,} params, {self.device}"
            + (f" x{self.info.world_size} processes" if self.info.enabled else "") + f" -> {self.run_dir}"
        )
        self._log(f"data: {self.source.pipeline} pipeline ({self.source.why}); "
                  + pipeline.describe_augmentation(self.source, cfg, self.ra_ops))
        self._log(f"runtime: {self.runtime.describe()}")
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
                row, improved = self._end_epoch(epoch)
                self._log(epoch_line(self.unit, cfg.train.epochs, row, improved))
                if dist_utils.broadcast_flag(self.stop_requested, self.info) and epoch + 1 < cfg.train.epochs:
                    if not cfg.output.checkpoint:
                        self._save("last.pt")
                    raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}")
            return self._finish()
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if self.info.is_main:  # the run directory is free again (a later resume may lock it)
                os.close(self._lock)

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = (f"the last good checkpoint (epoch {self.state.epoch}) is kept" if self.state.epoch
                else "no checkpoint had been written yet")
        if self.info.is_main:  # `papernets runs` reads it
            rundir.write_status(self.run_dir, "diverged", f"{what}; {kept}")
        return TrainingDiverged(f"{what}; stopped, and {kept}. Try a lower optim.lr or set train.grad_clip.")

    def _load_best(self) -> str:
        """Load ``best.pt``'s weights (read by rank 0, broadcast) where the run wrote one; which weights are tested."""
        best_path = self.run_dir / "checkpoints" / "best.pt"
        if not dist_utils.broadcast_object(self.cfg.output.save_best and best_path.is_file(), self.info):
            return "last"
        if self.info.is_main:  # other nodes need not see the run directory
            best = load_checkpoint(best_path, self.device)
            if int(best["epoch"]) != self.state.best_epoch:  # checkpoint.py's order makes this impossible; check it
                raise CheckpointError(f"{best_path} holds epoch {best['epoch']}, not the best {self.state.best_epoch}")
            self.model.load_state_dict(best["model"])
            if self.ema is not None and best.get("ema") is not None:
                self.ema.load_state_dict(best["ema"])
        for module in (self.model, *([self.ema.module] if self.ema is not None else [])):
            dist_utils.broadcast_module(module, self.info)
        return f"best (epoch {self.state.best_epoch})"

    def _finish(self) -> dict[str, Any]:
        """Test the best-validation weights once, write summary.json and the plots."""
        cfg, s, d = self.cfg, self.state, self.data
        dist_utils.barrier(self.info)
        tested = self._load_best()
        use_ema = self.ema is not None and cfg.train.select_best_on == "ema"
        tested += " EMA" if use_ema else ""
        model = self.ema.module if use_ema else self.model
        test = (evaluate(model, self.test_loader, self.info, self.runtime.amp_dtype, tta_of(cfg.train), confusion=True)
                if cfg.train.test else dict.fromkeys(("acc", "top5", "loss", "confusion")))
        _, macs = meta_model_stats(self.entry.name, img_size=cfg.data.image_size,
                                        in_chans=cfg.model.in_chans or self.data.in_chans,
                                        num_classes=self.num_classes, **model_kwargs(cfg))
        self._tick()
        seen = s.global_step * cfg.train.batch_size * self.info.world_size
        summary = {
            "model": self.entry.name, "dataset": self.data.name, "image_size": cfg.data.image_size,
            "batch_size": cfg.train.batch_size, "epochs": s.epoch,
            "best_val_acc": s.best_val_acc if s.best_val_acc >= 0 else None, "best_epoch": s.best_epoch,
            "test_acc": test["acc"], "test_top5": test["top5"], "test_loss": test["loss"], "tested_weights": tested,
            "params": sum(p.numel() for p in self.model.parameters()), "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9,
            "wall_time_s": s.wall_time_s, "device": str(self.device), "host": rundir.host(self.device),
            "steps": s.global_step, "images_seen": seen, "data_epochs": seen / max(1, self.data.num_train),
            "world_size": self.info.world_size, "runtime": self.runtime.as_dict(), "recipe": self.recipe,
            "pipeline": self.source.pipeline,
            "bad_images": pipeline.bad_images(self.data, self.train_loader, self.val_loader, self.test_loader),
            "versions": rundir.versions(),
        }
        if self.info.is_main:
            rundir.write_metrics(self.run_dir, s.history, self.metric_columns)  # a resume after the last epoch
            rundir.write_summary(self.run_dir, summary)
            for line in rundir.write_per_class(self.run_dir, test["confusion"], d.classes, plot=cfg.output.plots):
                self._log(line)
            if self.tb:
                self.tb.finish(summary)
            if cfg.output.plots:
                rundir.write_plots(self.run_dir, s.history, f"{self.entry.name} on {self.data.name}")
            self._log(
                (f"test accuracy {test['acc'] * 100:.2f}% (top-5 {test['top5'] * 100:.2f}%, {tested} weights), "
                 if cfg.train.test else "test split not used (train.test=false), ")
                + (f"best val {s.best_val_acc * 100:.2f}% at epoch {s.best_epoch}" if s.best_val_acc >= 0 else
                   "no validation split") + f", wall time {format_seconds(s.wall_time_s)} -> {self.run_dir}"
            )
        dist_utils.barrier(self.info)
        return summary
