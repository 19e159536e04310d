"""Optimizers (LAMB, TensorFlow RMSprop, weight-decay groups), LR schedules, SAM/ASAM, EMA, batch mixing and
augmentation: each against a hand computation or the reference implementation, plus exact resume."""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from papernets.config import Config, ConfigError, OptimConfig, ScheduleConfig, apply_overrides
from papernets.data.augment import rand_augment, random_erase
from papernets.data.mixing import MixConfig, mix_batch, soft_targets
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.trainer import (
    EMA_COLUMNS,
    METRIC_COLUMNS,
    TIMING_COLUMNS,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    training_step,
)
from papernets.optim import create_optimizer, create_schedule
from papernets.optim.ema import ModelEma
from papernets.optim.optimizers import Lamb, RMSpropTF
from papernets.optim.sam import SAM
from papernets.optim.schedules import SCHEDULES

# ----------------------------------------------------------------------------------------------- optimizers


def test_lamb_one_step_matches_the_paper_by_hand():
    w = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    b = nn.Parameter(torch.zeros(2))  # ||w|| = 0: trust ratio 1
    w.grad = torch.tensor([[0.1, 0.2], [-0.3, 0.4]])
    b.grad = torch.tensor([0.5, -0.5])
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-6, 0.1
    w0, b0 = w.detach().clone(), b.detach().clone()
    Lamb([w, b], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd).step()
    for p0, p, g in ((w0, w, w.grad), (b0, b, b.grad)):
        m_hat = (1 - b1) * g / (1 - b1)  # one step: the bias correction undoes the (1 - beta) factors
        v_hat = (1 - b2) * g * g / (1 - b2)
        u = m_hat / (v_hat.sqrt() + eps) + wd * p0
        trust = p0.norm() / u.norm() if p0.norm() > 0 else 1.0
        assert torch.allclose(p.detach(), p0 - lr * trust * u, atol=1e-7)
    assert not torch.allclose(w.detach(), w0 - lr * (w.grad.sign() + wd * w0), atol=1e-4), "the trust ratio acted"


def test_rmsprop_tf_style_by_hand_and_differs_from_pytorch():
    g1, g2 = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 0.25])
    w = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9)
    w.grad = g1
    opt.step()
    ms1 = 0.9 * 1.0 + 0.1 * g1**2  # the mean square starts at 1
    mom1 = 0.1 * g1 / torch.sqrt(ms1 + 1.0)  # eps inside the sqrt, lr inside the momentum
    assert torch.allclose(w.detach(), 1.0 - mom1)
    opt.param_groups[0]["lr"] = 0.05
    w.grad = g2
    opt.step()
    ms2 = 0.9 * ms1 + 0.1 * g2**2
    mom2 = 0.9 * mom1 + 0.05 * g2 / torch.sqrt(ms2 + 1.0)
    assert torch.allclose(w.detach(), 1.0 - mom1 - mom2)
    torch_w = nn.Parameter(torch.tensor([1.0, 1.0]))
    torch_w.grad = g1
    torch.optim.RMSprop([torch_w], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9).step()
    assert not torch.allclose(torch_w.detach(), 1.0 - mom1, atol=1e-3)


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop),
                                      ("lamb", Lamb)])
def test_factory_builds_each_optimizer(name, cls):
    model = nn.Linear(3, 2)
    assert type(create_optimizer(model, OptimConfig(name=name))) is cls
    if name == "rmsprop":
        assert type(create_optimizer(model, OptimConfig(name=name, tf_style_eps=True))) is RMSpropTF


@pytest.mark.parametrize("name,expected", [
    ("sgd", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.03}),
    ("adam", {"betas": (0.85, 0.995), "eps": 1e-7, "weight_decay": 0.03}),
    ("adamw", {"betas": (0.85, 0.995), "eps": 1e-7, "weight_decay": 0.03}),
    ("rmsprop", {"momentum": 0.8, "alpha": 0.95, "eps": 1e-7, "weight_decay": 0.03}),
    ("lamb", {"betas": (0.85, 0.995), "eps": 1e-7, "weight_decay": 0.03}),
])
def test_factory_passes_the_configured_hyperparameters(name, expected):
    cfg = OptimConfig(name=name, lr=0.123, momentum=0.8, nesterov=name == "sgd", betas=[0.85, 0.995], eps=1e-7,
                      alpha=0.95, weight_decay=0.03)
    (group,) = create_optimizer(nn.Linear(3, 2), cfg).param_groups
    assert group["lr"] == 0.123
    for key, value in expected.items():
        assert group[key] == value, key


