"""PoT-AU (pot-au-d2d, pot-au-u2u): the losses on tiny tables, then the effect on real data.

The real-data tests protect the shared BPR-MF on MovieLens-100K (``bpr_ml100k``, gender)
under the benchmark's threat model: the method sees the labels of a seeded half of the
users (``seen_half``, the protocol its defaults were tuned for by
``benchmarks/tune_privacy.py`` on other seeds), and the released table is audited with the
toolkit's attackers (logistic regression, MLP, gradient-boosted trees) on that half, and
on the held-out half. Each attack on the seen half is the mean of three seeded 5-fold
cross-validations (PoT-AU's own protocol is 5-fold × 3): one 5-fold run on 943 users moves
by about ±0.03 between fold seeds, on the 472 seen users by about ±0.045, the mean of
three by about ±0.028.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from trustrec.errors import ConfigError, DataFormatError, UnknownNameError
from trustrec.evaluate.ranking import ndcg_at
from trustrec.models.base import make_model
from trustrec.models.capabilities import PairScorer, models_with
from trustrec.privacy.attack import audit_embeddings, leakage
from trustrec.privacy.base import make_protector, user_table
from trustrec.privacy.losses import (
    between_class_ratio,
    cross_class_sq_dist,
    mmd2,
    mmd2_to_anchor,
    pooled_bandwidth,
    ranking_hinge,
)
from trustrec.privacy.posttrain import original_top_k

#: |balanced accuracy − chance| allowed after protection when all 943 users are audited.
#: A protection that removes the attribute leaves the attackers at chance ± evaluation
#: noise (about ±0.02 for the mean of three 5-fold runs on 943 users, see the module
#: docstring) ± the method's own seed noise (about ±0.02 across protection seeds); 0.05
#: is the issue's bound.
NEAR_CHANCE = 0.05
#: The same bound when only the 472 seen users are audited: the evaluation noise grows by
#: √2 (±0.028 for the mean of three runs), so 0.05 + 0.01. This is the bound the
#: effect tests use now that they follow the grid's threat model (the defaults were tuned
#: for it); before, they audited every user with every label seen.
NEAR_CHANCE_SEEN = 0.06
#: Largest relative drop of test NDCG@20 accepted (the issue's bound; measured drops are
#: about 1 %, because both regularisers keep every user's original top-20 order).
MAX_NDCG_DROP = 0.05


def mean_balanced_accuracy(table: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Balanced accuracy per attacker, mean over three seeded 5-fold audits."""
    runs = pd.concat([audit_embeddings(table, labels, seed=s) for s in range(3)])
    ba = runs[runs["metric"] == "balanced_accuracy"]
    return ba.groupby("attacker")["value"].mean().to_dict()


# ---------------------------------------------------------------------------- losses
def _groups(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 4, generator=gen, dtype=torch.float64) + shift
            for n, shift in ((7, 0.0), (5, 0.3), (3, -0.5))]


@pytest.mark.parametrize("outer", [False, True])
def test_u2u_class_sum_formula_equals_the_pairwise_sum(outer):
    groups = _groups(0)

    def feat(e: torch.Tensor) -> torch.Tensor:
        return torch.outer(e, e) if outer else e

    brute = torch.stack([((feat(a) - feat(b)) ** 2).sum()
                         for i, j in itertools.combinations(range(3), 2)
                         for a, b in itertools.product(groups[i], groups[j])]).mean()
    assert torch.allclose(cross_class_sq_dist(groups, outer=outer), brute)
    # the between-class ratio: the n_c n_c'-weighted sum of squared class-mean gaps over
    # all pairs of classes, divided by N times the total scatter
    means = [torch.stack([feat(e) for e in g]).mean(0) for g in groups]
    everything = torch.stack([feat(e) for g in groups for e in g])
    gaps = sum(len(groups[i]) * len(groups[j]) * ((means[i] - means[j]) ** 2).sum()
               for i, j in itertools.combinations(range(3), 2))
    scatter = ((everything - everything.mean(0)) ** 2).sum()
    assert torch.allclose(between_class_ratio(groups, outer=outer),
                          gaps / (len(everything) * scatter))


def test_u2u_ratio_ignores_a_common_scale_but_the_plain_mean_does_not():
    groups = _groups(1)
    small = [0.1 * g for g in groups]
    assert torch.allclose(between_class_ratio(small), between_class_ratio(groups))
    assert cross_class_sq_dist(small) < 0.05 * cross_class_sq_dist(groups)
    # identical class means give 0, whatever the spread
    centred = [g - g.mean(0) for g in groups]
    assert float(between_class_ratio(centred)) == pytest.approx(0.0, abs=1e-12)


