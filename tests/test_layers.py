"""The shared layers of the model files: the classifier head and its model base class, the small-image rule, the
patch embedding's refusal of indivisible sizes, and the interface every registered model offers the trainer."""

import pytest
import torch
from torch import nn

import papernets
from papernets.errors import ModelConfigError
from papernets.layers import Classifier, ClassifierModel, ModelBase, ModelInterface, PatchEmbed, small_form
from papernets.layers.weight_init import zero_init_
from papernets.registry import get_entry

NAMES = papernets.list_models()
AUX_WEIGHTS = {"googlenet": 0.3, "inception_v3": 0.4}  # the weights the trainer used before the interface
AUX_HEADS = {"googlenet": 2, "inception_v3": 1}
PATCH_MODELS = {"vit", "mlp_mixer", "resmlp", "gmlp"}  # families


def _small_size(name: str) -> int:
    return max(32, get_entry(name).min_img_size)


def _meta_model(name: str, **kwargs) -> nn.Module:
    """The small form on the meta device: shapes without computation, so every model is cheap to build and run."""
    with torch.device("meta"):
        return papernets.create_model(name, num_classes=10, in_chans=1, img_size=_small_size(name), **kwargs)


def _one_per_class() -> list[str]:
    """The smallest registered model of each model class (its head code is that of all the class's variants)."""
    smallest: dict[type, tuple[int, str]] = {}
    for name in NAMES:
        model = _meta_model(name)
        size = (sum(p.numel() for p in model.parameters()), name)
        smallest[type(model)] = min(smallest.get(type(model), size), size)
    return sorted(name for _, name in smallest.values())


ONE_PER_CLASS = _one_per_class()


# --------------------------------------------------------------------------------------------- the classifier


def test_classifier_drop_rate_is_settable_and_used():
    torch.manual_seed(0)
    head = Classifier(8, 3, drop_rate=0.0, pool="avg").train()
    nn.init.normal_(head.bias)
    x = torch.randn(4, 8, 5, 5)
    torch.testing.assert_close(head(x), head.eval()(x), rtol=0, atol=0)
    head.train().drop_rate = 1.0  # every input dropped: only the bias is left
    torch.testing.assert_close(head(x), head.bias.expand(4, 3), rtol=0, atol=0)
    head.drop_rate = 0.5
    assert not torch.allclose(head(x), head(x))
    assert "drop_rate=0.5" in repr(head)


@pytest.mark.parametrize(("pool", "shape", "pooled"), [
    ("avg", (2, 6, 3, 4), lambda x: x.mean((2, 3))),
    ("avg_tokens", (2, 5, 6), lambda x: x.mean(1)),
    (None, (2, 6), lambda x: x),
])
def test_classifier_pools_then_applies_a_plain_linear_layer(pool, shape, pooled):
    torch.manual_seed(0)
    head = Classifier(6, 3, drop_rate=0.5, pool=pool).eval()
    linear = nn.Linear(6, 3)
    linear.load_state_dict(head.state_dict())  # the same keys as a plain linear layer
    x = torch.randn(shape)
    torch.testing.assert_close(head(x), linear(pooled(x)))


def test_classifier_refuses_an_unknown_pool():
    with pytest.raises(ValueError, match="pool"):
        Classifier(6, 3, pool="max")


def test_classifier_reset_gives_a_new_width_on_the_same_device_and_dtype():
    head = Classifier(6, 3, drop_rate=0.2, pool="avg", init=zero_init_).double()
    nn.init.normal_(head.weight)
    old = head.weight
    head.reset_classifier(5)
    assert head.weight is not old and head.out_features == 5 and head.in_features == 6
    assert head.weight.shape == (5, 6) and head.bias.shape == (5,) and head.weight.dtype == torch.float64
    assert torch.all(head.weight == 0) and torch.all(head.bias == 0)  # ``init`` ran after the default init
    assert head.drop_rate == 0.2 and head.pool == "avg"
    assert head(torch.randn(2, 6, 3, 3, dtype=torch.float64)).shape == (2, 5)
    default = Classifier(6, 3)
    default.reset_classifier(4)
    assert default.weight.abs().sum() > 0  # no ``init``: PyTorch's default initialization