def test_nesterov_without_momentum_is_a_config_error():
    with pytest.raises(ConfigError, match="optim.nesterov=true needs optim.momentum > 0 \\(got 0.0\\)"):
        create_optimizer(nn.Linear(3, 2), OptimConfig(name="sgd", momentum=0.0, nesterov=True))
    plain = create_optimizer(nn.Linear(3, 2), OptimConfig(name="sgd", momentum=0.0))
    assert plain.param_groups[0]["nesterov"] is False and plain.param_groups[0]["momentum"] == 0.0


def test_no_weight_decay_on_biases_and_norm_weights():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    opt = create_optimizer(model, OptimConfig(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.5,
                                              no_weight_decay_norm_bias=True))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {4, 2} and {p.ndim for p in no_decay["params"]} == {1}
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only weight decay moves a parameter
    for p0, p in zip(before, model.parameters(), strict=True):
        assert torch.equal(p0, p.detach()) == (p.ndim == 1)
    assert len(create_optimizer(model, OptimConfig(weight_decay=0.5)).param_groups) == 1


@pytest.mark.parametrize("override,match", [
    ("optim.tf_style_eps=true", "tf_style_eps applies to rmsprop only"),
    ("schedule.name=multistep", "needs schedule.milestones"),
    ("schedule.name=warmup_cosine", "needs schedule.warmup > 0"),
    ("schedule.milestones=[3, 1]", "must be increasing"),
    ("train.select_best_on=ema", "needs train.ema=true"),
    ("optim.sam_rho=0", "optim.sam_rho must be positive"),
    ("train.mix_prob=1.5", r"train.mix_prob must be in \[0, 1\]"),
    ("data.randaugment_magnitude=31", "0..30"),
    ("schedule.name=warmup", "schedule.name must be one of"),
])
def test_recipe_keys_are_validated(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), [override])


def test_configs_saved_with_the_old_schedule_keys_still_load():
    from papernets.config import config_from_dict

    old = config_from_dict({"schedule": {"name": "step", "step_epochs": 3, "warmup_epochs": 0.5}})
    assert (old.schedule.step_size, old.schedule.warmup, old.schedule.unit) == (3.0, 0.5, "epochs")


# ----------------------------------------------------------------------------------------------- schedules


def _lrs(cfg: ScheduleConfig, steps_per_epoch: int = 10, epochs: int = 6, lr: float = 1.0) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = create_schedule(opt, cfg, steps_per_epoch, epochs, lr)
    out = []
    for _ in range(steps_per_epoch * epochs):
        out.append(opt.param_groups[0]["lr"])
        sched.step()
    return out


def test_every_schedule_is_listed():
    assert set(SCHEDULES) == {"constant", "none", "step", "multistep", "exponential", "cosine", "poly",
                              "warmup_linear", "warmup_cosine", "cyclic", "onecycle"}


def test_constant_step_multistep_exponential_exact_values():
    assert _lrs(ScheduleConfig(name="constant")) == [1.0] * 60 == _lrs(ScheduleConfig(name="none"))
    step = _lrs(ScheduleConfig(name="step", step_size=2, gamma=0.5))
    assert step[:20] == [1.0] * 20 and step[20:40] == [0.5] * 20 and step[40:] == [0.25] * 20
    multi = _lrs(ScheduleConfig(name="multistep", milestones=[1.5, 4], gamma=0.1))
    assert multi[14] == 1.0 and multi[15] == pytest.approx(0.1) and multi[39] == pytest.approx(0.1)
    assert multi[40] == pytest.approx(0.01) and multi[59] == pytest.approx(0.01)
    exp = _lrs(ScheduleConfig(name="exponential", step_size=2.4, gamma=0.97))  # EfficientNet's
    assert exp[0] == 1.0 and exp[24] == pytest.approx(0.97) and exp[48] == pytest.approx(0.97**2)
    assert exp[30] == pytest.approx(0.97 ** (30 / 24))