def test_mmd_is_zero_for_identical_groups_and_positive_for_shifted_ones():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 5, generator=gen)
    assert abs(float(mmd2(x, x.clone()))) < 1e-5
    assert float(mmd2(x, x + 1.0)) > 0.1
    same = float(mmd2(x[:20], x[20:]))
    assert float(mmd2(x[:20], x[20:] + 0.5)) > same


def test_mmd_to_an_anchor_is_the_weighted_sum_with_one_shared_kernel():
    groups = _groups(2)
    anchor, others = groups[0], groups[1:]
    weights = [0.25, 0.75]
    shared = pooled_bandwidth(torch.cat(others), anchor)
    brute = sum(w * mmd2(g, anchor, bandwidth=shared) for w, g in zip(weights, others,
                                                                     strict=True))
    assert torch.allclose(mmd2_to_anchor(others, anchor, weights), brute)
    # one group: the plain MMD² (its own pooled bandwidth)
    assert torch.allclose(mmd2_to_anchor(others[:1], anchor, [1.0]), mmd2(others[0], anchor))


def test_bandwidth_is_the_mean_pairwise_squared_distance():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 3, generator=gen), torch.randn(4, 3, generator=gen)
    z = torch.cat([x, y])
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    assert torch.allclose(pooled_bandwidth(x, y), d.sum() / (10 * 10 - 10), rtol=1e-5)


def test_ranking_hinge_is_zero_for_a_kept_order_and_grows_with_swaps():
    kept = torch.tensor([[3.0, 2.0, 1.0]])
    assert float(ranking_hinge(kept, 0.05)) == 0.0
    swapped = torch.tensor([[2.0, 3.0, 1.0]])
    assert float(ranking_hinge(swapped, 0.05)) == pytest.approx(1.05)


@pytest.mark.parametrize("name", models_with(PairScorer))
def test_pair_scores_equal_every_models_scores_and_carry_gradients(name, ml100k_split):
    size = {"gmf_dim": 8, "mlp_dim": 8} if name == "neumf" else {"dim": 8}
    model = make_model(name, epochs=1, **size).fit(ml100k_split.train, seed=0)
    gen = torch.Generator().manual_seed(0)
    n_users, n_items = ml100k_split.train.n_users, ml100k_split.train.n_items
    users = torch.randint(0, n_users, (30,), generator=gen)
    items = torch.randint(0, n_items, (30, 5), generator=gen)
    table = torch.from_numpy(user_table(model)).requires_grad_(True)
    got = model.pair_scorer(users, items)(table)
    full = model.score(users.numpy())
    np.testing.assert_allclose(got.detach().numpy(),
                               np.take_along_axis(full, items.numpy(), 1), rtol=1e-4,
                               atol=1e-5)
    got.sum().backward()
    assert table.grad is not None and table.grad[users].abs().sum() > 0
    untouched = np.setdiff1d(np.arange(n_users), users.numpy())
    assert float(table.grad[untouched].abs().sum()) == 0.0


def test_pair_scores_gather_equals_the_models_scores(bpr_ml100k, ml100k_split):
    top = original_top_k(bpr_ml100k, ml100k_split.train, 20)
    users = torch.arange(len(top))
    table = torch.from_numpy(user_table(bpr_ml100k))
    got = bpr_ml100k.pair_scorer(users, top)(table).numpy()
    full = bpr_ml100k.score(np.arange(len(top)))
    np.testing.assert_allclose(got, np.take_along_axis(full, top.numpy(), 1), rtol=1e-5,
                               atol=1e-5)
    # best first, training items excluded
    assert (np.diff(got, axis=1) <= 1e-6).all()
    train = ml100k_split.train.to_csr()
    assert not train[np.repeat(users.numpy(), 20), top.numpy().ravel()].any()


# ---------------------------------------------------------------------------- checks
@pytest.mark.parametrize("method,options", [
    ("pot-au-u2u", {"order": 3}), ("pot-au-u2u", {"normalise": "sum"}),
    ("pot-au-d2d", {"param_reg": -1.0}), ("pot-au-d2d", {"steps": 0}),
    ("pot-au-d2d", {"stepz": 3}),
])
def test_bad_options_are_config_errors(method, options):
    with pytest.raises(ConfigError):
        make_protector(method, **options)


def test_bad_labels_are_clear_errors_and_change_nothing(bpr_ml100k, ml100k_split):
    before = user_table(bpr_ml100k).copy()
    p = make_protector("pot-au-u2u", steps=2)
    with pytest.raises(DataFormatError, match="one integer per user"):
        p.protect(bpr_ml100k, ml100k_split.train, {"gender": np.zeros(5, dtype=np.int64)})
    with pytest.raises(DataFormatError, match="fewer than two classes"):
        p.protect(bpr_ml100k, ml100k_split.train,
                  {"gender": np.zeros(ml100k_split.train.n_users, dtype=np.int64)})
    with pytest.raises(ConfigError):
        p.protect(bpr_ml100k, ml100k_split.train, {})
    with pytest.raises(UnknownNameError):
        make_protector("pot-au-x2y")
    assert np.array_equal(user_table(bpr_ml100k), before)


