"""Learning-rate schedules, stepped once per optimizer step, configured in epochs or in steps.

A schedule is a pure function of the step count: its whole state is that count, so it resumes exactly. Every
schedule multiplies each parameter group's base lr (``optim.lr``) by ``factor(step)``:

- ``constant`` (alias ``none``): 1.
- ``step``: ``gamma ** floor(t / step_size)``; ``multistep``: ``gamma ** (milestones passed)``; ``exponential``:
  ``gamma ** (t / step_size)``, the continuous form (EfficientNet: 0.97 every 2.4 epochs). These three count
  ``t`` from the start of training, so a warmup only replaces their first steps (as the papers' code does).
- ``cosine``, ``warmup_cosine``: half a cosine from 1 to ``min_lr / lr``; ``poly``: ``(1 - t/T) ** power`` down
  to ``min_lr``; ``warmup_linear``: the same with power 1 (linear decay). ``warmup_*`` require a warmup.
- ``cyclic`` (Smith 2017): triangles between ``min_lr`` and ``lr`` with half-cycle ``step_size``;
  ``triangular2`` halves the height every cycle, ``exp_range`` multiplies it by ``gamma`` per unit of time
  (per epoch or per step, following ``schedule.unit``). Same values as ``torch.optim.lr_scheduler.CyclicLR``.
- ``onecycle`` (Smith & Topin 2018): cosine from ``lr / div_factor`` up to ``lr`` over ``pct_start`` of the run,
  then down to ``lr / div_factor / final_div_factor``. Same values as ``torch.optim.lr_scheduler.OneCycleLR``.

These start after the warmup and fill the rest of the run (``T`` = total steps - warmup steps). The warmup is
linear: ``(t + 1) / (warmup + 1)`` for the first ``warmup`` steps.

``schedule.unit`` says what ``warmup``, ``step_size`` and ``milestones`` count: epochs, optimizer steps, or
fractions of the run (``run``: ``warmup: 0.05`` is the first 5% of the steps, whatever their number; the unit of a
wall-clock budget, whose step count is known only when the run starts).
"""

from __future__ import annotations

import bisect
import math
import typing
from collections.abc import Callable

import torch

from papernets.config import ScheduleConfig

__all__ = ["LRSchedule", "create_schedule", "schedule_factor", "SCHEDULES"]

SCHEDULES: tuple[str, ...] = typing.get_args(typing.get_type_hints(ScheduleConfig)["name"])


class LRSchedule:
    """Sets every parameter group's lr to ``base_lr * factor(step)`` before each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs, strict=True):
            g["initial_lr"] = lr
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


def schedule_factor(cfg: ScheduleConfig, steps_per_epoch: int, epochs: int, base_lr: float) -> Callable[[int], float]:
    """The lr multiplier as a function of the optimizer step (see the module docstring)."""
    if cfg.name not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.name!r}; accepted: {', '.join(SCHEDULES)}.")
    total = max(1, steps_per_epoch * epochs)
    per_unit = {"epochs": steps_per_epoch, "steps": 1, "run": total}[cfg.unit]
    warmup = int(round(cfg.warmup * per_unit))
    span = max(1, total - warmup)
    floor = cfg.min_lr / base_lr
    name = "constant" if cfg.name == "none" else cfg.name
    absolute = name in ("step", "multistep", "exponential")

    if name == "constant":

        def main(t: int) -> float:
            return 1.0
    elif name == "step":
        every = max(1, int(round(cfg.step_size * per_unit)))

        def main(t: int) -> float:
            return cfg.gamma ** (t // every)
    elif name == "multistep":
        marks = [int(round(m * per_unit)) for m in cfg.milestones]

        def main(t: int) -> float:
            return cfg.gamma ** bisect.bisect_right(marks, t)
    elif name == "exponential":
        period = cfg.step_size * per_unit

        def main(t: int) -> float:
            return cfg.gamma ** (t / period)
    elif name in ("cosine", "warmup_cosine"):

        def main(t: int) -> float:
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t / span, 1.0)))
    elif name in ("poly", "warmup_linear"):
        power = 1.0 if name == "warmup_linear" else cfg.power

        def main(t: int) -> float:
            return floor + (1 - floor) * (1 - min(t / span, 1.0)) ** power
    elif name == "cyclic":
        main = _cyclic(cfg, cfg.step_size * per_unit, per_unit, floor)
    else:
        main = _onecycle(cfg, span)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return main(step if absolute else step - warmup)

    return factor


def _cyclic(cfg: ScheduleConfig, half: float, per_unit: int, floor: float) -> Callable[[int], float]:
    """CyclicLR's formula with base_lr = min_lr and max_lr = lr (as multipliers of lr)."""

    def main(t: int) -> float:
        cycle = math.floor(1 + t / (2 * half))
        x = 1.0 + t / (2 * half) - cycle
        scale = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
        height = (1 - floor) * scale
        if cfg.cycle_mode == "triangular2":
            height *= 1 / (2.0 ** (cycle - 1))
        elif cfg.cycle_mode == "exp_range":
            height *= cfg.gamma ** (t / per_unit)
        return floor + height

    return main


def _onecycle(cfg: ScheduleConfig, total: int) -> Callable[[int], float]:
    """OneCycleLR's two-phase cosine (as multipliers of the peak lr)."""
    start = 1.0 / cfg.div_factor
    end = start / cfg.final_div_factor
    rise_end = float(cfg.pct_start * total) - 1
    phases = [(rise_end, start, 1.0), (float(total - 1), 1.0, end)]

    def cos_anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

    def main(t: int) -> float:
        t = min(t, total - 1)
        begin = 0.0
        for i, (stop, a, b) in enumerate(phases):
            if t <= stop or i == len(phases) - 1:
                return cos_anneal(a, b, (t - begin) / (stop - begin) if stop > begin else 1.0)
            begin = stop
        return end

    return main


def create_schedule(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int, base_lr: float
) -> LRSchedule:
    """The configured schedule over ``epochs`` of ``steps_per_epoch`` optimizer steps."""
    return LRSchedule(optimizer, schedule_factor(cfg, steps_per_epoch, epochs, base_lr))
