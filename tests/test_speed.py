"""Speed defaults: the channels_last families are the ones the committed measurement found faster."""

import io
import re
from pathlib import Path

import pytest
import torch

from papernets.bench.profile import profile_model
from papernets.config import Config, apply_overrides
from papernets.engine.speed import CHANNELS_LAST_CPU_FAMILIES, use_channels_last
from papernets.engine.trainer import Trainer
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


@pytest.mark.parametrize("name,expected", [("mobilenet_v2", True), ("vit_ti_16", False)])
def test_trainer_default_follows_the_measurement(name, expected, tmp_path, fashion_root):
    cfg = apply_overrides(Config(), [f"model.name={name}", "data.name=fashion-mnist", "data.image_size=28",
                                     "data.limit=64", "train.batch_size=16", "train.device=cpu"])
    assert cfg.train.channels_last is None  # the default: chosen per family and device
    trainer = Trainer(cfg, tmp_path / "r", stream=io.StringIO())
    assert trainer.channels_last is expected
    assert trainer.train_loader.channels_last is trainer.val_loader.channels_last is expected
    cfg.train.channels_last = not expected  # an explicit setting wins
    assert Trainer(cfg, tmp_path / "s", stream=io.StringIO()).channels_last is (not expected)


def test_compare_speed_times_ours_and_the_reference(tmp_path):
    from papernets.bench.compare import compare_speed, main

    r = compare_speed("shufflenet_v2_x0_5", "torchvision", img_size=32, batch_size=2, rounds=1, steps=1)
    assert r.reference == "shufflenet_v2_x0_5" and r.library == "torchvision"
    for v in (r.ours_train, r.ref_train, r.ours_infer, r.ref_infer):
        assert 0 < v < float("inf")
    assert r.train_ratio == pytest.approx(r.ours_train / r.ref_train)
    out = tmp_path / "speed.md"
    assert main(["shufflenet_v2_x0_5", "--batch-size", "2", "--rounds", "1", "--steps", "1",
                 "--channels-last", "both", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `shufflenet_v2_x0_5`")]
    assert [row.split(" | ")[4] for row in rows] == ["off", "on"]
    with pytest.raises(ValueError, match="no reference implementation"):
        compare_speed("lenet5")
