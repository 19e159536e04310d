"""ViT, MLP-Mixer, ResMLP, gMLP: exact sizes, MACs (attention counted), small-image forms, position-embedding
resampling, fixed-size errors, run-time dropout, weight import from torchvision / timm (identical logits)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import papernets
from conftest import assert_same_logits_as_reference, random_reference, uninitialized_model
from papernets.bench.profile import count_macs, meta_model_stats
from papernets.models.gmlp import GMLP_SIZES
from papernets.models.mlp_mixer import MIXER_SIZES
from papernets.models.resmlp import RESMLP_LAYERSCALE
from papernets.models.vit import VIT_SIZES, resample_pos_embed
from papernets.pretrained import reference_model
from papernets.registry import ModelConfigError, get_entry, resolve_name

VIT = ["vit_ti_16", "vit_s_16", "vit_b_16", "vit_b_32", "vit_l_16"]
MIXER = ["mixer_s_32", "mixer_s_16", "mixer_b_32", "mixer_b_16", "mixer_l_16"]
RESMLP = ["resmlp_12", "resmlp_24", "resmlp_36"]
GMLP = ["gmlp_ti_16", "gmlp_s_16", "gmlp_b_16"]
ALL = VIT + MIXER + RESMLP + GMLP
FIXED_SIZE = MIXER + RESMLP + GMLP


# Parameter counts derived from the papers' tables (independent of the model code): conv patch embedding,
# blocks, final norm, head. Linear(a, b) has a*b + b weights, LayerNorm / Affine(d) 2d.
def _linear(a: int, b: int) -> int:
    return a * b + b


def _vit_params(size: str, patch: int, img: int = 224, in_chans: int = 3, classes: int = 1000) -> int:
    depth, d, mlp, _ = VIT_SIZES[size]
    n = (img // patch) ** 2
    block = 2 * 2 * d + _linear(d, 3 * d) + _linear(d, d) + _linear(d, mlp) + _linear(mlp, d)
    return in_chans * patch * patch * d + d + d + (n + 1) * d + depth * block + 2 * d + _linear(d, classes)


def _mixer_params(size: str, patch: int, img: int = 224, in_chans: int = 3, classes: int = 1000) -> int:
    depth, c, ds, dc = MIXER_SIZES[size]
    s = (img // patch) ** 2
    block = 2 * 2 * c + _linear(s, ds) + _linear(ds, s) + _linear(c, dc) + _linear(dc, c)
    return in_chans * patch * patch * c + c + depth * block + 2 * c + _linear(c, classes)


def _resmlp_params(
    depth: int, img: int = 224, patch: int = 16, in_chans: int = 3, classes: int = 1000
) -> int:
    d, n = 384, (img // patch) ** 2
    block = 2 * 2 * d + _linear(n, n) + _linear(d, 4 * d) + _linear(4 * d, d) + 2 * d  # + two LayerScales
    return in_chans * patch * patch * d + d + depth * block + 2 * d + _linear(d, classes)


def _gmlp_params(size: str, img: int = 224, patch: int = 16, in_chans: int = 3, classes: int = 1000) -> int:
    depth, d, ffn = GMLP_SIZES[size]
    n = (img // patch) ** 2
    block = 2 * d + _linear(d, ffn) + 2 * (ffn // 2) + _linear(n, n) + _linear(ffn // 2, d)
    return in_chans * patch * patch * d + d + depth * block + 2 * d + _linear(d, classes)


# name, exact params at 224 px / 1000 classes (REFERENCES.md where listed), reference GMACs or None
IMAGENET_TABLE = [
    ("vit_ti_16", 5_717_416, 1.2537),
    ("vit_s_16", 22_050_664, 4.5989),
    ("vit_b_16", 86_567_656, 17.5638),
    ("vit_b_32", _vit_params("B", 32), None),
    ("vit_l_16", 304_326_632, 61.5547),
    ("mixer_s_32", _mixer_params("S", 32), None),
    ("mixer_s_16", 18_528_264, 3.777),
    ("mixer_b_32", _mixer_params("B", 32), None),
    ("mixer_b_16", 59_880_472, 12.602),
    ("mixer_l_16", 208_196_168, 44.548),
    ("resmlp_12", 15_350_872, 3.0097),
    ("resmlp_24", 30_020_680, 5.9613),
    ("resmlp_36", 44_690_488, 8.9128),
    ("gmlp_ti_16", 5_867_328, 1.329),
    ("gmlp_s_16", 19_422_656, 4.392),
    ("gmlp_b_16", 73_075_392, 15.721),
]


@pytest.mark.parametrize("name,params,gmacs", IMAGENET_TABLE, ids=[row[0] for row in IMAGENET_TABLE])
def test_imagenet_params_and_macs(name, params, gmacs):
    got_params, macs = meta_model_stats(name, 224, num_classes=1000)
    assert got_params == params
    if gmacs is not None:
        assert macs / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_reference_counts_follow_from_the_tables():
    """The REFERENCES.md counts are what the papers' tables give, computed without the model code."""
    vit = [_vit_params(s, 16) for s in ("Ti", "S", "B", "L")]
    assert vit == [5_717_416, 22_050_664, 86_567_656, 304_326_632]
    assert [_mixer_params(s, 16) for s in ("S", "B", "L")] == [18_528_264, 59_880_472, 208_196_168]
    assert [_resmlp_params(d) for d in (12, 24, 36)] == [15_350_872, 30_020_680, 44_690_488]
    assert [_gmlp_params(s) for s in ("Ti", "S", "B")] == [5_867_328, 19_422_656, 73_075_392]


