"""Step budgets: train.steps in segments (SegmentLoader), the schedule in fractions of the run, precise batch norm,
the bench's wall-clock budget (calibration -> steps), the sweep that chooses each family's settings, and the
fashion-budget protocol."""

import copy
import io
import itertools
import json

import pytest
import torch
import yaml
from torch import nn

from conftest import benchmark_module
from papernets.bench import budget as budget_mod
from papernets.bench.protocol import load_protocol, row_config
from papernets.cli import main
from papernets.config import ConfigError, ScheduleConfig, apply_overrides, load_config
from papernets.data.loader import SegmentLoader, TensorLoader
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.evaluation import recompute_bn_stats
from papernets.engine.trainer import Trainer, TrainingInterrupted
from papernets.optim.schedules import schedule_factor
from papernets.registry import get_entry

# ------------------------------------------------------------------------------------------- segments


def _loader(n=50, batch=8):
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return TensorLoader(x, torch.arange(n), batch, 4, (0.0,), (1.0,), train=True, device=torch.device("cpu"),
                        seed=3)


def _labels(batches):
    return [b[1].tolist() for b in batches]


def test_segments_run_through_the_passes_continuously():
    inner = _loader()  # 50 images, batch 8: 6 batches a pass (the last 2 images dropped? no: 7 with a short one)
    per_pass = len(inner)
    passes = _labels(itertools.chain.from_iterable(inner.batches(p) for p in range(4)))
    seg = SegmentLoader(inner, 5)
    assert len(seg) == 5
    segments = _labels(itertools.chain.from_iterable(seg.batches(e) for e in range(4)))
    assert segments == passes[:20] and per_pass != 5
    # resuming in the middle of a segment gives the same batches as going through it
    assert _labels(seg.batches(2, 3)) == _labels(seg.batches(2))[3:]
    assert seg.position(2, 3) == divmod(13, per_pass)
    seg.image_size = 6  # set on the loader that makes the batches (progressive learning)
    assert inner.image_size == 6 and seg.num_samples == inner.num_samples


def _tiny(*extra):
    return apply_overrides(load_config(None), [
        "model.name=resnet20", "data.name=synthetic", "data.image_size=16", "data.limit=200", "train.batch_size=32",
        "train.threads=1", "optim.name=sgd", "optim.lr=0.05", "output.plots=false", *extra])


def test_a_step_budget_trains_exactly_its_steps_and_ends_the_schedule_at_zero(tmp_path):
    cfg = _tiny("train.steps=14", "train.epochs=2", "schedule.name=warmup_linear", "schedule.warmup=0.1",
                "schedule.unit=run")
    summary = Trainer(cfg, tmp_path / "run", stream=io.StringIO()).fit()
    assert summary["steps"] == 14 and summary["images_seen"] == 14 * 32
    assert summary["data_epochs"] == pytest.approx(14 * 32 / 200)  # 200 training images (synthetic: 1,000 capped)
    history = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["history"]
    assert [r["epoch"] for r in history] == [1, 2]  # two segments, each validated
    assert history[-1]["lr"] == 0.0 and history[0]["lr"] > 0


