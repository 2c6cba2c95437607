"""NeuMF specifics: vectorised scoring vs a per-pair forward, embeddings, configs, training.

Shapes, determinism, persistence and learning on ML-100K are in test_conformance.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.models import load_model, make_model
from trustrec.models import neumf as neumf_module
from trustrec.models.neumf import _gather


def random_data(n_users: int = 30, n_items: int = 40, n: int = 300, seed: int = 0) -> Dataset:
    g = np.random.default_rng(seed)
    keys = np.unique(g.integers(0, n_users * n_items, n))
    users, items = keys // n_items, keys % n_items
    return Dataset(name="rand", users=users, items=items,
                   timestamps=np.zeros(len(users), np.int64), n_users=n_users,
                   n_items=n_items, user_ids=np.arange(n_users).astype(str),
                   item_ids=np.arange(n_items).astype(str))


@pytest.fixture(scope="module")
def data() -> Dataset:
    return random_data()


@pytest.fixture(scope="module")
def model(data):
    return make_model("neumf", gmf_dim=6, mlp_dim=5, layers=[12, 7, 3], epochs=3,
                      batch_size=256, lr=0.01).fit(data, seed=0)


def reference_logit(p: dict[str, torch.Tensor], u: int, i: int, n_layers: int) -> float:
    """NeuMF's forward for one pair, written as in the paper (concatenate, then layers)."""
    gmf = p["user_gmf"][u] * p["item_gmf"][i]
    h = torch.cat([p["user_mlp"][u], p["item_mlp"][i]])
    for k in range(n_layers):
        h = torch.relu(F.linear(h, p[f"mlp.{k}.weight"], p[f"mlp.{k}.bias"]))
    return float(torch.dot(torch.cat([gmf, h]), p["out.weight"]) + p["out.bias"][0])


def test_score_matches_per_pair_forward(model, data):
    users = np.array([0, 3, 17, 29])
    s = model.score(users)
    assert s.shape == (4, data.n_items) and s.dtype == np.float32
    for row, u in enumerate(users):
        for i in (0, 5, 21, 39):
            assert s[row, i] == pytest.approx(reference_logit(model.params_, u, i, 3),
                                              rel=1e-5, abs=1e-6)


def test_score_does_not_depend_on_the_block_size(model, monkeypatch):
    users = np.arange(30)
    whole = model.score(users)
    monkeypatch.setattr(neumf_module, "SCORE_BLOCK_ELEMENTS", 1)  # one user per block
    np.testing.assert_allclose(model.score(users), whole, rtol=1e-5, atol=1e-6)


def test_parameters_and_embeddings_layout(model, data):
    p = model.params_
    assert p["user_gmf"].shape == (30, 6) and p["item_mlp"].shape == (40, 5)
    assert p["mlp.0.weight"].shape == (12, 10) and p["mlp.2.weight"].shape == (3, 7)
    assert p["out.weight"].shape == (6 + 3,) and p["out.bias"].shape == (1,)
    assert not any(t.requires_grad for t in p.values())
    u, v = model.user_embeddings(), model.item_embeddings()
    np.testing.assert_array_equal(u, torch.cat([p["user_gmf"], p["user_mlp"]], 1).numpy())
    np.testing.assert_array_equal(v, torch.cat([p["item_gmf"], p["item_mlp"]], 1).numpy())


def test_training_fits_the_training_pairs(data):
    m = make_model("neumf", gmf_dim=8, mlp_dim=8, layers=[16, 8], epochs=40,
                   batch_size=512, lr=0.02).fit(data, seed=0)
    hist = [h["loss"] for h in m.fit_info_["history"]]
    assert hist[-1] < 0.5 * hist[0]
    s = m.score(np.arange(data.n_users))
    pos = np.zeros_like(s, dtype=bool)
    pos[data.users, data.items] = True
    assert s[pos].mean() > s[~pos].mean() + 1.0


def test_save_load_keeps_layers_and_scores(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.layers == (12, 7, 3)
    np.testing.assert_array_equal(loaded.score(np.arange(30)), model.score(np.arange(30)))


def test_gather_backward_equals_embedding_backward():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(7, 3, generator=g)
    idx = torch.tensor([0, 6, 2, 2, 0, 0])
    up = torch.randn(6, 3, generator=g)
    a = table.clone().requires_grad_()
    _gather(a, idx).backward(up)
    b = table.clone().requires_grad_()
    F.embedding(idx, b).backward(up)
    torch.testing.assert_close(a.grad, b.grad)


def test_same_seed_same_parameters_with_l2(data):
    cfg = {"gmf_dim": 4, "mlp_dim": 4, "layers": [8, 4], "epochs": 2, "reg": 0.1,
           "batch_size": 128}
    a = make_model("neumf", **cfg).fit(data, seed=7)
    b = make_model("neumf", **cfg).fit(data, seed=7)
    assert all(torch.equal(a.params_[k], b.params_[k]) for k in a.params_)


@pytest.mark.parametrize("bad", [{"layers": []}, {"layers": [8, 0]}, {"layers": "8,4"},
                                 {"layers": [8.5]}, {"n_neg": 0}, {"lr": -1.0},
                                 {"gmf_dim": 0}, {"reg": -0.1}])
def test_bad_config_values_are_config_errors(bad):
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=key):
        make_model("neumf", **bad)


def test_empty_training_data_still_gives_finite_scores():
    ds = random_data(n=0)
    m = make_model("neumf", gmf_dim=4, mlp_dim=4, layers=[4], epochs=1).fit(ds, seed=0)
    s = m.score(np.arange(3))
    assert s.shape == (3, 40) and np.isfinite(s).all()


def test_fit_uses_its_thread_setting_and_restores_torch_threads(data, monkeypatch):
    seen: list[int] = []
    real = neumf_module.train_epochs

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(neumf_module, "train_epochs", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = {"gmf_dim": 4, "mlp_dim": 4, "layers": [8], "epochs": 1}
        one = make_model("neumf", num_threads=1, **cfg).fit(data, seed=0)
        assert torch.get_num_threads() == 2
        make_model("neumf", num_threads=0, **cfg).fit(data, seed=0)
        again = make_model("neumf", num_threads=1, **cfg).fit(data, seed=0)
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2, 1]
    # bitwise reproducible for a given thread count (the default pins one thread); across
    # thread counts torch may split reductions differently, so no equality is claimed
    assert all(torch.equal(one.params_[k], again.params_[k]) for k in one.params_)