# Small-image form at 28x28x1, 10 classes: patch 4 -> 7 x 7 = 49 patches (ViT: + class token).
def _size(name: str) -> str:
    return {"ti": "Ti", "s": "S", "b": "B", "l": "L"}[name.split("_")[1]]


SMALL_TABLE = [
    *((n, _vit_params(_size(n), 4, 28, 1, 10)) for n in VIT),
    *((n, _mixer_params(_size(n), 4, 28, 1, 10)) for n in MIXER),
    *((n, _resmlp_params(int(n.split("_")[1]), 28, 4, 1, 10)) for n in RESMLP),
    *((n, _gmlp_params(_size(n), 28, 4, 1, 10)) for n in GMLP),
]


@pytest.mark.parametrize("name,params", SMALL_TABLE, ids=[row[0] for row in SMALL_TABLE])
def test_small_image_form_params(name, params):
    got, macs = meta_model_stats(name, 28, in_chans=1, num_classes=10)
    assert got == params
    assert macs > 0


def _tokens(model: nn.Module, size: int, chans: int) -> torch.Tensor:
    return model.forward_features(torch.empty(2, chans, size, size))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size,chans", [(28, 1), (32, 3)])
def test_small_input_shapes(name, size, chans):
    with torch.device("meta"):
        model = papernets.create_model(name, num_classes=10, in_chans=chans, img_size=size)
        assert model.small_input and model.patch_embed.patch_size == 4
        feats = _tokens(model, size, chans)
        n = (size // 4) ** 2 + (1 if name.startswith("vit") else 0)
        assert feats.shape == (2, n, model.num_features)
        assert model.forward_head(feats).shape == (2, 10)
        assert model(torch.empty(2, chans, size, size)).shape == (2, 10)


def test_small_input_flag_overrides_the_size_rule():
    with torch.device("meta"):
        big_patches = papernets.create_model("vit_b_16", img_size=32, small_input=False)
        small_patches = papernets.create_model("mixer_b_16", img_size=224, small_input=True)
    assert big_patches.patch_embed.patch_size == 16 and big_patches.pos_embed.shape[1] == 2 * 2 + 1
    assert small_patches.patch_embed.patch_size == 4 and small_patches.patch_embed.num_patches == 56 * 56


def test_aliases():
    assert resolve_name("vit") == "vit_b_16"
    assert resolve_name("mlpmixer") == "mixer_b_16"
    assert resolve_name("resmlp") == "resmlp_12"
    assert resolve_name("gmlp") == "gmlp_s_16"


@pytest.mark.parametrize("name", ["vit_ti_16", "mixer_s_16", "resmlp_12", "gmlp_ti_16"])
def test_min_img_size_and_divisibility(name):
    entry = get_entry(name)
    assert entry.min_img_size == 4
    assert entry.variable_img_size == (name not in FIXED_SIZE)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=4)
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 10)
    with pytest.raises(ModelConfigError, match="divisible"):
        papernets.create_model(name, img_size=30)
    with pytest.raises(ModelConfigError, match="below"):
        papernets.create_model(name, img_size=3)


