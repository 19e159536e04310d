"""Speed defaults: the channels_last families are the ones the committed measurement found faster."""

import re
from pathlib import Path

import torch

from papernets.bench.profile import profile_model
from papernets.engine.speed import CHANNELS_LAST_CPU_FAMILIES, use_channels_last
from papernets.registry import get_entry, list_models

MEASURED = Path(__file__).resolve().parents[1] / "docs" / "results" / "memory_format.md"


def test_channels_last_families_follow_the_measurement():
    rows = re.findall(r"^\| (\w+) \| `(\w+)` \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", MEASURED.read_text(), re.M)
    assert len(rows) >= 20, "docs/results/memory_format.md lost its table"
    faster = {family for family, _, nchw, nhwc, _ in rows if float(nhwc) / float(nchw) >= 1.05}
    assert CHANNELS_LAST_CPU_FAMILIES == faster
    measured = {family for family, *_ in rows}
    assert {get_entry(n).family for n in list_models()} <= measured, "a model family has no measurement"


def test_defaults_per_device_and_family():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("mobilenet", cpu) and not use_channels_last("vit", cpu)
    assert use_channels_last("vit", cuda)
    res = profile_model("mobilenet_v2", img_size=28, in_chans=1, num_classes=10, timing=False)
    assert res.channels_last
    assert not profile_model("vit_ti_16", img_size=28, in_chans=1, num_classes=10, timing=False).channels_last
