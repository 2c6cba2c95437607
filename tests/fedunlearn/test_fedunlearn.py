"""Federated unlearning on digits: the data and the request, FedAF's pieces, the audit's
negative controls, and FedAF against its baselines on real data."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from trustrec.data.images import digits_path, load_digits
from trustrec.errors import ConfigError, DataFormatError, UnknownNameError
from trustrec.federated.classify import ClassifierConfig, forward, init_params
from trustrec.fedunlearn.audit import audit, forget_measure
from trustrec.fedunlearn.federation import TRIGGER, make_digits_federation
from trustrec.fedunlearn.methods import (
    FedUnlearnConfig,
    diagonal_fisher,
    new_memories,
    train_original,
    unlearn,
)

CLF = ClassifierConfig(hidden=64, rounds=30, lr=0.1, local_epochs=2, batch_size=32)


def test_digits_are_checked_by_checksum(tmp_path):
    x, y = load_digits()
    assert x.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    assert 0.0 <= x.min() and x.max() == 1.0
    bad = tmp_path / "digits.csv.gz"
    shutil.copy(digits_path(), bad)
    with gzip.open(bad, "ab") as fh:
        fh.write(b"0,0\n")
    with pytest.raises(DataFormatError, match="sha256"):
        load_digits(bad)
    with pytest.raises(DataFormatError, match="missing"):
        load_digits(tmp_path / "none.csv.gz")


def test_requests_mark_the_right_rows_and_bad_requests_are_refused():
    fed = make_digits_federation("class", 4, seed=0)
    for k in range(fed.n_clients):
        assert np.array_equal(fed.forget[k], fed.y[k] == 4)
    assert 4 in fed.y_test and sum(len(y) for y in fed.y) + len(fed.y_test) == 1797
    bd = make_digits_federation("backdoor", 0, seed=0, poison_clients=2)
    for k in range(bd.n_clients):
        rows = bd.forget[k]
        assert rows.any() == (k < 2)
        if rows.any():
            xs = bd.x[k][torch.from_numpy(rows)].numpy()
            assert (xs[:, TRIGGER] == 1.0).all() and (bd.y[k][rows] == 0).all()
    with pytest.raises(ConfigError, match="unknown unlearning request"):
        make_digits_federation("user", 3)
    with pytest.raises(ConfigError, match="classes 0-9"):
        make_digits_federation("class", 10)
    with pytest.raises(ConfigError, match="Dirichlet concentration"):
        make_digits_federation("class", 3, alpha=0.0)
    with pytest.raises(ConfigError, match="raise alpha"):
        make_digits_federation("class", 3, n_clients=60, alpha=0.01)
    with pytest.raises(UnknownNameError, match="fedaf"):
        unlearn("fedfa", fed, init_params(64, 10, CLF, 0), FedUnlearnConfig(), CLF, 0)
    with pytest.raises(ConfigError, match="does not apply to backdoor"):
        unlearn("mask", bd, init_params(64, 10, CLF, 0), FedUnlearnConfig(), CLF, 0)


def test_new_memories_never_name_the_target_and_are_keyed():
    x = torch.rand(200, 64)
    a = new_memories(x, 3, CLF, teachers=10, seed=1)
    assert (a != 3).all() and len(np.unique(a)) > 1
    assert np.array_equal(a, new_memories(x, 3, CLF, teachers=10, seed=1))
    assert not np.array_equal(a, new_memories(x, 3, CLF, teachers=10, seed=2))


def test_diagonal_fisher_is_the_mean_squared_per_row_gradient():
    params = init_params(64, 10, ClassifierConfig(hidden=8, init_scale=0.3), 0)
    x, y = torch.rand(7, 64), np.arange(7) % 10
    got = diagonal_fisher(params, x, y)
    want = {k: torch.zeros_like(v) for k, v in params.items()}
    for i in range(7):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        torch.log_softmax(forward(p, x[i:i + 1]), 1)[0, y[i]].backward()
        for k in p:
            want[k] += p[k].grad ** 2 / 7
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-7)
    assert all((v == 0).all() for v in diagonal_fisher(params, x[:0], y[:0]).values())


@pytest.fixture(scope="module")
def class_request():
    """Class 7 on split seed 1 (FedAF's rounds were set on class 3, seed 0)."""
    fed = make_digits_federation("class", 7, seed=1)
    return fed, train_original(fed, CLF, 1)


@pytest.mark.slow
def test_fedaf_forgets_a_class_at_a_fraction_of_retraining(class_request):
    """Thresholds: FedAF's forgotten-class accuracy ≤ 0.05 (retraining's is 0; the issue
    asks near zero) from the original's > 0.8; retained accuracy within 2 points of
    retraining's (the issue's bound); 9 rounds against retraining's 30. The do-nothing
    control keeps the class (> 0.8). The MIA is reported, not asserted: on digits even
    the do-nothing control sits at chance (see the closing note). Measured: FedAF forget
    0.000 / retain 0.926, retraining 0.000 / 0.916, original 1.000 / 0.913."""
    fed, original = class_request
    cfg = FedUnlearnConfig()
    before = audit(fed, original, 1)
    assert before["forget"] > 0.8
    retrain = unlearn("retrain", fed, original, cfg, CLF, 1)
    fedaf = unlearn("fedaf", fed, original, cfg, CLF, 1)
    got, ref = audit(fed, fedaf.params, 1), audit(fed, retrain.params, 1)
    assert got["forget"] <= 0.05, got
    assert ref["forget"] <= 0.05, ref
    assert got["retain"] >= ref["retain"] - 0.02, (got, ref)
    assert fedaf.rounds * 3 < retrain.rounds
    assert forget_measure(fed, unlearn("none", fed, original, cfg, CLF, 1).params) > 0.8


@pytest.mark.slow
def test_the_relearning_audit_catches_the_mask_control(class_request):
    """The mask control hides the class (forget ≤ 0.05) but three SGD steps on ten of its
    rows bring it back (> 0.7); from retraining they bring back at least 0.3 less (the
    class must be learned anew). Measured: mask 1.00, retraining 0.47."""
    fed, original = class_request
    cfg = FedUnlearnConfig()
    mask = audit(fed, unlearn("mask", fed, original, cfg, CLF, 1).params, 1)
    ref = audit(fed, unlearn("retrain", fed, original, cfg, CLF, 1).params, 1)
    assert mask["forget"] <= 0.05 and mask["relearn"] > 0.7, mask
    assert ref["relearn"] <= mask["relearn"] - 0.3, (mask, ref)


@pytest.mark.slow
def test_fedaf_lowers_a_backdoor(class_request):
    """Backdoor to label 1 on split seed 1: the original's attack success > 0.8; FedAF
    brings it to ≤ 0.4 (retraining: ~0; FedAF does not always get near zero — the bench's
    worst run is 0.28) at no more than 2 points of clean accuracy. Measured: attack
    success 1.00 → 0.20 (retraining 0.04), clean accuracy 0.916 → 0.919."""
    fed = make_digits_federation("backdoor", 1, seed=1)
    original = train_original(fed, CLF, 1)
    before = audit(fed, original, 1)
    got = audit(fed, unlearn("fedaf", fed, original, FedUnlearnConfig(), CLF, 1).params, 1)
    assert before["forget"] > 0.8, before
    assert got["forget"] <= 0.4, (got, before)
    assert got["retain"] >= before["retain"] - 0.02, (got, before)
