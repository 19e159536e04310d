"""EfficientNetV2's progressive learning (Tan & Le 2021, section 4, Algorithm 1): training split into stages, each
with its own image size, RandAugment magnitude, mixup alpha and dropout, growing from the first stage to the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from papernets.config import Config
from papernets.data import TensorLoader
from papernets.data.mixing import MixConfig
from papernets.errors import ConfigError
from papernets.registry import ModelEntry

__all__ = ["Stage", "progressive_plan", "stage_index", "check_stage_sizes", "apply_stage", "stage_row"]


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


def check_stage_sizes(model: nn.Module, plan: list[Stage], in_chans: int, device: torch.device, name: str) -> None:
    """A forward pass at each stage's size, so that a size the model cannot take is a clear config error before
    training rather than a crash in a later epoch."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, st in enumerate(plan):
                try:
                    model(torch.zeros(1, in_chans, st.image_size, st.image_size, device=device))
                except Exception as exc:  # the models raise many kinds for sizes they cannot take
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                    raise ConfigError(
                        f"train.progressive: {name} cannot take the {st.image_size} px images of stage {i + 1} "
                        f"({first}); change train.progressive_image_size."
                    ) from exc
    finally:
        model.train(was_training)


def apply_stage(stage: Stage, loader: TensorLoader, mix: MixConfig, model: nn.Module) -> None:
    """Set a stage's image size and regularization on the training loader, the batch mixing and the model."""
    loader.image_size = stage.image_size
    if stage.randaugment_magnitude is not None:
        loader.randaugment_magnitude = stage.randaugment_magnitude
    if stage.mixup_alpha is not None:
        mix.mixup_alpha = stage.mixup_alpha
    if stage.dropout is not None:
        model.drop_rate = stage.dropout


def stage_row(loader: TensorLoader, mix: MixConfig, model: nn.Module) -> dict[str, float]:
    """The settings an epoch trained with, for metrics.csv's progressive columns."""
    return {
        "image_size": loader.image_size,
        "randaugment_magnitude": loader.randaugment_magnitude if loader.randaugment_ops > 0 else 0,
        "mixup_alpha": mix.mixup_alpha,
        "dropout": float(getattr(model, "drop_rate", float("nan"))),
    }
