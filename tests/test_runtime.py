"""engine/runtime.py: one resolver for how a run executes, with the reason for each choice."""

from __future__ import annotations

import pytest
import torch

from papernets.config import TrainConfig
from papernets.engine import speed
from papernets.engine.runtime import Runtime, default_runtime, resolve_runtime
from papernets.errors import ConfigError

CPU = torch.device("cpu")


def test_explicit_settings_win_and_say_so(monkeypatch):
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: True)
    rt = resolve_runtime(TrainConfig(amp="bf16", channels_last=False, compile=True, activation_checkpointing=True,
                                     malloc_cache=False), "resnet", CPU)
    assert (rt.amp, rt.amp_dtype, rt.channels_last, rt.compile, rt.activation_checkpointing) == \
        ("bf16", torch.bfloat16, False, True, True)
    assert rt.why == {"amp": "train.amp=bf16", "channels_last": "train.channels_last=false",
                      "compile": "train.compile=true",
                      "activation_checkpointing": "train.activation_checkpointing=true",
                      "malloc_cache": "train.malloc_cache=false"}
    assert resolve_runtime(TrainConfig(amp="off"), "resnet", CPU).amp_dtype is None
    # an explicit bf16 on a CPU without bf16 instructions runs as asked, and the run's first lines say what it costs
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: False)
    rt = resolve_runtime(TrainConfig(amp="bf16"), "resnet", CPU)
    assert rt.amp == "bf16" and "no bf16 instructions, so bf16 is emulated and slower than fp32" in rt.why["amp"]


def test_auto_follows_the_measured_families(monkeypatch):
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: True)
    rt = default_runtime("resnet")
    assert rt.amp == "bf16" and "family resnet" in rt.why["amp"] and rt.channels_last
    assert default_runtime("lenet").amp == "off" and "did not qualify" in default_runtime("lenet").why["amp"]
    assert not default_runtime("vit").channels_last and "no faster" in default_runtime("vit").why["channels_last"]
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: False)
    assert default_runtime("resnet").amp == "off"
    assert default_runtime("resnet").why["amp"] == "auto: this CPU has no bf16 instructions"


def test_compile_only_where_it_pays_back_and_never_for_evaluation(monkeypatch):
    # a family measured faster compiled in any precision, patched in so that the test does not follow the committed
    # set as bf16_runs.md moves families in and out of it
    family = "gmlp"
    monkeypatch.setattr(speed, "COMPILE_CPU_FAMILIES", frozenset({family}))
    many, few = speed.COMPILE_MIN_IMAGES, speed.COMPILE_MIN_IMAGES - 1
    assert resolve_runtime(TrainConfig(), family, CPU, train_images=many).compile
    short = resolve_runtime(TrainConfig(), family, CPU, train_images=few)
    assert not short.compile and "do not pay back" in short.why["compile"]
    progressive = resolve_runtime(TrainConfig(progressive=True), family, CPU, train_images=many)
    assert not progressive.compile and "progressive" in progressive.why["compile"]
    evaluation = resolve_runtime(TrainConfig(compile=True, activation_checkpointing=True), family, CPU,
                                 training=False)
    assert not evaluation.compile and not evaluation.activation_checkpointing


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="train.amp=fp16 needs a CUDA device"):
        resolve_runtime(TrainConfig(amp="fp16"), "resnet", CPU)


def test_runtime_round_trips_through_a_summary():
    rt = resolve_runtime(TrainConfig(amp="bf16", compile=False), "resnet", CPU)
    back = Runtime.from_dict({"runtime": rt.as_dict()})
    assert back == rt and back.why == rt.why
    # a summary.json written before runtimes were recorded kept flat keys
    old = Runtime.from_dict({"device": "cpu", "amp": "bf16", "channels_last": True, "compile": False,
                             "activation_checkpointing": False})
    assert (old.amp, old.channels_last, old.compile) == ("bf16", True, False)


def test_autocast_follows_the_dtype():
    x = torch.randn(4, 4)
    with resolve_runtime(TrainConfig(amp="bf16"), "resnet", CPU).autocast():
        assert (x @ x).dtype == torch.bfloat16
    with resolve_runtime(TrainConfig(amp="off"), "resnet", CPU).autocast():
        assert (x @ x).dtype == torch.float32
