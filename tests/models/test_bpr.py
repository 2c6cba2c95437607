"""BPR-MF specifics: the hand-written SGD step, the bias in scores, configs, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.models import make_model
from trustrec.models.bpr import bpr_sam_epoch, bpr_sgd_epoch


def toy(users, items, n_users=4, n_items=6) -> Dataset:
    users = np.asarray(users, dtype=np.int64)
    return Dataset(name="toy", users=users, items=np.asarray(items, dtype=np.int64),
                   timestamps=np.zeros(len(users), np.int64), n_users=n_users, n_items=n_items,
                   user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str))


def test_sgd_step_matches_autograd_gradient():
    g = np.random.default_rng(3)
    d, lr, reg, breg = 5, 0.05, 0.02, 0.01
    user_f = g.standard_normal((2, d)).astype(np.float32)
    item_f = g.standard_normal((3, d)).astype(np.float32)
    item_b = g.standard_normal(3).astype(np.float32)
    p = torch.tensor(user_f[1], dtype=torch.float64, requires_grad=True)
    qi = torch.tensor(item_f[0], dtype=torch.float64, requires_grad=True)
    qj = torch.tensor(item_f[2], dtype=torch.float64, requires_grad=True)
    bi = torch.tensor(float(item_b[0]), dtype=torch.float64, requires_grad=True)
    bj = torch.tensor(float(item_b[2]), dtype=torch.float64, requires_grad=True)
    x = p @ (qi - qj) + bi - bj
    loss = (torch.nn.functional.softplus(-x) + reg / 2 * (p @ p + qi @ qi + qj @ qj)
            + breg / 2 * (bi ** 2 + bj ** 2))
    loss.backward()
    got_loss = bpr_sgd_epoch(user_f, item_f, item_b, np.array([1]), np.array([0]),
                             np.array([0]), np.array([2]), lr, reg, breg, True)
    assert got_loss == pytest.approx(torch.nn.functional.softplus(-x).item(), rel=1e-5)
    for got, var in ((user_f[1], p), (item_f[0], qi), (item_f[2], qj)):
        np.testing.assert_allclose(got, (var - lr * var.grad).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert item_b[0] == pytest.approx((bi - lr * bi.grad).item(), rel=1e-5)
    assert item_b[2] == pytest.approx((bj - lr * bj.grad).item(), rel=1e-5)
    # untouched rows stay as they were
    assert np.isfinite(user_f[0]).all()


def one_row_tables(seed=3, d=5):
    g = np.random.default_rng(seed)
    return (g.standard_normal((2, d)).astype(np.float32),
            g.standard_normal((3, d)).astype(np.float32), g.standard_normal(3).astype(np.float32))


@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
def test_sam_step_is_the_weighted_split_of_plain_and_perturbed_gradients(c):
    """(1 − c)·∇ℓ(θ) + c·∇ℓ(θ + ε), ε = ρ∇ℓ/‖∇ℓ‖ over the row's parameters, by autograd."""
    lr, reg, breg, rho = 0.05, 0.02, 0.01, 0.3
    user_f, item_f, item_b = one_row_tables()
    theta = [torch.tensor(v, dtype=torch.float64, requires_grad=True)
             for v in (user_f[1], item_f[0], item_f[2], item_b[0], item_b[2])]

    def bpr(p, qi, qj, bi, bj):
        return torch.nn.functional.softplus(-(p @ (qi - qj) + bi - bj))

    g0 = torch.autograd.grad(bpr(*theta), theta)
    norm = torch.sqrt(sum((g * g).sum() for g in g0))
    shifted = [(t + rho * g / norm).detach().requires_grad_()
               for t, g in zip(theta, g0, strict=True)]
    g1 = torch.autograd.grad(bpr(*shifted), shifted)
    regs = (reg, reg, reg, breg, breg)
    want = [(t - lr * ((1 - c) * a + c * b) - lr * r * t).detach().numpy()
            for t, a, b, r in zip(theta, g0, g1, regs, strict=True)]
    sharp = np.array([c, 0.5, 0.5], np.float32)  # the positive item's weight counts
    bpr_sam_epoch(user_f, item_f, item_b, np.array([1]), np.array([0]), np.array([0]),
                  np.array([2]), lr, reg, breg, True, rho, sharp)
    for got, w in zip((user_f[1], item_f[0], item_f[2], item_b[0], item_b[2]), want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)


