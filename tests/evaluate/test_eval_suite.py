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

pytestmark = pytest.mark.slow


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


def test_retraining_reads_as_forgotten(controls):
    model, r = controls
    assert r["retrain"]["mia_n_users"] == 47
    assert abs(r["retrain"]["mia_auc"] - 0.5) <= 0.12, (model, r["retrain"]["mia_auc"])
    assert r["learned"]["mia_auc"] >= 0.95


@pytest.mark.parametrize("control", ["noop", "reset-rows"])
def test_negative_controls_read_as_not_forgotten(controls, control):
    model, r = controls
    c = r[control]
    assert c["mia_auc"] >= 0.85, (model, control, c["mia_auc"])
    assert c["mia_auc_lo"] > r["retrain"]["mia_auc_hi"]
    assert attack_name(c["mia_attack"]) in ATTACKS


def test_score_row_alone_is_fooled_by_reset_rows(controls):
    model, r = controls
    assert abs(r["reset-rows"]["mia_auc_user"] - 0.5) < 0.1
    assert r["reset-rows"]["mia_foldin_auc_user"] >= 0.85
    assert np.isfinite(r["reset-rows"]["mia_auc_user_se"])
    assert r["reset-rows"]["mia_auc_user_se"] > 0  # random ties: never SE 0
