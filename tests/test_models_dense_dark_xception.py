"""DenseNet, Darknet-53 and Xception: parameter counts, MACs, shapes, small forms, weight import."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_same_logits_as_reference
from papernets import create_model, model_info
from papernets.bench.profile import count_macs, meta_model_stats
from papernets.pretrained import map_by_order, reference_model
from papernets.registry import get_entry

DENSENETS_IMAGENET = ["densenet121", "densenet169", "densenet201", "densenet161"]
DENSENETS_CIFAR = ["densenet40_k12", "densenet_bc_100_k12", "densenet_bc_40_k12"]
ALL = DENSENETS_IMAGENET + DENSENETS_CIFAR + ["darknet53", "xception"]


# ---- parameter counts derived from the papers' tables, independently of the model code ---------------------


def densenet_params(
    blocks: tuple[int, ...],
    k: int,
    stem: int,
    bn_size: int | None,
    theta: float,
    imagenet_stem: bool,
    classes: int,
) -> int:
    """DenseNet parameters: BN has 2 per channel, convolutions no bias, the classifier a bias (section 3)."""
    total = 3 * stem * 49 + 2 * stem if imagenet_stem else 3 * stem * 9
    c = stem
    for i, n in enumerate(blocks):
        for _ in range(n):
            if bn_size:  # BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k)
                total += 2 * c + c * bn_size * k + 2 * bn_size * k + 9 * bn_size * k * k
            else:  # BN-ReLU-Conv3x3(k)
                total += 2 * c + 9 * c * k
            c += k
        if i < len(blocks) - 1:  # transition: BN-ReLU-Conv1x1(floor(theta * c))-AvgPool
            out = int(c * theta)
            total += 2 * c + c * out
            c = out
    return total + 2 * c + c * classes + classes  # final BN, classifier


def darknet53_params(classes: int) -> int:
    """YOLOv3 Table 1: each "Convolutional" is a k x k conv without bias plus BN (2 per output channel)."""

    def unit(cin: int, cout: int, k: int) -> int:
        return k * k * cin * cout + 2 * cout

    total, c = unit(3, 32, 3), 32
    for out, depth in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        total += unit(c, out, 3) + depth * (unit(out, out // 2, 1) + unit(out // 2, out, 3))
        c = out
    return total + c * classes + classes


def xception_params(classes: int) -> int:
    """Xception Fig. 5: separable conv = depthwise 3x3 + pointwise 1x1; BN after each conv; no biases."""

    def sep(cin: int, cout: int) -> int:
        return 9 * cin + cin * cout + 2 * cout

    def conv(cin: int, cout: int, k: int) -> int:
        return k * k * cin * cout + 2 * cout

    total = conv(3, 32, 3) + conv(32, 64, 3)
    total += sep(64, 128) + sep(128, 128) + conv(64, 128, 1)
    total += sep(128, 256) + sep(256, 256) + conv(128, 256, 1)
    total += sep(256, 728) + sep(728, 728) + conv(256, 728, 1)
    total += 8 * 3 * sep(728, 728)
    total += sep(728, 728) + sep(728, 1024) + conv(728, 1024, 1)
    total += sep(1024, 1536) + sep(1536, 2048)
    return total + 2048 * classes + classes


@pytest.mark.parametrize(
    "name, expected",
    [
        # REFERENCES.md (torchvision densenet121), and the closed form of Table 1 for all four.
        ("densenet121", 7_978_856),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("densenet161", 28_681_000),
    ],
)
def test_densenet_imagenet_params(name: str, expected: int) -> None:
    blocks = {
        "densenet121": ((6, 12, 24, 16), 32),
        "densenet169": ((6, 12, 32, 32), 32),
        "densenet201": ((6, 12, 48, 32), 32),
        "densenet161": ((6, 12, 36, 24), 48),
    }
    config, k = blocks[name]
    assert densenet_params(config, k, 2 * k, 4, 0.5, True, 1000) == expected
    params, _ = meta_model_stats(name, 224)
    assert params == expected


@pytest.mark.parametrize(
    "name, per_block, bc, expected, paper",
    [
        # Section 3: L = 40 = 3 x 12 layers + stem + 2 transitions + classifier; no bottleneck, theta = 1,
        # 16-map stem. Table 2: 1.0M.
        ("densenet40_k12", 12, False, 1_019_722, 1.0e6),
        # DenseNet-BC, L = 100: 3 x 16 bottleneck layers (2 convs each) + 4; theta = 0.5, 2k-map stem.
        # Table 2: 0.8M.
        ("densenet_bc_100_k12", 16, True, 769_162, 0.8e6),
        # DenseNet-BC, L = 40: 3 x 6 bottleneck layers (not in Table 2).
        ("densenet_bc_40_k12", 6, True, 176_122, None),
    ],
)
def test_densenet_cifar_params(
    name: str, per_block: int, bc: bool, expected: int, paper: float | None
) -> None:
    # CIFAR-10 configuration: 10 classes, 32 px.
    stem, bn_size, theta = (24, 4, 0.5) if bc else (16, None, 1.0)
    assert densenet_params((per_block,) * 3, 12, stem, bn_size, theta, False, 10) == expected
    if paper is not None:
        assert round(expected, -5) == paper  # the paper's figure, rounded to 0.1M as the paper does
    params, _ = meta_model_stats(name, 32, num_classes=10)
    assert params == expected


def test_darknet53_params_and_macs() -> None:
    assert darknet53_params(1000) == 41_609_928
    params, macs = meta_model_stats("darknet53", 256)
    assert params == 41_609_928
    # YOLOv3 Table 2: 18.7 billion operations at 256 px, darknet counting 2 per multiply-accumulate.
    assert macs / 1e9 == pytest.approx(18.7 / 2, rel=0.01)


def test_xception_params_match_paper() -> None:
    assert xception_params(1000) == 22_855_952  # the paper's Table 3
    params, _ = meta_model_stats("xception", 299)
    assert params == 22_855_952


def test_densenet121_gmacs() -> None:
    _, macs = meta_model_stats("densenet121", 224)
    assert macs / 1e9 == pytest.approx(2.834, rel=0.01)


@pytest.mark.parametrize(
    "name, library, ref_name, size",
    [
        ("densenet161", "torchvision", "densenet161", 224),
        ("darknet53", "timm", "darknet53", 256),
        ("xception", "timm", "legacy_xception", 299),
    ],
)
def test_macs_equal_reference_implementation(name: str, library: str, ref_name: str, size: int) -> None:
    _, macs = meta_model_stats(name, size)
    with torch.device("meta"):
        ref = reference_model(library, ref_name)
        ref_macs = count_macs(ref, torch.empty(1, 3, size, size))
    assert macs == ref_macs


# ---- shapes, small-image forms, minimum sizes --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size, chans", [(28, 1), (32, 3)])
def test_small_image_shapes(name: str, size: int, chans: int) -> None:
    # Shapes only, on the meta device; the generic model test runs these sizes for real.
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_chans=chans, img_size=size).eval()
        feats = model.forward_features(torch.empty(2, chans, size, size))
        logits = model.forward_head(feats)
    # Small forms have total stride 8 (CIFAR DenseNets: two 2x2 average pools, stride 4). Average pools round
    # down; padded stride-2 convolutions and max-pools (Darknet, Xception) round up.
    stride = 4 if name in DENSENETS_CIFAR else 8
    final = size // stride if name.startswith("densenet") else -(-size // stride)
    assert feats.shape == (2, model.num_features, final, final)
    assert logits.shape == (2, 10)
    assert model.small_input


@pytest.mark.parametrize(
    "name, size, final",
    [
        ("densenet121", 224, 7),
        ("densenet40_k12", 32, 8),  # the paper's CIFAR network: 32x32, 16x16, 8x8 blocks
        ("darknet53", 256, 8),
        ("xception", 299, 10),
    ],
)
def test_paper_feature_map(name: str, size: int, final: int) -> None:
    with torch.device("meta"):
        model = create_model(name, img_size=size)
        feats = model.forward_features(torch.empty(1, 3, size, size))
    assert feats.shape[-2:] == (final, final)
    assert feats.shape[1] == model.num_features


def test_small_input_override() -> None:
    with torch.device("meta"):
        large = create_model("densenet121", img_size=32, small_input=False)
        small = create_model("xception", img_size=224, small_input=True)
        assert large.forward_features(torch.empty(1, 3, 64, 64)).shape[-1] == 2
        assert small.forward_features(torch.empty(1, 3, 64, 64)).shape[-1] == 8
    assert large.features.conv0.kernel_size == (7, 7) and not large.small_input
    assert small.entry_flow.conv1.conv.stride == (1, 1) and small.small_input


@pytest.mark.parametrize("name", ["densenet121", "densenet_bc_40_k12", "darknet53", "xception"])
def test_min_img_size(name: str) -> None:
    size = model_info(name)["min_img_size"]
    model = create_model(name, num_classes=10, img_size=size).train()
    out = model(torch.randn(2, 3, size, size))
    out.sum().backward()
    assert out.shape == (2, 10)
    assert model.forward_features(torch.randn(2, 3, size, size)).shape[-1] == 1


@pytest.mark.parametrize("name", ["densenet121", "densenet_bc_40_k12"])
def test_densenet_below_min_img_size_fails(name: str) -> None:
    # The 2x2 average pools of the transitions need at least 2 pixels: below the minimum a map vanishes.
    size = model_info(name)["min_img_size"]
    model = create_model(name, num_classes=10, img_size=size)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, size - 1, size - 1))


def test_unknown_kwarg_raises() -> None:
    for name in ("densenet121", "darknet53", "xception"):
        with pytest.raises(TypeError):
            create_model(name, img_size=32, drop_path_rate=0.1)


# ---- architecture details ----------------------------------------------------------------------------------


def test_densenet_structure() -> None:
    basic = create_model("densenet40_k12", img_size=32, num_classes=10)
    assert basic.features.conv0.out_channels == 16
    layer = basic.features.denseblock1.denselayer1
    assert not layer.bottleneck and layer.conv1.kernel_size == (3, 3)
    assert len(basic.features.denseblock1) == 12 and basic.num_features == 16 + 3 * 12 * 12
    bc = create_model("densenet_bc_100_k12", img_size=32, num_classes=10)
    assert bc.features.conv0.out_channels == 24 and len(bc.features.denseblock3) == 16
    assert bc.features.transition1.conv.out_channels == (24 + 16 * 12) // 2
    assert bc.features.denseblock1.denselayer1.conv1.out_channels == 48  # bottleneck 4k


def test_densenet_proj_dropout_after_every_conv_but_the_first() -> None:
    torch.manual_seed(0)
    model = create_model("densenet_bc_40_k12", num_classes=10, img_size=32, proj_drop_rate=0.2).train()
    drops = [m.drop_rate for m in model.modules() if hasattr(m, "drop_rate") and m not in (model, model.classifier)]
    assert drops and all(p == 0.2 for p in drops)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_densenet_memory_efficient_is_exact() -> None:
    torch.manual_seed(0)
    plain = create_model("densenet_bc_40_k12", num_classes=10, img_size=32)
    efficient = create_model("densenet_bc_40_k12", num_classes=10, img_size=32, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    out_plain, out_eff = plain(x), efficient(x)
    torch.testing.assert_close(out_eff, out_plain)
    out_plain.square().sum().backward()
    out_eff.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    # The recomputation in the backward pass must not update the BN running statistics a second time.
    for (name, a), b in zip(plain.named_buffers(), efficient.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=name)


def _leaky_slopes(model: nn.Module) -> list[float]:
    return [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)]


def test_darknet_units() -> None:
    model = create_model("darknet53", img_size=256)
    assert len(_leaky_slopes(model)) == 52 and set(_leaky_slopes(model)) == {0.1}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 52 and not any(c.bias is not None for c in convs)  # + "Connected 1000" = 53 layers
    assert [s.downsample.conv.stride for s in model.stages] == [(2, 2)] * 5
    assert [len(s.blocks) for s in model.stages] == [1, 2, 8, 8, 4]


def test_timm_darknet53_differs_only_in_leaky_slope() -> None:
    # Same tensors in the same order; timm's leaky ReLUs have slope 0.01, which leaky_slope reproduces.
    with torch.device("meta"):
        theirs = reference_model("timm", "darknet53")
        ours = create_model("darknet53", leaky_slope=0.01)
    assert map_by_order(theirs.state_dict(), ours).keys() == ours.state_dict().keys()
    assert _leaky_slopes(theirs) == _leaky_slopes(ours) == [0.01] * 52
    assert get_entry("darknet53").pretrained["timm"].kwargs == {"leaky_slope": 0.01}


def test_xception_structure() -> None:
    model = create_model("xception")
    assert model.drop_rate == 0.5
    assert len(model.middle_flow) == 8
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [c for c in convs if c.groups > 1]
    assert all(c.groups == c.in_channels == c.out_channels and c.kernel_size == (3, 3) for c in depthwise)
    assert len(depthwise) == 2 * 3 + 8 * 3 + 2 + 2
    # No activation between depthwise and pointwise convolutions.
    sep = model.middle_flow[0].branch.sep1
    assert [type(m) for m in sep.children()] == [nn.Conv2d, nn.Conv2d]


# ---- weight import: identical logits -----------------------------------------------------------------------


def _randomize(model: nn.Module) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, so that a wrong mapping cannot pass."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            elif isinstance(m, nn.Linear):
                m.bias.copy_(torch.randn(m.out_features, generator=gen))
    return model


def _check_import(name: str, library: str, size: int, state_fn=None, default_differs: bool = False) -> None:
    # default_differs: the source's builder keywords matter: without them the logits are not theirs
    assert_same_logits_as_reference(name, library, input_size=size, randomize=_randomize, state_fn=state_fn,
                                    source_kwargs_matter=default_differs)


def _old_torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The key style of torchvision's published DenseNet checkpoints: "denselayer1.norm.1.weight"."""
    out = {}
    for key, value in state.items():
        if "denselayer" in key:
            for part in ("norm", "relu", "conv"):
                key = key.replace(f".{part}1.", f".{part}.1.").replace(f".{part}2.", f".{part}.2.")
        out[key] = value
    return out


