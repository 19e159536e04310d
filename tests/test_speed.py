"""Speed defaults and the tools that measure them (the committed measurements that back the defaults are checked
in tests/docs/test_results_speed.py)."""

import io
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import benchmark_module
from papernets.bench.profile import profile_model
from papernets.config import CONFIGS_DIR, Config, TrainConfig, apply_overrides
from papernets.engine.speed import use_channels_last
from papernets.engine.trainer import Trainer


def test_defaults_per_device_and_family():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("mobilenet", cpu) and not use_channels_last("vit", cpu)
    assert use_channels_last("vit", cuda)
    res = profile_model("mobilenet_v2", img_size=28, in_chans=1, num_classes=10, timing=False)
    assert res.channels_last
    assert not profile_model("vit_ti_16", img_size=28, in_chans=1, num_classes=10, timing=False).channels_last


@pytest.mark.parametrize("name,expected", [("mobilenet_v2", True), ("vit_ti_16", False)])
def test_trainer_default_follows_the_measurement(name, expected, tmp_path):
    cfg = apply_overrides(Config(), [f"model.name={name}", "data.name=synthetic", "data.image_size=28",
                                     "data.limit=64", "train.batch_size=16", "train.device=cpu"])
    assert cfg.train.channels_last is None  # the default: chosen per family and device
    trainer = Trainer(cfg, tmp_path / "r", stream=io.StringIO())
    assert trainer.runtime.channels_last is expected
    assert trainer.train_loader.channels_last is trainer.val_loader.channels_last is expected
    cfg.train.channels_last = not expected  # an explicit setting wins
    explicit = Trainer(cfg, tmp_path / "s", stream=io.StringIO()).runtime
    assert explicit.channels_last is (not expected)
    assert explicit.why["channels_last"] == f"train.channels_last={str(not expected).lower()}"


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
    # --merge re-times only the models it names: their rows are replaced in place, the others kept, both commands named
    before = out.read_text()
    assert main(["shufflenet_v2_x0_5", "squeezenet1_1", "--batch-size", "2", "--rounds", "1", "--steps", "1",
                 "--channels-last", "on", "--merge", "--out", str(out)]) == 0
    after = out.read_text().splitlines()
    assert [line.split(" | ")[0] for line in after if line.startswith("| `")] == [
        "| `shufflenet_v2_x0_5`", "| `shufflenet_v2_x0_5`", "| `squeezenet1_1`"]
    assert [line for line in after if "`shufflenet_v2_x0_5` |" in line and " | off | " in line][0] in before
    assert [line for line in after if "`shufflenet_v2_x0_5` |" in line and " | on | " in line][0] not in before
    from papernets.bench.compare import machine_label, read_machine, read_markdown
    assert [c.split()[3] for c in read_markdown(out.read_text())[2]] == ["shufflenet_v2_x0_5", "shufflenet_v2_x0_5"]
    assert read_machine(out.read_text()) == machine_label()  # the header names this CPU
    # a merge on another machine names both: the table's and the one that timed the merged rows
    out.write_text(out.read_text().replace(f" on {machine_label()}. ", " on Other CPU (AMX), 2 threads, torch 2.x. "))
    assert main(["squeezenet1_1", "--batch-size", "2", "--rounds", "1", "--steps", "1", "--channels-last", "on",
                 "--merge", "--out", str(out)]) == 0
    assert read_machine(out.read_text()) == (f"Other CPU (AMX), 2 threads, torch 2.x (the rows the last command "
                                             f"names: {machine_label()})")
    assert len(read_markdown(out.read_text())[2]) == 3
    with pytest.raises(SystemExit) as e:
        main(["resnet18", "--merge", "--out", str(tmp_path / "missing.md")])
    assert e.value.code == 2
    with pytest.raises(ValueError, match="no reference implementation"):
        compare_speed("lenet5")


@pytest.mark.slow
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


def test_trainer_options_reach_the_run(tmp_path):
    from papernets.engine.speed import checkpoint_units

    cfg = apply_overrides(Config(), ["model.name=resnet20", "data.name=synthetic", "data.image_size=28",
                                     "data.limit=64", "train.batch_size=32", "train.epochs=1", "train.device=cpu",
                                     "train.activation_checkpointing=true", "train.threads=1",
                                     "output.plots=false"])
    assert cfg.train.compile is None
    trainer = Trainer(cfg, tmp_path / "r", stream=io.StringIO())
    assert trainer.runtime.compile is False  # resnet is not a measured compile family
    assert trainer.runtime.why["activation_checkpointing"] == "train.activation_checkpointing=true"
    assert all("forward" in vars(u) for u in checkpoint_units(trainer.model))
    summary = trainer.fit()
    assert summary["runtime"]["activation_checkpointing"] is True and summary["runtime"]["compile"] is False
    assert 0 <= summary["test_acc"] <= 1


