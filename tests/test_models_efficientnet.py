"""EfficientNet B0-B7 and EfficientNetV2 S/M/L: tables, counts, small-image form, run-time knobs, weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_same_logits_as_reference
from papernets import create_model, model_info
from papernets.bench.profile import meta_model_stats
from papernets.models.efficientnet import V2_L, V2_M, Conv2dSame, EfficientNet, FusedMBConv, MBConv, Stage
from papernets.registry import get_entry, resolve_name

# REFERENCES.md: input size, params (1000 classes), GMACs; torchvision = timm tf_efficientnet(v2)_*.
REFERENCE = {
    "efficientnet_b0": (224, 5_288_548, 0.3858),
    "efficientnet_b1": (240, 7_794_184, 0.6868),
    "efficientnet_b2": (260, 9_109_994, 0.9936),
    "efficientnet_b3": (300, 12_233_232, 1.8271),
    "efficientnet_b4": (380, 19_341_616, 4.3938),
    "efficientnet_b5": (456, 30_389_784, 10.2664),
    "efficientnet_b6": (528, 43_040_704, 19.0676),
    "efficientnet_b7": (600, 66_347_960, 37.7459),
    "efficientnet_v2_s": (384, 21_458_488, 8.3656),
    "efficientnet_v2_m": (480, 54_139_356, 24.5825),
    "efficientnet_v2_l": (480, 118_515_272, 56.0797),
}
NAMES = list(REFERENCE)


def _meta(name: str, **kwargs) -> EfficientNet:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _blocks(model: EfficientNet) -> list[nn.Module]:
    return [block for stage in model.stages for block in stage]


@pytest.mark.parametrize("name", NAMES)
def test_imagenet_params_and_gmacs(name):
    size, params, gmacs = REFERENCE[name]
    assert model_info(name)["default_img_size"] == size
    p, macs = meta_model_stats(name)
    assert p == params
    assert macs / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_aliases():
    assert resolve_name("efficientnet") == "efficientnet_b0"
    assert resolve_name("efficientnetv2") == "efficientnet_v2_s"


def test_b7_compound_scaling_by_hand():
    # B7: width 2.0, depth 3.1. Layers ceil(r * 3.1) for Table 1's r = 1,2,2,3,3,4,1 -> 4,7,7,10,10,13,4;
    # channels 2x (16,24,40,80,112,192,320) rounded to 8; stem 2 x 32 = 64, head 2 x 1280 = 2560.
    model = _meta("efficientnet_b7")
    assert [len(stage) for stage in model.stages] == [4, 7, 7, 10, 10, 13, 4]
    assert [stage[0].out_chs for stage in model.stages] == [32, 48, 80, 160, 224, 384, 640]
    assert model.stem.conv.out_channels == 64
    assert model.num_features == model.head.conv.out_channels == 2560
    assert model.drop_rate == 0.5
    # B2: width 1.1 -> 16*1.1=17.6 -> 16, 24*1.1=26.4 -> 24, 40*1.1=44 -> 48, 320*1.1=352; depth 1.2.
    b2 = _meta("efficientnet_b2")
    assert [len(stage) for stage in b2.stages] == [2, 3, 3, 4, 4, 5, 2]
    assert [stage[0].out_chs for stage in b2.stages] == [16, 24, 48, 88, 120, 208, 352]
    assert b2.num_features == 1408


def test_mbconv_se_width_from_block_input():
    model = _meta("efficientnet_b0")
    first, second = model.stages[0][0], model.stages[1][0]
    assert isinstance(first.conv_pw, nn.Identity)  # MBConv1: no expansion conv
    assert first.se.fc1.out_channels == 8  # int(32 * 0.25)
    assert second.conv_pw.conv.out_channels == 96 and second.se.fc1.out_channels == 4  # int(16 * 0.25)
    assert isinstance(second.se.act, nn.SiLU) and isinstance(second.se.gate, nn.Sigmoid)
    bn = model.stem.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)
    assert _meta("efficientnet_v2_s").stem.bn.momentum == 0.1


def test_v2_s_table4():
    model = _meta("efficientnet_v2_s")
    kinds = [(type(stage[0]), len(stage), stage[0].out_chs) for stage in model.stages]
    assert kinds == [
        (FusedMBConv, 2, 24), (FusedMBConv, 4, 48), (FusedMBConv, 4, 64),
        (MBConv, 6, 128), (MBConv, 9, 160), (MBConv, 15, 256),
    ]
    # Fused-MBConv1 is a single 3x3 conv + BN (+ SiLU): 24*24*9 + 2*24 parameters, no 1x1 projection.
    first = model.stages[0][0]
    assert isinstance(first.conv_pwl, nn.Identity) and first.conv.conv.kernel_size == (3, 3)
    assert sum(p.numel() for p in first.parameters()) == 24 * 24 * 9 + 48
    assert not hasattr(model.stages[1][0], "se")
    assert model.stem.conv.out_channels == 24 and model.num_features == 1280
    # M and L add a stride-1 MBConv6 stage of 512 x5 / 640 x7 (their parameter counts are tested above).
    assert V2_M[-1] == Stage(MBConv, 6, 3, 1, 512, 5) and V2_L[-1] == Stage(MBConv, 6, 3, 1, 640, 7)


SHAPE_FAST = ["efficientnet_b0", "efficientnet_b3", "efficientnet_v2_s"]
SHAPE_PARAMS = [n if n in SHAPE_FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]


@pytest.mark.parametrize("name", SHAPE_PARAMS)
def test_small_input_shapes(name):
    for size, chans in ((28, 1), (32, 3)):
        model = _meta(name, num_classes=10, in_chans=chans, img_size=size)
        x = torch.empty(2, chans, size, size, device="meta")
        assert model.forward_features(x).shape == (2, model.num_features, 4, 4)
        assert model(x).shape == (2, 10)
    tiny = _meta(name, num_classes=10, img_size=8)
    assert tiny.forward_features(torch.empty(2, 3, 8, 8, device="meta")).shape[-2:] == (1, 1)


def test_small_form_removes_stem_and_first_stage_stride():
    b0_small, b0 = _meta("efficientnet_b0", img_size=32), _meta("efficientnet_b0")
    assert b0_small.stem.conv.stride == (1, 1) and b0.stem.conv.stride == (2, 2)
    assert b0_small.stages[1][0].conv_dw.conv.stride == (1, 1)
    assert b0.stages[1][0].conv_dw.conv.stride == (2, 2)
    assert [s[0].conv_dw.conv.stride for s in b0_small.stages[2:]] == [(2, 2), (2, 2), (1, 1), (2, 2), (1, 1)]
    v2_small = _meta("efficientnet_v2_s", img_size=28)
    assert v2_small.stem.conv.stride == (1, 1) and v2_small.stages[1][0].conv.conv.stride == (1, 1)
    assert v2_small.stages[2][0].conv.conv.stride == (2, 2)
    forced = _meta("efficientnet_b0", img_size=32, small_input=False)
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert forced.forward_features(x).shape[-2:] == (7, 7)


def test_unknown_kwarg_raises():
    with pytest.raises(TypeError):
        create_model("efficientnet_b0", img_size=32, drop_connect=0.1)


RUNTIME = ["efficientnet_b0", "efficientnet_v2_s"]


@pytest.mark.parametrize("name", RUNTIME)
def test_changing_input_size(name):
    # Progressive learning (V2) feeds one model growing images: eval and training steps at other sizes.
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=16).eval()
    with torch.no_grad():
        for size in (16, 24, 12):
            assert model(torch.randn(2, 3, size, size)).shape == (2, 10)
    model.train()
    for size in (16, 24):
        model.zero_grad(set_to_none=True)
        out = model(torch.randn(2, 3, size, size))
        assert out.shape == (2, 10)
        nn.functional.cross_entropy(out, torch.tensor([1, 7])).backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), size
        assert model.stem.conv.weight.grad.abs().sum() > 0 and model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", RUNTIME)
def test_runtime_dropout(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=8, drop_path_rate=0.0).train()
    assert model.drop_rate == 0.2
    x = torch.randn(4, 3, 8, 8)
    model.drop_rate = 0.0
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.drop_rate = 0.5
    assert not torch.allclose(model(x), model(x))
    feats = torch.randn(4, model.num_features, 1, 1)
    assert not torch.allclose(model.forward_head(feats), model.forward_head(feats))
    model.eval()
    torch.testing.assert_close(model.forward_head(feats), model.forward_head(feats), rtol=0, atol=0)


def test_runtime_drop_path_rate():
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", num_classes=10, img_size=8, drop_rate=0.0)
    blocks = _blocks(model)
    assert len(blocks) == 16
    assert [b.drop_path.drop_prob for b in blocks] == pytest.approx([0.2 * i / 16 for i in range(16)])
    model.set_drop_path_rate(0.4)
    assert model.drop_path_rate == 0.4
    assert [b.drop_path.drop_prob for b in blocks] == pytest.approx([0.4 * i / 16 for i in range(16)])
    x = torch.randn(4, 3, 8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.set_drop_path_rate(0.0)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.eval()
    model.set_drop_path_rate(0.5)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_v2_s"])
def test_channels_last_matches(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=16, drop_rate=0.0, drop_path_rate=0.0)
    x = torch.randn(2, 3, 16, 16)
    expected = model.train()(x)
    model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    feats = model.forward_features(x_cl)
    assert feats.is_contiguous(memory_format=torch.channels_last)
    out = model.forward_head(feats)
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=5e-4)  # fp32 reordering over ~40 layers: 1.4e-4 seen
    out.sum().backward()
    assert model.stem.conv.weight.grad is not None


def test_tf_same_padding():
    conv = Conv2dSame(1, 1, 3, 2, padding=0, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, 4, 4)
    # SAME at 4 px, k3 s2: 1 pixel of padding, all at the bottom/right; outputs ceil(4/2) = 2.
    assert conv(x).tolist() == [[[[9.0, 6.0], [6.0, 4.0]]]]
    assert conv(torch.ones(1, 1, 5, 5)).shape[-2:] == (3, 3)
    model = _meta("efficientnet_b0", tf_padding=True)
    assert isinstance(model.stem.conv, Conv2dSame) and not isinstance(model.head.conv, Conv2dSame)


def _randomize(model: nn.Module) -> None:
    """Give the reference model weights whose eval-mode logits are of order one.

    At their own initialization torchvision's depthwise kernels are so small (fan_out counts all channels)
    that with running statistics of mean 0 and variance 1 the logits shrink to ~1e-15, which would make the
    comparison vacuous. Here: TF-style conv init (fan_out per group) and random BN affine parameters and
    running statistics, so the BN epsilon and every parameter matter.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.running_mean, 0.0, 0.1)
            nn.init.uniform_(m.running_var, 0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)


