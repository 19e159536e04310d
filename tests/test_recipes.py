"""Paper recipes (configs/recipes/<family>.yaml): one per family, valid for every model, the papers' values,
scaled to the run's epochs and batch size; their precedence on the command line; the schedule command."""

import json

import pytest
import yaml
from PIL import Image

import papernets
from papernets.cli import _train_config, build_parser, main
from papernets.config import Config, ConfigError, apply_overrides, load_config
from papernets.optim.recipes import RECIPES_DIR, apply_recipe, load_recipe
from papernets.registry import get_entry


def _paper(name: str, epochs: int = 10, batch: int = 128, *extra: str) -> Config:
    cfg = apply_overrides(Config(), [f"model.name={name}", f"train.epochs={epochs}", f"train.batch_size={batch}",
                                     *extra])
    return apply_recipe(cfg)[0]


def test_every_family_has_a_recipe_that_cites_its_paper():
    families = {get_entry(n).family for n in papernets.list_models()}
    assert families == {p.stem for p in RECIPES_DIR.glob("*.yaml")}
    for family in families:
        raw = yaml.safe_load((RECIPES_DIR / f"{family}.yaml").read_text())
        assert "section" in raw["source"].lower() or "appendix" in raw["source"].lower(), family
        assert raw["reference"]["epochs"] > 0 and raw["reference"]["batch_size"] > 0, family


@pytest.mark.parametrize("name", papernets.list_models())
def test_every_model_gets_a_valid_recipe(name):
    cfg = _paper(name)
    assert cfg.train.recipe is None and cfg.train.epochs == 10 and cfg.train.batch_size == 128
    assert cfg.model.name == name and cfg.schedule.unit == "epochs"
    if cfg.train.progressive:
        assert get_entry(name).variable_img_size


def test_resnet_sgd_step_decay_at_half_and_three_quarters():
    cfg = _paper("resnet20", 20, 128)
    o, s = cfg.optim, cfg.schedule
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", pytest.approx(0.1), 0.9, 0.0001)
    assert s.name == "multistep" and s.milestones == pytest.approx([10, 15]) and s.gamma == 0.1
    assert _paper("resnet18", 20, 256).optim.lr == pytest.approx(0.2)  # linear scaling with the batch
    assert _paper("resnet110", 182, 128).schedule.warmup == pytest.approx(1.14)
    assert _paper("resnet20", 182, 128).schedule.warmup == 0


def test_lr_scales_with_the_global_batch_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = _paper("efficientnet_b0", 35, 128)
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun --nproc-per-node 2: the global batch is 2 x 128
    two = _paper("efficientnet_b0", 35, 128)
    assert one.optim.lr == pytest.approx(0.256 * 128 / 4096) and two.optim.lr == pytest.approx(2 * one.optim.lr)
    assert two.train.batch_size == 128  # still per process
    assert _paper("resnet18", 20, 128).optim.lr == pytest.approx(0.2)  # 0.1 at a global batch of 128
    assert "to 35 at 256 (128 x 2 processes)" in apply_recipe(apply_overrides(Config(), [
        "model.name=efficientnet_b0", "train.epochs=35"]))[1]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be a whole number"):
        _paper("resnet18")


def test_inception_v3_rmsprop_label_smoothing_clipping_and_aux_loss():
    cfg = _paper("inception_v3", 50, 64)
    o, s, t = cfg.optim, cfg.schedule, cfg.train
    assert (o.name, o.tf_style_eps, o.alpha, o.eps, o.lr) == ("rmsprop", True, 0.9, 1.0, pytest.approx(0.09))
    assert (s.name, s.gamma, s.step_size) == ("exponential", 0.94, pytest.approx(1.0))  # every 2 of 100 epochs
    assert (t.label_smoothing, t.grad_clip, cfg.model.kwargs["aux_weight"]) == (0.1, 2.0, 0.4)
    assert _paper("googlenet").model.kwargs["aux_weight"] == 0.3 and _paper("googlenet").train.ema


