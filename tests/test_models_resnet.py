"""ResNet, CIFAR ResNet, ResNeXt, SE-ResNet: exact sizes, paper figures, small-image forms, weight import."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import papernets
from conftest import assert_same_logits_as_reference
from papernets.bench.profile import meta_model_stats
from papernets.models.resnet import Bottleneck, ZeroPadShortcut
from papernets.registry import get_entry, resolve_name

IMAGENET = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "seresnet18", "seresnet34", "seresnet50", "seresnext50_32x4d",
]
CIFAR = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnext29_8x64d", "resnext29_16x64d"]


def _se_params(blocks: tuple[int, ...], expansion: int) -> int:
    """SE blocks (two biased 1x1 convs C -> C/16 -> C) on the C = expansion * (64, 128, 256, 512) output
    channels of every block, ``blocks`` per stage."""
    total = 0
    for n, planes in zip(blocks, (64, 128, 256, 512), strict=True):
        c = planes * expansion
        total += n * (2 * c * (c // 16) + c // 16 + c)
    return total


# SE-ResNets: the ResNet (torchvision's counts, which ours equal) plus one SE block per residual block.
SE18 = 11_689_512 + _se_params((2, 2, 2, 2), 1)
SE34 = 21_797_672 + _se_params((3, 4, 6, 3), 1)
SE50 = 25_557_032 + _se_params((3, 4, 6, 3), 4)


# name, kwargs, exact params at 224 px / 1000 classes, reference GMACs (None: none to compare), its source
IMAGENET_TABLE = [
    ("resnet18", {}, 11_689_512, 1.814, "REFERENCES.md"),
    ("resnet34", {}, 21_797_672, 3.664, "REFERENCES.md"),
    ("resnet50", {}, 25_557_032, 3.86, "REFERENCES.md, paper v1"),
    ("resnet50", {"stride_in_3x3": True}, 25_557_032, 4.089, "REFERENCES.md, v1.5"),
    ("resnet101", {}, 44_549_160, 7.6, "ResNet Table 1"),  # params: torchvision resnet101
    ("resnet152", {}, 60_192_808, 11.3, "ResNet Table 1"),  # params: torchvision resnet152
    ("resnext50_32x4d", {}, 25_028_904, 4.230, "REFERENCES.md"),
    ("resnext101_32x8d", {}, 88_791_336, None, ""),  # params: torchvision resnext101_32x8d
    ("seresnet18", {}, SE18, None, ""),
    ("seresnet34", {}, SE34, None, ""),
    ("seresnet50", {}, SE50, 3.87, "SE Table 2"),
    ("seresnext50_32x4d", {}, 27_559_896, 4.25, "SE Table 2"),  # params: timm seresnext50_32x4d
]


@pytest.mark.parametrize("name,kwargs,params,gmacs,source", IMAGENET_TABLE, ids=lambda v: str(v))
def test_imagenet_params_and_macs(name, kwargs, params, gmacs, source):
    got_params, macs = meta_model_stats(name, 224, num_classes=1000, **kwargs)
    assert got_params == params
    if gmacs is not None:
        assert macs / 1e9 == pytest.approx(gmacs, rel=0.01), source


def test_se_derived_counts():
    # The derivations above give the counts in the module docstring; 28,088,024 is also timm's seresnet50.
    assert (SE18, SE34, SE50) == (11_778_592, 21_958_868, 28_088_024)


def _cifar_resnet_params(n: int, classes: int = 10) -> int:
    """Section 4.2: 3x3 conv 16, then 2n 3x3 convs on each of 16, 32, 64 filters; BN (2 per channel) after
    every conv; option A shortcuts have no parameters; FC 64 -> classes with bias."""
    conv = lambda cin, cout: 9 * cin * cout + 2 * cout  # noqa: E731
    total, cin = conv(3, 16), 16
    for width in (16, 32, 64):
        total += conv(cin, width) + (2 * n - 1) * conv(width, width)
        cin = width
    return total + 64 * classes + classes


def _resnext29_params(cardinality: int, classes: int = 10) -> int:
    """ResNeXt section 5.3 / models/resnext.lua: 3x3 conv 64, three stages of three bottlenecks (1x1 in -> W,
    3x3 grouped W -> W, 1x1 W -> out; W = cardinality * 64 * 2^stage, out = 256 * 2^stage), a 1x1 projection +
    BN on the first block of each stage, FC with bias. No conv biases; BN has 2 parameters per channel."""
    total, cin = 9 * 3 * 64 + 2 * 64, 64
    for stage in range(3):
        width, out = cardinality * 64 * 2**stage, 256 * 2**stage
        for block in range(3):
            total += cin * width + 2 * width
            total += 9 * width * (width // cardinality) + 2 * width
            total += width * out + 2 * out
            if block == 0:
                total += cin * out + 2 * out
            cin = out
    return total + 1024 * classes + classes


# name, exact params (CIFAR-10), the paper's figure in millions, digits the paper rounds to
CIFAR_TABLE = [
    ("resnet20", _cifar_resnet_params(3), 0.27, 2),
    ("resnet32", _cifar_resnet_params(5), 0.46, 2),
    ("resnet44", _cifar_resnet_params(7), 0.66, 2),
    ("resnet56", _cifar_resnet_params(9), 0.85, 2),
    ("resnet110", _cifar_resnet_params(18), 1.7, 1),
    ("resnext29_8x64d", _resnext29_params(8), 34.4, 1),
    ("resnext29_16x64d", _resnext29_params(16), 68.1, 1),
]


@pytest.mark.parametrize("name,params,paper,digits", CIFAR_TABLE, ids=[r[0] for r in CIFAR_TABLE])
def test_cifar_params_match_paper(name, params, paper, digits):
    assert meta_model_stats(name, 32, num_classes=10)[0] == params
    millions = params / 1e6
    if name.startswith("resnext"):  # the ResNeXt paper truncates (68.155M -> 68.1M; 34.427M -> 34.4M)
        assert math.floor(millions * 10**digits) / 10**digits == pytest.approx(paper)
    else:
        assert round(millions, digits) == pytest.approx(paper)


def test_cifar_exact_counts():
    expect = [269_722, 464_154, 658_586, 853_018, 1_727_962]
    assert [_cifar_resnet_params(n) for n in (3, 5, 7, 9, 18)] == expect
    assert [_resnext29_params(c) for c in (8, 16)] == [34_426_698, 68_155_210]


def test_stride_placement_v1_and_v15():
    with torch.device("meta"):
        v1 = papernets.create_model("resnet50")
        v15 = papernets.create_model("resnet50", stride_in_3x3=True)
        rx = papernets.create_model("resnext50_32x4d")
        se = papernets.create_model("seresnet50")
        sx = papernets.create_model("seresnext50_32x4d")
    for m in (v1, se):
        assert m.layer2[0].conv1.stride == (2, 2) and m.layer2[0].conv2.stride == (1, 1)
    for m in (v15, rx, sx):
        assert m.layer2[0].conv1.stride == (1, 1) and m.layer2[0].conv2.stride == (2, 2)
    assert rx.layer1[0].conv2.groups == 32 and rx.layer1[0].conv2.in_channels == 128


def test_se_placement_and_reduction():
    with torch.device("meta"):
        se18 = papernets.create_model("seresnet18")
        se50 = papernets.create_model("seresnet50")
    assert se18.layer1[0].se.fc1.out_channels == 4 and se18.layer4[1].se.fc1.out_channels == 32
    assert se50.layer1[0].se.fc1.in_channels == 256 and se50.layer1[0].se.fc1.out_channels == 16
    assert se50.layer4[2].se.fc1.out_channels == 128


def test_se_acts_on_residual_before_addition():
    torch.manual_seed(0)
    model = papernets.create_model("seresnet18", num_classes=10, img_size=32).eval()
    block = model.layer1[0]
    x = torch.randn(2, 64, 8, 8)
    nn.init.zeros_(block.se.fc2.weight)
    nn.init.constant_(block.se.fc2.bias, -100.0)  # gate ~ 0: the block passes its identity through a ReLU
    with torch.no_grad():
        torch.testing.assert_close(block(x), x.relu())


def test_aliases():
    assert resolve_name("resnet") == "resnet18"
    assert resolve_name("resnext") == "resnext50_32x4d"
    assert resolve_name("senet") == "seresnet18"


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_small_input_shapes(name):
    """Feature-map and logit shapes at 28x28x1 and 32x32x3 (shapes only: on the meta device)."""
    with torch.device("meta"):
        for size, chans in ((28, 1), (32, 3)):
            model = papernets.create_model(name, num_classes=10, in_chans=chans, img_size=size).eval()
            feats = model.forward_features(torch.empty(2, chans, size, size))
            if name in CIFAR:  # the CIFAR networks: two stride-2 stages, 32 -> 8, 28 -> 7
                expect = 8 if size == 32 else 7
            else:  # stride-1 3x3 stem, no max-pool, three stride-2 stages
                expect = 4
            assert feats.shape == (2, model.num_features, expect, expect)
            assert model.forward_head(feats).shape == (2, 10)


def test_imagenet_form_and_cifar_form_at_large_inputs():
    with torch.device("meta"):
        r50 = papernets.create_model("resnet50", img_size=224)
        r20 = papernets.create_model("resnet20", img_size=224, small_input=False)
        assert r50.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 2048, 7, 7)
        assert r20.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 64, 56, 56)
        forced = papernets.create_model("resnet50", img_size=224, small_input=True)
        assert forced.forward_features(torch.empty(1, 3, 32, 32)).shape == (1, 2048, 4, 4)
    assert meta_model_stats("resnet20", 224)[0] == meta_model_stats("resnet20", 32)[0]


@pytest.mark.parametrize("name,size,chans", [("resnet20", 28, 1), ("resnet50", 8, 3)])
def test_forward_backward_real(name, size, chans):
    torch.manual_seed(0)
    model = papernets.create_model(name, num_classes=10, in_chans=chans, img_size=size, drop_path_rate=0.1)
    out = model(torch.randn(2, chans, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_option_a_shortcut_is_parameter_free_zero_padding():
    sc = ZeroPadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4) and not list(sc.parameters())
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert (y[:, 16:] == 0).all()
    model = papernets.create_model("resnet20", num_classes=10)
    assert isinstance(model.layer2[0].downsample, ZeroPadShortcut)
    assert model.layer1[0].downsample is None


def test_resnext29_uses_projection_shortcuts_and_grouped_3x3():
    with torch.device("meta"):
        model = papernets.create_model("resnext29_16x64d", num_classes=10)
    first = model.layer1[0]
    assert isinstance(first, Bottleneck) and isinstance(first.downsample, nn.Sequential)
    assert first.conv2.groups == 16 and first.conv2.in_channels == 1024 and first.conv3.out_channels == 256
    assert model.layer3[0].conv2.stride == (2, 2) and model.num_features == 1024


def test_drop_path_linear_schedule():
    model = papernets.create_model("resnet110", num_classes=10, drop_path_rate=0.5)
    rates = [b.drop_path.drop_prob for s in (model.layer1, model.layer2, model.layer3) for b in s[1:]]
    assert rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    assert isinstance(model.layer1[0].drop_path, nn.Identity)  # first block: rate 0


def test_bad_arguments_raise():
    with pytest.raises(TypeError):
        papernets.create_model("resnet50", not_an_option=1)
    with pytest.raises(TypeError):
        papernets.create_model("resnet20", stride_in_3x3=True)
    with pytest.raises(ValueError):
        papernets.create_model("resnet18", groups=32)


def _randomize_bn(model: nn.Module) -> None:
    """Random BN affine parameters and running statistics, so that no residual branch is zero (timm zero-inits
    the last BN of each block) and every tensor mapping is exercised."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.25)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize(
    "name,library,differs",
    [("resnet18", "torchvision", False), ("resnet50", "torchvision", True), ("seresnet50", "timm", False),
     ("resnext50_32x4d", "torchvision", False)],
)
def test_weight_import_identical_logits(name, library, differs):
    # differs: the paper-faithful default (v1) is a different network from theirs (v1.5)
    assert_same_logits_as_reference(name, library, img_size=224, input_size=32, randomize=_randomize_bn,
                                    source_kwargs_matter=differs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,library",
    [("resnet34", "torchvision"), ("resnet101", "torchvision"), ("resnet152", "torchvision"),
     ("resnext101_32x8d", "torchvision"), ("seresnext50_32x4d", "timm")],
)
def test_weight_import_identical_logits_slow(name, library):
    assert_same_logits_as_reference(name, library, img_size=224, input_size=32, randomize=_randomize_bn)