@pytest.mark.parametrize("name", ["vit_ti_16", "mixer_s_16", "resmlp_12", "gmlp_ti_16"])
def test_unknown_keyword_raises(name):
    with pytest.raises(TypeError):
        papernets.create_model(name, img_size=28, not_an_option=1)


@pytest.mark.parametrize("name", FIXED_SIZE)
def test_fixed_size_models_reject_other_sizes(name):
    with torch.device("meta"):
        model = papernets.create_model(name, num_classes=10, img_size=32)
        with pytest.raises(ValueError, match="img_size=64"):
            model(torch.empty(1, 3, 64, 64))


def test_attention_macs_counted_on_real_cpu_tensors():
    """On CPU, SDPA runs a fused kernel that FlopCounterMode does not know; the profiler must count it."""
    torch.manual_seed(0)
    model = papernets.create_model("vit_ti_16")
    macs = count_macs(model, torch.randn(1, 3, 224, 224))
    _, meta_macs = meta_model_stats("vit_ti_16", 224)
    assert macs == meta_macs
    assert macs / 1e9 == pytest.approx(1.2537, rel=0.01)
    attention = 12 * 2 * 197 * 197 * 192  # QK^T and AV of 12 blocks: what a fused kernel would hide
    assert macs - attention > 1.2537e9 * 0.8


def test_vit_stochastic_depth_and_runtime_dropout():
    with torch.device("meta"):
        model = papernets.create_model("vit_ti_16", img_size=32, drop_rate=0.1, drop_path_rate=0.2)
    rates = [blk.drop_path.drop_prob for blk in model.blocks[1:]]
    assert isinstance(model.blocks[0].drop_path, nn.Identity)
    assert rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 + 12 * 3  # after the position embeddings; attention proj and both MLP layers
    model.drop_rate = 0.3
    assert model.drop_rate == 0.3 and all(m.p == 0.3 for m in dropouts)


@pytest.mark.parametrize("name", ["mixer_s_16", "resmlp_12", "gmlp_ti_16"])
def test_head_dropout_read_at_forward_time(name):
    torch.manual_seed(0)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=8, drop_rate=0.0)
    nn.init.normal_(model.head.weight)
    x = torch.randn(2, 1, 8, 8)
    model.train()
    assert torch.equal(model(x), model(x))
    model.drop_rate = 0.5
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_mlp_drop_path_schedules():
    with torch.device("meta"):
        mixer = papernets.create_model("mixer_s_16", img_size=32, drop_path_rate=0.1)
        resmlp = papernets.create_model("resmlp_12", img_size=32, drop_path_rate=0.1)
        gmlp = papernets.create_model("gmlp_ti_16", img_size=32, drop_path_rate=0.1)
    assert mixer.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)  # linear ramp (big_vision)
    assert all(b.drop_path.drop_prob == 0.1 for b in resmlp.blocks)  # constant (official ResMLP code)
    assert gmlp.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert isinstance(gmlp.blocks[0].drop_path, nn.Identity)


def test_paper_initializations():
    assert RESMLP_LAYERSCALE == {12: 0.1, 24: 1e-5, 36: 1e-6}  # official code; CaiT's rule
    resmlp = papernets.create_model("resmlp_12", num_classes=10, img_size=8)
    assert torch.all(resmlp.blocks[0].ls1 == 0.1) and torch.all(resmlp.blocks[-1].ls2 == 0.1)
    assert torch.all(resmlp.blocks[0].norm1.alpha == 1) and torch.all(resmlp.blocks[0].norm1.beta == 0)
    gmlp = papernets.create_model("gmlp_ti_16", num_classes=10, img_size=8)
    sgu = gmlp.blocks[3].sgu
    assert torch.all(sgu.proj.bias == 1) and sgu.proj.weight.abs().max() < 1e-4
    vit = papernets.create_model("vit_ti_16", num_classes=10, img_size=28)
    assert torch.all(vit.head.weight == 0) and torch.all(vit.cls_token == 0)
    assert 0.015 < vit.pos_embed.std() < 0.025