def test_efficientnet_rmsprop_exponential_warmup_ema_stochastic_depth():
    cfg = _paper("efficientnet_b0", 35, 128)
    o, s, t = cfg.optim, cfg.schedule, cfg.train
    assert (o.name, o.tf_style_eps, o.eps, o.momentum, o.alpha) == ("rmsprop", True, 0.001, 0.9, 0.9)
    assert o.lr == pytest.approx(0.256 * 128 / 4096) and o.weight_decay == 1e-5 and o.no_weight_decay_norm_bias
    assert (s.name, s.gamma) == ("exponential", 0.97)
    assert s.step_size == pytest.approx(0.24) and s.warmup == pytest.approx(0.5)  # 2.4 and 5 of 350 epochs
    assert t.ema and t.ema_decay == 0.9999 and cfg.model.drop_path_rate == 0.2 and cfg.data.randaugment_ops == 2


def test_efficientnet_v2_progressive_table6_per_size():
    s, m, big = (_paper(f"efficientnet_v2_{k}").train for k in "sml")
    assert s.progressive and s.progressive_stages == 4
    assert (s.progressive_randaugment, s.progressive_mixup, s.progressive_dropout) == ([5, 15], [0, 0], [0.1, 0.3])
    assert (m.progressive_randaugment, m.progressive_mixup, m.progressive_dropout) == ([5, 20], [0, 0.2], [0.1, 0.4])
    assert (big.progressive_randaugment, big.progressive_mixup) == ([5, 25], [0, 0.4])
    assert big.progressive_image_size == pytest.approx([128 / 380, 1.0], abs=1e-4)
    assert _paper("efficientnet_v2_s", 2).train.progressive_stages == 2  # at most the run's epochs


def test_mobilenet_v1_and_v2_follow_their_own_papers():
    v1, v2 = _paper("mobilenet_v1", 10, 96), _paper("mobilenet_v2", 10, 96)
    assert v1.optim.lr == pytest.approx(0.045 * 3) and v1.schedule.gamma == 0.94 and v1.optim.eps == 1.0
    assert v2.optim.lr == pytest.approx(0.045) and v2.schedule.gamma == 0.98 and v2.optim.eps == 0.001
    assert v2.schedule.step_size == pytest.approx(10 / 300) and "Sandler" in load_recipe("mobilenet_v2")["source"]


def test_transformer_and_mlp_recipes():
    vit = _paper("vit_ti_16", 30, 4096)
    assert (vit.optim.name, vit.optim.lr, vit.optim.weight_decay) == ("adamw", pytest.approx(0.003), 0.3)
    assert (vit.schedule.name, vit.schedule.warmup, vit.train.grad_clip) == ("warmup_cosine", pytest.approx(3.2), 1.0)
    mixer = _paper("mixer_s_16")
    assert mixer.schedule.name == "warmup_linear" and mixer.train.grad_clip == 1.0 and mixer.optim.name == "adamw"
    resmlp = _paper("resmlp_12", 40, 1024)
    assert (resmlp.optim.name, resmlp.optim.lr, resmlp.optim.weight_decay) == ("lamb", pytest.approx(5e-3), 0.2)
    assert resmlp.schedule.name == "warmup_cosine" and resmlp.schedule.warmup == pytest.approx(0.5)
    gmlp = _paper("gmlp_s_16")
    assert gmlp.optim.name == "adamw" and gmlp.train.cutmix_alpha == 1.0 and gmlp.model.drop_path_rate == 0.05


def test_recipe_keeps_sam_and_replaces_whole_optimizer_and_schedule():
    cfg = apply_overrides(Config(), ["model.name=resnet20", "optim.nesterov=true", "optim.sam=true",
                                     "schedule.warmup=3", "model.kwargs={zero_init_last: true}"])
    out, source = apply_recipe(cfg)
    assert out.optim.sam and not out.optim.nesterov and out.schedule.warmup == 0
    assert out.model.kwargs == {"zero_init_last": True} and "He et al. 2015" in source