def test_a_model_without_the_capability_is_refused_clearly(bpr_ml100k, ml100k_split,
                                                           ml100k_labels, monkeypatch):
    """PoT-AU needs a pair scorer and every protector a released table: a model class
    without them is a ConfigError naming the method, the capability, the model and the
    models that have it, before any work."""
    from trustrec.models.bpr import BPR

    labels = {"gender": ml100k_labels["gender"]}
    monkeypatch.delattr(BPR, "pair_scorer")
    with pytest.raises(ConfigError, match=(
            r"^method 'pot-au-d2d' needs a model with pair scores differentiable in its "
            r"released user table \(PairScorer\); model 'bpr' does not have one; models "
            r"that do: bcemf, lightgcn, neumf, wmf$")):
        make_protector("pot-au-d2d", steps=1).protect(bpr_ml100k, ml100k_split.train, labels)
    # output noise only replaces the released table: still fine without a pair scorer
    make_protector("output-noise").protect(bpr_ml100k, ml100k_split.train, labels)
    monkeypatch.delattr(BPR, "released_user_table")
    with pytest.raises(ConfigError, match=r"^method 'output-noise' needs a model with a "
                                          r"released user table \(ReleasesUserTable\)"):
        make_protector("output-noise").protect(bpr_ml100k, ml100k_split.train, labels)
    with pytest.raises(ConfigError, match="ReleasesUserTable"):
        user_table(bpr_ml100k)


def test_same_seed_same_table_and_only_the_user_table_changes(bpr_ml100k, ml100k_split,
                                                             ml100k_labels):
    labels = {"gender": ml100k_labels["gender"]}
    runs = [make_protector("pot-au-d2d", steps=5).protect(bpr_ml100k, ml100k_split.train,
                                                          labels, seed=4) for _ in range(2)]
    assert np.array_equal(user_table(runs[0]), user_table(runs[1]))
    out = runs[0]
    assert not np.array_equal(user_table(out), user_table(bpr_ml100k))
    for k, v in bpr_ml100k.params_.items():
        if k != "user":
            assert torch.equal(out.params_[k], v), k
    record = out.fit_info_["protection"]
    assert record["method"] == "pot-au-d2d" and record["attributes"] == ["gender"]
    assert all(len(v) == 5 for v in record["losses"].values())
    assert "protection" not in bpr_ml100k.fit_info_


# ---------------------------------------------------------------------------- real data
@pytest.fixture(scope="module", params=["pot-au-d2d", "pot-au-u2u"])
def protected(request, bpr_ml100k, ml100k_split, ml100k_labels, seen_half):
    labels = {"gender": ml100k_labels["gender"]}
    model = make_protector(request.param).protect(bpr_ml100k, ml100k_split.train, labels,
                                                  seed=0, label_users=seen_half)
    return request.param, model


def test_gender_is_readable_before_protection(bpr_gender_audit):
    ba = bpr_gender_audit[bpr_gender_audit["metric"] == "balanced_accuracy"]
    best = ba[ba["attacker"] != "majority"]["value"].max()
    # clearly above chance: 0.05 is the bound the protected tables must meet
    assert best > 0.5 + 2 * NEAR_CHANCE


@pytest.mark.slow
def test_protection_brings_the_seen_users_to_chance_and_keeps_ndcg(
        protected, ml100k_split, ml100k_labels, bpr_ml100k_test_ndcg, seen_half):
    method, model = protected
    y = ml100k_labels["gender"]
    ba = mean_balanced_accuracy(user_table(model), np.where(seen_half, y, -1))
    # Measured on the default BPR-MF with the tuned defaults (mean of 3 audits of the 472
    # seen users), before: leakage 0.18. pot-au-d2d: lr 0.476, mlp 0.468, gbt 0.506
    # (NDCG@20 -0.5 %); pot-au-u2u: lr 0.536, mlp 0.499, gbt 0.547 (NDCG@20 +0.2 %).
    for attacker in ("lr", "mlp", "gbt"):
        assert abs(ba[attacker] - 0.5) <= NEAR_CHANCE_SEEN, (attacker, ba)
    drop = 1.0 - ndcg_at(model, ml100k_split.train, ml100k_split.test, 20) \
        / bpr_ml100k_test_ndcg
    assert drop <= MAX_NDCG_DROP, drop
    # The users whose labels it did not see keep their rows' signal: one audit of the
    # held-out half reads gender as from the undefended table (measured 0.166 for both
    # methods, the undefended table's 0.166); above 0.10 is far outside the null
    # (half-width ~0.06 on 471 users).
    held = audit_embeddings(user_table(model), np.where(seen_half, -1, y), seed=0)
    assert leakage(held) > 0.10, held
