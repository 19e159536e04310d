
import pytest
import yaml

from papernets.config import (
    CONFIGS_DIR,
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)

CONFIGS = CONFIGS_DIR


def test_base_config_is_the_classic_one():
    cfg = load_config(CONFIGS / "base.yaml")
    assert (cfg.train.epochs, cfg.optim.lr, cfg.train.batch_size, cfg.data.image_size, cfg.optim.name) == (
        10, 0.001, 128, 224, "adam")


def test_quickstart_config_is_resnet20_on_the_whole_of_fashion_mnist_28px():
    cfg = load_config(CONFIGS / "quickstart.yaml")
    assert (cfg.model.name, cfg.data.name, cfg.data.image_size, cfg.data.limit) == ("resnet20", "fashion-mnist", 28,
                                                                                    None)
    assert cfg.train.steps * cfg.train.batch_size <= 2 * 54_000  # at most two passes: minutes on 2 cores


def test_precedence_yaml_then_flags_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"optim": {"lr": 0.5, "name": "sgd"}, "train": {"epochs": 3}}))
    cfg = load_config(path)
    assert (cfg.optim.lr, cfg.optim.name, cfg.train.epochs) == (0.5, "sgd", 3)
    cfg = config_from_dict({"optim": {"lr": 0.25}}, base=cfg)  # what a --lr flag does
    assert (cfg.optim.lr, cfg.optim.name) == (0.25, "sgd")
    cfg = apply_overrides(cfg, ["optim.lr=0.125", "model.kwargs={zero_init_last: true}", "data.limit=null"])
    assert cfg.optim.lr == 0.125 and cfg.model.kwargs == {"zero_init_last": True} and cfg.data.limit is None


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key optim\.'lrr'.*Did you mean optim\.lr\?"):
        config_from_dict({"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match="Did you mean train"):
        config_from_dict({"trian": {"epochs": 1}})


@pytest.mark.parametrize("override,match", [
    ("train.epochs=ten", "train.epochs must be an integer, got 'ten'"),
    ("train.epochs=2.5", "train.epochs must be an integer"),
    ("optim.name=adagrad", "optim.name must be one of 'sgd', 'adam', 'adamw', 'rmsprop'"),
    ("data.augment=yes please", "data.augment must be true or false"),
    ("optim.betas=[0.9]", "optim.betas must be two numbers"),
    ("data.val_fraction=1.5", r"data.val_fraction must be in \[0, 1\)"),
    ("optim.lr=-1", "optim.lr must be a positive finite number"),
    ("epochs=3", "must be section.key"),
])
def test_wrong_values_are_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), [override])


def test_int_is_accepted_where_a_float_is_expected():
    assert apply_overrides(Config(), ["optim.lr=1"]).optim.lr == 1.0


def test_roundtrip_through_yaml(tmp_path):
    cfg = apply_overrides(Config(), ["model.name=lenet5", "train.grad_clip=1.0"])
    path = tmp_path / "saved.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_shipped_configs_load_by_name_or_by_their_place_in_the_package():
    assert load_config("quickstart") == load_config(CONFIGS / "quickstart.yaml")
    assert load_config("configs/quickstart.yaml") == load_config("quickstart.yaml")
    with pytest.raises(ConfigError, match="Did you mean 'quickstart'"):
        load_config("quikstart")


def test_invalid_yaml_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("override,section,key,expected", [
    ("train.amp=off", "train", "amp", "off"),  # YAML 1.1 reads off as false
    ("train.amp=auto", "train", "amp", "auto"),
    ("output.name=2024", "output", "name", "2024"),  # a number, kept as the user spelled it
    ("output.name=on", "output", "name", "on"),
    ("output.name=1.50", "output", "name", "1.50"),
    ("data.augment=off", "data", "augment", False),  # a bool field still takes YAML's booleans
    ("data.root=@host", "data", "root", "@host"),  # not valid YAML, no brackets or quotes: a plain string
])
def test_string_fields_keep_the_users_spelling(override, section, key, expected):
    value = getattr(getattr(apply_overrides(Config(), [override]), section), key)
    assert value == expected and type(value) is type(expected)


def test_yaml_file_string_fields_keep_the_users_spelling(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\n  epochs: 2\noutput:\n  name: 2024\n  plots: no\n")
    cfg = load_config(path)
    assert (cfg.train.amp, cfg.output.name, cfg.train.epochs, cfg.output.plots) == ("off", "2024", 2, False)
    path.write_text("train:\n  amp: on\n")
    with pytest.raises(ConfigError, match=r"train.amp must be one of 'auto', 'off', 'fp16', 'bf16', got 'on'\."):
        load_config(path)


@pytest.mark.parametrize("override", ["optim.betas=[0.9, 0.99", "model.kwargs={a: 1", "output.name=\"abc"])
def test_malformed_override_is_an_error_not_a_string(override):
    with pytest.raises(ConfigError, match=r"is not valid YAML.*quote a plain string"):
        apply_overrides(Config(), [override])


def test_translate_tta_is_a_shift_below_half_the_image():
    from papernets.config import Config, ConfigError, apply_overrides, validate

    validate(apply_overrides(Config(), ["data.image_size=28", "train.tta_translate=2"]))
    for bad in ("-1", "14"):
        with pytest.raises(ConfigError, match=f"train.tta_translate must be 0 .* got {bad}"):
            validate(apply_overrides(Config(), ["data.image_size=28", f"train.tta_translate={bad}"]))
