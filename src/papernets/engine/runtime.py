"""How a run executes: one resolver for the device, the autocast dtype, the memory format, compilation,
activation checkpointing and the CPU allocator, with the reason for each choice.

The trainer, ``eval``, ``predict``, ``profile``, the bench and ``bench.compare`` all call ``resolve_runtime``, so a
rule changes in one place. An unset option (``train.amp: auto``, ``train.channels_last: null``,
``train.compile: null``) takes the measured default of the model's family (``engine/speed.py``, data in
``configs/defaults/speed.yaml``). A run records its ``Runtime`` in ``summary.json`` (``Runtime.as_dict``), and
whoever reads it back gets the same object (``Runtime.from_dict``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from papernets.config import TrainConfig
from papernets.engine import allocator as _allocator
from papernets.engine import speed as _speed
from papernets.engine.speed import (
    BF16_CPU_FAMILIES,
    COMPILE_MIN_IMAGES,
    use_bf16,
    use_channels_last,
    use_compile,
)
from papernets.errors import ConfigError

__all__ = ["Runtime", "resolve_runtime", "default_runtime", "autocast"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """The execution settings of a run (or an evaluation), and why each was chosen."""

    device: torch.device
    amp: str  # "off" (fp32), "bf16" or "fp16": the autocast dtype
    channels_last: bool
    compile: bool
    activation_checkpointing: bool
    why: dict[str, str] = field(default_factory=dict, compare=False)  # option -> reason
    malloc_cache: bool = False  # CPU: glibc's malloc keeps freed memory for reuse (engine/allocator.py)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return _DTYPES.get(self.amp)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def as_dict(self) -> dict[str, Any]:
        return {"device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
                "compile": self.compile, "activation_checkpointing": self.activation_checkpointing,
                "malloc_cache": self.malloc_cache, "why": dict(self.why)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Runtime:
        """The runtime ``as_dict`` wrote; a summary written before runtimes were recorded gives its flat keys."""
        d = d.get("runtime", d)
        return cls(torch.device(d.get("device", "cpu")), d.get("amp", "off"), bool(d.get("channels_last", False)),
                   bool(d.get("compile", False)), bool(d.get("activation_checkpointing", False)),
                   dict(d.get("why", {})), bool(d.get("malloc_cache", False)))

    def describe(self) -> str:
        """One line for the start of a run: each choice with its reason."""
        parts = [f"{self.device}", f"{'fp32' if self.amp == 'off' else self.amp} ({self.why.get('amp', '')})",
                 f"{'channels_last' if self.channels_last else 'NCHW'} ({self.why.get('channels_last', '')})"]
        if self.compile or "compile" in self.why:
            parts.append(f"{'compiled' if self.compile else 'eager'} ({self.why.get('compile', '')})")
        if self.activation_checkpointing:
            parts.append("activation checkpointing")
        if self.malloc_cache:
            parts.append("malloc cache")
        return ", ".join(parts)

    def apply(self) -> None:
        """Put the process-wide settings of this runtime in force (the CPU allocator's, where it keeps freed
        memory); the trainer, evaluation and the benchmarks call it before their first step."""
        if self.malloc_cache and not _allocator.malloc_cache_enabled():
            _allocator.set_malloc_cache(True)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _amp(mode: str, family: str, device: torch.device) -> tuple[str, str]:
    if mode == "off":
        return "off", "train.amp=off"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; on CPU use 'bf16' or 'off'.")
    if mode == "bf16" and device.type == "cpu" and not _speed.cpu_supports_bf16():
        return mode, "train.amp=bf16; this CPU has no bf16 instructions, so bf16 is emulated and slower than fp32"
    if mode in _DTYPES:
        return mode, f"train.amp={mode}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp16", "auto: this GPU has no bf16, so fp16 with loss scaling"
    if use_bf16(family, device):
        return "bf16", f"auto: family {family} trains in bf16 on CPUs with bf16 instructions, as measured"
    if device.type != "cpu":
        return "off", f"auto: no autocast on {device.type}"
    if family not in BF16_CPU_FAMILIES:
        return "off", f"auto: family {family} did not qualify for bf16 on the CPU (docs/results/speed_options.md)"
    return "off", "auto: this CPU has no bf16 instructions"


def resolve_runtime(
    train: TrainConfig, family: str, device: torch.device, *, train_images: int | None = None,
    training: bool = True,
) -> Runtime:
    """The runtime of a model family on ``device`` under the ``train`` section of a config.

    ``train_images`` is the number of images the run trains in all (epochs x training split), which the compile
    rule weighs against its cold compile time; ``training=False`` resolves an evaluation (no compilation, no
    activation checkpointing)."""
    device = torch.device(device)
    amp, why_amp = _amp(train.amp, family, device)
    why = {"amp": why_amp}
    if train.channels_last is not None:
        channels_last = bool(train.channels_last)
        why["channels_last"] = f"train.channels_last={str(channels_last).lower()}"
    else:
        channels_last = use_channels_last(family, device)
        why["channels_last"] = ("auto: every family on CUDA" if device.type == "cuda" else
                                f"auto: family {family} measured {'faster' if channels_last else 'no faster'} in "
                                "channels_last on the CPU")
    compiled = False
    if training:
        if train.compile is not None:
            compiled = bool(train.compile)
            why["compile"] = f"train.compile={str(compiled).lower()}"
        else:
            images = COMPILE_MIN_IMAGES if train_images is None else train_images
            fp32 = amp == "off"
            compiled = use_compile(family, device, images, fixed_shapes=not train.progressive, fp32=fp32)
            if compiled:
                in_fp32 = "" if family in _speed.COMPILE_CPU_FAMILIES else " in fp32"
                why["compile"] = f"auto: family {family} measured faster compiled{in_fp32}, over {images:,} images"
            elif device.type == "cpu" and (family in _speed.COMPILE_CPU_FAMILIES
                                           or (fp32 and family in _speed.COMPILE_CPU_FP32_FAMILIES)):
                why["compile"] = ("auto: progressive image sizes would compile each stage again"
                                  if train.progressive else
                                  f"auto: {images:,} training images do not pay back the compile time")
    checkpointing = bool(train.activation_checkpointing) and training
    if checkpointing:
        why["activation_checkpointing"] = "train.activation_checkpointing=true"
    malloc_cache = False
    if device.type == "cpu":
        malloc_cache, why["malloc_cache"] = _malloc_cache(train.malloc_cache, training)
    return Runtime(device, amp, channels_last, compiled, checkpointing, why, malloc_cache)


def _malloc_cache(setting: bool | None, training: bool) -> tuple[bool, str]:
    if setting is False:
        return False, "train.malloc_cache=false"
    if setting is None and not training:
        return False, "auto: off for evaluation alone, where it measured no faster (docs/results/malloc_cache.md)"
    if not _allocator.available():
        if setting:
            raise ConfigError(f"train.malloc_cache=true {_allocator.UNAVAILABLE}, which this Python does not use; "
                              "set it to false or leave it unset.")
        return False, f"auto: off: it {_allocator.UNAVAILABLE}"
    if setting:
        return True, "train.malloc_cache=true"
    return True, ("auto: CPU training keeps freed memory for the next step (measured faster, "
                  "docs/results/malloc_cache.md)")


def default_runtime(family: str, device: torch.device | str = "cpu", training: bool = True) -> Runtime:
    """The runtime a family gets from a config that leaves every speed option unset (the trainer's defaults)."""
    return resolve_runtime(TrainConfig(), family, torch.device(device), training=training)
