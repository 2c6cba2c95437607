"""In-UCDS stage 1 (constrained dominant sets), In-Naive pairs and the proximal pull."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from tests.evaluate.conftest import make_ds
from trustrec.errors import ConfigError
from trustrec.fairness import make_fairness
from trustrec.fairness.inprocess import pull_step
from trustrec.fairness.ucds import (
    _objective,
    dominance_alpha,
    dominant_sets,
    naive_neighbors,
    replicator,
)
from trustrec.models import make_model


def toy_graph():
    """Users 0-3 advantaged (many items); 4-7 disadvantaged. Users 0, 1, 2 share items
    0-9 (a tight clique); user 3 shares nothing with them; user 4 shares items with 0-2
    and more with 3; users 5-7 like 4 in other proportions."""
    pairs = [(u, i) for u in (0, 1, 2) for i in range(10)]
    pairs += [(3, i) for i in range(20, 34)]
    pairs += [(4, 0), (4, 1), (4, 2), (4, 20), (4, 21), (4, 22), (4, 23)]
    pairs += [(5, 0), (5, 1), (5, 2), (5, 3), (5, 20)]
    pairs += [(6, 20), (6, 21), (6, 22)]
    pairs += [(7, 5), (7, 6)]
    advantaged = np.zeros(8, dtype=bool)
    advantaged[:4] = True
    return make_ds(pairs, 8, 40), advantaged


def test_alpha_exceeds_the_advantaged_block_spectrum():
    a = np.array([[0, 1, 0.5], [1, 0, 0.2], [0.5, 0.2, 0]], dtype=np.float32)
    assert dominance_alpha(a) > np.linalg.eigvalsh(a.astype(np.float64))[-1]
    assert dominance_alpha(np.zeros((3, 3), dtype=np.float32)) > 0


def test_replicator_reaches_the_best_support_on_a_small_problem():
    """The dynamics end at a point whose objective is at least that of every pure
    support's equilibrium found by brute force over supports containing u."""
    rng = np.random.default_rng(0)
    m = 5
    a = rng.random((m, m))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 0)
    a_u = rng.random((1, m))
    alpha = dominance_alpha(a)
    xu, xa, _ = replicator(a, a_u, alpha, 5000, 1e-12)
    assert xu[0] > 0.05  # u is always in the support (Zemene & Pelillo, Theorem 1)
    assert xu.sum() + xa.sum() == pytest.approx(1.0)
    found = float(_objective(xu, xa, a, a_u, alpha)[0])
    full = np.zeros((m + 1, m + 1))
    full[0, 1:], full[1:, 0], full[1:, 1:] = a_u[0], a_u[0], a - alpha * np.eye(m)
    best = -np.inf
    for size in range(0, m + 1):  # interior equilibria of each support {u} ∪ s
        for s in itertools.combinations(range(1, m + 1), size):
            idx = [0, *s]
            sub = full[np.ix_(idx, idx)]
            try:
                y = np.linalg.solve(sub, np.ones(len(idx)))
            except np.linalg.LinAlgError:
                continue
            if (y > 0).all():
                y /= y.sum()
                x = np.zeros(m + 1)
                x[idx] = y
                pay = full @ x
                if pay.max() <= x @ pay + 1e-9:  # a Nash equilibrium of the whole game
                    best = max(best, float(x @ full @ x))
    assert found == pytest.approx(best, rel=1e-4)


def test_dominant_sets_prefer_a_cohesive_group_and_naive_the_most_shared():
    ds, adv = toy_graph()
    pairs, record = dominant_sets(ds, adv, neighbors=3)
    sets = {u: set(pairs[pairs[:, 0] == u, 1].tolist()) for u in range(4, 8)}
    # user 4 shares 3 items with each of 0-2 (a clique) and 4 with user 3, who is
    # alone: the cohesive clique is its dominant set, the single best match is not
    assert sets[4] == {0, 1, 2}
    naive = naive_neighbors(ds, adv, neighbors=1)
    assert naive[naive[:, 0] == 4, 1].tolist() == [3]
    assert sets[6] == {3}  # it co-interacts with user 3 only
    assert record["alpha"] > 0 and record["users_with_set"] == 4
    assert set(pairs[:, 1]) <= set(np.flatnonzero(adv)) and not adv[pairs[:, 0]].any()


def test_pull_step_is_the_proximal_operator():
    pairs = np.array([[3, 0], [4, 0], [4, 1]])
    rng = np.random.default_rng(1)
    e0 = rng.standard_normal((5, 3))
    w = 0.7
    e = pull_step(pairs, 5, w, symmetric=True)(e0)
    # the minimiser of ½‖E − E0‖² + (w/2)·Σ_pairs ‖e_u − e_v‖² solves (I + w L) E = E0
    adj = sp.coo_matrix((np.ones(3), (pairs[:, 0], pairs[:, 1])), shape=(5, 5)).toarray()
    adj = adj + adj.T
    lap = np.diag(adj.sum(1)) - adj
    np.testing.assert_allclose((np.eye(5) + w * lap) @ e, e0, atol=1e-10)
    one = pull_step(pairs, 5, w, symmetric=False)(e0)
    np.testing.assert_array_equal(one[[0, 1, 2]], e0[[0, 1, 2]])  # advantaged stay
    np.testing.assert_allclose(one[4], (e0[4] + w * (e0[0] + e0[1])) / (1 + 2 * w))
    np.testing.assert_array_equal(pull_step(pairs, 5, 0.0, True)(e0), e0)


def test_methods_need_a_model_with_user_tables_and_check_options():
    ds, _ = toy_graph()
    with pytest.raises(ConfigError, match="TrainsUserTables"):
        make_fairness("in-ucds").fit(make_model("sasrec"), ds)
    with pytest.raises(ConfigError):
        make_fairness("in-ucds", wieght=1.0)
    for top in (0.0, 1.0, 1.5):  # every user advantaged would leave nobody to pull
        with pytest.raises(ConfigError):
            make_fairness("in-naive", top=top)
    with pytest.raises(Exception, match="unknown fairness method"):
        make_fairness("in-ucd")


@pytest.mark.parametrize("model", ["bpr", "neumf", "lightgcn", "bcemf"])
def test_pull_moves_users_toward_their_partners(model):
    """Every backbone with user tables: after training with a strong pull, each
    disadvantaged user's tables are closer to its partners' than without it, and
    training went on from the pulled rows (the result is not the plain model with the
    last pull applied afterwards)."""
    ds, adv = toy_graph()
    fast = {"epochs": 3, "eval_every": 1}
    plain = make_fairness("none").fit(make_model(model, **fast), ds, seed=0)
    pulled = make_fairness("in-naive", weight=5.0, top=0.5).fit(make_model(model, **fast),
                                                                 ds, seed=0)
    pairs = naive_neighbors(ds, adv, 3, similarity="cosine")
    info = pulled.fit_info_["fairness"]
    assert info["method"] == "in-naive" and info["pairs"] == len(pairs)
    last = pull_step(pairs, 8, 5.0 * getattr(plain.config, "lr_decay", 1.0) ** 2, True)
    for name in pulled.trained_user_tables():
        def gap(m, name=name):
            t = m.params_[name].numpy()
            return float(np.linalg.norm(t[pairs[:, 0]] - t[pairs[:, 1]], axis=1).mean())
        assert gap(pulled) < 0.8 * gap(plain), name
        afterwards = last(plain.params_[name].detach().numpy())
        assert not np.allclose(pulled.params_[name].detach().numpy(), afterwards,
                               atol=1e-6), name
