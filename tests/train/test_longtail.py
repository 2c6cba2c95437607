"""The long-tail stepper: SAM, EISAM, IPS weights and logit adjustment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from trustrec.errors import ConfigError
from trustrec.models import make_model
from trustrec.train.longtail import Stepper

COUNTS = np.array([8, 4, 2, 1, 0])


def problem(seed: int = 0):
    """A tiny softmax regression over 5 items and a closure of its per-sample losses."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(3, 5, generator=gen))
    x = torch.randn(6, 3, generator=gen)
    y = torch.tensor([0, 0, 1, 2, 3, 4])

    def closure():
        return torch.nn.functional.cross_entropy(x @ w, y, reduction="none"), y
    return w, closure, x, y


def grad_of(fn, w):
    w.grad = None
    fn().backward()
    g = w.grad.detach().clone()
    w.grad = None
    return g


def sgd_stepper(w, **kw):
    return Stepper([w], torch.optim.SGD([w], lr=1.0), COUNTS, **kw)


def test_sam_step_uses_the_gradient_at_the_ascent_point_and_restores():
    w, closure, x, y = problem()
    w0 = w.detach().clone()
    st = sgd_stepper(w, optimizer="sam", rho=0.1)
    g = grad_of(lambda: closure()[0].mean(), w)
    eps = 0.1 * g / g.norm()
    with torch.no_grad():
        w.add_(eps)
    g_sharp = grad_of(lambda: closure()[0].mean(), w)
    with torch.no_grad():
        w.copy_(w0)
    st.step(closure)
    torch.testing.assert_close(w.detach(), w0 - g_sharp)


def test_eisam_gradient_is_the_item_weighted_split():
    w, closure, x, y = problem()
    st = sgd_stepper(w, optimizer="eisam", rho=0.2, eisam_lambda=0.8, eisam_gamma=2.0)
    c = 0.8 * (1 - torch.tensor(COUNTS / COUNTS.max(), dtype=torch.float32)) ** 2
    assert c[0] == 0 and c[4] == pytest.approx(0.8)  # most popular: plain loss only
    w0 = w.detach().clone()
    plain = grad_of(lambda: closure()[0].mean(), w)
    st.step(closure)  # first step: no ascent direction yet, a plain step
    torch.testing.assert_close(w.detach(), w0 - plain)
    # second step: the ascent is the weighted gradient of the first step (at its point)
    with torch.no_grad():
        w.copy_(w0)
    g_tail = grad_of(lambda: (closure()[0] * c[y]).mean(), w)
    w1 = w0 - (grad_of(lambda: (closure()[0] * (1 - c[y])).mean(), w) + g_tail)
    eps = 0.2 * g_tail / g_tail.norm()
    with torch.no_grad():
        w.copy_(w1)
    head = grad_of(lambda: (closure()[0] * (1 - c[y])).mean(), w)
    with torch.no_grad():
        w.add_(eps)
    tail = grad_of(lambda: (closure()[0] * c[y]).mean(), w)
    with torch.no_grad():
        w.copy_(w1)
    expected = w1 - (head + tail)
    w2, closure2, _, _ = problem()
    st2 = sgd_stepper(w2, optimizer="eisam", rho=0.2, eisam_lambda=0.8, eisam_gamma=2.0)
    st2.step(closure2)
    torch.testing.assert_close(w2.detach(), w1)
    st2.step(closure2)
    torch.testing.assert_close(w2.detach(), expected)


def test_eisam_current_ascent_is_focal_sams_exact_step():
    """``eisam_ascent = "current"``: ε from this batch's tail gradient, every step."""
    w, closure, x, y = problem()
    c = 0.8 * (1 - torch.tensor(COUNTS / COUNTS.max(), dtype=torch.float32)) ** 2
    w0 = w.detach().clone()
    head = grad_of(lambda: (closure()[0] * (1 - c[y])).mean(), w)
    g_tail = grad_of(lambda: (closure()[0] * c[y]).mean(), w)
    with torch.no_grad():
        w.add_(0.2 * g_tail / g_tail.norm())
    tail = grad_of(lambda: (closure()[0] * c[y]).mean(), w)
    with torch.no_grad():
        w.copy_(w0)
    st = sgd_stepper(w, optimizer="eisam", rho=0.2, eisam_lambda=0.8, eisam_gamma=2.0,
                     eisam_ascent="current")
    st.step(closure)
    torch.testing.assert_close(w.detach(), w0 - (head + tail))
    with pytest.raises(ValueError, match="eisam_ascent"):
        sgd_stepper(w, eisam_ascent="next")


def test_sdro_weights_groups_by_their_streaming_loss():
    """S-DRO: the batch loss is Σ_g q_g L_g; q moves toward the group that loses more."""
    w, closure, x, y = problem()
    users = torch.tensor([0, 0, 1, 1, 1, 2])  # user 0 advantaged (group 1)
    groups = np.array([1, 0, 0])

    def with_users():
        losses, targets = closure()
        return losses, targets, users

    st = sgd_stepper(w, reweight="sdro", user_groups=groups, sdro_eta=1.0, sdro_beta=0.5)
    losses = closure()[0].detach().double()
    g1, g0 = losses[:2].mean(), losses[2:].mean()
    w0 = w.detach().clone()
    st.step(with_users)
    stepped = w.detach().clone()
    q = torch.softmax(torch.stack([g0, g1]), 0)  # uniform start, one step of η = 1
    assert q[0] != q[1]
    torch.testing.assert_close(st.group_weight, q)
    torch.testing.assert_close(st.group_loss, torch.stack([g0, g1]))
    with torch.no_grad():
        w.copy_(w0)
    want = grad_of(lambda: q[0].float() * closure()[0][2:].mean()
                   + q[1].float() * closure()[0][:2].mean(), w)
    torch.testing.assert_close(stepped, w0 - want)
    w2, closure2, _, _ = problem()
    with pytest.raises(ValueError, match="user"):
        sgd_stepper(w2, reweight="sdro", user_groups=groups).step(closure2)
    with pytest.raises(ValueError, match="S-DRO"):
        sgd_stepper(w2, reweight="sdro")


