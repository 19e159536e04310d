"""Measure a model: parameters and MACs/FLOPs (counted by ``engine/counting.py``), training and inference
throughput, peak memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from papernets.config import TrainConfig
from papernets.engine.counting import count_macs, count_params, meta_model_stats
from papernets.engine.runtime import resolve_runtime
from papernets.registry import create_model, get_entry

__all__ = [
    "count_params",
    "count_macs",
    "meta_model_stats",
    "measure_throughput",
    "peak_memory_mb",
    "ProfileResult",
    "profile_model",
]


def _read_status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS so that the next high-water mark counts fresh allocations."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mb(fn, device: torch.device) -> float | None:
    """Peak memory of running ``fn()``: CUDA allocator peak on a GPU; on CPU the process's resident-set
    high-water mark above its size before the call (Linux ``VmHWM``), or None where that cannot be read.
    Whatever ``fn`` allocates counts, so let it build the model it measures."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    _release_free_memory()
    if not _reset_peak_rss():
        fn()
        return None
    base = _read_status_kb("VmRSS")
    fn()
    peak = _read_status_kb("VmHWM")
    if base is None or peak is None:
        return None
    return max(peak - base, 0) / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    model: nn.Module,
    batch: torch.Tensor,
    train: bool,
    steps: int = 10,
    warmup: int = 2,
    min_time: float = 0.0,
) -> float:
    """Images per second of forward (``train=False``) or forward+backward+SGD step (``train=True``)."""
    device = batch.device
    model.train(train)
    if train:
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        target = torch.zeros(batch.shape[0], dtype=torch.long, device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = model(batch)
            if isinstance(out, tuple | list):
                out = out[0]
            nn.functional.cross_entropy(out, target).backward()
            opt.step()
    else:

        def step() -> None:
            with torch.inference_mode():
                model(batch)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    done = 0
    while done < steps or time.perf_counter() - start < min_time:
        step()
        done += 1
    _sync(device)
    return done * batch.shape[0] / (time.perf_counter() - start)


@dataclass
class ProfileResult:
    model: str
    img_size: int
    in_chans: int
    num_classes: int
    batch_size: int
    params: int
    gmacs: float
    gflops: float
    train_img_per_s: float | None
    infer_img_per_s: float | None
    peak_memory_mb: float | None
    channels_last: bool
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


def profile_model(
    name: str,
    img_size: int | None = None,
    batch_size: int = 32,
    in_chans: int = 3,
    num_classes: int = 1000,
    device: str | torch.device = "cpu",
    steps: int = 5,
    timing: bool = True,
    channels_last: bool | None = None,
) -> ProfileResult:
    """Params and GMACs (per image) and, with ``timing``, training/inference img/s and training peak memory."""
    entry = get_entry(name)
    size = img_size or entry.default_img_size
    device = torch.device(device)
    params, macs = meta_model_stats(entry.name, img_size=size, in_chans=in_chans, num_classes=num_classes)
    train_ips = infer_ips = peak = None
    # fp32 and eager, in the run's memory format unless told (the runtime's rule, as the trainer applies it)
    channels_last = resolve_runtime(TrainConfig(amp="off", channels_last=channels_last), entry.family, device,
                                    training=False).channels_last
    if timing:
        resolve_runtime(TrainConfig(amp="off"), entry.family, device).apply()  # the CPU allocator as training has it

        def build() -> tuple[nn.Module, torch.Tensor]:
            model = create_model(entry.name, num_classes=num_classes, in_chans=in_chans, img_size=size).to(device)
            x = torch.randn(batch_size, in_chans, size, size, device=device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            return model, x

        # Peak first, from a fresh model: weights, gradients, optimizer state and activations of one step.
        peak = peak_memory_mb(lambda: measure_throughput(*build(), train=True, steps=1, warmup=0), device)
        model, x = build()
        train_ips = measure_throughput(model, x, train=True, steps=steps)
        infer_ips = measure_throughput(model, x, train=False, steps=steps)
    return ProfileResult(
        model=entry.name,
        img_size=size,
        in_chans=in_chans,
        num_classes=num_classes,
        batch_size=batch_size,
        params=params,
        gmacs=macs / 1e9,
        gflops=2 * macs / 1e9,
        train_img_per_s=train_ips,
        infer_img_per_s=infer_ips,
        peak_memory_mb=peak,
        channels_last=channels_last,
        device=str(device),
    )