def test_pretrained_sources():
    expect = {
        "resnet18": ("torchvision", "resnet18", {}),
        "resnet34": ("torchvision", "resnet34", {}),
        "resnet50": ("torchvision", "resnet50", {"stride_in_3x3": True}),
        "resnet101": ("torchvision", "resnet101", {"stride_in_3x3": True}),
        "resnet152": ("torchvision", "resnet152", {"stride_in_3x3": True}),
        "resnext50_32x4d": ("torchvision", "resnext50_32x4d", {}),
        "resnext101_32x8d": ("torchvision", "resnext101_32x8d", {}),
        "seresnet50": ("timm", "seresnet50", {"stride_in_3x3": True}),
        "seresnext50_32x4d": ("timm", "seresnext50_32x4d", {}),
    }
    for name in IMAGENET + CIFAR:
        sources = get_entry(name).pretrained
        if name in expect:
            library, their_name, kwargs = expect[name]
            assert list(sources) == [library]
            assert (sources[library].name, sources[library].kwargs) == (their_name, kwargs)
        else:
            assert sources == {}


@pytest.mark.parametrize("name", IMAGENET + CIFAR)
def test_min_img_size_gives_1x1_last_map(name):
    size = papernets.model_info(name)["min_img_size"]
    assert size == (4 if name in CIFAR else 8)
    with torch.device("meta"):
        model = papernets.create_model(name, num_classes=10, img_size=size)
        assert model.forward_features(torch.empty(2, 3, size, size)).shape[-2:] == (1, 1)
