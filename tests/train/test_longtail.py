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
