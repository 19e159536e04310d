"""A run's progress as a checkpoint stores it: completed epochs, the running sums of a half-done epoch, the best
validation accuracy so far, the history of metrics, and every random number generator's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["EpochProgress", "TrainState", "rng_state", "set_rng_state"]


@dataclass
class EpochProgress:
    """Running sums of the epoch in progress (saved in a mid-epoch checkpoint)."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    time_s: float = 0.0

    def add(self, step: int, loss: float, correct: float, images: int, time_s: float) -> None:
        """Count a finished step (0-based ``step``) of ``images`` images; ``time_s``: the epoch's time so far."""
        self.step = step + 1
        self.loss_sum += loss * images
        self.correct += correct
        self.seen += images
        self.time_s = time_s

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


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