def test_classifier_model_delegates_to_its_classifier():
    class Tiny(ClassifierModel):
        classifier_name = "head"

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = Classifier(4, 2, drop_rate=0.1, pool="avg")

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    model = Tiny()
    assert model.drop_rate == pytest.approx(0.1) and model.get_classifier() is model.head
    model.drop_rate = 0.3
    assert model.head.drop_rate == 0.3
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(model.eval()(x), model.head(model.conv(x)))
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert (model.aux_weight, model.patch_size) == (0.0, 1)
    assert isinstance(model, ModelInterface)


# ------------------------------------------------------------------------------------- every registered model


@pytest.mark.parametrize("name", ONE_PER_CLASS)
def test_reset_classifier_on_real_weights(name):
    torch.manual_seed(0)
    size = _small_size(name)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=size).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        model.reset_classifier(3)
        out = model(x)
        assert out.shape == (2, 3) and torch.isfinite(out).all()
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), out)


@pytest.mark.parametrize("name", ONE_PER_CLASS)
def test_model_drop_rate_is_the_dropout_its_classifier_applies(name):
    torch.manual_seed(0)
    size = _small_size(name)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=size, drop_rate=0.0)
    if getattr(type(model), "drop_rate", None) is not ClassifierModel.drop_rate:
        pytest.skip(f"{type(model).__name__} places its dropout itself (tested with the model)")
    with torch.no_grad():
        feats = model.eval().forward_features(torch.randn(2, 1, size, size))
        reference = model.forward_head(feats)
        model.train()
        torch.testing.assert_close(model.forward_head(feats), reference, rtol=0, atol=0)
        model.drop_rate = 1.0  # the classifier's input is all dropped: the logits are its bias
        assert model.get_classifier().drop_rate == 1.0
        torch.testing.assert_close(model.forward_head(feats), model.get_classifier().bias.expand(2, 10))


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_changes_the_output_width(name):
    model = _meta_model(name).train()
    model.reset_classifier(3)
    if isinstance(model, ClassifierModel):
        assert model.get_classifier().weight.is_meta  # the new classifier is where the model is
    size = _small_size(name)
    out = model(torch.empty(2, 1, size, size, device="meta"))
    logits, aux = out if isinstance(out, tuple) else (out, [])  # training mode: the auxiliary logits too
    assert logits.shape == (2, 3) and all(a.shape == (2, 3) for a in aux)
    assert len(aux) == AUX_HEADS.get(name, 0)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_satisfies_the_interface(name):
    model = _meta_model(name)
    assert isinstance(model, ModelInterface) and isinstance(model, ModelBase)
    assert model.aux_weight == AUX_WEIGHTS.get(name, 0.0)
    model.drop_rate = 0.125
    assert model.drop_rate == 0.125
    entry = get_entry(name)
    if entry.family in PATCH_MODELS:
        assert model.patch_size == model.patch_embed.patch_size > 1
        assert entry.min_img_size % model.patch_size == 0
        with torch.device("meta"):
            big = papernets.create_model(name)
        assert big.patch_size == big.patch_embed.patch_size and entry.default_img_size % big.patch_size == 0
    else:
        assert model.patch_size == 1 and not hasattr(model, "patch_embed")


def test_the_interface_is_not_satisfied_by_any_module():
    assert not isinstance(nn.Linear(2, 2), ModelInterface)


@pytest.mark.parametrize("name", sorted(AUX_WEIGHTS))
def test_aux_weight_is_zero_without_auxiliary_classifiers(name):
    assert _meta_model(name, aux_logits=False).aux_weight == 0.0
    assert _meta_model(name, aux_weight=0.5).aux_weight == 0.5


# ------------------------------------------------------------------------------------------- small-image rule


def test_small_form():
    assert small_form(32, None) and small_form(63, None)
    assert not small_form(64, None) and not small_form(224, None)
    assert small_form(224, True) and not small_form(28, False)
    assert small_form(74, None, below=75) and not small_form(75, None, below=75)


def test_models_follow_the_small_form_rule():
    for size, small in ((32, True), (60, True), (64, False)):
        with torch.device("meta"):
            assert papernets.create_model("resnet18", img_size=size).small_input is small
            assert papernets.create_model("vit_ti_16", img_size=size).patch_size == (4 if small else 16)
    with torch.device("meta"):
        assert papernets.create_model("inception_v3", img_size=74).small_input
        assert not papernets.create_model("inception_v3", img_size=75).small_input
        assert not papernets.create_model("resnet18", img_size=32, small_input=False).small_input