def test_exponential_with_warmup_as_efficientnet():
    exp = _lrs(ScheduleConfig(name="exponential", step_size=2.4, gamma=0.97, warmup=0.5))  # 5 warmup steps
    assert exp[:5] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert exp[5] == pytest.approx(0.97 ** (5 / 24))  # decay counts from step 0: the warmup replaces its start
    assert exp[24] == pytest.approx(0.97) and exp[48] == pytest.approx(0.97**2)
    assert exp[59] == pytest.approx(0.97 ** (59 / 24))
    assert all(a > b for a, b in zip(exp[5:], exp[6:], strict=False))


def test_warmup_then_absolute_or_relative_time():
    step = _lrs(ScheduleConfig(name="step", step_size=2, gamma=0.5, warmup=1))
    assert step[0] == pytest.approx(1 / 11) and step[9] == pytest.approx(10 / 11)
    assert step[10] == 1.0 and step[20] == 0.5  # step counts from the start of training
    cos = _lrs(ScheduleConfig(name="warmup_cosine", warmup=1, min_lr=0.1))
    assert cos[:10] == step[:10] and cos[10] == 1.0  # cosine starts after the warmup and fills the rest
    assert cos[35] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 25 / 50)))
    assert _lrs(ScheduleConfig(name="cosine", warmup=1, min_lr=0.1)) == cos
    lin = _lrs(ScheduleConfig(name="warmup_linear", warmup=1, min_lr=0.1, power=3.0))  # power ignored: linear
    assert lin[10] == 1.0 and lin[35] == pytest.approx(0.1 + 0.9 * 0.5) and lin[59] == pytest.approx(0.1 + 0.9 / 50)
    poly = _lrs(ScheduleConfig(name="poly", power=4.0))
    assert poly[0] == 1.0 and poly[30] == pytest.approx(0.5**4) and poly[59] == pytest.approx((1 / 60) ** 4)


def test_units_epochs_and_steps_agree():
    in_epochs = ScheduleConfig(name="multistep", milestones=[1.5, 4], warmup=0.5, gamma=0.1)
    in_steps = ScheduleConfig(name="multistep", milestones=[15, 40], warmup=5, gamma=0.1, unit="steps")
    assert _lrs(in_epochs) == _lrs(in_steps)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_equals_torch_cycliclr(mode):
    ours = _lrs(ScheduleConfig(name="cyclic", min_lr=0.1, step_size=7, cycle_mode=mode, gamma=0.99, unit="steps"),
                steps_per_epoch=10, epochs=6, lr=1.0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.1, max_lr=1.0, step_size_up=7, mode=mode, gamma=0.99,
                                            cycle_momentum=False)
    theirs = []
    for _ in range(60):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    peak = 0.1 + 0.9 * 0.99**7 if mode == "exp_range" else 1.0  # the first peak, at step 7
    assert ours[0] == pytest.approx(0.1) and ours[7] == pytest.approx(peak) == max(ours) and ours[14] == 0.1


def test_onecycle_equals_torch_onecyclelr():
    ours = _lrs(ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=25, final_div_factor=1e4), lr=0.5)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=60, pct_start=0.3, cycle_momentum=False)
    theirs = []
    for _ in range(60):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert ours[0] == pytest.approx(0.02) and ours[59] == pytest.approx(0.02 / 1e4)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_state_resumes_exactly(name):
    cfg = ScheduleConfig(name=name, milestones=[2, 4], step_size=1.5, min_lr=0.01, warmup=0.5)
    lrs = _lrs(cfg)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = create_schedule(opt, cfg, 10, 6, 1.0)
    resumed.load_state_dict({"step_count": 37})
    assert opt.param_groups[0]["lr"] == lrs[37]
    resumed.step()
    assert opt.param_groups[0]["lr"] == lrs[38]
    if name not in ("constant", "none"):
        assert len(set(lrs[5:])) > 1, "the schedule should change the lr after the warmup"


# ------------------------------------------------------------------------------------------------ SAM, ASAM


class Quadratic(nn.Module):
    """L(w) = 0.5 * sum(a * w^2); records the weights at every forward."""

    def __init__(self, w, a):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.register_buffer("a", torch.tensor(a))
        self.seen = []

    def forward(self):
        self.seen.append(self.w.detach().clone())
        return 0.5 * (self.a * self.w**2).sum()