def test_eisam_with_lambda_zero_is_plain_training():
    w, closure, _, _ = problem()
    w2, closure2, _, _ = problem()
    a, b = sgd_stepper(w), sgd_stepper(w2, optimizer="eisam", eisam_lambda=0.0)
    for _ in range(3):
        a.step(closure)
        b.step(closure2)
    torch.testing.assert_close(w.detach(), w2.detach())


def test_ips_weights_and_logit_offsets():
    w, _, _, _ = problem()
    st = sgd_stepper(w, reweight="ips", power=1.0)
    weight = st.sample_weight.numpy()
    assert (weight[:-1] * COUNTS[:-1]).sum() / COUNTS.sum() == pytest.approx(1.0)  # mean 1
    assert weight[3] > weight[0]  # rarer targets weigh more
    la = sgd_stepper(w, reweight="logit_adjust", power=0.5).logit_offset.numpy()
    share = np.maximum(COUNTS, 1) / np.maximum(COUNTS, 1).sum()
    np.testing.assert_allclose(la, 0.5 * np.log(share), rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        sgd_stepper(w, optimizer="adamw")


def test_samples_without_a_target_keep_weight_one_and_the_plain_loss():
    w, _, _, _ = problem()
    st = sgd_stepper(w, reweight="ips", optimizer="eisam")
    losses = torch.ones(3)
    targets = torch.tensor([0, -1, 3])
    weighted = st._weighted(losses, targets)
    expected = (st.sample_weight[0] + 1.0 + st.sample_weight[3]) / 3
    torch.testing.assert_close(weighted, expected)
    assert st._per_item(st.sharp, targets, 0.0)[1] == 0.0


def tiny_split():
    """Twelve users with ordered sequences over 15 items (a quick training set)."""
    from tests.evaluate.conftest import make_ds
    from trustrec.data.split import leave_last_out

    gen = np.random.default_rng(0)
    pairs = [(u, int(i)) for u in range(12) for i in gen.choice(15, 8, replace=False)]
    ds = dataclasses.replace(make_ds(pairs, 12, 15),
                             timestamps=np.arange(len(pairs), dtype=float))
    return leave_last_out(ds)


@pytest.mark.parametrize(("model", "options"), [
    ("neumf", {"optimizer": "eisam", "reweight": "ips"}),
    ("neumf", {"reweight": "logit_adjust"}),
    ("sasrec", {"loss": "bce", "reweight": "logit_adjust", "optimizer": "sam"}),
    ("bert4rec", {"optimizer": "eisam"}),
    ("gru4rec", {"reweight": "ips"}),
    ("sasrec", {"reweight": "sdro", "sdro_top": 0.2, "sdro_eta": 0.5}),
    ("neumf", {"reweight": "sdro", "sdro_top": 0.2, "sdro_eta": 0.5}),
    ("sasrec", {"optimizer": "eisam", "eisam_ascent": "current"}),
])
def test_models_train_under_every_option_and_repeat_for_a_seed(model, options):
    split = tiny_split()
    config = {"epochs": 2, "eval_every": 1, **options}
    if model != "neumf":
        config.update(dim=8, max_len=6)
    a = make_model(model, **config).fit(split.train, split.valid, seed=3)
    b = make_model(model, **config).fit(split.train, split.valid, seed=3)
    plain = make_model(model, **{k: v for k, v in config.items()
                                 if k not in options or k == "loss"}).fit(
        split.train, split.valid, seed=3)
    for name, tensor in a.params_.items():
        torch.testing.assert_close(tensor, b.params_[name])
    assert any(not torch.equal(t, plain.params_[n]) for n, t in a.params_.items()
               if t.is_floating_point())


def test_sequential_config_refuses_adversarial_with_sharpness(ml100k_split):
    with pytest.raises(ConfigError, match="adversarial training"):
        make_model("sasrec", adv_eps=0.1, optimizer="sam").fit(ml100k_split.train)
    with pytest.raises(ConfigError):
        make_model("sasrec", optimizer="sgd")


def test_the_device_option_is_checked_and_auto_is_the_cpu_here(monkeypatch):
    """``device``: "auto" trains where CUDA is (here the CPU, so bit-identical to "cpu");
    "cuda" without a CUDA device is a clear error, raised before any training."""
    split = tiny_split()
    config = {"epochs": 2, "eval_every": 1, "dim": 8, "max_len": 6, "optimizer": "eisam",
              "reweight": "sdro", "sdro_top": 0.2}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = make_model("sasrec", **config, device="cpu").fit(split.train, split.valid, seed=1)
    auto = make_model("sasrec", **config, device="auto").fit(split.train, split.valid,
                                                              seed=1)
    for name, tensor in cpu.params_.items():
        torch.testing.assert_close(tensor, auto.params_[name])
        assert tensor.device.type == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        make_model("sasrec", **config, device="cuda").fit(split.train, split.valid, seed=1)
    # a model trained (and saved) on CUDA scores on the CPU where CUDA is missing
    moved = make_model("sasrec", **config, device="cuda")
    moved.params_, moved.n_users_, moved.n_items_ = cpu.params_, cpu.n_users_, cpu.n_items_
    moved.fit_info_ = cpu.fit_info_
    users = np.arange(cpu.n_users_)
    np.testing.assert_array_equal(moved.score(users), cpu.score(users))