def _check_import(name: str, library: str) -> None:
    # Ours at 64 px: the ImageNet form (stride 32). Compared at 32 px: 32 -> 16 -> ... -> 1, all even, so TF SAME
    # pads asymmetrically everywhere.
    assert_same_logits_as_reference(name, library, img_size=64, input_size=32, randomize=_randomize, min_std=0.01)


FAST_IMPORTS = [
    ("efficientnet_b0", "torchvision"),
    ("efficientnet_b0", "timm"),
    ("efficientnet_v2_s", "torchvision"),
    ("efficientnet_v2_s", "timm"),
]
SLOW_IMPORTS = [(n, lib) for n in NAMES for lib in ("torchvision", "timm") if (n, lib) not in FAST_IMPORTS]


@pytest.mark.parametrize("name,library", FAST_IMPORTS)
def test_weight_import_identical_logits(name, library):
    _check_import(name, library)


@pytest.mark.slow
@pytest.mark.parametrize("name,library", SLOW_IMPORTS)
def test_weight_import_identical_logits_all(name, library):
    _check_import(name, library)


def test_import_sources():
    tv_b0 = get_entry("efficientnet_b0").pretrained["torchvision"]
    assert tv_b0.kwargs == {"bn_eps": 1e-5, "bn_momentum": 0.1}
    assert get_entry("efficientnet_b5").pretrained["torchvision"].kwargs == {}
    for name in NAMES:
        assert get_entry(name).pretrained["timm"].kwargs == {"tf_padding": True}