def _sam_step(model, sam, lr=0.1, grad_clip=None, scaler=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)

    def forward():
        loss = model()
        return loss, loss.detach()

    training_step(model, model, opt, scaler, forward, lambda v: None, sam, grad_clip)


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_sam_step_on_a_quadratic_is_the_analytic_update(adaptive):
    w0, a, rho, eta, lr = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, 2.0]), 0.2, 0.01, 0.1
    model = Quadratic(w0.tolist(), a.tolist())
    _sam_step(model, SAM(list(model.parameters()), rho, adaptive, eta), lr)
    g = a * w0
    if adaptive:  # ASAM: e = rho * T^2 g / ||T g||, T = |w| + eta
        t = w0.abs() + eta
        e = rho * t * t * g / (t * g).norm()
    else:  # SAM: e = rho * g / ||g||
        e = rho * g / g.norm()
    expected = w0 - lr * a * (w0 + e)  # the gradient at w + e(w), applied at w
    assert torch.allclose(model.w.detach(), expected, atol=1e-6)
    assert len(model.seen) == 2 and torch.equal(model.seen[0], w0)
    assert torch.allclose(model.seen[1] - model.seen[0], e, atol=1e-7)


def test_a_non_finite_second_sam_loss_stops_before_the_weights_change():
    model = Quadratic([1.0, -2.0, 0.5], [3.0, 1.0, 2.0])
    w0 = model.w.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def forward():
        loss = model()
        calls.append(len(calls))
        if len(calls) == 2:  # the second pass, at w + e(w), overflows
            loss = loss * float("nan")
        return loss, loss.detach()

    def check(value):
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss {value}")

    with pytest.raises(TrainingDiverged, match="loss nan"):
        training_step(model, model, opt, torch.amp.GradScaler("cpu", enabled=False), forward, check,
                      SAM(list(model.parameters()), 0.2))
    assert len(calls) == 2 and torch.equal(model.w.detach(), w0)  # restored from w + e(w), not stepped


def test_sam_default_rho_follows_the_papers():
    params = [nn.Parameter(torch.ones(1))]
    assert SAM(params).rho == 0.05 and SAM(params, adaptive=True).rho == 0.5


def test_the_second_forward_sees_exactly_w_plus_e_and_weights_are_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    seen = []
    net[0].register_forward_pre_hook(lambda m, i: seen.append([p.detach().clone() for p in net.parameters()]))
    w0 = [p.detach().clone() for p in net.parameters()]
    sam = SAM(list(net.parameters()), rho=0.05)
    perturbations = []
    orig_perturb = sam.perturb

    def perturb(grad_scale=1.0):
        ok = orig_perturb(grad_scale)
        perturbations.append([e.clone() for _, e in sam.perturbation])
        return ok

    sam.perturb = perturb
    opt = torch.optim.SGD(net.parameters(), lr=0.5)

    def forward():
        logits = net(x)
        return F.cross_entropy(logits, y), logits

    training_step(net, net, opt, torch.amp.GradScaler("cpu", enabled=False), forward, lambda v: None, sam)
    assert len(seen) == 2
    (e,) = perturbations
    for p0, p_first, p_second, e_p in zip(w0, seen[0], seen[1], e, strict=True):
        assert torch.equal(p_first, p0)
        assert torch.equal(p_second, p0 + e_p)  # exactly w + e(w), bit for bit
        assert e_p.abs().sum() > 0
    total = torch.sqrt(sum((e_p**2).sum() for e_p in e))
    assert total == pytest.approx(0.05, rel=1e-5)  # ||e(w)|| = rho
    # restored to w, then stepped with the second gradient
    second_grads = [p.grad for p in net.parameters()]
    for p0, p, g in zip(w0, net.parameters(), second_grads, strict=True):
        assert torch.allclose(p.detach(), p0 - 0.5 * g, atol=1e-7)


def test_batch_norm_statistics_are_updated_by_the_first_pass_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    ref = copy.deepcopy(net)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def forward():
        logits = net(x)
        return F.cross_entropy(logits, y), logits

    training_step(net, net, opt, torch.amp.GradScaler("cpu", enabled=False), forward, lambda v: None,
                  SAM(list(net.parameters()), rho=0.5))
    ref(x)  # one training-mode forward at the same starting weights
    bn, bn_ref = net[1], ref[1]
    assert int(bn.num_batches_tracked) == 1
    assert torch.equal(bn.running_mean, bn_ref.running_mean) and torch.equal(bn.running_var, bn_ref.running_var)
    assert bn.track_running_stats