# ----------------------------------------------------------------------------------------------- patch embedding


@pytest.mark.parametrize(("img_size", "patch", "accepted"), [(30, 16, "16 or 32"), (3, 4, "4"), (70, 32, "64 or 96")])
def test_patch_embed_refuses_indivisible_sizes(img_size, patch, accepted):
    with pytest.raises(ModelConfigError) as info:
        PatchEmbed(img_size, patch, 3, 8)
    message = str(info.value)
    assert "\n" not in message
    assert f"image size {img_size}" in message and f"patch size {patch}" in message
    assert f"multiple of {patch}, such as {accepted}." in message


def test_patch_embed_set_img_size():
    embed = PatchEmbed(32, 8, 3, 4)
    assert (embed.grid_size, embed.num_patches) == (4, 16)
    embed.set_img_size(48)
    assert (embed.img_size, embed.grid_size, embed.num_patches) == (48, 6, 36)
    with pytest.raises(ModelConfigError, match="patch size 8"):
        embed.set_img_size(50)
    assert (embed.img_size, embed.grid_size) == (48, 6)  # unchanged by the refusal
    assert embed(torch.randn(1, 3, 48, 48)).shape == (1, 36, 4)


@pytest.mark.parametrize(("name", "img_size", "patch"), [
    ("vit_ti_16", 30, 4), ("mixer_s_32", 80, 32), ("resmlp_12", 72, 16), ("gmlp_ti_16", 18, 4),
])
def test_patch_models_refuse_indivisible_sizes_at_construction(name, img_size, patch):
    with torch.device("meta"), pytest.raises(ModelConfigError, match=f"not divisible by the patch size {patch};"):
        papernets.create_model(name, img_size=img_size)


def test_vit_set_img_size_refuses_indivisible_sizes_and_keeps_its_grid():
    with torch.device("meta"):
        model = papernets.create_model("vit_ti_16", img_size=32)
    with pytest.raises(ModelConfigError, match="patch size 4"):
        model.set_img_size(34)
    assert model.grid_size == (8, 8) and model.pos_embed.shape[1] == 1 + 64


@pytest.mark.parametrize(("size", "beta", "k"), [(5, 0.75, 1.0), (5, 0.75, 2.0), (4, 0.6, 2.0), (3, 0.5, 1.0)])
def test_local_response_norm_is_pytorchs_in_value_and_gradient(size, beta, k):
    from papernets.layers.lrn import LocalResponseNorm

    torch.manual_seed(0)
    ref, ours = nn.LocalResponseNorm(size, 1e-2, beta, k), LocalResponseNorm(size, 1e-2, beta, k)
    x = (torch.randn(3, 7, 5, 4, dtype=torch.float64) * 3).requires_grad_()
    g = torch.randn(3, 7, 5, 4, dtype=torch.float64)
    ya, yb = ref(x), ours(x)
    (ga,), (gb,) = torch.autograd.grad(ya, x, g), torch.autograd.grad(yb, x, g)
    assert torch.allclose(ya, yb, atol=1e-13) and torch.allclose(ga, gb, atol=1e-13)
    assert torch.autograd.gradcheck(lambda t: ours(t), (x[:1, :, :2, :2].detach().clone().requires_grad_(),))
    x32 = torch.relu(torch.randn(2, 16, 6, 6)).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(ours(x32), ref(x32), atol=1e-6) and ours(x32).is_contiguous(memory_format=torch.channels_last)
    assert ours(x32.bfloat16()).dtype == torch.bfloat16 and ours(torch.randn(2, 6, 9)).shape == (2, 6, 9)
    assert ours.state_dict() == {} and repr(ours) == f"LocalResponseNorm({size}, alpha=0.01, beta={beta}, k={k})"
    with pytest.raises(ValueError, match="3 or more dimensions, got 2"):
        ours(torch.randn(2, 6))


def test_lrn_speed_benchmark_times_both_forms(capsys):
    from conftest import benchmark_module

    lrn = benchmark_module("lrn_speed")
    old, new, ratios = lrn.compare("alexnet", rounds=1, steps=1, batch=2)
    assert old > 0 and new > 0 and len(ratios) == 1
    with pytest.raises(SystemExit, match="resnet20 has no local response normalization"):
        lrn.compare("resnet20", rounds=1, steps=1, batch=2)
