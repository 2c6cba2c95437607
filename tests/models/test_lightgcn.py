"""LightGCN specifics: the graph, propagation, the hand-written gradient, scoring, configs.

Shapes, determinism, persistence and learning on ML-100K are in test_conformance.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.evaluate.ranking import ndcg_at
from trustrec.models import load_model, make_model
from trustrec.models.lightgcn import _step_gradient, normalized_adjacency, propagate


def toy(users, items, n_users: int, n_items: int) -> Dataset:
    users = np.asarray(users, dtype=np.int64)
    return Dataset(name="toy", users=users, items=np.asarray(items, dtype=np.int64),
                   timestamps=np.zeros(len(users), np.int64), n_users=n_users, n_items=n_items,
                   user_ids=np.arange(n_users).astype(str), item_ids=np.arange(n_items).astype(str))


@pytest.fixture
def graph() -> Dataset:
    """5 users, 7 items; user 4 and item 6 have no interactions; (0, 1) appears twice."""
    users = [0, 0, 0, 1, 1, 2, 2, 2, 3, 0]
    items = [0, 1, 2, 1, 3, 0, 4, 5, 5, 1]
    return toy(users, items, n_users=5, n_items=7)


def dense_adjacency(ds: Dataset) -> np.ndarray:
    """The reference ``D^-1/2 A D^-1/2`` built densely, node by node."""
    n = ds.n_users + ds.n_items
    a = np.zeros((n, n))
    for u, i in zip(ds.users, ds.items, strict=True):
        a[u, ds.n_users + i] = a[ds.n_users + i, u] = 1.0
    deg = a.sum(1)
    inv = np.array([1 / np.sqrt(d) if d else 0.0 for d in deg])
    return inv[:, None] * a * inv[None, :]


def dense_final(ds: Dataset, user0: np.ndarray, item0: np.ndarray, k: int) -> np.ndarray:
    a = dense_adjacency(ds)
    e = np.vstack([user0, item0]).astype(np.float64)
    layers = [e]
    for _ in range(k):
        layers.append(a @ layers[-1])
    return np.mean(layers, axis=0)


def test_normalized_adjacency_matches_dense_reference(graph):
    adj = normalized_adjacency(graph)
    assert adj.dtype == np.float32 and adj.has_sorted_indices
    np.testing.assert_allclose(adj.toarray(), dense_adjacency(graph), rtol=1e-6)
    assert (adj != adj.T).nnz == 0  # symmetric
    assert adj[4].nnz == 0 and adj[graph.n_users + 6].nnz == 0  # isolated nodes


@pytest.mark.parametrize("k", [0, 1, 3])
def test_propagate_matches_dense_reference(graph, k):
    e = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    got = propagate(normalized_adjacency(graph), e, k)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, dense_final(graph, e[:5], e[5:], k), rtol=1e-5, atol=1e-6)


def test_step_gradient_matches_autograd(graph):
    g = np.random.default_rng(1)
    base = g.standard_normal((12, 6)).astype(np.float32)
    u = np.array([0, 1, 2, 2, 0, 3])
    i = np.array([0, 3, 4, 5, 2, 5]) + 5
    j = np.array([6, 2, 1, 6, 3, 0]) + 5
    reg, k = 0.3, 3
    loss, grad = _step_gradient(normalized_adjacency(graph), base, u, i, j, k, reg,
                                np.empty_like(base))
    a = torch.tensor(dense_adjacency(graph))
    e0 = torch.tensor(base, dtype=torch.float64, requires_grad=True)
    layers = [e0]
    for _ in range(k):
        layers.append(a @ layers[-1])
    fin = torch.stack(layers).mean(0)
    x = (fin[u] * (fin[i] - fin[j])).sum(1)
    ref = (torch.nn.functional.softplus(-x).mean()
           + reg / 2 * (e0[u].square().sum() + e0[i].square().sum() + e0[j].square().sum())
           / len(u))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(grad, e0.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_fit_caches_propagated_embeddings_and_scores_with_them(graph):
    m = make_model("lightgcn", dim=4, epochs=3, batch_size=4).fit(graph, seed=0)
    p = {k: v.numpy() for k, v in m.params_.items()}
    ref = dense_final(graph, p["user"], p["item"], m.config.n_layers)
    np.testing.assert_allclose(m.user_embeddings(), ref[:5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.item_embeddings(), ref[5:], rtol=1e-5, atol=1e-6)
    # isolated user 4: only layer 0 contributes, scaled by 1 / (K + 1)
    np.testing.assert_allclose(m.user_embeddings()[4], p["user"][4] / 4, rtol=1e-6)
    users = np.arange(5)
    np.testing.assert_allclose(m.score(users), ref[:5] @ ref[5:].T, rtol=1e-4, atol=1e-6)
    assert not np.allclose(m.score(users), p["user"] @ p["item"].T)


def test_training_moves_every_connected_node_and_lowers_the_loss(graph):
    m = make_model("lightgcn", dim=4, epochs=30, batch_size=4, lr=0.05,
                   reg=0.0).fit(graph, seed=0)
    start = make_model("lightgcn", dim=4, epochs=1, lr=1e-12).fit(graph, seed=0)
    hist = [h["loss"] for h in m.fit_info_["history"]]
    assert hist[-1] < 0.5 * hist[0]
    moved = np.abs(m.params_["item"].numpy() - start.params_["item"].numpy()).max(1) > 1e-4
    # item 6 has no edges but is sampled as a negative, so every item moves
    assert moved.all()
    # the fitted model ranks each user's training items above the unseen ones on average
    s = m.score(np.arange(4))
    for u in range(4):
        seen = np.unique(graph.items[graph.users == u])
        unseen = np.setdiff1d(np.arange(7), seen)
        assert s[u, seen].mean() > s[u, unseen].mean()


def test_saved_model_scores_without_the_graph(graph, tmp_path):
    m = make_model("lightgcn", dim=4, epochs=2).fit(graph, seed=3)
    m.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert set(loaded.params_) == {"user", "item", "user_final", "item_final"}
    np.testing.assert_array_equal(loaded.score(np.arange(5)), m.score(np.arange(5)))


def test_propagation_helps_on_movielens(ml100k_split):
    """Same budget, K = 3 against K = 0 (which is plain BPR-MF trained with Adam)."""
    train, valid, test = ml100k_split.train, ml100k_split.valid, ml100k_split.test
    cfg = {"dim": 32, "epochs": 10}
    gcn = make_model("lightgcn", **cfg).fit(train, valid, seed=0)
    mf = make_model("lightgcn", n_layers=0, **cfg).fit(train, valid, seed=0)
    assert ndcg_at(gcn, train, test) > ndcg_at(mf, train, test)


def test_empty_training_data_still_gives_finite_scores():
    ds = toy([], [], n_users=3, n_items=4)
    m = make_model("lightgcn", dim=4, epochs=2).fit(ds, seed=0)
    s = m.score(np.arange(3))
    assert s.shape == (3, 4) and np.isfinite(s).all()


@pytest.mark.parametrize("bad", [{"n_layers": -1}, {"lr": 0.0}, {"batch_size": 0},
                                 {"n_neg": 0}, {"reg": -1.0}, {"lr_decay": 1.5}])
def test_bad_config_values_are_config_errors(bad):
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=key):
        make_model("lightgcn", **bad)


def test_several_negatives_per_positive_train_deterministically(graph):
    a = make_model("lightgcn", dim=4, epochs=2, n_neg=3).fit(graph, seed=5)
    b = make_model("lightgcn", dim=4, epochs=2, n_neg=3).fit(graph, seed=5)
    for k in a.params_:
        assert torch.equal(a.params_[k], b.params_[k])
    assert np.isfinite(a.fit_info_["history"][-1]["loss"])
