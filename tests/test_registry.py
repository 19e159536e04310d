import pytest
import torch

import papernets
from conftest import assert_same_logits_as_reference
from papernets.registry import ModelConfigError, UnknownModelError, resolve_name


def test_list_models_sorted_and_filtered():
    names = papernets.list_models()
    assert names == sorted(names)
    assert {"lenet5", "lenet5_bn", "resnet18", "resnet34"} <= set(names)
    assert papernets.list_models("resnet*") == sorted(n for n in names if n.startswith("resnet"))
    assert papernets.list_models("no_such_*") == []


def test_aliases_resolve_to_paper_names():
    assert resolve_name("resnet") == "resnet18"
    assert resolve_name("ResNet-18") == "resnet18"
    assert resolve_name("bn_convnet") == "lenet5_bn"


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="resnet18"):
        papernets.create_model("resnet81")


def test_model_info_fields():
    info = papernets.model_info("resnet18")
    assert info["year"] == 2015
    assert info["url"].startswith("https://arxiv.org/abs/1512.03385")
    assert info["family"] == "resnet"
    assert info["default_img_size"] == 224 and info["min_img_size"] >= 1
    assert "Residual" in info["paper"]


def test_create_model_rejects_image_below_minimum():
    minimum = papernets.model_info("lenet5")["min_img_size"]
    with pytest.raises(ModelConfigError, match=f"minimum of {minimum}"):
        papernets.create_model("lenet5", img_size=minimum - 1)


def test_pretrained_unknown_library_is_an_error():
    with pytest.raises(ModelConfigError, match="no 'timm' weights"):
        papernets.create_model("lenet5", pretrained="timm")


@pytest.mark.parametrize("name,expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672)])
def test_resnet_imagenet_param_counts(name, expected):
    with torch.device("meta"):
        model = papernets.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_resnet_small_input_form():
    small = papernets.create_model("resnet18", num_classes=10, in_chans=1, img_size=28)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    assert small.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 512, 4, 4)
    forced = papernets.create_model("resnet18", img_size=28, small_input=False)
    assert forced.conv1.kernel_size == (7, 7)


def test_lenet5_matches_the_paper():
    model = papernets.create_model("lenet5", num_classes=10, in_chans=1, img_size=32)
    # C1 156 + S2 12 + C3 1,516 (Table I) + S4 32 + C5 48,120 + F6 10,164 = 60,000; output 84 x 10 + 10.
    assert sum(p.numel() for p in model.features.c3.parameters()) == 1516
    assert sum(p.numel() for p in model.parameters()) == 60_000 + 850
    at28 = papernets.create_model("lenet5", num_classes=10, in_chans=1, img_size=28)
    assert sum(p.numel() for p in at28.parameters()) == 60_850  # C1 pads by 2: the paper's 32x32 field
    assert at28(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_resnet_torchvision_weights_give_identical_logits():
    assert_same_logits_as_reference("resnet18", "torchvision", input_size=64)


def test_pretrained_file_is_mapped_and_adapted(tmp_path):
    from papernets.pretrained import reference_model

    ref = reference_model("torchvision", "resnet18").eval()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model = papernets.create_model("resnet18", num_classes=10, in_chans=1, img_size=28, pretrained="torchvision",
                                   pretrained_file=str(path)).eval()  # ImageNet stem kept for ImageNet weights
    torch.testing.assert_close(model.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def _randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so that a wrong mapping changes the logits."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def test_timm_weights_without_a_file_come_from_timm_create_model(monkeypatch):
    # pretrained="timm" and no file: timm.create_model(name, pretrained=True) fetches them (its own download
    # cache). Here it returns the random reference model, so nothing is downloaded.
    import timm

    calls = []

    def load(ref):
        def fake_create_model(name, pretrained=False, **kwargs):
            calls.append((name, pretrained, kwargs))
            return ref

        monkeypatch.setattr(timm, "create_model", fake_create_model)
        return papernets.create_model("mobilenet_v1", img_size=64, pretrained="timm")

    assert_same_logits_as_reference("mobilenet_v1", "timm", img_size=64, randomize=_randomize_bn, load=load,
                                    min_std=0.01)
    assert calls == [("mobilenetv1_100", True, {})]


def test_torchvision_weights_without_a_file_come_from_its_weights_enum(monkeypatch):
    # pretrained=True (torchvision) and no file: get_model_weights(name).DEFAULT.get_state_dict() fetches them
    # (torchvision's download cache). Here it hands back the random reference model's state dict.
    import types

    import torchvision

    asked = []

    def load(ref):
        def get_state_dict(progress=True):
            return ref.state_dict()

        def fake_get_model_weights(name):
            asked.append(name)
            return types.SimpleNamespace(DEFAULT=types.SimpleNamespace(get_state_dict=get_state_dict))

        monkeypatch.setattr(torchvision.models, "get_model_weights", fake_get_model_weights)
        return papernets.create_model("resnet18", img_size=64, pretrained=True)

    assert_same_logits_as_reference("resnet18", "torchvision", img_size=64, randomize=_randomize_bn, load=load)
    assert asked == ["resnet18"]
