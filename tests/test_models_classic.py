"""The classic CNNs: AlexNet, VGG, Network in Network, GoogLeNet, Inception-v3.

Parameter counts and MACs are derived here from the papers' own tables (independently of the model code)
or taken from REFERENCES.md / torchvision; shapes are checked on the meta device; weight import is checked
against randomly initialized torchvision models.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from conftest import assert_same_logits_as_reference
from papernets.bench.profile import count_params, meta_model_stats
from papernets.models.alexnet import GroupedLRN
from papernets.pretrained import reference_model
from papernets.registry import ModelConfigError, create_model, get_entry, list_models, resolve_name

VGG_NAMES = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
CLASSIC = ["alexnet", *VGG_NAMES, "nin", "googlenet", "inception_v3"]


def conv(cin: int, cout: int, k: int | tuple[int, int], groups: int = 1, bias: bool = True) -> int:
    kh, kw = (k, k) if isinstance(k, int) else k
    return cout * (cin // groups) * kh * kw + (cout if bias else 0)


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def conv_macs(size: int, cin: int, cout: int, k: int, groups: int = 1) -> int:
    """MACs of a convolution with a ``size`` x ``size`` output map."""
    return size * size * cout * (cin // groups) * k * k


# -------------------------------------------------------------------------------------------------- registry


def test_all_classic_models_are_registered_with_aliases():
    assert set(CLASSIC) <= set(list_models())
    assert resolve_name("vggnet") == "vgg16"
    assert resolve_name("inception_v1") == "googlenet"
    assert get_entry("inception_v3").default_img_size == 299
    for name in VGG_NAMES + ["inception_v3"]:
        assert "torchvision" in get_entry(name).pretrained


# ------------------------------------------------------------------------------------------ parameter counts

# AlexNet, section 3.5 / Fig. 2: conv2, conv4, conv5 are split over the two GPUs (groups=2); 6x6x256 into fc6.
ALEXNET_PARAMS = (
    conv(3, 96, 11)
    + conv(96, 256, 5, groups=2)
    + conv(256, 384, 3)
    + conv(384, 384, 3, groups=2)
    + conv(384, 256, 3, groups=2)
    + fc(256 * 6 * 6, 4096)
    + fc(4096, 4096)
    + fc(4096, 1000)
)
# AlexNet MACs from the paper's map sizes 55, 27, 13, 13, 13 (Fig. 2) plus the three FC layers.
ALEXNET_MACS = (
    conv_macs(55, 3, 96, 11)
    + conv_macs(27, 96, 256, 5, groups=2)
    + conv_macs(13, 256, 384, 3)
    + conv_macs(13, 384, 384, 3, groups=2)
    + conv_macs(13, 384, 256, 3, groups=2)
    + 256 * 6 * 6 * 4096
    + 4096 * 4096
    + 4096 * 1000
)

# NiN ImageNet model (Caffe model zoo): (conv kxk, two 1x1) x 4, the last 1x1 giving the 1000 class maps.
NIN_IMAGENET_PARAMS = (
    conv(3, 96, 11) + 2 * conv(96, 96, 1)
    + conv(96, 256, 5) + 2 * conv(256, 256, 1)
    + conv(256, 384, 3) + 2 * conv(384, 384, 1)
    + conv(384, 1024, 3) + conv(1024, 1024, 1) + conv(1024, 1000, 1)
)  # fmt: skip
# Output maps 54 (conv1, cccp1, cccp2), 27, 13, 6 at 224 px.
NIN_IMAGENET_MACS = (
    conv_macs(54, 3, 96, 11) + 2 * conv_macs(54, 96, 96, 1)
    + conv_macs(27, 96, 256, 5) + 2 * conv_macs(27, 256, 256, 1)
    + conv_macs(13, 256, 384, 3) + 2 * conv_macs(13, 384, 384, 1)
    + conv_macs(6, 384, 1024, 3) + conv_macs(6, 1024, 1024, 1) + conv_macs(6, 1024, 1000, 1)
)  # fmt: skip
# NiN CIFAR-10 model (section 4.2 and the authors' definition), 10 classes, maps 32, 16, 8.
NIN_CIFAR_PARAMS = (
    conv(3, 192, 5) + conv(192, 160, 1) + conv(160, 96, 1)
    + conv(96, 192, 5) + 2 * conv(192, 192, 1)
    + conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 10, 1)
)  # fmt: skip

# GoogLeNet Table 1: (input maps, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, output grid).
GOOGLENET_TABLE_1 = [
    (192, 64, 96, 128, 16, 32, 32, 28),  # 3a
    (256, 128, 128, 192, 32, 96, 64, 28),  # 3b
    (480, 192, 96, 208, 16, 48, 64, 14),  # 4a
    (512, 160, 112, 224, 24, 64, 64, 14),  # 4b
    (512, 128, 128, 256, 24, 64, 64, 14),  # 4c
    (512, 112, 144, 288, 32, 64, 64, 14),  # 4d
    (528, 256, 160, 320, 32, 128, 128, 14),  # 4e
    (832, 256, 160, 320, 32, 128, 128, 7),  # 5a
    (832, 384, 192, 384, 48, 128, 128, 7),  # 5b
]


def _googlenet_counts() -> tuple[int, int, int]:
    """(params without aux, params of the two aux heads, MACs) from Table 1 and section 5."""
    params = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3) + fc(1024, 1000)
    macs = conv_macs(112, 3, 64, 7) + conv_macs(56, 64, 64, 1) + conv_macs(56, 64, 192, 3) + 1024 * 1000
    for i, (cin, c1, c3r, c3, c5r, c5, pp, s) in enumerate(GOOGLENET_TABLE_1):
        if i + 1 < len(GOOGLENET_TABLE_1):  # the table is consistent: each output feeds the next row
            assert c1 + c3 + c5 + pp == GOOGLENET_TABLE_1[i + 1][0]
        params += conv(cin, c1, 1) + conv(cin, c3r, 1) + conv(c3r, c3, 3)
        params += conv(cin, c5r, 1) + conv(c5r, c5, 5) + conv(cin, pp, 1)
        macs += conv_macs(s, cin, c1, 1) + conv_macs(s, cin, c3r, 1) + conv_macs(s, c3r, c3, 3)
        macs += conv_macs(s, cin, c5r, 1) + conv_macs(s, c5r, c5, 5) + conv_macs(s, cin, pp, 1)
    # Section 5: 1x1 conv 128, FC 1024 on the 4x4x128 map, linear 1000; on 4a (512 maps) and 4d (528 maps).
    aux = sum(conv(cin, 128, 1) + fc(4 * 4 * 128, 1024) + fc(1024, 1000) for cin in (512, 528))
    return params, aux, macs


GOOGLENET_PARAMS, GOOGLENET_AUX_PARAMS, GOOGLENET_MACS = _googlenet_counts()

# REFERENCES.md (torchvision's counts for VGG and Inception-v3; VGG-13 is not listed there and comes from
# torchvision's own count, checked against the torchvision model below).
PARAMS = {
    "alexnet": ALEXNET_PARAMS,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "nin": NIN_IMAGENET_PARAMS,
    "googlenet": GOOGLENET_PARAMS + GOOGLENET_AUX_PARAMS,
    "inception_v3": 27_161_264,
}


def test_derived_counts_match_the_documented_figures():
    # The hand derivations above agree with the numbers the docstrings state.
    assert ALEXNET_PARAMS == 60_965_224
    assert NIN_IMAGENET_PARAMS == 7_595_176
    assert NIN_CIFAR_PARAMS == 966_986
    assert (GOOGLENET_PARAMS, GOOGLENET_AUX_PARAMS) == (6_998_552, 6_379_728)


@pytest.mark.parametrize("name", CLASSIC)
def test_param_count_at_imagenet_configuration(name):
    params, _ = meta_model_stats(name)
    assert params == PARAMS[name]


def test_param_counts_without_aux_heads():
    assert meta_model_stats("googlenet", aux_logits=False)[0] == GOOGLENET_PARAMS
    assert meta_model_stats("inception_v3", aux_logits=False)[0] == 23_834_568


def test_nin_small_form_is_the_papers_cifar10_network():
    assert meta_model_stats("nin", img_size=32, num_classes=10)[0] == NIN_CIFAR_PARAMS


@pytest.mark.parametrize("name", VGG_NAMES + ["inception_v3"])
def test_param_count_equals_torchvision(name):
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # inception_v3's init_weights FutureWarning
        ref = reference_model("torchvision", name, **get_entry(name).pretrained["torchvision"].ref_kwargs)
    assert count_params(ref) == PARAMS[name]


# ------------------------------------------------------------------------------------------------------ MACs

# GMACs from REFERENCES.md (BatchNorm adds no MACs, so the _bn variants share them).
REFERENCE_GMACS = {"vgg11": 7.609, "vgg16": 15.470, "vgg19": 19.632, "inception_v3": 5.713}


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "inception_v3"])
def test_gmacs_within_one_percent_of_references(name):
    _, macs = meta_model_stats(name)
    expected = REFERENCE_GMACS[name.removesuffix("_bn")]
    assert macs / 1e9 == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("alexnet", ALEXNET_MACS), ("nin", NIN_IMAGENET_MACS), ("googlenet", GOOGLENET_MACS)],
)
def test_macs_equal_the_papers_layer_tables(name, expected):
    assert meta_model_stats(name)[1] == expected


# ---------------------------------------------------------------------------------------------------- shapes

# (name, final map at 28 px, final map at 32 px): the small-image forms documented in each file.
FINAL_MAPS = [
    ("alexnet", (256, 4, 4), (256, 4, 4)),
    *[(name, (512, 1, 1), (512, 1, 1)) for name in VGG_NAMES],
    ("nin", (192, 7, 7), (192, 8, 8)),
    ("googlenet", (1024, 3, 3), (1024, 4, 4)),
    ("inception_v3", (2048, 2, 2), (2048, 3, 3)),
]


@pytest.mark.parametrize(("name", "map28", "map32"), FINAL_MAPS)
def test_small_image_shapes(name, map28, map32):
    for size, chans, expected in ((28, 1, map28), (32, 3, map32)):
        with torch.device("meta"):
            model = create_model(name, num_classes=10, in_chans=chans, img_size=size).eval()
            x = torch.empty(2, chans, size, size)
            feats = model.forward_features(x)
            logits = model(x)
        assert tuple(feats.shape) == (2, *expected)
        assert feats.shape[1] == model.num_features
        assert tuple(logits.shape) == (2, 10)
        assert model.small_input


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("alexnet", 224, (256, 6, 6)),
        ("vgg16", 224, (512, 7, 7)),
        ("nin", 224, (1024, 6, 6)),
        ("googlenet", 224, (1024, 7, 7)),
        ("inception_v3", 299, (2048, 8, 8)),
    ],
)
def test_imagenet_feature_maps(name, size, expected):
    with torch.device("meta"):
        model = create_model(name, img_size=size).eval()
        feats = model.forward_features(torch.empty(1, 3, size, size))
        assert tuple(model(torch.empty(1, 3, size, size)).shape) == (1, 1000)
    assert tuple(feats.shape) == (1, *expected)
    assert not model.small_input


# ------------------------------------------------------------------------------------- auxiliary classifiers


@pytest.mark.parametrize(("name", "n_aux", "weight"), [("googlenet", 2, 0.3), ("inception_v3", 1, 0.4)])
def test_aux_classifiers_in_training_only(name, n_aux, weight):
    x = torch.empty(2, 1, 28, 28, device="meta")
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_chans=1, img_size=28)
        plain = create_model(name, num_classes=10, in_chans=1, img_size=28, aux_logits=False)
    assert model.aux_weight == weight
    logits, aux = model.train()(x)
    assert tuple(logits.shape) == (2, 10)
    assert isinstance(aux, list) and len(aux) == n_aux
    assert all(tuple(a.shape) == (2, 10) for a in aux)
    assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(plain.train()(x), torch.Tensor)
    assert count_params(model) > count_params(plain)

    with torch.device("meta"):
        model.reset_classifier(5)
    logits, aux = model.train()(x)
    assert tuple(logits.shape) == (2, 5) and all(tuple(a.shape) == (2, 5) for a in aux)


def test_googlenet_aux_heads_use_the_papers_pool_at_224():
    # 14x14 -> 5x5/3 average pool -> 4x4: the adaptive pool after it must be a no-op.
    model = create_model("googlenet")
    head = model.aux["inception4a"]
    x = torch.randn(1, 512, 14, 14)
    pooled = nn.functional.avg_pool2d(x, 5, 3)
    assert tuple(pooled.shape[-2:]) == (4, 4)
    expected = head.fc(torch.relu(head.fc1(head.conv(pooled).flatten(1))))
    torch.testing.assert_close(head.eval()(x), expected)


# --------------------------------------------------------------------------------------------- paper details


def test_alexnet_lrn_is_the_papers_formula_per_gpu():
    # b_i = a_i / (k + alpha * sum_j a_j^2)^beta, j over the n = 5 neighbours of i on its GPU (section 3.3).
    a = torch.randn(2, 8, 3, 3)
    k, alpha, beta, n, groups = 2.0, 1e-4 * 1e3, 0.75, 5, 2  # alpha scaled up so the term matters
    expected = torch.empty_like(a)
    per_gpu = a.shape[1] // groups
    for i in range(a.shape[1]):
        g0 = i // per_gpu * per_gpu
        lo, hi = max(g0, i - n // 2), min(g0 + per_gpu - 1, i + n // 2)
        expected[:, i] = a[:, i] / (k + alpha * (a[:, lo : hi + 1] ** 2).sum(1)) ** beta
    torch.testing.assert_close(GroupedLRN(n, alpha, beta, k, groups)(a), expected)


def test_alexnet_paper_structure_and_init():
    model = create_model("alexnet")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    biases = [float(m.bias.detach().mean()) for m in [*convs, model.fc6, model.fc7]]
    assert biases == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # section 5
    assert float(model.fc.bias.detach().abs().max()) == 0.0
    assert float(model.fc6.weight.detach().std()) == pytest.approx(0.01, rel=0.01)


def test_alexnet_he_initialization_has_zero_biases_and_keeps_the_papers_last_layer():
    model = create_model("alexnet", num_classes=10, in_chans=1, img_size=28, init="he")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for m in [*convs, model.fc6, model.fc7]:
        fan_in = m.weight[0].numel()
        assert float(m.bias.detach().abs().max()) == 0.0
        assert float(m.weight.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    assert float(model.fc.weight.detach().std()) == pytest.approx(0.01, rel=0.1)  # the paper's last layer
    with pytest.raises(ValueError, match="AlexNet init 'x' is not one of"):
        create_model("alexnet", init="x")


def test_googlenet_has_no_batchnorm_and_a_real_5x5_branch():
    model = create_model("googlenet")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    for block in model.blocks.values():
        if hasattr(block, "branch3"):
            assert block.branch3[1].conv.kernel_size == (5, 5)


def test_nin_has_no_fully_connected_layer_and_its_classifier_is_a_1x1_conv():
    model = create_model("nin", num_classes=10, img_size=32)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert model.fc.kernel_size == (1, 1) and model.fc.in_channels == model.num_features == 192
    model.reset_classifier(7)
    assert model.fc.out_channels == 7
    assert tuple(model.eval()(torch.randn(1, 3, 32, 32)).shape) == (1, 7)


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "nin", "googlenet"])
def test_dropout_rate_is_read_at_run_time(name):
    # None of these has BatchNorm, so with drop_rate 0 training mode computes what evaluation mode does.
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, img_size=28, **_no_aux(name))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        reference = model.eval()(x)
        model.train()
        assert not torch.allclose(model(x), reference)
        model.drop_rate = 0.0
        if name == "googlenet":
            model.aux = None
        torch.testing.assert_close(model(x), reference)


def _no_aux(name: str) -> dict:
    return {"aux_logits": False} if name == "googlenet" else {}


# --------------------------------------------------------------------------------------------- minimum sizes


@pytest.mark.parametrize("name", ["nin", "googlenet", "inception_v3"])
def test_min_img_size_is_the_smallest_that_works(name):
    # Shapes decide whether a size works, so the meta device answers it (the pooling checks are the same).
    entry = get_entry(name)
    size = entry.min_img_size
    with torch.device("meta"):
        model = entry.builder(num_classes=10, in_chans=1, img_size=size).train()
        out = model(torch.empty(2, 1, size, size))
        logits = out[0] if isinstance(out, tuple) else out
        assert tuple(logits.shape) == (2, 10)
        too_small = entry.builder(num_classes=10, in_chans=1, img_size=size - 1).train()
        with pytest.raises(RuntimeError):
            too_small(torch.empty(2, 1, size - 1, size - 1))
    with pytest.raises(ModelConfigError):
        create_model(name, img_size=size - 1)


def test_inception_v3_small_form_below_75_and_imagenet_form_guard():
    with torch.device("meta"):
        assert create_model("inception_v3", img_size=74).small_input
        assert not create_model("inception_v3", img_size=75).small_input
        with pytest.raises(ValueError, match="75 px"):
            create_model("inception_v3", img_size=74, small_input=False)


# --------------------------------------------------------------------------------------------- weight import


def _calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BatchNorm random affine parameters and the running statistics of a forward pass on ``x``."""
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for m in norms:
        m.train()
        m.momentum = None  # cumulative average: the statistics of this one batch
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.mark.parametrize("name", VGG_NAMES)
def test_vgg_torchvision_weights_give_identical_logits(name):
    ours, _ = assert_same_logits_as_reference(
        name, "torchvision", input_size=32, ref_kwargs={"init_weights": False},  # PyTorch's default random init
        randomize=lambda ref: _calibrate_batchnorm(ref, torch.randn(4, 3, 32, 32)))
    assert not ours.small_input  # the ImageNet form, whose 7x7 pool feeds FC-4096 as in torchvision


