"""The completeness suite catches the negative controls on real MovieLens-100K.

Thresholds (user-level AUCs over the 47 core users of the default 80/10/10 split, seed 0;
default WMF and BPR-MF):

* A model that never saw the forget set (``retrain``) must read as forgotten: the headline
  (the strongest of six attacks) within 0.5 ± 0.12. Each user-level AUC has a bootstrap SE
  of about 0.04–0.06 here, and the headline is the maximum distance over six correlated
  estimates, so a model with no memory sits up to ~2–3 SE from 0.5 (0.55–0.56 measured).
* Both negative controls must read clearly as *not* forgotten: headline >= 0.85 (the
  learned model reads 1.00; the controls 1.00 measured) and their interval entirely above
  retraining's.
* The score-row attack alone is fooled by ``reset-rows`` (within 0.5 ± 0.1): this is why
  the suite has other attacks.
"""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.data.selection import select_forget_users
from trustrec.evaluate.membership import membership_sets
from trustrec.evaluate.suite import ATTACKS, attack_name, completeness_suite
from trustrec.models import make_model
from trustrec.seeding import child_seed
from trustrec.unlearn import ForgetRequest, make_unlearner

from .conftest import make_ds


def test_fold_in_solves_the_als_user_step():
    """fold_in equals the closed form (QᵀQ + α Σ q qᵀ + λI)⁻¹ (1 + α) Σ q, user by user."""
    from trustrec.evaluate.foldin import fold_in

    gen = np.random.default_rng(0)
    q = gen.normal(size=(30, 5))
    users = np.array([0, 0, 0, 2, 2, 4])
    items = np.array([1, 7, 7, 3, 9, 0])  # a duplicate row counts twice
    x = fold_in(q, users, items, 6, alpha=2.0, reg=0.1)
    gram = q.T @ q
    lam = 0.1 * np.trace(gram) / 5
    for u in (0, 2, 4):
        qu = q[items[users == u]]
        want = np.linalg.solve(gram + lam * np.eye(5) + 2.0 * qu.T @ qu, 3.0 * qu.sum(0))
        np.testing.assert_allclose(x[u], want, rtol=1e-10)
    np.testing.assert_array_equal(x[[1, 3, 5]], 0.0)


def test_suite_folds_items_in_for_item_requests():
    """side="item": the item is re-derived from the user table; a model whose user table
    encodes the members reads as remembering, a blind one does not."""
    gen = np.random.default_rng(1)
    n_users, n_items, d = 60, 20, 4

    mem = [(u, i) for i in range(5) for u in gen.permutation(n_users)[:10]]
    non = [(u, i) for i in range(5) for u in gen.permutation(n_users)[:4]
           if (u, i) not in set(mem)]
    members, nonmembers = make_ds(mem, n_users, n_items), make_ds(non, n_users, n_items)

    class Tables:
        def __init__(self, p, q):
            self.p, self.q = p, q

        def score(self, users):
            return self.p[users] @ self.q.T

        def user_embeddings(self):
            return self.p

        def item_embeddings(self):
            return self.q

    q = gen.normal(size=(n_items, d))
    p = gen.normal(size=(n_users, d)) * 0.1
    for u, i in mem:  # members' users point at their items
        p[u] += q[i]
    remembering = completeness_suite(Tables(p, q), members, nonmembers, side="item",
                                     n_bootstrap=20)
    blind = completeness_suite(Tables(gen.normal(size=(n_users, d)), q), members,
                               nonmembers, side="item", n_bootstrap=20)
    assert remembering["mia_foldin_auc_interaction"] > 0.7
    assert abs(blind["mia_foldin_auc_interaction"] - 0.5) < 0.2
    with pytest.raises(ValueError, match="side"):
        completeness_suite(Tables(p, q), members, nonmembers, side="items")


@pytest.fixture(scope="module", params=["wmf", "bpr"])
def controls(request, ml100k_split):
    split = ml100k_split
    model = request.param
    users = select_forget_users(split.train, "core", 0.05, seed=0)
    req = ForgetRequest(users=users)
    members, nonmembers = membership_sets(req, split.train, split.test)
    shadow = make_model(model).fit(split.train.without(req), split.valid.without(req),
                                   seed=child_seed(0, "shadow"))
    out = {}
    learned = make_unlearner("retrain", model).fit(split.train, split.valid, seed=0)
    out["learned"] = completeness_suite(learned, members, nonmembers, reference=shadow)
    for method in ("retrain", "noop", "reset-rows"):
        # every method starts from the same learned model (all three are Retrain-based:
        # the state is its data, seed and model), so it is trained once
        u = make_unlearner(method, model)
        u.train_, u.valid_, u.seed_ = split.train, split.valid, 0
        u.model_ = make_model(model)
        u.model_.params_ = {k: v.clone() for k, v in learned.model_.params_.items()}
        u.model_.n_users_, u.model_.n_items_ = learned.model_.n_users_, learned.model_.n_items_
        u.forget(req)
        out[method] = completeness_suite(u, members, nonmembers, reference=shadow)
    return model, out


@pytest.mark.slow
def test_retraining_reads_as_forgotten(controls):
    model, r = controls
    assert r["retrain"]["mia_n_users"] == 47
    assert abs(r["retrain"]["mia_auc"] - 0.5) <= 0.12, (model, r["retrain"]["mia_auc"])
    assert r["learned"]["mia_auc"] >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("control", ["noop", "reset-rows"])
def test_negative_controls_read_as_not_forgotten(controls, control):
    model, r = controls
    c = r[control]
    assert c["mia_auc"] >= 0.85, (model, control, c["mia_auc"])
    assert c["mia_auc_lo"] > r["retrain"]["mia_auc_hi"]
    assert attack_name(c["mia_attack"]) in ATTACKS


@pytest.mark.slow
def test_score_row_alone_is_fooled_by_reset_rows(controls):
    model, r = controls
    assert abs(r["reset-rows"]["mia_auc_user"] - 0.5) < 0.1
    assert r["reset-rows"]["mia_foldin_auc_user"] >= 0.85
    assert np.isfinite(r["reset-rows"]["mia_auc_user_se"])
    assert r["reset-rows"]["mia_auc_user_se"] > 0  # random ties: never SE 0
