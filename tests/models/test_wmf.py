"""WMF specifics: the CG solver against an exact solve, the loss, monotone ALS, configs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.models import make_model
from trustrec.models.wmf import _gram, wmf_cg_step, wmf_data_loss


def small_problem(seed: int = 0, n: int = 7, m: int = 9, d: int = 4):
    g = np.random.default_rng(seed)
    r = (g.random((n, m)) < 0.35).astype(np.float32)
    r[0] = 0  # a user without observations
    csr = sp.csr_matrix(r)
    csr.sort_indices()
    x = (g.standard_normal((n, d)) * 0.1).astype(np.float32)
    y = g.standard_normal((m, d)).astype(np.float32)
    return r, csr, x, y


def test_cg_step_converges_to_the_exact_least_squares_solution():
    r, csr, x, y = small_problem()
    alpha, reg = 3.0, 0.5
    wmf_cg_step(x, y, csr.indptr.astype(np.int64), csr.indices.astype(np.int64),
                _gram(y, reg), alpha, 50)
    y64 = y.astype(np.float64)
    for u in range(len(r)):
        c = 1 + alpha * r[u]
        a = y64.T @ (c[:, None] * y64) + reg * np.eye(y.shape[1])
        want = np.linalg.solve(a, y64.T @ (c * r[u]))
        np.testing.assert_allclose(x[u], want, rtol=1e-3, atol=1e-4)
    assert np.allclose(x[0], 0, atol=1e-5)  # no observations → shrinks to zero


def test_data_loss_matches_the_dense_definition():
    r, csr, x, y = small_problem(seed=1)
    alpha = 2.5
    s = x.astype(np.float64) @ y.T
    want = ((1 + alpha * r) * (r - s) ** 2).sum()
    got = wmf_data_loss(x, y, csr.indptr.astype(np.int64), csr.indices.astype(np.int64),
                        _gram(y, 0.0), alpha)
    assert got == pytest.approx(want, rel=1e-4)


def test_als_objective_never_increases(ml100k_split):
    m = make_model("wmf", epochs=6, dim=16).fit(ml100k_split.train, None, seed=0)
    loss = [h["loss"] for h in m.fit_info_["history"]]
    assert len(loss) == 6
    assert all(b <= a * (1 + 1e-5) for a, b in zip(loss[:-1], loss[1:], strict=True)), loss


def test_more_confidence_on_positives_raises_their_scores(ml100k_split):
    train = ml100k_split.train
    csr = train.to_csr().toarray() > 0
    gaps = []
    for alpha in (0.5, 8.0):
        m = make_model("wmf", epochs=4, dim=16, alpha=alpha, reg=1.0).fit(train, seed=0)
        s = m.score(np.arange(train.n_users))
        gaps.append(s[csr].mean() - s[~csr].mean())
    assert gaps[1] > gaps[0] > 0


@pytest.mark.parametrize("bad", [{"dim": 0}, {"alpha": -1.0}, {"reg": -0.1}, {"cg_steps": 0},
                                 {"epochs": 0}, {"patience": 0}])
def test_bad_config_values_are_config_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make_model("wmf", **bad)


def test_empty_training_data_gives_finite_zero_scores():
    empty = Dataset(name="empty", users=np.zeros(0, np.int64), items=np.zeros(0, np.int64),
                    timestamps=np.zeros(0, np.int64), n_users=3, n_items=4,
                    user_ids=np.array(["a", "b", "c"]), item_ids=np.array(["w", "x", "y", "z"]))
    m = make_model("wmf", epochs=2, dim=4).fit(empty, seed=0)
    s = m.score(np.arange(3))
    assert s.shape == (3, 4) and np.isfinite(s).all()
    assert np.abs(s).max() < 1e-3  # nothing observed: every preference is 0
