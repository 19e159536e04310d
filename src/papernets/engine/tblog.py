"""TensorBoard logging of a run (``train.tensorboard: true``; ``pip install papernets[tensorboard]``).

Writes event files into ``<run>/tensorboard/``: per optimizer step ``step/loss``, ``step/acc`` (the batch's
training accuracy), ``step/lr`` and ``step/img_per_s``; per epoch every column of ``metrics.csv`` under
``epoch/`` (loss, accuracy, validation, learning rate, images/s, time); and at the end the resolved config as
hyperparameters, with the best validation and the test accuracy as their metrics. A resumed run purges the steps
after its checkpoint, so TensorBoard shows each step once. Only the main process writes. Nothing imports
tensorboard unless a run turns this on.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from papernets.config import Config, config_to_dict
from papernets.errors import ConfigError

__all__ = ["TensorBoardLog", "flat_config"]


def flat_config(cfg: Config) -> dict[str, Any]:
    """The config as ``section.key: value`` with values TensorBoard's hyperparameters take (lists as text)."""
    out: dict[str, Any] = {}
    for section, values in config_to_dict(cfg).items():
        for key, value in values.items():
            out[f"{section}.{key}"] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


class TensorBoardLog:
    def __init__(self, run_dir: Path, cfg: Config, start_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("train.tensorboard needs the tensorboard package: pip install "
                              "'papernets[tensorboard]' (or set train.tensorboard: false).") from exc
        self.cfg = cfg
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)
        self._last: tuple[float, float] | None = None  # (time, images) at the previous step

    def step(self, global_step: int, loss: float, correct: float, images: int, lr: float) -> None:
        now = time.perf_counter()
        w = self.writer
        w.add_scalar("step/loss", loss, global_step)
        w.add_scalar("step/acc", correct / max(images, 1), global_step)
        w.add_scalar("step/lr", lr, global_step)
        if self._last is not None and now > self._last[0]:
            w.add_scalar("step/img_per_s", images / (now - self._last[0]), global_step)
        self._last = (now, images)

    def epoch(self, row: dict[str, float], global_step: int) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, int(row["epoch"]))
        self.writer.flush()
        self._last = None  # validation time is not a step's

    def finish(self, summary: dict[str, Any]) -> None:
        metrics = {f"hparam/{k}": float(summary[k]) for k in ("best_val_acc", "test_acc")
                   if isinstance(summary.get(k), int | float)}
        self.writer.add_hparams(flat_config(self.cfg), metrics, run_name=".")
        self.writer.close()