def test_activation_checkpointing_refuses_a_model_without_blocks(tmp_path, monkeypatch):
    from papernets.config import ConfigError
    from papernets.engine import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "build_model", lambda cfg, classes, chans, *a, **k: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(chans * 28 * 28, classes)))
    cfg = apply_overrides(Config(), ["model.name=lenet5", "data.name=synthetic", "data.image_size=28",
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
        assert trainer.runtime.compile is (flag == "true")
        runs[flag] = trainer.fit()
        assert runs[flag]["compile"] is (flag == "true")
    assert abs(runs["true"]["test_acc"] - runs["false"]["test_acc"]) < 0.03
    ckpt = torch.load(tmp_path / "true" / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])  # plain weights' names in the checkpoint
    assert json.loads((tmp_path / "true" / "summary.json").read_text())["compile"] is True


def _time_to_accuracy_module():
    return benchmark_module("time_to_accuracy")


def test_time_to_target_is_the_wall_time_of_the_first_epoch_that_reached_it():
    tta = _time_to_accuracy_module()
    history = [{"val_acc": 0.90, "wall_time_s": 30.0}, {"val_acc": 0.941, "wall_time_s": 61.0},
               {"val_acc": 0.93, "wall_time_s": 90.0}, {"val_acc": 0.95, "wall_time_s": 121.0}]
    assert tta.time_to(history, 94.0) == 61.0
    assert tta.time_to(history, 95.0) == 121.0
    assert tta.time_to(history, 96.0) is None
    assert tta.validated([{"history": history, "epochs": 4}]) == ""
    # train.val_every: the skipped epochs' rows have no validation (nan), the table says how often runs validated
    sparse = [{"val_acc": math.nan, "wall_time_s": 30.0}, {"val_acc": 0.941, "wall_time_s": 50.0},
              {"val_acc": math.nan, "wall_time_s": 70.0}, {"val_acc": 0.95, "wall_time_s": 95.0}]
    assert tta.time_to(sparse, 94.0) == 50.0 and tta.time_to(sparse, 95.0) == 95.0
    assert tta.validated([{"history": sparse, "epochs": 4}]).startswith(" (these runs validate 2 times in 4 epochs")
    assert tta.validated([{"history": sparse[2:], "epochs": 2}]).startswith(" (these runs validate once in 2 epochs")


@pytest.mark.slow
def test_time_to_accuracy_trains_each_seed_and_writes_the_table_and_plot(tmp_path):
    import json

    tta = _time_to_accuracy_module()
    out, runs = tmp_path / "fast.md", tmp_path / "runs"
    config = CONFIGS_DIR / "fashion-mnist-fast.yaml"
    args = ["--config", str(config), "--seeds", "0", "1", "--target", "30", "--runs", str(runs), "--out", str(out),
            "--set", "data.limit=512", "--set", "train.epochs=4", "--set", "train.batch_size=64",  # 4 stages
            "--set", "data.name=synthetic", "--set", "train.tta_flip=false"]  # synthetic images may not be mirrored
    assert tta.main(args) == 0
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| ", out.read_text(), re.M)
    assert [r[0] for r in rows] == ["0", "1"] and {r[3] for r in rows} == {"4"}
    summaries = [json.loads((runs / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [float(r[1]) for r in rows] == [round(s["test_acc"] * 100, 2) for s in summaries]
    assert [load_seed(runs / f"seed{s}") for s in (0, 1)] == [0, 1]
    assert out.with_suffix(".png").stat().st_size > 10_000
    # the runs record the machine they trained on and the table names it (once: both ran here)
    from papernets.engine.speed import cpu_label

    assert [s["host"] for s in summaries] == [{"cpu": cpu_label(), "threads": torch.get_num_threads(), "gpu": None}] * 2
    assert f"` on {cpu_label()}, {torch.get_num_threads()} threads, no GPU, torch " in out.read_text()
    assert tta.machine([{"host": None}, {"host": summaries[0]["host"]}]).endswith("threads, no GPU)")  # not recorded
    # finished runs are kept: a second call trains nothing and writes the same rows
    before = (runs / "seed0" / "summary.json").stat().st_mtime_ns
    assert tta.main(args) == 0
    assert (runs / "seed0" / "summary.json").stat().st_mtime_ns == before
    assert re.findall(r"^\| (\d) \| ([\d.]+) \| ([\d.]+) \| (\d+) \| ", out.read_text(), re.M) == rows


def load_seed(run_dir: Path) -> int:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"]


def test_compare_says_why_a_ratio_is_below_one_and_rewrites_with_notes(tmp_path):
    from papernets.bench.compare import SpeedResult, below_one, main, read_machine, read_markdown, to_markdown

    steady = SpeedResult("squeezenet1_0", "torchvision", "squeezenet1_0", 64, 32, True,
                         80.0, 100.0, 110.0, 100.0, (0.78, 0.80, 0.83), (1.05, 1.10, 1.12))
    noisy = SpeedResult("resnet18", "torchvision", "resnet18", 64, 32, True,
                        97.0, 100.0, 100.0, 100.0, (0.93, 0.97, 1.02), (0.99, 1.00, 1.01))
    assert below_one(steady, "infer", {}) == ""  # 1.10: not below
    assert below_one(steady, "train", {}) == "train: **not explained**"  # behind in every round, no cause given
    assert below_one(steady, "train", {"squeezenet1_0": {"train": "the cause"}}) == "train: the cause"
    assert below_one(noisy, "train", {}) == "train: inconsistent (rounds 0.93-1.02)"
    assert below_one(noisy, "infer", {}) == ""  # 1.00 as printed
    out = tmp_path / "speed.md"
    out.write_text(to_markdown([steady, noisy], "Speed", "python -m papernets.bench.compare x --out speed.md"))
    assert "**not explained**" in out.read_text()
    results, title, commands = read_markdown(out.read_text())
    assert title == "Speed" and commands == ["python -m papernets.bench.compare x --out speed.md"]
    assert [(r.model, r.train_ratio, r.train_ratios) for r in results] == [
        ("squeezenet1_0", pytest.approx(0.8), (0.78, 0.83)), ("resnet18", pytest.approx(0.97), (0.93, 1.02))]
    notes = tmp_path / "notes.yaml"
    notes.write_text("squeezenet1_0:\n  train: the cause\n")
    assert main(["--rewrite", "--notes", str(notes), "--out", str(out)]) == 0
    text = out.read_text()
    assert "train: the cause" in text and "**not explained**" not in text
    assert "Written by `python -m papernets.bench.compare x --out speed.md`; causes added by `" in text
    # a rewrite keeps the machine the rows were timed on, also from a header in the format before CPUs were named
    out.write_text(text.replace(" on " + read_machine(text) + ". img/s", " (x86_64, 2 threads, torch 2.x). img/s"))
    assert read_machine(out.read_text()) == "x86_64, 2 threads, torch 2.x"
    assert main(["--rewrite", "--notes", str(notes), "--out", str(out)]) == 0
    assert read_machine(out.read_text()) == "x86_64, 2 threads, torch 2.x"
    assert read_markdown(out.read_text())[2] == ["python -m papernets.bench.compare x --out speed.md"]
    notes.write_text("squeezenet1_0:\n  training: the cause\n")
    with pytest.raises(SystemExit) as e:
        main(["--rewrite", "--notes", str(notes), "--out", str(out)])
    assert e.value.code == 2


def test_compile_default_needs_a_family_that_qualifies_a_long_enough_run_and_one_input_size(monkeypatch):
    from papernets.engine import speed

    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "COMPILE_CPU_FAMILIES", frozenset({"alexnet"}))
    assert speed.use_compile("alexnet", cpu, train_images=54_000)
    assert not speed.use_compile("vgg", cpu, train_images=54_000)  # not in the measured set
    assert not speed.use_compile("alexnet", cpu, train_images=2_500 * 2)  # compile time not paid back
    assert not speed.use_compile("alexnet", cpu, train_images=10 ** 6, fixed_shapes=False)  # progressive sizes
    assert not speed.use_compile("alexnet", torch.device("meta"), train_images=10 ** 6)  # CPU only
    monkeypatch.setattr(speed, "COMPILE_CPU_FP32_FAMILIES", frozenset({"googlenet"}))
    assert not speed.use_compile("googlenet", cpu, train_images=54_000)  # a bf16 run: its gain was timed in fp32
    assert speed.use_compile("googlenet", cpu, train_images=54_000, fp32=True)
    assert not speed.use_compile("googlenet", cpu, train_images=5_000, fp32=True)


def test_fp32_compile_families_compile_only_runs_without_autocast(monkeypatch):
    from papernets.engine import runtime, speed

    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: False)
    rt = runtime.resolve_runtime(TrainConfig(), "efficientnet_v2", cpu, train_images=54_000)
    assert rt.amp == "off" and rt.compile
    assert rt.why["compile"].startswith("auto: family efficientnet_v2 measured faster compiled in fp32")
    assert not runtime.resolve_runtime(TrainConfig(), "efficientnet_v2", cpu, train_images=3_000).compile
    monkeypatch.setattr(speed, "cpu_supports_bf16", lambda: True)  # a bf16 CPU: efficientnet_v2 trains in bf16, eager
    rt = runtime.resolve_runtime(TrainConfig(), "efficientnet_v2", cpu, train_images=54_000)
    assert rt.amp == "bf16" and not rt.compile and "compile" not in rt.why
    rt = runtime.resolve_runtime(TrainConfig(amp="off"), "efficientnet_v2", cpu, train_images=54_000)
    assert rt.amp == "off" and rt.compile
    assert not runtime.resolve_runtime(TrainConfig(), "resnet", cpu, train_images=10 ** 6).compile


def test_bench_configuration_names_the_autocast_dtype_and_compile():
    from papernets.bench.runner import describe_config, load_protocol, row_config
    from papernets.engine.runtime import Runtime

    cfg = Config()
    assert "autocast" not in describe_config(cfg) and "compiled" not in describe_config(cfg)
    runtime = Runtime(torch.device("cpu"), "bf16", True, True, False)
    assert "; bf16 autocast, compiled" in describe_config(cfg, runtime=runtime)
    assert Runtime.from_dict(runtime.as_dict()) == runtime  # summary.json keeps the runtime as data
    protocol = load_protocol("fashion-quick")  # the committed table's precision, whatever the CPU defaults
    assert row_config(protocol, protocol.rows[0])[0].train.amp == "off"


def test_speed_options_resume_keeps_the_table_and_measures_only_what_it_lacks(tmp_path):
    so = benchmark_module("speed_options")
    out = tmp_path / "options.md"
    args = ["--models", "lenet5", "--variants", "base", "--fidelity-steps", "0", "--batch-size", "4", "--rounds", "1"]
    so.main([*args, "--out", str(out)])
    rows, commands = so.read_table(out.read_text())
    assert [(f, n) for f, n, _ in rows] == [("lenet", "lenet5")] and "accum2" not in rows[0][2]
    base = rows[0][2]["base"]
    with pytest.raises(SystemExit) as e:  # nothing to resume from
        so.main([*args, "--resume", "--out", str(tmp_path / "none.md")])
    assert e.value.code == 2
    so.main(["--models", "lenet5", "nin", "--variants", "base", "accum2", "--fidelity-steps", "0", "--batch-size", "4",
             "--rounds", "1", "--image-size", "32", "--resume", "--out", str(out)])
    rows, commands = so.read_table(out.read_text())
    assert [n for _, n, _ in rows] == ["lenet5", "nin"]
    assert rows[0][2]["base"] == base and "accum2" in rows[0][2] and "accum2" in rows[1][2]  # base kept, accum2 added
    assert len(commands) == 2 and "--resume" in commands[1]
    here = so.cpu_label()
    assert rows[1][2]["cpu"] == here and rows[0][2]["cpu"] == here  # each row names the machine that timed it
    lines = out.read_text().splitlines()
    lines = [line.replace(f" | {here} |", " | Other CPU (AMX) |") if "`nin`" in line else line for line in lines]
    out.write_text("\n".join(lines) + "\n")
    so.main(["--models", "nin", "--variants", "base", "checkpointing", "--fidelity-steps", "0", "--batch-size", "4",
             "--rounds", "1", "--image-size", "32", "--resume", "--out", str(out)])
    rows, _ = so.read_table(out.read_text())
    assert rows[1][2]["cpu"] == f"Other CPU (AMX); checkpointing on {here}"  # a row finished elsewhere says so


def test_memory_format_resume_keeps_the_committed_rows_and_adds_a_new_family(tmp_path):
    mf = benchmark_module("memory_format")
    out = tmp_path / "memory_format.md"
    mf.main(["--models", "lenet5_bn", "--rounds", "1", "--batch-size", "4", "--out", str(out)])
    first = out.read_text()
    row = next(line for line in first.splitlines() if line.startswith("| lenet |"))
    mf.main(["--models", "lenet5_bn", "nin", "--rounds", "1", "--batch-size", "4", "--resume", "--out", str(out)])
    text = out.read_text()
    assert row in text and text.count("`lenet5_bn`") == 1 and "| nin | `nin` |" in text  # kept as measured
    assert "Rows added by `python benchmarks/memory_format.py --models lenet5_bn nin" in text and "`nin`." in text
    assert str(tmp_path) not in text and text.startswith(first[:first.index("| family |")])
    with pytest.raises(SystemExit, match="--resume needs the table"):
        mf.main(["--models", "nin", "--resume", "--out", str(tmp_path / "none.md")])