@pytest.mark.parametrize("name", ["vit_ti_16", "mixer_s_16", "resmlp_12", "gmlp_ti_16"])
def test_trains_at_28x28_grayscale(name):
    """A few AdamW steps on one fixed batch: the loss must fall (every part of the network learns)."""
    torch.manual_seed(0)
    model = papernets.create_model(name, num_classes=10, in_chans=1, img_size=28)
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2.3026, abs=0.1)  # zero or tiny head at init: near-uniform prediction
    assert losses[-1] < losses[0] - 0.1


def test_vit_resamples_position_embeddings():
    torch.manual_seed(0)
    model = papernets.create_model("vit_ti_16", num_classes=10, img_size=64).eval()
    nn.init.normal_(model.head.weight)
    x = torch.randn(2, 3, 96, 128)
    out = model(x)  # 6 x 8 grid from a 4 x 4 one
    assert out.shape == (2, 10)
    square = torch.randn(2, 3, 96, 96)
    before = model(square)
    model.set_img_size(96)
    assert model.pos_embed.shape == (1, 1 + 36, 192) and model.patch_embed.num_patches == 36
    torch.testing.assert_close(model(square), before, atol=1e-6, rtol=1e-6)
    model.train()
    model(torch.randn(2, 3, 48, 48)).sum().backward()  # progressive resizing: gradients through resampling
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0
    same = model.pos_embed.detach()
    assert resample_pos_embed(same, (6, 6), (6, 6)) is same


def _randomize_all(ref: nn.Module) -> None:
    """Every parameter random (their zero-initialized heads would hide mapping errors)."""
    for name, p in ref.named_parameters():
        p.uniform_(-0.04, 0.04)
        if p.dim() == 1 and name.endswith(("weight", "alpha")):
            p.add_(1.0)  # norms near identity, so activations keep their scale


def _assert_import(name: str, library: str, ref_name: str = "", converter: str = "", img_size: int = 64):
    """Their model -> convert -> ours (strict), identical logits. ``ref_name``/``converter``: an architecture
    they have without published weights, checked with the converter registered for ``converter``."""
    size_kw = {"image_size": img_size} if library == "torchvision" else {"img_size": img_size}
    assert_same_logits_as_reference(name, library, ref_name or None, img_size=img_size, ref_kwargs=size_kw,
                                    converter=converter or None, randomize=_randomize_all, ref_init=False,
                                    min_std=0.01)


IMPORTS_FAST = [
    ("vit_b_16", "torchvision"),
    ("vit_ti_16", "timm"),
    ("vit_s_16", "timm"),
    ("mixer_b_16", "timm"),
    ("resmlp_12", "timm"),
    ("resmlp_24", "timm"),
    ("gmlp_s_16", "timm"),
]
IMPORTS_SLOW = [
    ("vit_b_32", "torchvision"),
    ("vit_l_16", "torchvision"),
    ("vit_b_16", "timm"),
    ("vit_b_32", "timm"),
    ("vit_l_16", "timm"),
    ("mixer_l_16", "timm"),
    ("resmlp_36", "timm"),
]


@pytest.mark.parametrize("name,library", IMPORTS_FAST, ids=lambda v: str(v))
def test_weight_import_identical_logits(name, library):
    _assert_import(name, library)


@pytest.mark.slow
@pytest.mark.parametrize("name,library", IMPORTS_SLOW, ids=lambda v: str(v))
def test_weight_import_identical_logits_large(name, library):
    _assert_import(name, library)


# Architectures timm has but publishes no weights for: no source is registered, but they are the same.
SAME_AS_TIMM = [
    ("mixer_s_16", "mixer_s16_224", "mixer_b_16"),
    ("mixer_s_32", "mixer_s32_224", "mixer_b_16"),
    ("gmlp_ti_16", "gmlp_ti16_224", "gmlp_s_16"),
]
SAME_AS_TIMM_SLOW = [
    ("mixer_b_32", "mixer_b32_224", "mixer_b_16"),
    ("gmlp_b_16", "gmlp_b16_224", "gmlp_s_16"),
]


