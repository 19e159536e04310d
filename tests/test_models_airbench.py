"""airbench94 (Jordan 2024): the paper code's parameter count, the patch-whitening layer, identity initialization,
batch norm with frozen scales and its biases' own learning rate."""

import pytest
import torch

import papernets
from papernets.bench.profile import meta_model_stats
from papernets.config import Config, ConfigError, apply_overrides, validate
from papernets.models.airbench import PatchWhitening
from papernets.optim.factory import create_optimizer


def test_parameter_count_is_the_paper_codes():
    # airbench94.py: whitening 24x3x2x2 + 24 biases, groups 24->64->64, 64->256->256, 256->256->256 (3x3, no bias),
    # batch-norm scales and biases, a 256x10 classifier without bias
    assert meta_model_stats("airbench94", img_size=32, in_chans=3, num_classes=10)[0] == 1_972_792
    assert meta_model_stats("airbench94", img_size=28, in_chans=1, num_classes=10)[0] == 1_963_304


def _second_moment(layer: PatchWhitening, x: torch.Tensor) -> torch.Tensor:
    c, p = x.shape[1], layer.patch
    patches = x.unfold(2, p, 1).unfold(3, p, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * p * p)
    dims = c * p * p
    z = patches @ layer.weight[:dims].reshape(dims, -1).T
    return z.T @ z / len(z)


def test_whitening_fits_on_the_first_training_batch_and_keeps_its_filters():
    torch.manual_seed(0)
    model = papernets.create_model("airbench94", num_classes=10, in_chans=3, img_size=32)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 1.0, 0.7], [0.0, 0.0, 1.0]])  # correlated channels
    x = torch.einsum("dc,nchw->ndhw", mix, torch.randn(32, 3, 32, 32)) + 0.3
    before = model.whiten.weight.clone()
    model.eval()(x)  # evaluation does not fit
    assert not model.whiten.fitted and torch.equal(model.whiten.weight, before)
    model.train()(x)
    assert model.whiten.fitted and not torch.equal(model.whiten.weight, before)
    moment = _second_moment(model.whiten, x)
    assert torch.allclose(moment, torch.eye(12), atol=0.02)  # whitened: unit variance, no correlation
    w = model.whiten.weight
    assert torch.equal(w[12:], -w[:12]) and not w.requires_grad and model.whiten.bias.requires_grad
    fitted = w.clone()
    model(x * 3 + 1)  # a later batch does not refit
    assert torch.equal(model.whiten.weight, fitted)
    again = papernets.create_model("airbench94", num_classes=10, in_chans=3, img_size=32)
    again.load_state_dict(model.state_dict())  # a checkpoint brings the fitted filters and the flag back
    assert again.whiten.fitted and torch.equal(again.whiten.weight, fitted)
    again.train()(torch.randn(4, 3, 32, 32))
    assert torch.equal(again.whiten.weight, fitted)


def test_identity_init_frozen_bn_scales_and_the_bias_lr():
    model = papernets.create_model("airbench94", num_classes=10, in_chans=1, img_size=28)
    conv = model.groups[0].conv1  # 8 whitened channels in, 64 out
    assert torch.equal(conv.weight[:8, :, 1, 1], torch.eye(8))
    assert conv.weight[:8, :, 0].abs().sum() == 0 and conv.weight[8:].abs().sum() > 0
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    assert all(n.eps == 1e-12 and n.momentum == 0.4 for n in norms)
    cfg = apply_overrides(Config(), ["optim.name=sgd", "optim.lr=0.5", "optim.weight_decay=0.01",
                                     "optim.norm_bias_lr_scale=64"]).optim
    groups = create_optimizer(model, cfg).param_groups
    biases = {id(n.bias) for n in norms}
    assert [len(g["params"]) for g in groups] == [8, 6]  # whitening bias, 6 convs, classifier; 6 BN biases
    assert {id(p) for p in groups[1]["params"]} == biases
    assert groups[1]["lr"] == 32.0 and groups[1]["weight_decay"] == pytest.approx(0.01 / 64)
    assert groups[0]["lr"] == 0.5 and groups[0]["weight_decay"] == 0.01
    plain = create_optimizer(model, apply_overrides(Config(), ["optim.name=sgd"]).optim).param_groups
    assert len(plain) == 1 and len(plain[0]["params"]) == 14
    with pytest.raises(ConfigError, match="optim.norm_bias_lr_scale must be a positive finite number, got 0.0"):
        validate(apply_overrides(Config(), ["optim.norm_bias_lr_scale=0"]))


def test_dropout_before_the_classifier_and_any_size_from_nine_pixels():
    torch.manual_seed(0)
    model = papernets.create_model("airbench94", num_classes=10, in_chans=1, img_size=28, drop_rate=0.5)
    x = torch.randn(8, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    small = papernets.create_model("airbench94", num_classes=3, in_chans=1, img_size=9).train()
    assert small(torch.randn(2, 1, 9, 9)).shape == (2, 3)
    with pytest.raises(Exception, match="below airbench94's minimum of 9 px"):
        papernets.create_model("airbench94", img_size=8)