def test_precedence_file_then_recipe_then_flags_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "resnet20"}, "optim": {"lr": 0.5, "name": "adam"},
                                    "train": {"epochs": 20, "label_smoothing": 0.2, "batch_size": 128}}))
    parser = build_parser()
    cfg, source = _train_config(parser.parse_args(["train", "--config", str(path), "--recipe", "paper"]))
    assert (cfg.optim.name, cfg.optim.lr, cfg.train.label_smoothing) == ("sgd", pytest.approx(0.1), 0.2)
    assert cfg.train.recipe is None and "resnet.yaml" in source
    cfg, _ = _train_config(parser.parse_args(["train", "--config", str(path), "--recipe", "paper", "--lr", "0.3",
                                              "--set", "schedule.gamma=0.5", "--batch-size", "256", "--sam"]))
    assert cfg.optim.lr == 0.3 and cfg.schedule.gamma == 0.5 and cfg.optim.sam  # flags and --set win
    assert cfg.schedule.milestones == pytest.approx([10, 15])
    cfg, _ = _train_config(parser.parse_args(["train", "--config", str(path), "--batch-size", "256",
                                              "--set", "train.recipe=paper"]))
    assert cfg.optim.lr == pytest.approx(0.2)  # the recipe scales to the batch size the run ends up with
    cfg, source = _train_config(parser.parse_args(["train", "--config", str(path)]))
    assert source is None and cfg.optim.lr == 0.5


def test_a_recipe_may_not_choose_the_run_size(tmp_path, monkeypatch):
    (tmp_path / "resnet.yaml").write_text(yaml.safe_dump({"source": "x", "reference": {"epochs": 1, "batch_size": 1},
                                                          "train": {"epochs": 5}}))
    monkeypatch.setattr("papernets.optim.recipes.RECIPES_DIR", tmp_path)
    with pytest.raises(ConfigError, match="must not set train.epochs"):
        load_recipe("resnet20")


def test_train_with_recipe_and_sam_saves_the_resolved_config(tmp_path, capsys):
    code = main(["train", "--model", "lenet5_bn", "--dataset", "synthetic", "--image-size", "28", "--epochs", "1",
                 "--batch-size", "64", "--recipe", "paper", "--sam", "--set", "data.limit=300", "--set",
                 "output.plots=false", "--out", str(tmp_path), "--name", "r"])
    assert code == 0, capsys.readouterr().err[-2000:]
    run = tmp_path / "r"
    text = (run / "config.yaml").read_text()
    assert text.startswith("# The paper recipe was applied: LeCun et al. 1998")
    saved = load_config(run / "config.yaml")
    assert saved.train.recipe is None and saved.optim.sam and saved.optim.name == "sgd"
    assert saved.optim.lr == pytest.approx(0.05 * 64 / 128) and saved.schedule.milestones == pytest.approx(
        [0.1, 0.25, 0.4, 0.6])
    assert "lenet.yaml" in json.loads((run / "summary.json").read_text())["recipe"]


def test_schedule_command_writes_a_png_and_prints_values(tmp_path, capsys):
    out = tmp_path / "lr.png"
    code = main(["schedule", "--model", "resnet20", "--recipe", "paper", "--epochs", "8", "--steps-per-epoch", "50",
                 "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "schedule multistep for resnet20: 8 epochs x 50 steps = 400 optimizer steps" in stdout
    lines = {line.split()[0]: line.split() for line in stdout.splitlines() if line.strip()}
    assert float(lines["0"][2]) == pytest.approx(0.1) and float(lines["7"][2]) == pytest.approx(0.001)
    assert float(lines["last"][2]) == pytest.approx(0.001) and lines["peak"][1] == "0"
    with Image.open(out) as img:
        assert img.size[0] > 300
    assert main(["schedule", "--steps-per-epoch", "0", "--out", str(out)]) == 2
    assert "--steps-per-epoch must be at least 1" in capsys.readouterr().err