def test_sam_with_gradient_scaling_and_clipping():
    w0, a = [1.0, -2.0, 0.5], [3.0, 1.0, 2.0]
    plain, scaled = Quadratic(w0, a), Quadratic(w0, a)
    _sam_step(plain, SAM(list(plain.parameters()), 0.2), grad_clip=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    _sam_step(scaled, SAM(list(scaled.parameters()), 0.2), grad_clip=0.5, scaler=scaler)
    assert torch.equal(plain.w, scaled.w)  # a power-of-two scale is undone exactly
    w = torch.tensor(w0)
    g2 = torch.tensor(a) * (w + 0.2 * torch.tensor(a) * w / (torch.tensor(a) * w).norm())
    assert torch.allclose(plain.w.detach(), w - 0.1 * g2 * 0.5 / g2.norm(), atol=1e-6)  # the second grad, clipped
    overflow = Quadratic(w0, a)
    scaler = torch.amp.GradScaler("cpu", init_scale=3.0e38)
    _sam_step(overflow, SAM(list(overflow.parameters()), 0.2), scaler=scaler)
    assert torch.equal(overflow.w.detach(), w) and len(overflow.seen) == 1  # inf gradient: no second pass, no step
    assert scaler.get_scale() == pytest.approx(3.0e38 * 0.5)


# ----------------------------------------------------------------------------------------------------- EMA


def test_ema_update_and_tensorflow_warmup():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEma(model, decay=0.9999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**6) == 0.9999
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model, step=0)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.1 * 1.0 + 0.9 * 3.0))
    flat = ModelEma(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(5.0)
    flat.update(model, step=0)
    assert torch.allclose(flat.module.weight, torch.full((1, 2), 4.0)) and not flat.module.weight.requires_grad


def test_lookahead_folds_every_k_steps_copies_back_and_ends_on_the_average():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    la = ModelEma(model, decay=0.95, warmup=True, lookahead=5)  # warmup is the EMA's, not lookahead's
    assert la.decay_at(4, 20) == pytest.approx(0.95**5 * (5 / 20) ** 3)
    slow = 0.0
    for step in range(20):
        with torch.no_grad():
            model.weight.add_(1.0)  # an optimizer step
        fast = model.weight[0, 0].item()
        la.update(model, step, total=20)
        if (step + 1) % 5:
            assert model.weight[0, 0].item() == fast and la.module.weight[0, 0].item() == pytest.approx(slow)
        else:
            d = 0.95**5 * ((step + 1) / 20) ** 3
            slow = d * slow + (1 - d) * fast
            assert la.module.weight[0, 0].item() == pytest.approx(slow)
            assert model.weight[0, 0].item() == pytest.approx(slow)  # copied back
    assert slow < 20 - 1  # the average lags the fast weights
    odd = ModelEma(model, decay=0.95, lookahead=5)
    with torch.no_grad():
        model.weight.fill_(7.0)
    odd.update(model, 2, total=3)  # the last step of a run that is no multiple of k: the model takes the average
    assert model.weight[0, 0].item() == odd.module.weight[0, 0].item() != 7.0


# ------------------------------------------------------------------------------------------ mixing, augment


def test_mixup_and_cutmix_are_seeded_and_mix_targets_by_area():
    n, k = 6, 7
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 10, 10).contiguous()  # image i is all i
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    xm, t, info = mix_batch(x, y, k, MixConfig(mixup_alpha=0.4), seed=7)
    xm2, t2, _ = mix_batch(x, y, k, MixConfig(mixup_alpha=0.4), seed=7)
    assert torch.equal(xm, xm2) and torch.equal(t, t2) and info["kind"] == 1
    lam = info["lam"]
    partner = ((xm[:, 0, 0, 0] - lam * torch.arange(n)) / (1 - lam)).round().long()
    assert sorted(partner.tolist()) == list(range(n))  # a permutation of the batch
    assert torch.allclose(xm, lam * x + (1 - lam) * x[partner], atol=1e-5)
    assert torch.allclose(t, lam * F.one_hot(y, k) + (1 - lam) * F.one_hot(y[partner], k), atol=1e-6)
    xc, tc, info = mix_batch(x, y, k, MixConfig(cutmix_alpha=1.0), seed=3)
    lam = info["lam"]
    assert info["kind"] == 2 and 0 < lam < 1
    for i in range(n):
        pasted = xc[i] != i
        j = int(xc[i][pasted][0]) if pasted.any() else i
        if j != i:  # the box from image j covers exactly 1 - lam of the image
            assert pasted.float().mean().item() == pytest.approx(1 - lam)
        assert torch.allclose(tc[i], lam * F.one_hot(y[i], k) + (1 - lam) * F.one_hot(y[j], k), atol=1e-6)
    both = MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5)
    assert {mix_batch(x, y, k, both, seed=s)[2]["kind"] for s in range(20)} == {1, 2}
    assert mix_batch(x, y, k, MixConfig(mixup_alpha=0.2, prob=0.0), seed=1)[1] is None