def test_sam_epoch_with_zero_weights_is_plain_sgd():
    a, b = one_row_tables(5, 8), one_row_tables(5, 8)
    rows = (np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([2, 0, 1]), np.array([1, 2, 2]))
    la = bpr_sgd_epoch(*a, *rows, 0.05, 0.01, 0.0, True)
    lb = bpr_sam_epoch(*b, *rows, 0.05, 0.01, 0.0, True, 0.5, np.zeros(3, np.float32))
    assert la == pytest.approx(lb)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_bpr_sam_and_eisam_train_and_differ_from_sgd(ml100k_split):
    fits = {o: make_model("bpr", epochs=2, dim=8, optimizer=o).fit(ml100k_split.train, seed=0)
            for o in ("sgd", "sam", "eisam")}
    tables = {o: m.params_["item"].numpy() for o, m in fits.items()}
    assert all(np.isfinite(t).all() for t in tables.values())
    assert not np.allclose(tables["sgd"], tables["sam"])
    assert not np.allclose(tables["sam"], tables["eisam"])
    with pytest.raises(ConfigError, match="optimizer"):
        make_model("bpr", optimizer="adam")


def test_sgd_step_is_stable_for_large_margins():
    user_f = np.full((1, 2), 30.0, np.float32)
    item_f = np.array([[30.0, 30.0], [-30.0, -30.0]], np.float32)
    loss = bpr_sgd_epoch(user_f, item_f, np.zeros(2, np.float32), np.array([0]),
                         np.array([1]), np.array([0]), np.array([0]), 0.1, 0.0, 0.0, True)
    assert np.isfinite(loss) and loss > 1000  # softplus(3600) without overflow
    assert np.isfinite(user_f).all() and np.isfinite(item_f).all()


def test_score_includes_item_bias_and_embeddings_reproduce_it(ml100k_split):
    m = make_model("bpr", epochs=2, dim=8).fit(ml100k_split.train, seed=0)
    users = np.array([0, 3, 10])
    u, q = m.params_["user"].numpy(), m.params_["item"].numpy()
    b = m.params_["item_bias"].numpy()
    assert np.abs(b).max() > 0
    np.testing.assert_allclose(m.score(users), u[users] @ q.T + b, rtol=1e-5, atol=1e-6)
    emb = m.user_embeddings()[users] @ m.item_embeddings().T
    np.testing.assert_allclose(emb, m.score(users), rtol=1e-5, atol=1e-5)
    assert m.user_embeddings().shape[1] == 9


def test_without_bias_the_bias_stays_zero(ml100k_split):
    m = make_model("bpr", epochs=2, dim=8, use_bias=False).fit(ml100k_split.train, seed=0)
    assert not m.params_["item_bias"].any()
    assert m.user_embeddings().shape[1] == m.item_embeddings().shape[1] == 8


def test_without_validation_every_epoch_runs_and_loss_falls(ml100k_split):
    m = make_model("bpr", epochs=4, dim=8).fit(ml100k_split.train, None, seed=0)
    hist = m.fit_info_["history"]
    assert m.fit_info_["epochs_run"] == 4 and len(hist) == 4
    assert hist[-1]["loss"] < hist[0]["loss"] < np.log(2) + 1e-3


def test_early_stopping_restores_the_best_validation_state(ml100k_split):
    m = make_model("bpr", epochs=12, dim=8, eval_every=2, patience=2)
    m.fit(ml100k_split.train, ml100k_split.valid, seed=0)
    info = m.fit_info_
    assert info["best_epoch"] % 2 == 0
    from trustrec.evaluate.ranking import ndcg_at
    assert ndcg_at(m, ml100k_split.train, ml100k_split.valid) == pytest.approx(
        info["best_valid_ndcg@20"])


def test_negatives_never_hit_positives_on_a_dense_toy():
    # user 0 has every item but item 5: all negatives must be item 5; then its score
    # falls below every positive.
    users = [0] * 5 + [1, 2, 3]
    items = [0, 1, 2, 3, 4, 0, 1, 2]
    m = make_model("bpr", epochs=50, dim=4, lr=0.1, lr_decay=1.0)
    m.fit(toy(users, items), seed=0)
    s = m.score(np.array([0]))[0]
    assert s[5] < s[:5].min()


def test_empty_training_data_gives_finite_scores():
    m = make_model("bpr", epochs=2, dim=4).fit(toy([], []), seed=0)
    assert m.fit_info_["epochs_run"] == 2
    assert np.isfinite(m.score(np.arange(4))).all()


@pytest.mark.parametrize("bad", [{"dim": 0}, {"lr": 0.0}, {"reg": -1.0}, {"lr_decay": 1.5},
                                 {"lr_decay": 0.0}, {"epochs": 0}, {"init_scale": -0.1}])
def test_bad_config_values_are_config_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make_model("bpr", **bad)
