"""A one-line progress display: epoch, step, loss, accuracy, img/s and time left.

On a terminal the line redraws in place; otherwise (logs, CI) it prints a line every 1/``log_every`` of the
epoch, so long runs show steady progress without flooding the output.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(
        self, desc: str, total: int, start: int = 0, enabled: bool = True, log_every: int = 20,
        stream: TextIO | None = None,
    ) -> None:
        self.desc, self.total, self.start = desc, total, start
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = max(1, total // max(1, log_every))
        self.t0 = time.perf_counter()
        self.images = 0

    def update(self, step: int, batch_images: int, loss: float, acc: float) -> None:
        self.images += batch_images
        if not self.enabled:
            return
        done = step + 1
        if not self.tty and done % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        rate = self.images / elapsed if elapsed > 0 else 0.0
        steps_done = done - self.start
        left = elapsed / steps_done * (self.total - done) if steps_done else 0.0
        line = (
            f"{self.desc} {done}/{self.total} loss {loss:.4f} acc {acc * 100:.2f}% "
            f"{rate:.0f} img/s left {format_seconds(left)}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def epoch_line(unit: str, epochs: int, row: dict[str, float], improved: bool) -> str:
    """The line printed at the end of an epoch (or a budget's segment) from its ``metrics.csv`` row."""
    left = row["epoch_time_s"] * (epochs - int(row["epoch"]))
    validated = not math.isnan(row["val_acc"])
    return (f"{unit} {int(row['epoch'])}/{epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc'] * 100:.2f}% | "
            + (f"val loss {row['val_loss']:.4f} acc {row['val_acc'] * 100:.2f}%" if validated else "not validated")
            + (f" | EMA val acc {row['ema_val_acc'] * 100:.2f}%" if validated and "ema_val_acc" in row else "")
            + f"{' (best)' if improved else ''} | {row['epoch_time_s']:.1f}s, "
            f"{row['train_img_per_s']:.0f} img/s, left {format_seconds(left)}")