@pytest.mark.parametrize("switch_prob,cutmix_share", [(1.0, (200, 200)), (0.0, (0, 0)), (0.5, (75, 125))])
def test_mix_switch_prob_chooses_cutmix_or_mixup(switch_prob, cutmix_share):
    x, y = torch.rand(8, 1, 12, 12), torch.arange(8) % 4
    both = MixConfig(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=switch_prob)
    kinds = [mix_batch(x, y, 4, both, seed=s)[2]["kind"] for s in range(200)]
    assert set(kinds) <= {1, 2}  # prob=1: every batch is mixed, by one or the other
    low, high = cutmix_share
    assert low <= kinds.count(2) <= high, kinds.count(2)


def test_soft_targets_carry_label_smoothing_like_pytorch():
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(F.cross_entropy(logits, soft_targets(y, 4, 0.1)),
                          F.cross_entropy(logits, y, label_smoothing=0.1), atol=1e-6)


def test_rand_augment_is_per_image_torchvision_and_leaves_the_global_rng_alone():
    x = (torch.rand(24, 3, 16, 16) * 255).to(torch.uint8)
    with torch.random.fork_rng():
        torch.manual_seed(99)
        reference = torch.stack([v2.RandAugment(2, 27)(img) for img in x])  # torchvision's bin 27 is level 9
    state = torch.get_rng_state()
    out = rand_augment(x, 2, 9, seed=99)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(out, reference)  # same as torchvision image by image, though run in groups
    assert torch.equal(out, rand_augment(x, 2, 9, seed=99)) and not torch.equal(out, rand_augment(x, 2, 9, seed=98))
    assert torch.equal(rand_augment(x, 0, 9, seed=1), x)


