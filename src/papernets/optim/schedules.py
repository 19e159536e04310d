"""Learning-rate schedules, stepped once per optimizer step and configured in epochs.

A schedule is a pure function of the step count: its whole state is that count, so it resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from papernets.config import ScheduleConfig

__all__ = ["LRSchedule", "create_schedule", "SCHEDULES"]

SCHEDULES = ("none", "step", "cosine")


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


def create_schedule(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int, base_lr: float
) -> LRSchedule:
    """``none`` (constant), ``step`` (x gamma every ``step_epochs``) or ``cosine`` (to ``min_lr``), each after
    an optional linear warmup of ``warmup_epochs``."""
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.name == "none":

        def main(step: int) -> float:
            return 1.0
    elif cfg.name == "step":
        every = max(1, int(round(cfg.step_epochs * steps_per_epoch)))

        def main(step: int) -> float:
            return cfg.gamma ** ((step + warmup) // every)
    elif cfg.name == "cosine":
        floor = cfg.min_lr / base_lr
        span = max(1, total - warmup)

        def main(step: int) -> float:
            t = min(step / span, 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown schedule {cfg.name!r}; accepted: {', '.join(SCHEDULES)}.")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return main(step - warmup)

    return LRSchedule(optimizer, factor)