def test_densenet121_torchvision_import() -> None:
    _check_import("densenet121", "torchvision", 64)


def test_densenet121_torchvision_import_old_checkpoint_keys() -> None:
    _check_import("densenet121", "torchvision", 64, _old_torchvision_keys)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet169", "densenet201", "densenet161"])
def test_densenet_torchvision_import(name: str) -> None:
    _check_import(name, "torchvision", 64)


def test_xception_timm_import() -> None:
    _check_import("xception", "timm", 71)


def test_darknet53_timm_import() -> None:
    # timm's weights need leaky_slope=0.01 (the source's keyword); the paper's 0.1 gives other logits.
    _check_import("darknet53", "timm", 64, default_differs=True)


def test_pretrained_sources() -> None:
    for name in DENSENETS_IMAGENET:
        assert model_info(name)["pretrained"] == ["torchvision"]
    assert model_info("xception")["pretrained"] == ["timm"]
    assert model_info("darknet53")["pretrained"] == ["timm"]
    for name in DENSENETS_CIFAR:
        assert model_info(name)["pretrained"] == []


def test_aliases_and_defaults() -> None:
    assert get_entry("densenet").name == "densenet40_k12"
    assert model_info("darknet53")["default_img_size"] == 256
    assert model_info("xception")["default_img_size"] == 299
    assert model_info("densenet_bc_100_k12")["default_img_size"] == 32