def test_a_step_budget_resumes_mid_segment_to_the_same_weights(tmp_path, monkeypatch):
    cfg = _tiny("train.steps=12", "train.epochs=2", "schedule.name=warmup_linear", "schedule.warmup=0.2",
                "schedule.unit=run", "train.precise_bn=2")
    Trainer(cfg, tmp_path / "straight", stream=io.StringIO()).fit()
    trainer = Trainer(cfg, tmp_path / "stopped", stream=io.StringIO())
    real = trainer.train_loader.batches

    def stop_after_two(epoch, start=0):  # Ctrl-C during the third step of segment 2
        for i, batch in enumerate(real(epoch, start)):
            if epoch == 1 and i == 2:
                trainer.stop_requested = True
            yield batch

    monkeypatch.setattr(trainer.train_loader, "batches", stop_after_two, raising=False)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    resumed = Trainer(cfg, tmp_path / "stopped", resume=load_checkpoint(tmp_path / "stopped" / "checkpoints" /
                                                                         "last.pt"), stream=io.StringIO()).fit()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 12 and resumed["steps"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_steps_must_fill_whole_segments():
    with pytest.raises(ConfigError, match="train.steps must be null or a positive multiple of train.epochs"):
        _tiny("train.steps=7", "train.epochs=2")
    with pytest.raises(ConfigError, match="train.precise_bn"):
        _tiny("train.precise_bn=-1")


def test_schedule_in_fractions_of_the_run():
    f = schedule_factor(ScheduleConfig(name="warmup_linear", warmup=0.1, unit="run"), 25, 4, 0.1)  # 100 steps
    assert [round(f(t), 6) for t in (0, 9, 10, 55, 100)] == [round(1 / 11, 6), round(10 / 11, 6), 1.0, 0.5, 0.0]
    f = schedule_factor(ScheduleConfig(name="warmup_linear", warmup=0.1, unit="run"), 5, 2, 0.1)  # 10 steps
    assert f(0) == 0.5 and f(1) == 1.0  # the warmup is a tenth of the run whatever its length


# ------------------------------------------------------------------------------------------- precise BN


def test_precise_bn_sets_the_exact_statistics_of_the_batches_and_leaves_the_rest():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=0.01), nn.Dropout(0.5), nn.Flatten())
    batches = [(torch.randn(8, 1, 6, 6) * 3 + 1, None) for _ in range(3)]
    before = model.state_dict()["0.weight"].clone()
    model.train()
    assert recompute_bn_stats(model, batches) == 3
    feats = torch.cat([model[0](x) for x, _ in batches])
    bn = model[1]
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-5)
    # the average of the batches' unbiased variances (equal batch sizes)
    var = torch.stack([model[0](x).var((0, 2, 3), unbiased=True) for x, _ in batches]).mean(0)
    assert torch.allclose(bn.running_var, var, atol=1e-4)
    assert bn.momentum == 0.01 and model.training and model[2].training  # restored
    assert torch.equal(model.state_dict()["0.weight"], before)
    assert recompute_bn_stats(nn.Sequential(nn.Linear(2, 2)), batches) == 0  # no batch norm: nothing run


def test_the_trainer_recomputes_batch_norm_before_validating(tmp_path):
    cfg = _tiny("train.steps=6", "train.epochs=2", "train.precise_bn=2")
    trainer = Trainer(cfg, tmp_path / "run", stream=io.StringIO())
    trainer.fit()
    weights = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    expected = copy.deepcopy(trainer.model)
    expected.load_state_dict(weights)
    # in the run's precision: on a CPU with bf16 instructions ResNet trains and recomputes under bf16 autocast
    recompute_bn_stats(expected, itertools.islice(trainer.train_loader.batches(1), 2), trainer.runtime.amp_dtype)
    for k, v in expected.state_dict().items():
        assert torch.allclose(weights[k].float(), v.float(), atol=1e-5), k


# ---------------------------------------------------------------------------------------- bench budget


_TINY_PROTOCOL = {
    "description": "tiny budget",
    "bench": {"budget_min": 0.02, "calibration_s": 0.5, "segments": 2},
    "base": {"data": {"name": "synthetic", "image_size": 16, "limit": 300},
             "schedule": {"name": "warmup_linear", "warmup": 0.1, "unit": "run"},
             "train": {"batch_size": 32, "precise_bn": 2, "threads": 1}, "output": {"plots": False}},
    "families": {"resnet": {"optim": {"name": "sgd", "lr": 0.05}}},
    "models": ["resnet20", "lenet5_bn"],
    "sweep": {"budget_min": 0.01, "calibration_s": 0.5, "eval_limit": 100,
              "start": {"optim": {"name": "adamw", "lr": 0.002}},
              "rounds": [{"name": "lr", "try": [{"optim": {"lr": 0.001}}, {"optim": {"lr": 0.004}}]},
                         {"name": "batch", "try": [{"train": {"batch_size": 16}}]}]},
}


@pytest.fixture
def tiny_protocol(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_TINY_PROTOCOL))
    return path


