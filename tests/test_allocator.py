"""engine/allocator.py and the runtime's malloc cache: glibc keeps freed memory in the process on the CPU."""

from __future__ import annotations

import ctypes

import pytest
import torch

from papernets.config import TrainConfig
from papernets.engine import allocator
from papernets.engine.runtime import Runtime, default_runtime, resolve_runtime
from papernets.errors import ConfigError

CPU = torch.device("cpu")
needs_glibc = pytest.mark.skipif(not allocator.available(), reason="the malloc cache needs glibc")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mmapped_bytes() -> int:
    """Bytes glibc's malloc holds in mmapped chunks now (mallinfo2's hblkhd)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


@needs_glibc
def test_the_cache_serves_large_buffers_from_the_heap_and_off_maps_them_again():
    big = 48 * 2**20  # above the 32 MiB that glibc's own rule maps at most
    try:
        allocator.set_malloc_cache(False)
        assert not allocator.malloc_cache_enabled()
        before = mmapped_bytes()
        x = torch.empty(big // 4)
        assert mmapped_bytes() - before >= big  # glibc's default: a fresh mmap, unmapped on free
        del x
        allocator.set_malloc_cache(True)
        assert allocator.malloc_cache_enabled()
        before = mmapped_bytes()
        x = torch.empty(big // 4)
        assert mmapped_bytes() - before < big  # from the heap, where the next step's buffer finds it again
        del x
    finally:
        allocator.set_malloc_cache(True)


def test_the_runtime_keeps_freed_memory_on_every_cpu_run_and_says_why(monkeypatch):
    monkeypatch.setattr(allocator, "available", lambda: True)
    for family in ("resnet", "vit", "lenet"):
        rt = default_runtime(family)
        assert rt.malloc_cache and rt.why["malloc_cache"].startswith("auto: CPU training keeps freed memory")
        assert "malloc cache" in rt.describe()
    off = resolve_runtime(TrainConfig(malloc_cache=False), "resnet", CPU)
    assert not off.malloc_cache and off.why["malloc_cache"] == "train.malloc_cache=false"
    assert "malloc cache" not in off.describe()
    assert resolve_runtime(TrainConfig(malloc_cache=True), "resnet", CPU).why["malloc_cache"] == \
        "train.malloc_cache=true"
    evaluation = default_runtime("resnet", training=False)  # eval and predict alone leave glibc as it is
    assert not evaluation.malloc_cache and evaluation.why["malloc_cache"].startswith("auto: off for evaluation")
    assert resolve_runtime(TrainConfig(malloc_cache=True), "resnet", CPU, training=False).malloc_cache
    gpu = resolve_runtime(TrainConfig(amp="off"), "resnet", torch.device("cuda"))  # resolving touches no GPU
    assert not gpu.malloc_cache and "malloc_cache" not in gpu.why
    # where the C library is not glibc: off by default, and an explicit request is a configuration error
    monkeypatch.setattr(allocator, "available", lambda: False)
    assert not default_runtime("resnet").malloc_cache
    assert default_runtime("resnet").why["malloc_cache"] == "auto: off: it needs glibc's malloc (mallopt)"
    with pytest.raises(ConfigError, match=r"train.malloc_cache=true needs glibc's malloc"):
        resolve_runtime(TrainConfig(malloc_cache=True), "resnet", CPU)


def test_applying_a_runtime_turns_the_cache_on_and_the_setting_round_trips(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "available", lambda: True)
    monkeypatch.setattr(allocator, "set_malloc_cache", lambda on: calls.append(on))
    monkeypatch.setitem(allocator._state, "enabled", False)
    rt = default_runtime("resnet")
    rt.apply()
    assert calls == [True]
    resolve_runtime(TrainConfig(malloc_cache=False), "resnet", CPU).apply()
    assert calls == [True]  # a run that turns it off does not touch the process's allocator
    back = Runtime.from_dict({"runtime": rt.as_dict()})
    assert back == rt and back.malloc_cache and rt.as_dict()["malloc_cache"] is True
    # a summary.json written before the runtime had an allocator setting reads back as off
    assert not Runtime.from_dict({"device": "cpu", "amp": "off"}).malloc_cache


def test_set_malloc_cache_says_where_it_cannot_work(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    with pytest.raises(RuntimeError, match="needs glibc's malloc"):
        allocator.set_malloc_cache(True)
