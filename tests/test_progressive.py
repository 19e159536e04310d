"""EfficientNetV2 progressive learning: the stage table, the models it refuses, the per-epoch settings it applies
and records, evaluation at the final size, and exact resume in the middle of the schedule."""

import copy
import csv
import io

import pytest
import torch

from papernets.cli import main
from papernets.config import Config, ConfigError, apply_overrides
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.trainer import (
    METRIC_COLUMNS,
    PROGRESSIVE_COLUMNS,
    TIMING_COLUMNS,
    Trainer,
    TrainingInterrupted,
    progressive_plan,
    stage_index,
)
from papernets.registry import get_entry


def _cfg(*extra: str) -> Config:
    return apply_overrides(Config(), ["data.image_size=28", "train.progressive=true", "train.epochs=4", *extra])


def test_table6_small_stages_scaled_to_28px():
    plan = progressive_plan(_cfg(), get_entry("efficientnet_v2_s"))
    assert [s.image_size for s in plan] == [12, 17, 23, 28]  # 128 -> 300 of the paper, as 28 * 128/300 -> 28
    assert [s.randaugment_magnitude for s in plan] == [5, 8, 12, 15]
    assert [s.mixup_alpha for s in plan] == [0.0] * 4
    assert [s.dropout for s in plan] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])


def test_large_stages_and_paper_sizes():
    cfg = _cfg("data.image_size=380", "train.progressive_image_size=[0.3368, 1.0]",
               "train.progressive_randaugment=[5, 25]", "train.progressive_mixup=[0, 0.4]",
               "train.progressive_dropout=[0.1, 0.5]")
    plan = progressive_plan(cfg, get_entry("efficientnet_v2_l"))
    assert [s.image_size for s in plan] == [128, 212, 296, 380]
    assert [s.randaugment_magnitude for s in plan] == [5, 12, 18, 25]
    assert [s.mixup_alpha for s in plan] == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.4])
    assert [s.dropout for s in plan] == pytest.approx([0.1, 0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5])
    unset = progressive_plan(_cfg("train.progressive_mixup=null", "train.progressive_dropout=null"),
                             get_entry("resnet18"))
    assert all(s.mixup_alpha is None and s.dropout is None for s in unset)


def test_vit_sizes_are_multiples_of_the_patch():
    plan = progressive_plan(_cfg(), get_entry("vit_ti_16"), size_multiple=4)
    assert [s.image_size for s in plan] == [12, 16, 24, 28]


def test_the_trainer_rounds_vit_stages_to_its_patch_size(tmp_path):
    cfg = _cfg("model.name=vit_ti_16", "data.name=synthetic", "data.limit=64", "train.batch_size=16")
    trainer = Trainer(cfg, tmp_path / "r", stream=io.StringIO())
    assert trainer.model.patch_embed.patch_size == 4  # the small-image ViT
    sizes = [s.image_size for s in trainer.plan]
    assert sizes == [12, 16, 24, 28] and all(size % 4 == 0 for size in sizes)  # not [12, 17, 23, 28]


def test_stages_split_the_epochs():
    assert [stage_index(e, 10, 4) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [stage_index(e, 4, 4) for e in range(4)] == [0, 1, 2, 3]
    assert [stage_index(e, 3, 1) for e in range(3)] == [0, 0, 0]
    with pytest.raises(ConfigError, match="train.epochs \\(3\\) must be at least"):
        _cfg("train.epochs=3")


@pytest.mark.parametrize("name", ["mixer_s_16", "resmlp_12", "gmlp_ti_16"])
def test_fixed_size_models_are_refused_clearly(name):
    with pytest.raises(ConfigError, match=f"{name} .* is built for one input size.*without train.progressive"):
        progressive_plan(_cfg(), get_entry(name))


def test_fixed_size_model_through_the_cli_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--model", "mixer_s_16", "--image-size", "28", "--set", "train.progressive=true",
                 "--set", "train.epochs=4", "--set", "data.limit=200", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "mixer_s_16" in lines[0] and "built for one input size" in lines[0]


def test_sizes_below_the_minimum_or_that_the_model_cannot_take(tmp_path):
    with pytest.raises(ConfigError, match="below its minimum of 16 px"):
        progressive_plan(_cfg(), get_entry("lenet5"))
    cfg = _cfg("model.name=lenet5", "train.progressive_image_size=[0.62, 1.0]", "data.name=synthetic", "data.limit=64")
    with pytest.raises(ConfigError, match="lenet5 cannot take the 17 px images of stage 1"):
        Trainer(cfg, tmp_path / "r", stream=io.StringIO())


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run_cfg():
    return _cfg("model.name=resnet20", "data.name=synthetic", "data.limit=256", "train.batch_size=64",
                "train.threads=1", "optim.lr=0.003", "train.progressive_mixup=[0.0, 0.4]",
                "train.cutmix_alpha=1.0", "train.ema=true", "output.plots=false")


def _rows(run):
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_progressive_run_records_its_stages_and_resumes_mid_schedule_exactly(tmp_path, one_thread):
    cfg = _run_cfg()
    full = Trainer(copy.deepcopy(cfg), tmp_path / "full", stream=io.StringIO())
    assert full.val_loader.image_size == 28 and full.test_loader.image_size == 28  # evaluation at the final size
    assert full.train_loader.randaugment_ops == 2  # the paper's RandAugment when data.randaugment_ops is 0
    full.fit()
    rows = _rows(tmp_path / "full")
    assert list(rows[0]) == METRIC_COLUMNS + ["ema_val_loss", "ema_val_acc"] + PROGRESSIVE_COLUMNS
    assert [int(r["image_size"]) for r in rows] == [12, 17, 23, 28]
    assert [int(r["randaugment_magnitude"]) for r in rows] == [5, 8, 12, 15]
    assert [float(r["mixup_alpha"]) for r in rows] == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.4])
    assert [float(r["dropout"]) for r in rows] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert full.model.drop_rate == pytest.approx(0.3)

    stopped = Trainer(copy.deepcopy(cfg), tmp_path / "stopped", stream=io.StringIO())
    train_epoch = stopped.train_epoch

    def stop_in_stage_3(epoch):
        if epoch == 2:
            stopped.stop_requested = True  # Ctrl-C during the third stage: saved at its first step
        train_epoch(epoch)

    stopped.train_epoch = stop_in_stage_3
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    ckpt = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["partial"]["step"] == 1
    resumed = Trainer(copy.deepcopy(cfg), tmp_path / "stopped", resume=ckpt, stream=io.StringIO())
    resumed.fit()
    exact = [c for c in rows[0] if c not in TIMING_COLUMNS]
    again = _rows(tmp_path / "stopped")
    assert [[r[c] for c in exact] for r in again] == [[r[c] for c in exact] for r in rows]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