def test_head_init_zero_starts_at_a_uniform_prediction_and_the_paper_bound_scales_with_the_classes():
    x = torch.randn(8, 1, 28, 28)
    torch.manual_seed(0)
    paper = create_model("efficientnet_b0", num_classes=10, in_chans=1, img_size=28)
    bound = 1 / 10**0.5  # the reference: uniform(+-1/sqrt(num_classes)), +-0.32 at 10 classes
    assert paper.classifier.weight.abs().max() <= bound and paper.classifier.weight.abs().max() > 0.9 * bound
    torch.manual_seed(0)
    zero = create_model("efficientnet_b0", num_classes=10, in_chans=1, img_size=28, head_init="zero")
    assert torch.count_nonzero(zero.classifier.weight) == 0 and torch.count_nonzero(zero.classifier.bias) == 0
    paper.eval(), zero.eval()  # no stochastic depth
    with torch.no_grad():  # every weight but the classifier's is the same draw
        assert torch.equal(paper.forward_features(x), zero.forward_features(x))
        assert torch.equal(zero(x), torch.zeros(8, 10))
    zero.reset_classifier(5)  # a new head keeps the choice
    assert zero.classifier.weight.shape == (5, 1280) and torch.count_nonzero(zero.classifier.weight) == 0
    with pytest.raises(ValueError, match="head_init 'xavier' is not one of 'paper', 'zero'"):
        create_model("efficientnet_v2_s", num_classes=10, head_init="xavier")