def test_family_settings_lie_between_the_base_and_the_row(tiny_protocol):
    p = load_protocol(str(tiny_protocol))
    cfg, _ = row_config(p, p.rows[0])
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.05)
    cfg, _ = row_config(p, p.rows[1])
    assert cfg.optim.name == "adam"  # lenet: no family settings, the base
    raw = dict(_TINY_PROTOCOL, families={"resnett": {}})
    tiny_protocol.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unknown family 'resnett' \\(did you mean 'resnet'"):
        load_protocol(str(tiny_protocol))


def test_budget_steps_and_calibration(tiny_protocol):
    assert budget_mod.budget_steps(5, 0.7, 2) == 428 and budget_mod.budget_steps(5, 1000, 2) == 2
    p = load_protocol(str(tiny_protocol))
    cfg, _ = row_config(p, p.rows[0])
    cal = budget_mod.calibrate(cfg, 0.3, io.StringIO())
    assert cal["seconds_per_step"] > 0 and cal["timed_steps"] >= 3 and cal["batch_size"] == 32
    out = budget_mod.budget_config(cfg, p.bench, cal)
    assert out.train.epochs == 2 and out.train.steps % 2 == 0
    assert out.train.steps == budget_mod.budget_steps(0.02, cal["seconds_per_step"], 2)


def test_the_calibration_warms_up_for_its_seconds_before_timing(monkeypatch):
    """Slow first steps (1 s each, then 0.1 s) stay out of the timing while the warmup's seconds last."""
    moments = [0.0, 1.0, 2.0, 3.0, *(3.0 + 0.1 * k for k in range(1, 200))]
    clock = iter(moments)
    monkeypatch.setattr(budget_mod.time, "perf_counter", lambda: next(clock))

    class Loader:
        def __len__(self):
            return 300

        def batches(self, epoch=0, start=0):
            yield from range(300)

    timed = budget_mod._Timed(Loader(), seconds=1.0, warmup=2, min_steps=3, warmup_s=3.0)
    list(timed.batches())
    assert timed.warmup == 3  # the stamp at 3.0 s is the first timed one, not the one at 2.0 s
    per_step = (timed.stamps[-1] - timed.stamps[timed.warmup]) / (len(timed.stamps) - 1 - timed.warmup)
    assert per_step == pytest.approx(0.1)
    no_wait = budget_mod._Timed(Loader(), seconds=1.0, warmup=2, min_steps=3)
    clock = iter(moments)
    list(no_wait.batches())
    assert no_wait.warmup == 2  # without warmup seconds: the step count alone


def test_the_calibration_times_the_runtime_the_row_runs(tiny_protocol, monkeypatch):
    """Unset, train.compile is pinned to eager in both the calibration and the row (the trainer's own choice
    depends on the images a run sees, a whole pass in the calibration); a config's own choice is kept in both."""
    p = load_protocol(str(tiny_protocol))
    cfg, _ = row_config(p, p.rows[0])
    timed = []
    real = budget_mod.Trainer

    def spy(probe, *args, **kwargs):
        timed.append(probe.train.compile)
        return real(probe, *args, **kwargs)

    monkeypatch.setattr(budget_mod, "Trainer", spy)
    for setting in (None, True, False):
        cfg.train.compile = setting
        cal = budget_mod.calibrate(cfg, 0.05, io.StringIO()) if setting is not True else {"seconds_per_step": 0.1}
        row = budget_mod.budget_config(cfg, p.bench, cal)
        assert row.train.compile is (setting is True), setting
    assert timed == [False, False]


def test_bench_with_a_budget_records_its_steps_and_resumes(tiny_protocol, tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "results"
    args = ["bench", "--protocol", str(tiny_protocol), "--out", str(out), "--results", str(results)]
    assert main(args) == 0
    for row in ("resnet20", "lenet5_bn"):
        run = out / "tiny" / row
        cal = json.loads((run / "budget.json").read_text())["calibration"]
        cfg = load_config(run / "config.yaml")
        assert cfg.train.steps == budget_mod.budget_steps(0.02, cal["seconds_per_step"], 2)  # repeatable
        rec = json.loads((run / "bench.json").read_text())
        assert rec["steps"] == cfg.train.steps and rec["images_seen"] == cfg.train.steps * 32
        assert rec["budget_min"] == 0.02 and rec["cpu"] and len(rec["curves"]) == 2
        assert 0 < rec["train_time_s"] < rec["wall_time_s"]  # the training steps, validation left out
    md = (results / "tiny.md").read_text()
    assert "| CPU | budget | training time | steps | images seen | epochs |" in md and "0.02 min" in md
    assert (results / "tiny_acc_vs_time.png").is_file() and (results / "tiny_speed_vs_gmacs.png").is_file()
    capsys.readouterr()
    assert main(args) == 0  # everything kept
    assert "kept" in capsys.readouterr().err
    assert main([*args, "--set", "bench.budget_min=1"]) == 2  # rows of another budget are not mixed in
    assert "0.02-minute budget" in capsys.readouterr().err
    assert main([*args, "--set", "bench.budget=1"]) == 2
    assert "accepted bench keys are bench.budget_min" in capsys.readouterr().err


def test_sweep_tries_every_value_on_validation_only_and_keeps_its_runs(tiny_protocol, tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "results"
    args = ["bench", "--protocol", str(tiny_protocol), "--out", str(out), "--results", str(results), "--sweep"]
    assert main(args) == 0
    data = json.loads((results / "tiny-sweep.json").read_text())
    assert list(data["families"]) == ["resnet", "lenet"]
    for family, f in data["families"].items():
        first, second = f["rounds"]
        assert [t["candidate"] for t in first["trials"]] == ["optim.lr=0.001", "optim.lr=0.004"]
        assert second["trials"][0].get("incumbent") and len(second["trials"]) == 2
        best = max((t for t in second["trials"] if t["val_acc"] is not None), key=lambda t: t["val_acc"])
        assert f["chosen"] == best["settings"] and f["chosen"]["optim"]["name"] == "adamw"
        images = {t["images_seen"] for r in f["rounds"] for t in r["trials"]}
        assert len(images) == 1  # every run of a family sees the same images, whatever its batch
        for trial in (out / "tiny-sweep" / family).glob("r*-c*"):
            summary = json.loads((trial / "summary.json").read_text())
            assert summary["test_acc"] is None  # the test split is never evaluated
    assert budget_mod.sweep_choices(results / "tiny-sweep.json")["lenet"] == data["families"]["lenet"]["chosen"]
    md = (results / "tiny-sweep.md").read_text()
    assert md.count("| resnet |") == 4 and "(incumbent)" in md
    capsys.readouterr()
    assert main(args) == 0  # resumed: every run kept
    assert "papernets: resnet20" not in capsys.readouterr().err
    assert main([*args, "--set", "optim.lr=0.1"]) == 2


def test_a_changed_sweep_runs_its_trials_again_and_an_interrupted_trial_is_no_result(tiny_protocol, tmp_path,
                                                                                      capsys, monkeypatch):
    out, results = tmp_path / "out", tmp_path / "results"
    args = ["bench", "--protocol", str(tiny_protocol), "--out", str(out), "--results", str(results), "--sweep"]
    spec = yaml.safe_load(tiny_protocol.read_text())
    spec["models"] = ["lenet5_bn"]
    spec["sweep"]["rounds"] = spec["sweep"]["rounds"][:1]
    tiny_protocol.write_text(yaml.safe_dump(spec))
    assert main(args) == 0
    first = json.loads((out / "tiny-sweep" / "lenet" / "r1-c2" / "trial.json").read_text())
    spec["sweep"]["rounds"][0]["try"][1] = {"optim": {"lr": 0.008}}  # the protocol's sweep changed
    tiny_protocol.write_text(yaml.safe_dump(spec))
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "r1-c2 was run with other settings" in err and "r1-c1 was run" not in err
    again = json.loads((out / "tiny-sweep" / "lenet" / "r1-c2" / "trial.json").read_text())
    assert first["settings"]["optim"]["lr"] == 0.004 and again["settings"]["optim"]["lr"] == 0.008

    from papernets.engine.trainer import Trainer, TrainingInterrupted

    def interrupted(self):
        raise TrainingInterrupted("interrupted at epoch 1, step 1/2")

    spec["sweep"]["rounds"][0]["try"][1] = {"optim": {"lr": 0.016}}
    tiny_protocol.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(Trainer, "fit", interrupted)
    assert main(args) != 0
    assert not (out / "tiny-sweep" / "lenet" / "r1-c2" / "trial.json").exists()  # run again next time


def test_a_family_whose_rows_all_have_a_config_sweeps_with_it_and_chance_runs_are_marked(tmp_path):
    spec = dict(_TINY_PROTOCOL, models=[{"id": "vgg11_he", "model": "vgg11",
                                         "config": {"model": {"kwargs": {"init": "he"}}}}, "resnet20", "lenet5_bn"])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    p = load_protocol(str(path))
    reps = budget_mod._representatives(p, p.rows)
    assert list(reps) == ["vgg", "resnet", "lenet"] and reps["vgg"].config == {"model": {"kwargs": {"init": "he"}}}
    trial = {"val_acc": 0.15, "num_classes": 10}
    assert budget_mod._near_chance(trial) and not budget_mod._near_chance({**trial, "val_acc": 0.25})
    family = {"model": "vgg11", "row_config": reps["vgg"].config, "chosen": {}, "val_acc": 0.15, "near_chance": True,
              "rounds": [{"name": "lr", "best": "(start)", "trials": [{**trial, "label": "(start)", "candidate":
                          "(start)", "steps": 3, "images_seen": 96, "cpu": "x", "calibration_load": 0.1}]}]}
    budget_mod.write_sweep(p, p.sweep, {"vgg": family}, tmp_path)
    md = (tmp_path / "p-sweep.md").read_text()
    assert "**15.00** (near chance)" in md and "no run left chance" in md and '{"init": "he"}' in md


# ------------------------------------------------------------------------------------- fashion-budget


def test_fashion_budget_is_the_cpu_default_and_resolves():
    p = load_protocol("fashion-budget")
    assert p.bench == {"budget_min": 5, "calibration_s": 20, "segments": 2}
    for row in p.rows:
        cfg, _ = row_config(p, row)
        assert (cfg.data.name, cfg.data.image_size, cfg.data.limit) == ("fashion-mnist", 28, None)
        assert cfg.schedule.name == "warmup_linear" and cfg.schedule.unit == "run" and cfg.train.precise_bn > 0
        assert cfg.train.test and cfg.data.eval_limit is None  # all 6,000 validation and 10,000 test images
    assert {get_entry(r.model).family for r in p.rows} >= set(p.families)


def test_fashion_budget_family_settings_are_the_sweeps_choices():
    """The families section holds what the committed sweep chose (once the sweep has been run and committed)."""
    from pathlib import Path

    p = load_protocol("fashion-budget")
    sweep = Path(__file__).parents[1] / "docs" / "results" / "fashion-budget-sweep.json"
    if not p.families:
        assert not sweep.is_file() or not json.loads(sweep.read_text())["families"] or pytest.fail(
            "the sweep has chosen settings: copy them into the protocol's families section")
        return
    chosen = budget_mod.sweep_choices(sweep)
    assert set(p.families) <= set(chosen)
    for family, settings in p.families.items():
        assert settings == chosen[family], family


def test_bench_defaults_to_fashion_budget_on_a_cpu(capsys, tmp_path):
    assert main(["bench", "--models", "no_such_model", "--out", str(tmp_path)]) == 2
    assert "protocol 'fashion-budget'" in capsys.readouterr().err


_CLASSIC_DRY = ["--set", "data.name=synthetic", "--set", "data.limit=16", "--set", "data.image_size=32",
                "--set", "train.epochs=1", "--set", "train.batch_size=8", "--set", "train.threads=1"]


def _classic_dry_run(tmp_path, models):
    results = tmp_path / "results"
    args = ["bench", "--protocol", "classic", "--out", str(tmp_path / "out"), "--results", str(results), *_CLASSIC_DRY]
    assert main([*args, *(["--models", models] if models else [])]) == 0
    records = json.loads((results / "classic.json").read_text())["records"]
    for r in records:
        assert r["status"] == "ok" and r["input"] == "3x32x32", (r["id"], r.get("error"))
        assert r.get("paper_schedule_test_acc") is not None, (r["id"], r.get("paper_schedule_error"))
    return records


@pytest.mark.slow
def test_classic_protocol_dry_runs_end_to_end_on_cpu(tmp_path):
    """The GPU protocol (CIFAR-10 at 224 px) with tiny limits and CIFAR-shaped synthetic data: rows, the
    paper-schedule column, the tables and the report all work on a CPU."""
    records = _classic_dry_run(tmp_path, "squeezenet1_1,resnet18_sam")  # the whole list: the slow test below
    assert sorted(r["id"] for r in records) == ["resnet18_sam", "squeezenet1_1"]


@pytest.mark.slow
def test_classic_protocol_dry_runs_every_row_on_cpu(tmp_path):
    assert len(_classic_dry_run(tmp_path, None)) == 23


def test_near_chance_diagnosis_sees_dead_and_collapsed_outputs():
    from conftest import benchmark_module

    near = benchmark_module("near_chance")
    dead = torch.zeros(6, 10)
    assert near.output_stats(dead) == {"zero_rows": 1.0, "spread": 0.0, "classes_predicted": 1}
    collapsed = torch.tensor([[0.1, 2.0, -1.0]] * 5)
    assert near.output_stats(collapsed) == {"zero_rows": 0.0, "spread": 0.0, "classes_predicted": 1}
    tiny = ["data.name=synthetic", "data.limit=96", "data.eval_limit=32", "train.epochs=1", "train.threads=1"]
    r = near.diagnose("lenet5_bn", io.StringIO(), tiny)
    assert r["zero_rows"] < 1.0 and r["spread"] > 0 and 0 <= r["recomputed_bn_acc"] <= 1 and 0 <= r["val_acc"] <= 1
    assert near.diagnose("lenet5", io.StringIO(), tiny)["recomputed_bn_acc"] is None  # no batch norm


def test_the_configuration_column_names_a_rows_model_keywords():
    from papernets.bench.runner import describe_config

    p = load_protocol("fashion-budget")
    rows = {r.id: r for r in p.rows}
    assert "init he" in describe_config(row_config(p, rows["vgg16"])[0])
    assert "init" not in describe_config(row_config(p, rows["resnet18"])[0])
    effv2 = describe_config(row_config(p, rows["efficientnet_v2_s"])[0])
    assert "head_init zero" in effv2
    assert "gradient clipping 1" in describe_config(row_config(p, rows["gmlp_s_16"])[0])
    assert "clipping" not in describe_config(row_config(p, rows["resmlp_12"])[0])
    vit = describe_config(row_config(p, rows["vit_s_16"])[0])  # the row's own optimizer over its family's AdamW
    assert vit.startswith("sgd lr 0.1") and "gradient clipping 1" in vit
    assert "gradient clipping 1" in describe_config(row_config(p, rows["mixer_s_16"])[0])
    # ViT-S's, gMLP-S's and EfficientNetV2-S's rows train without the crop and flip (docs/benchmark.md); the others
    # keep them
    assert "no augmentation" in vit and "no augmentation" in describe_config(row_config(p, rows["gmlp_s_16"])[0])
    assert "no augmentation" in effv2 and "drop path 0" in effv2
    assert "augmentation" not in describe_config(row_config(p, rows["resnet18"])[0])
    assert "drop path" not in vit
    dropped = row_config(p, rows["resnet18"], ["model.drop_path_rate=0", "model.drop_rate=0.5"])[0]
    assert "dropout 0.5, drop path 0" in describe_config(dropped)


def test_apply_sweep_writes_the_chosen_settings_into_the_families_section_and_keeps_the_rest(tmp_path):
    mod = benchmark_module("apply_sweep", "scripts")
    protocol = tmp_path / "p.yaml"
    protocol.write_text("# a comment\nbase: {train: {batch_size: 64}}\nfamilies: {}\nmodels:  # rows\n  - resnet20\n")
    sweep = tmp_path / "s.json"
    chosen = {"optim": {"name": "sgd", "lr": 0.1}, "train": {"batch_size": 32}}
    sweep.write_text(json.dumps({"families": {"resnet": {"chosen": chosen}}}))
    assert mod.main(["--protocol", str(protocol), "--sweep", str(sweep)]) == 0
    text = protocol.read_text()
    assert text.startswith("# a comment\n") and "models:  # rows\n  - resnet20\n" in text
    assert yaml.safe_load(text)["families"] == {"resnet": chosen}
    assert mod.main(["--protocol", str(protocol), "--sweep", str(sweep)]) == 0 and protocol.read_text() == text
    assert mod.main(["--protocol", str(tmp_path / "none.yaml"), "--sweep", str(sweep)]) == 2