def test_random_erasing_each_image_its_own_rectangle():
    x = torch.randn(8, 1, 20, 20) + 10.0
    state = torch.get_rng_state()
    out = random_erase(x, 1.0, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    masks = out == 0
    assert all(m.any() for m in masks) and len({m.nonzero()[0].tolist().__str__() for m in masks}) > 1
    assert torch.equal(out, random_erase(x, 1.0, seed=5))


# --------------------------------------------------------------------------------------- trainer, resume


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _sam_cfg(run_epochs=2):
    return apply_overrides(Config(), [
        "model.name=lenet5_bn", "data.name=synthetic", "data.image_size=28", "data.limit=320",
        f"train.epochs={run_epochs}", "train.batch_size=64", "train.threads=1", "optim.name=sgd", "optim.lr=0.05",
        "optim.sam=true", "optim.sam_adaptive=true", "train.ema=true", "train.ema_decay=0.9",
        "train.select_best_on=ema", "train.mixup_alpha=0.2", "train.cutmix_alpha=1.0", "train.label_smoothing=0.1",
        "data.randaugment_ops=2", "data.random_erasing=0.25", "schedule.name=cosine", "output.plots=false"])


def _count_training_forwards(trainer):
    calls = []
    trainer.model.register_forward_hook(lambda m, i, o: calls.append(1) if m.training else None)
    return calls


def test_the_trainer_takes_two_passes_per_step_with_sam_and_ends_elsewhere(tmp_path, one_thread):
    def cfg(sam):
        return apply_overrides(Config(), [
            "model.name=lenet5_bn", "data.name=synthetic", "data.image_size=28", "data.limit=256",
            "train.epochs=1", "train.batch_size=64", "train.threads=1", "optim.name=sgd", "optim.lr=0.1",
            f"optim.sam={str(sam).lower()}", "output.plots=false", "output.checkpoint=false",
            "output.save_best=false"])

    runs = {}
    for sam in (False, True):
        trainer = Trainer(cfg(sam), tmp_path / str(sam), stream=io.StringIO())
        assert (trainer.sam is not None) == sam
        w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        calls = _count_training_forwards(trainer)
        trainer.fit()
        runs[sam] = w0, trainer.model.state_dict(), len(calls), trainer.state.global_step
    (w0_plain, w_plain, n_plain, steps), (w0_sam, w_sam, n_sam, steps_sam) = runs[False], runs[True]
    assert steps == steps_sam == 4  # 256 training images in batches of 64
    assert all(torch.equal(w0_plain[k], w0_sam[k]) for k in w0_plain)  # the same seed, the same start
    assert n_plain == steps and n_sam == 2 * steps
    assert not torch.equal(w_plain["features.c1.weight"], w_sam["features.c1.weight"])


def test_sam_run_interrupted_mid_epoch_resumes_bit_identically(tmp_path, one_thread):
    cfg = _sam_cfg()
    full = Trainer(copy.deepcopy(cfg), tmp_path / "full", stream=io.StringIO())
    summary = full.fit()
    stopped = Trainer(copy.deepcopy(cfg), tmp_path / "stopped", stream=io.StringIO())
    stopped.stop_requested = True  # as after Ctrl-C: the state at step 1 of epoch 1 is saved
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    ckpt = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["partial"]["step"] == 1 and ckpt["ema"] is not None
    resumed = Trainer(copy.deepcopy(cfg), tmp_path / "stopped", resume=ckpt, stream=io.StringIO())
    assert resumed.fit()["test_acc"] == summary["test_acc"]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    timing = set(TIMING_COLUMNS)
    rows = [[{k: v for k, v in r.items() if k not in timing} for r in c["history"]] for c in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    header = (tmp_path / "full" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == METRIC_COLUMNS + EMA_COLUMNS
    assert summary["tested_weights"].endswith("EMA") and summary["best_val_acc"] == max(
        r["ema_val_acc"] for r in a["history"])
    assert not any(torch.equal(a["model"][k], a["ema"][k]) for k in a["model"] if k.endswith("weight"))


def test_rand_augment_magnitude_is_the_papers_level():
    """Level m of the papers (10 the maximum) is torchvision's bin 3 m; above 10 the geometric ops go on growing
    (EfficientNetV2's magnitude 15 rotates by up to 45 degrees), the others stay at their maximum."""
    from papernets.data.augment import ra_value

    space = v2.RandAugment()._AUGMENTATION_SPACE
    assert ra_value(space, "Rotate", 10, 32, 32) == (30.0, True)
    assert ra_value(space, "Rotate", 15, 32, 32)[0] == pytest.approx(45.0)
    assert ra_value(space, "ShearX", 5, 32, 32)[0] == pytest.approx(0.15)
    assert ra_value(space, "Brightness", 15, 32, 32)[0] == pytest.approx(0.9)
    assert ra_value(space, "Posterize", 15, 32, 32)[0] == ra_value(space, "Posterize", 10, 32, 32)[0] == 4.0
    assert ra_value(space, "Equalize", 9, 32, 32) == (0.0, False)


def test_trivial_and_auto_augment_are_per_image_and_seeded():
    from papernets.data.augment import auto_augment

    x = (torch.rand(8, 3, 16, 16) * 255).to(torch.uint8)
    for policy in ("trivialaugment", "autoaugment"):
        state = torch.get_rng_state()
        out = auto_augment(x, policy, seed=3)
        assert torch.equal(torch.get_rng_state(), state) and out.shape == x.shape and out.dtype == torch.uint8
        assert torch.equal(out, auto_augment(x, policy, seed=3)) and not torch.equal(out, x)
    with pytest.raises(ValueError, match="trivialaugment"):
        auto_augment(x, "randomaugment", seed=0)