def test_inception_v3_torchvision_weights_give_identical_logits():
    # torchvision's ImageNet weights run with transform_input=True; the converter folds that transform into
    # the first convolution. The fold changes float32 rounding in the first layer, which a random deep
    # network amplifies, so the comparison runs in float64, where the two agree to ~1e-11.
    source = get_entry("inception_v3").pretrained["torchvision"]
    assert source.ref_kwargs == {"transform_input": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_logits_as_reference(
            "inception_v3", "torchvision", input_size=75, ref_kwargs={"init_weights": False}, dtype=torch.float64,
            randomize=lambda ref: _calibrate_batchnorm(ref, torch.randn(4, 3, 75, 75, dtype=torch.float64)))


@pytest.mark.parametrize("name", VGG_NAMES + ["inception_v3"])
def test_imported_weights_fit_at_small_image_sizes(name):
    # create_model(..., pretrained=...) keeps the ImageNet form (small_input=False) at any image size.
    source = get_entry(name).pretrained["torchvision"]
    size = 75 if name == "inception_v3" else 32
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        ref = reference_model("torchvision", name, **source.ref_kwargs)
        ours = create_model(name, img_size=size, small_input=False, **source.kwargs)
    ours.load_state_dict(source.convert(ref.state_dict(), ours), strict=True, assign=True)
    assert not ours.small_input


def test_inception_v3_pretrained_file_through_create_model(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference_model("torchvision", "inception_v3", init_weights=False, transform_input=True)
    path = tmp_path / "inception_v3.pth"
    torch.save(ref.state_dict(), path)
    model = create_model(
        "inception_v3", pretrained="torchvision", pretrained_file=str(path), num_classes=10, in_chans=1, img_size=75
    )
    # The folded first convolution, summed over the RGB channels for one input channel.
    scale = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) / 0.5
    expected = (ref.Conv2d_1a_3x3.conv.weight * scale).sum(1, keepdim=True)
    torch.testing.assert_close(model.stem.Conv2d_1a_3x3.conv.weight, expected)
    torch.testing.assert_close(model.blocks.Mixed_7c.branch_pool.conv.weight, ref.Mixed_7c.branch_pool.conv.weight)
    assert tuple(model.eval()(torch.randn(1, 1, 75, 75)).shape) == (1, 10)


def test_vgg_he_initialization_keeps_the_signal_that_glorot_loses():
    """He et al. (2015), section 2.2: Glorot's variance halves at every ReLU; He-normal keeps it (see vgg.py)."""
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    stds = {}
    for init in ("glorot", "he"):
        model = create_model("vgg16", num_classes=10, in_chans=1, img_size=28, init=init).eval()
        with torch.no_grad():
            stds[init] = float(model(x).std())
        conv = model.features[0]
        if init == "he":
            # sqrt(2 / fan_in), fan_in 1x3x3
            assert float(conv.weight.detach().std()) == pytest.approx((2 / 9) ** 0.5, rel=0.1)
    assert stds["glorot"] < 0.01 and 0.3 < stds["he"] < 3
    with pytest.raises(ValueError, match="VGG init 'x' is not one of"):
        create_model("vgg16", init="x")
