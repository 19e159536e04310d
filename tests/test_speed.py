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


def test_compare_builds_fixed_size_references_at_the_compared_size_and_picks_the_trainers_format(tmp_path):
    from papernets.bench.compare import main

    out = tmp_path / "speed.md"
    # ViT at 64 px: the reference's position embeddings must be built for 64 px too (4x4 patches), or it fails.
    # Inception-v3's auxiliary head needs 299 px in training: asked for 64, it is compared at 299, as the row says.
    assert main(["vit_ti_16", "squeezenet1_1", "inception_v3", "--image-size", "64", "--batch-size", "2",
                 "--rounds", "1", "--steps", "1", "--channels-last", "auto", "--out", str(out)]) == 0
    rows = {line.split(" | ")[0][3:-1]: line.split(" | ") for line in out.read_text().splitlines()
            if line.startswith("| `")}
    assert set(rows) == {"vit_ti_16", "squeezenet1_1", "inception_v3"}
    assert rows["vit_ti_16"][1] == "timm `vit_tiny_patch16_224`" and rows["vit_ti_16"][2] == "64"
    assert rows["inception_v3"][2] == "299" and rows["squeezenet1_1"][2] == "64"
    # auto: the CPU trainer's choice per family (convolutional families channels_last, ViT not)
    assert rows["vit_ti_16"][4] == "off" and rows["squeezenet1_1"][4] == "on" and rows["inception_v3"][4] == "on"


# ------------------------------------------------------------------------------------ activation checkpointing


def _grads(model, x, y):
    model.zero_grad(set_to_none=True)
    out = model(x)
    torch.nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["resnet20", "vit_ti_16", "densenet_bc_40_k12", "vgg11", "googlenet"])
def test_activation_checkpointing_keeps_fewer_activations_and_the_same_gradients(name):
    import copy

    from papernets import create_model
    from papernets.engine.speed import checkpoint_units, enable_activation_checkpointing, kept_activation_bytes

    torch.manual_seed(0)
    plain = create_model(name, num_classes=10, in_chans=1, img_size=32 if name == "vit_ti_16" else 28).train()
    keys = list(plain.state_dict())
    ckpt = copy.deepcopy(plain)
    n = enable_activation_checkpointing(ckpt)
    assert n == len(checkpoint_units(ckpt)) >= 1
    assert list(ckpt.state_dict()) == keys  # the weights' names are untouched
    x = torch.randn(4, 1, *([32] * 2 if name == "vit_ti_16" else [28] * 2))
    y = torch.randint(0, 10, (4,))
    assert kept_activation_bytes(ckpt, x) < 0.6 * kept_activation_bytes(plain, x)
    torch.manual_seed(1)
    want = _grads(plain, x, y)
    torch.manual_seed(1)
    got = _grads(ckpt, x, y)
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
    ckpt.load_state_dict(plain.state_dict())  # the recomputation updated batch-norm statistics once more
    with torch.no_grad():  # evaluation is unchanged
        torch.testing.assert_close(ckpt.eval()(x), plain.eval()(x))
    assert enable_activation_checkpointing(ckpt) == n  # a second call wraps nothing twice


def test_a_copy_of_a_checkpointed_model_runs_its_own_weights():
    """EMA deep-copies the model: the copy's wrapped blocks must use the copy's weights, not the original's."""
    import copy

    from papernets import create_model
    from papernets.engine.speed import enable_activation_checkpointing

    model = create_model("resnet20", num_classes=10, in_chans=1, img_size=28)
    enable_activation_checkpointing(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    x = torch.randn(2, 1, 28, 28)
    out = twin.train()(x)
    out.sum().backward()
    assert torch.count_nonzero(out) == 0 and all(p.grad is None for p in model.parameters())


def test_trainer_options_reach_the_run(tmp_path, fashion_root):
    from papernets.engine.speed import checkpoint_units

    cfg = apply_overrides(Config(), ["model.name=resnet20", "data.name=fashion-mnist", "data.image_size=28",
                                     "data.limit=64", "train.batch_size=32", "train.epochs=1", "train.device=cpu",
                                     "train.activation_checkpointing=true", "train.threads=1",
                                     "output.plots=false"])
    assert cfg.train.compile is None
    trainer = Trainer(cfg, tmp_path / "r", stream=io.StringIO())
    assert trainer.compiled is False  # resnet is not a measured compile family
    assert all("forward" in vars(u) for u in checkpoint_units(trainer.model))
    summary = trainer.fit()
    assert summary["activation_checkpointing"] is True and summary["compile"] is False
    assert 0 <= summary["test_acc"] <= 1


def test_activation_checkpointing_refuses_a_model_without_blocks(tmp_path, fashion_root, monkeypatch):
    from papernets.config import ConfigError
    from papernets.engine import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "build_model", lambda cfg, classes, chans, *a, **k: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(chans * 28 * 28, classes)))
    cfg = apply_overrides(Config(), ["model.name=lenet5", "data.name=fashion-mnist", "data.image_size=28",
                                     "data.limit=64", "train.batch_size=32", "train.device=cpu",
                                     "train.activation_checkpointing=true"])
    with pytest.raises(ConfigError, match="no blocks to checkpoint"):
        Trainer(cfg, tmp_path / "r", stream=io.StringIO())


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, fashion_root):
    """train.compile=true runs the training passes through torch.compile: same data, same start, close result."""
    import json

    base = ["model.name=lenet5_bn", "data.name=fashion-mnist", "data.image_size=28", "data.limit=256",
            "train.batch_size=64", "train.epochs=1", "train.device=cpu", "output.plots=false", "train.threads=2"]
    runs = {}
    for flag in ("false", "true"):
        cfg = apply_overrides(Config(), [*base, f"train.compile={flag}"])
        trainer = Trainer(cfg, tmp_path / flag, stream=io.StringIO())
        assert trainer.compiled is (flag == "true")
        runs[flag] = trainer.fit()
        assert runs[flag]["compile"] is (flag == "true")
    assert abs(runs["true"]["test_acc"] - runs["false"]["test_acc"]) < 0.03
    ckpt = torch.load(tmp_path / "true" / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])  # plain weights' names in the checkpoint
    assert json.loads((tmp_path / "true" / "summary.json").read_text())["compile"] is True


PIPELINE = MEASURED.parent / "pipeline_overhead.md"


def test_input_pipeline_costs_at_most_a_tenth_of_a_step_for_every_benchmark_model():
    from papernets.bench.runner import load_protocol

    rows = re.findall(r"^\| `(\w+)` \| (?:on|off) \| [\d.]+ \| [\d.]+ \| \d+ \| (-?[\d.]+) \| ([\d.]+) \|$",
                      PIPELINE.read_text(), re.M)
    measured = {name: (float(cost), float(share)) for name, cost, share in rows}
    assert {r.model for r in load_protocol("fashion-quick").rows} <= set(measured), "a benchmark model is missing"
    over = {n: v for n, v in measured.items() if v[0] > 10.0 or v[1] > 10.0}
    assert not over, f"the input pipeline costs more than 10% of a training step for {over}"
