"""SCIF on real MovieLens-100K: forgetting moves the model towards retraining.

Each case fits the model once (module scope), forgets on copies, and compares with a model
retrained from scratch on the remaining rows. "Gap closed" is the share of the distance
between the original model's and the retrained model's mean forgotten-item percentile that
the update covers (1 = as forgotten as after retraining).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.selection import (
    select_forget_interactions,
    select_forget_items,
    select_forget_users,
)
from trustrec.errors import ConfigError
from trustrec.models import make_model
from trustrec.seeding import child_seed
from trustrec.unlearn import ForgetRequest, make_unlearner

from ._approx import Case, fitted

CFG = {"bpr": {"dim": 32, "epochs": 40}, "wmf": {"dim": 32, "epochs": 8}}
#: The pre-paper defaults (kept as options): re-fit emptied nodes, no relabelling, 5 CG steps.
HYBRID = {"step": "hybrid", "collaborative": False, "iterations": 5}
#: Utility bound: test NDCG@20 of the retained users may drop by at most this much. Measured
#: drops are 0.000-0.006 (BPR, the largest: noise of the sampled item step); the run-to-run
#: spread between two trainings with different seeds is about 0.008.
NDCG_DROP = 0.012


@pytest.fixture(scope="module")
def models(split):
    return {m: fitted("scif", m, CFG[m], split) for m in ("bpr", "wmf")}


@pytest.fixture(scope="module")
def user_cases(models, split):
    req = ForgetRequest(users=select_forget_users(split.train, "random", 0.05, seed=0))
    return {m: Case(u, req, split) for m, u in models.items()}


@pytest.mark.parametrize("model", ["bpr", "wmf"])
def test_hybrid_step_refits_forgotten_users(user_cases, model):
    case = user_cases[model]
    u, rep = case.forget(**HYBRID)
    # the original ranks the forgotten users' training items near the top (~0.04); the
    # retrained model does not (BPR ~0.16: popularity; WMF 0.5: a zero user vector ties
    # every item). The update re-fits the emptied users (BPR: no term left, set to 0;
    # WMF: its all-cells loss is minimised at 0), so the gap closes almost entirely
    # (measured 0.99-1.01); 0.8 leaves room for other seeds and machines.
    assert case.pct_retrained - case.pct_original > 0.1
    assert 0.8 <= case.gap_closed(u) <= 1.2
    users = torch.from_numpy(case.request.users.copy())
    assert torch.equal(u.model_.params_["user"][users],
                       torch.zeros(len(users), CFG[model]["dim"]))
    assert case.ndcg(u) >= case.ndcg_original - NDCG_DROP
    assert rep.details["n_users_updated"] == len(case.request.users)
    assert rep.details["n_emptied_nodes"] >= len(case.request.users)


def test_selective_update_touches_only_the_forgotten_rows_nodes(user_cases):
    case = user_cases["wmf"]  # WMF has no sampled negatives: exactly the rows' nodes
    u, rep = case.forget()
    before, after = case.base.model_.params_, u.model_.params_
    changed_u = np.flatnonzero((before["user"] != after["user"]).any(1).numpy())
    changed_i = np.flatnonzero((before["item"] != after["item"]).any(1).numpy())
    assert set(changed_u) == set(case.request.users)
    assert set(changed_i) <= set(np.unique(case.removed.items))
    assert len(changed_i) > 0.9 * len(np.unique(case.removed.items))
    assert rep.details["n_items_updated"] == len(np.unique(case.removed.items))
    assert rep.details["stopped"] in {"tolerance", "iterations"}


def test_lissa_solver_agrees_with_cg(user_cases):
    case = user_cases["wmf"]
    cg, _ = case.forget(**HYBRID)
    ls, rep = case.forget(**{**HYBRID, "solver": "lissa", "iterations": 40})
    assert rep.details["solver"] == "lissa" and rep.details["iterations"] <= 40
    assert rep.details["residual"] < 0.2
    # both re-fit the forgotten users exactly and move the items alike
    assert 0.8 <= case.gap_closed(ls) <= 1.2
    d_cg = cg.model_.params_["item"] - case.base.model_.params_["item"]
    d_ls = ls.model_.params_["item"] - case.base.model_.params_["item"]
    cos = float((d_cg * d_ls).sum() / (d_cg.norm() * d_ls.norm()))
    assert cos > 0.8


@pytest.fixture(scope="module")
def interaction_case(models, split):
    req = ForgetRequest(pairs=select_forget_interactions(split.train, 0.05, seed=0))
    return Case(models["wmf"], req, split)


def test_forgetting_interactions_moves_towards_retraining(interaction_case):
    case = interaction_case
    u, rep = case.forget()
    # measured: the forgotten pairs sink from percentile 0.045 to 0.075 (retrained 0.085),
    # about 75 % of the gap; at least half is required
    assert case.pct_retrained - case.pct_original > 0.02
    assert case.gap_closed(u) >= 0.5
    assert case.ndcg(u) >= case.ndcg_original - NDCG_DROP
    assert rep.details["n_users_updated"] == len(np.unique(case.removed.users))


def test_collaborative_correction_relabels_the_forgotten_cells(interaction_case):
    case = interaction_case
    plain, rep_plain = case.forget(collaborative=False)
    collab, rep_collab = case.forget()
    # WMF's corrected cell carries its user's mean label over the retained cells (the
    # share of the catalogue the user keeps) instead of simply becoming unobserved
    labels = case.base.model_.training_objective().collaborative_labels(case.removed,
                                                                   case.remaining)
    want = case.remaining.user_counts()[case.removed.users] / case.remaining.n_items
    np.testing.assert_allclose(labels, want, rtol=1e-6)
    assert 0 < labels.min() and labels.max() < 0.5
    assert rep_collab.details["changed_terms"] == 2 * rep_plain.details["changed_terms"]
    assert not torch.equal(plain.model_.params_["item"], collab.model_.params_["item"])
    # a small label keeps the update close to plain removal: both forget
    assert case.gap_closed(collab) >= 0.5


def test_forgetting_items_sinks_them(models, split):
    req = ForgetRequest(items=select_forget_items(split.train, 0.02, seed=0))
    case = Case(models["bpr"], req, split)
    u, _ = case.forget()
    # retraining puts the forgotten items near the bottom of their former users' rankings
    # (0.96; they are only ever negatives); the influence step re-fits them from their
    # negative terms: measured 0.06 -> 0.48, 46 % of the gap; a third is required
    assert case.pct_retrained - case.pct_original > 0.5
    assert case.gap_closed(u) >= 0.3
    assert case.ndcg(u) >= case.ndcg_original - NDCG_DROP


def test_neumf_objective_drives_scif(split):
    cfg = {"epochs": 2, "gmf_dim": 8, "mlp_dim": 8, "layers": (8,), "n_neg": 2,
           "batch_size": 32768}
    u = fitted("scif", "neumf", cfg, split, hessian_rows=5000, iterations=4)
    users = select_forget_users(split.train, "random", 0.05, seed=1)
    case = Case(u, ForgetRequest(users=users), split)
    after, rep = case.forget()
    # NeuMF's forgotten users are re-fitted to the (negative-only) remaining terms: their
    # training items drop well down their rankings (measured 0.21 -> 0.46)
    assert case.pct(after) > case.pct_original + 0.05
    assert np.isfinite(after.score(np.arange(10))).all()
    assert rep.details["n_params_updated"] > 0


@pytest.mark.parametrize("bad", [{"solver": "newton"}, {"hessian": "diag"}, {"step": "x"},
                                 {"scale": 0.0}, {"iterations": 0}, {"damping": -1.0},
                                 {"negatives": -1}])
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        make_unlearner("scif", "bpr", {"dim": 8}, **bad)


def test_model_without_objective_is_refused():
    with pytest.raises(ConfigError, match=r"method 'scif' needs a model with a "
                                          r"differentiable training objective "
                                          r"\(HasTrainingObjective\); model 'lightgcn' "
                                          r"does not have one; models that do: bcemf, bpr, "):
        make_unlearner("scif", "lightgcn", {"dim": 8})


# ---------------------------------------------------------------------------- the paper's
@pytest.fixture(scope="module")
def core_cases(models, split):
    req = ForgetRequest(users=select_forget_users(split.train, "core", 0.05, seed=0))
    return {m: Case(u, req, split) for m, u in models.items()}


@pytest.mark.slow  # dim-32 models, a CG solve and a shadow model per case: ~10 s
@pytest.mark.parametrize("model", ["bpr", "wmf"])
def test_paper_defaults_solve_to_tolerance_and_move_forgotten_users(core_cases, model):
    """SCIF as the paper has it (collaborative relabelling, influence step, CG solved).

    Completeness: the paper's ordering Learn > SCIF > Retrain, in distance of the suite's
    headline AUC from chance (with an auditor's shadow model of another seed). Measured
    on this split (dim 32, core 5 %): WMF 0.50 > 0.39 > 0.03, BPR-MF 0.50 > 0.17 > 0.05.
    Utility: WMF loses nothing (bound
    NDCG_DROP); BPR-MF loses 35 % NDCG@20 of the retained users on the core set (0.256 ->
    0.166), the price of its ½-relabelled rows (the paper reports 6-22 %); the bound
    requires at least half of the original NDCG to remain.
    """
    from trustrec.evaluate.membership import membership_sets
    from trustrec.evaluate.suite import completeness_suite

    case = core_cases[model]
    u, rep = case.forget()
    assert rep.details["stopped"] == "tolerance" and rep.details["residual"] <= 1e-3
    users = torch.from_numpy(case.request.users.copy())
    old, new = case.base.model_.params_["user"][users], u.model_.params_["user"][users]
    assert (old != new).any(1).all() and (new != 0).any(1).all()  # moved, not reset
    members, nonmembers = membership_sets(case.request, case.split.train, case.split.test)
    valid = case.split.valid.select(~case.request.match_rows(case.split.valid))
    shadow = make_model(model, **CFG[model]).fit(case.remaining, valid,
                                                 seed=child_seed(0, "shadow"))

    def distance(m):
        return abs(completeness_suite(m, members, nonmembers, reference=shadow,
                                      n_bootstrap=0)["mia_auc"] - 0.5)

    d = {name: distance(m) for name, m in (("learn", case.base), ("scif", u),
                                           ("retrain", case.retrained))}
    assert d["learn"] > d["scif"] > d["retrain"], d
    if model == "wmf":
        assert case.ndcg(u) >= case.ndcg_original - NDCG_DROP
    else:
        assert case.ndcg(u) >= 0.5 * case.ndcg_original