@pytest.mark.parametrize("name,ref_name,converter", SAME_AS_TIMM, ids=lambda v: str(v))
def test_same_architecture_as_timm(name, ref_name, converter):
    assert "timm" not in get_entry(name).pretrained
    _assert_import(name, "timm", ref_name=ref_name, converter=converter)


@pytest.mark.slow
@pytest.mark.parametrize("name,ref_name,converter", SAME_AS_TIMM_SLOW, ids=lambda v: str(v))
def test_same_architecture_as_timm_large(name, ref_name, converter):
    _assert_import(name, "timm", ref_name=ref_name, converter=converter)


def test_vit_resampling_matches_timm_dynamic_size():
    """Our on-the-fly resampling is timm's: same logits at a size neither model was built for."""
    assert_same_logits_as_reference("vit_ti_16", "timm", img_size=64, input_size=(112, 80),
                                    ref_kwargs={"dynamic_img_size": True, "img_size": 64},
                                    randomize=lambda ref: nn.init.normal_(ref.head.weight, std=0.02))


def test_vit_import_at_another_size_resamples_position_embeddings():
    """Fine-tuning at a new resolution (paper section 3.2): imported embeddings are interpolated on import."""
    ref = random_reference("timm", "vit_tiny_patch16_224", _randomize_all, init=False, img_size=64)
    convert = get_entry("vit_ti_16").pretrained["timm"].convert
    at_64, at_96 = uninitialized_model("vit_ti_16", img_size=64), uninitialized_model("vit_ti_16", img_size=96)
    at_64.load_state_dict(convert(ref.state_dict(), at_64), strict=True)
    at_96.load_state_dict(convert(ref.state_dict(), at_96), strict=True)
    assert at_96.pos_embed.shape == (1, 1 + 6 * 6, 192)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(at_96.eval()(x), at_64.eval()(x), atol=1e-6, rtol=1e-6)


def test_vit_mean_pooled_head_is_timms_without_class_token():
    """global_pool='avg' (the paper's GAP classifier, Appendix D.3): no class token, the head reads the mean of the
    patch outputs after the final LayerNorm; timm's ViT with class_token=False, global_pool='avg', fc_norm=False."""
    ref = random_reference("timm", "vit_tiny_patch16_224", _randomize_all, init=False, img_size=64,
                           class_token=False, global_pool="avg", fc_norm=False)
    ours = uninitialized_model("vit_ti_16", img_size=64, global_pool="avg")
    assert ours.cls_token is None and ours.pos_embed.shape == (1, 4 * 4, 192)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(x)
        assert want.std() > 0.01
        torch.testing.assert_close(ours.eval()(x), want, atol=1e-5, rtol=1e-5)
        # another size: the patch grid's embeddings are resampled, none kept for a class token
        assert ours(torch.randn(2, 3, 96, 80)).shape == (2, 1000)
    token = papernets.create_model("vit_ti_16", img_size=64)
    assert sum(p.numel() for p in token.parameters()) - sum(p.numel() for p in ours.parameters()) == 2 * 192


def test_vit_global_pool_is_checked_and_pretrained_needs_the_class_token():
    with pytest.raises(ModelConfigError, match=r"global_pool 'max' is not one of 'token', 'avg'"):
        papernets.create_model("vit_ti_16", global_pool="max")
    convert = get_entry("vit_ti_16").pretrained["timm"].convert
    ref = random_reference("timm", "vit_tiny_patch16_224", _randomize_all, init=False, img_size=64)
    with pytest.raises(ModelConfigError, match="global_pool='token'"):
        convert(ref.state_dict(), uninitialized_model("vit_ti_16", img_size=64, global_pool="avg"))


@pytest.mark.parametrize("name", ["mixer_b_16", "resmlp_12", "gmlp_s_16"])
def test_fixed_size_import_refuses_other_sizes(name):
    source = get_entry(name).pretrained["timm"]
    with torch.device("meta"):
        state = reference_model("timm", source.name, img_size=64).state_dict()
        model = papernets.create_model(name, img_size=96)
    with pytest.raises(ModelConfigError, match="img_size=64"):
        source.convert(state, model)
