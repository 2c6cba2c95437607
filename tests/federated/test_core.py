"""The federated core: keyed draws, client batches, local training, aggregation, server."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.evaluate.conftest import make_ds
from tests.federated.conftest import TINY_NCF
from trustrec.errors import ConfigError
from trustrec.federated.aggregate import ServerOptimizer, robust_aggregate
from trustrec.federated.clients import ClientData, build_work, chunks_by_size, draw_negatives
from trustrec.federated.keyed import keyed_normal, keyed_uniform, stream_key
from trustrec.federated.local import LocalOptions, local_update
from trustrec.federated.methods import FEDERATED, make_federated
from trustrec.federated.server import (
    Collector,
    initial_private,
    initial_state,
    run_round,
    sample_clients,
)


def test_keyed_draws_are_pure_functions_of_key_and_position() -> None:
    key = stream_key(0, "x")
    a = keyed_uniform(key, np.arange(5)[:, None], np.arange(3)[None, :])
    b = keyed_uniform(key, np.array([3]), np.arange(3))
    assert a.shape == (5, 3) and np.array_equal(a[3], b)
    assert 0 <= a.min() and a.max() < 1
    assert not np.array_equal(a, keyed_uniform(stream_key(1, "x"), np.arange(5)[:, None],
                                               np.arange(3)[None, :]))
    z = keyed_normal(key, np.arange(20000))
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


def test_work_is_the_same_alone_or_batched(small_split) -> None:
    data = ClientData.from_dataset(small_split.train)
    key = stream_key(0, "neg")
    both = build_work(data, np.array([3, 7]), key, round_=2, n_neg=4)
    for slot, client in enumerate([3, 7]):
        alone = build_work(data, np.array([client]), key, round_=2, n_neg=4)
        n = int(alone.n_rows[0])
        assert int(both.n_rows[slot]) == n
        items_alone = alone.items[0][alone.rows[0, :n]]
        items_both = both.items[slot][both.rows[slot, :n]]
        assert torch.equal(items_alone, items_both)
        assert torch.equal(alone.labels[0, :n], both.labels[slot, :n])


def test_negatives_are_never_the_clients_training_items(small_split) -> None:
    data = ClientData.from_dataset(small_split.train)
    work = build_work(data, data.members(), stream_key(0, "neg"), round_=0, n_neg=4)
    csr = data.csr
    for slot, client in enumerate(work.clients.tolist()):
        n = int(work.n_rows[slot])
        items = work.items[slot][work.rows[slot, :n]].numpy()
        labels = work.labels[slot, :n].numpy()
        own = set(csr.indices[csr.indptr[client]:csr.indptr[client + 1]].tolist())
        assert set(items[labels == 1].tolist()) == own
        assert not own & set(items[labels == 0].tolist())
        assert (labels == 0).sum() == 4 * len(own)


def test_chunks_cover_every_client_once_within_the_row_budget(small_split) -> None:
    data = ClientData.from_dataset(small_split.train)
    members = data.members()
    chunks = chunks_by_size(data, members, n_neg=4, max_rows=2000)
    flat = np.concatenate(chunks)
    assert np.array_equal(np.sort(flat), members)
    for c in chunks:
        longest = int(data.sizes(c).max()) * 5
        assert len(c) == 1 or len(c) * longest <= 2000


@pytest.mark.parametrize("name", ["fedmf", "fedncf", "fedrecgel", "pfedrec"])
def test_batched_local_update_equals_one_client_at_a_time(small_split, name) -> None:
    """No information crosses clients in a batch: each client's upload and new private
    state equal those it computes alone."""
    extra = TINY_NCF if name in ("fedncf", "fedrecgel") else {"dim": 4}
    method = make_federated(name, {**extra, **({"local_epochs": 2} if name == "pfedrec" else {})})
    arch, opts = method.architecture(), method.local_options(small_split.train.n_items)
    data = ClientData.from_dataset(small_split.train)
    state = initial_state(arch, opts, method.server_options(), data.n_clients, data.n_items, 0)
    clients = np.array([1, 5, 9])
    key = stream_key(0, "neg")
    work = build_work(data, clients, key, 0, 4)
    batched = local_update(arch, opts, state.shared,
                           {n: t[work.clients] for n, t in state.private.items()}, work)
    for slot, client in enumerate(clients):
        w1 = build_work(data, np.array([client]), key, 0, 4)
        alone = local_update(arch, opts, state.shared,
                             {n: t[w1.clients] for n, t in state.private.items()}, w1)
        for n, up in alone.dense_uploads.items():
            torch.testing.assert_close(batched.dense_uploads[n][slot], up[0], atol=1e-6,
                                       rtol=1e-5)
        for n, up in alone.item_uploads.items():
            u = int(w1.item_mask[0].sum())
            torch.testing.assert_close(batched.item_uploads[n][slot, :u], up[0, :u],
                                       atol=1e-6, rtol=1e-5)
        for n, t in alone.private.items():
            torch.testing.assert_close(batched.private[n][slot], t[0], atol=1e-6, rtol=1e-5)


def test_mf_gradient_upload_is_the_bce_gradient(small_split) -> None:
    """FedMF's upload for an item row is Σ (σ(p·q) − y) p over the client's rows on it."""
    method = make_federated("fedmf", {"dim": 3})
    arch, opts = method.architecture(), method.local_options(small_split.train.n_items)
    data = ClientData.from_dataset(small_split.train)
    state = initial_state(arch, opts, method.server_options(), data.n_clients, data.n_items, 0)
    work = build_work(data, np.array([2]), stream_key(0, "neg"), 0, 4)
    out = local_update(arch, opts, state.shared, {"user": state.private["user"][[2]]}, work)
    p = state.private["user"][2]
    n = int(work.n_rows[0])
    items = work.items[0][work.rows[0, :n]]
    resid = torch.sigmoid(state.shared["item"][items] @ p) - work.labels[0, :n]
    expected = torch.zeros_like(state.shared["item"])
    expected.index_add_(0, items, resid[:, None] * p[None, :])
    u = int(work.item_mask[0].sum())
    torch.testing.assert_close(out.item_uploads["item"][0, :u], expected[work.items[0, :u]])
    # The user vector took one SGD step of the same gradient.
    g_user = (resid[:, None] * state.shared["item"][items]).sum(0)
    torch.testing.assert_close(out.private["user"][0], p - method.config.lr * g_user)


def test_fedrecgel_without_radii_is_fedncf(small_split) -> None:
    cfg = {**TINY_NCF, "rounds": 2, "participation": 0.5}
    states = []
    for name, extra in [("fedncf", {}), ("fedrecgel", {"rho_shared": 0.0, "rho_private": 0.0})]:
        m = make_federated(name, {**cfg, **extra})
        arch, opts = m.architecture(), m.local_options(small_split.train.n_items)
        data = ClientData.from_dataset(small_split.train)
        st = initial_state(arch, opts, m.server_options(), data.n_clients, data.n_items, 0)
        for _ in range(2):
            run_round(arch, opts, data, st, data.members(), m.server_options(), 0)
        states.append(st)
    for n in states[0].shared:
        assert torch.equal(states[0].shared[n], states[1].shared[n])
    sam = make_federated("fedrecgel", cfg)
    assert sam.local_options(10).rho_shared == 0.02 and sam.local_options(10).rho_private == 0.02


def test_sam_moves_the_upload_toward_the_perturbed_gradient(small_split) -> None:
    """With radii the shared upload is the gradient at the perturbed point, not at the
    received one; the radius grows the difference."""
    data = ClientData.from_dataset(small_split.train)
    work = build_work(data, np.array([0, 1]), stream_key(0, "neg"), 0, 4)
    diffs = []
    base = None
    for rho in (0.0, 0.01, 0.1):
        m = make_federated("fedrecgel", {**TINY_NCF, "rho_shared": rho, "rho_private": rho})
        arch, opts = m.architecture(), m.local_options(data.n_items)
        st = initial_state(arch, opts, m.server_options(), data.n_clients, data.n_items, 0)
        out = local_update(arch, opts, st.shared,
                           {n: t[work.clients] for n, t in st.private.items()}, work)
        if base is None:
            base = out.dense_uploads["mlp.0.weight"]
        diffs.append(float((out.dense_uploads["mlp.0.weight"] - base).abs().max()))
    assert diffs[0] == 0 and 0 < diffs[1] < diffs[2]


def test_robust_aggregators_match_flowers() -> None:
    agg = pytest.importorskip("flwr.server.strategy.aggregate")
    gen = np.random.default_rng(0)
    ups = gen.normal(size=(9, 13)).astype(np.float32)
    ups[2] += 50.0  # one outlier
    results = [([u[:5], u[5:]], 1) for u in ups]

    def flat(arrs):
        return np.concatenate([np.asarray(a).ravel() for a in arrs])

    np.testing.assert_allclose(robust_aggregate(ups, "median"),
                               flat(agg.aggregate_median(results)), rtol=1e-6)
    np.testing.assert_allclose(robust_aggregate(ups, "trimmed_mean", trim=0.2),
                               flat(agg.aggregate_trimmed_avg(results, 0.2)), rtol=1e-5)
    np.testing.assert_allclose(robust_aggregate(ups, "krum", malicious=1),
                               flat(agg.aggregate_krum(results, 1, 0)), rtol=1e-6)
    np.testing.assert_allclose(robust_aggregate(ups, "krum", malicious=1, keep=3),
                               flat(agg.aggregate_krum(results, 1, 3)), rtol=1e-5)
    assert abs(robust_aggregate(ups, "median")).max() < 5  # the outlier is ignored


def test_server_adam_equals_torch_adam() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(4, 3, generator=gen)
    ref = torch.nn.Parameter(p.clone())
    torch_opt = torch.optim.Adam([ref], lr=0.01)
    ours = ServerOptimizer("adam", 0.01)
    params = {"w": p.clone()}
    for _ in range(5):
        g = torch.randn(4, 3, generator=gen)
        ref.grad = g.clone()
        torch_opt.step()
        ours.step(params, {"w": g})
    torch.testing.assert_close(params["w"], ref.detach())


def test_collector_mean_and_robust_agree_on_identical_uploads(small_split) -> None:
    m = make_federated("fedmf", {"dim": 3})
    arch, opts = m.architecture(), m.local_options(small_split.train.n_items)
    data = ClientData.from_dataset(small_split.train)
    st = initial_state(arch, opts, m.server_options(), data.n_clients, data.n_items, 0)
    work = build_work(data, np.array([4, 4 + 1]), stream_key(0, "neg"), 0, 4)
    out = local_update(arch, opts, st.shared, {"user": st.private["user"][[4, 5]]}, work)
    mean = Collector(st.shared, ("item",), dataclasses.replace(m.server_options(),
                                                               aggregator="mean"))
    mean.add(work, out)
    dense = Collector(st.shared, ("item",), dataclasses.replace(m.server_options(),
                                                                aggregator="trimmed_mean",
                                                                trim=0.0))
    dense.add(work, out)
    torch.testing.assert_close(mean.result()["item"], dense.result()["item"])


def test_sampling_is_seeded_by_round_and_checks_participation() -> None:
    members = np.arange(100)
    a = sample_clients(members, 0.1, seed=0, round_=3)
    assert len(a) == 10 and np.array_equal(a, sample_clients(members, 0.1, 0, 3))
    assert not np.array_equal(a, sample_clients(members, 0.1, 0, 4))
    assert np.array_equal(sample_clients(members, 1.0, 0, 0), members)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="participation"):
            sample_clients(members, bad, 0, 0)
    with pytest.raises(ConfigError, match="participation"):
        make_federated("fedncf", {"participation": 0})
    with pytest.raises(ConfigError, match="participation"):
        make_federated("fedncf", {"participation": 1.2})


def test_bad_federations_are_clear_errors(small_split) -> None:
    with pytest.raises(ConfigError, match="no training interaction"):
        ClientData.from_dataset(small_split.train, np.array([1, 500]))
    with pytest.raises(ConfigError, match="at least one client"):
        ClientData.from_dataset(small_split.train, np.array([], dtype=np.int64))
    with pytest.raises(ConfigError, match="twice"):
        ClientData.from_dataset(small_split.train, np.array([1, 1]))
    with pytest.raises(ConfigError, match="did you mean 'median'"):
        make_federated("fedncf", {"aggregator": "medain"})
    with pytest.raises(ConfigError, match="rouds"):
        make_federated("fedncf", {"rouds": 3})
    with pytest.raises(Exception, match="did you mean 'fedncf'"):
        make_federated("fedcnf")


def test_private_initialisation_is_keyed_by_client() -> None:
    m = make_federated("fedncf", TINY_NCF)
    arch, opts = m.architecture(), m.local_options(10)
    all_ = initial_private(arch, opts, np.arange(10), seed=3)
    one = initial_private(arch, opts, np.array([7]), seed=3)
    for n in one:
        assert torch.equal(all_[n][7], one[n][0])
    assert set(all_) >= {"adam_m.user_gmf", "adam_v.user_mlp", "adam_step"}


def test_every_registered_method_trains_and_is_deterministic(small_split) -> None:
    for name in FEDERATED:
        extra = TINY_NCF if name in ("fedncf", "fedrecgel") else {"dim": 4}
        m = make_federated(name, extra)
        arch, opts = m.architecture(), m.local_options(small_split.train.n_items)
        data = ClientData.from_dataset(small_split.train)
        finals = []
        for _ in range(2):
            st = initial_state(arch, opts, m.server_options(), data.n_clients, data.n_items, 0)
            start = {n: t.clone() for n, t in st.shared.items()}
            for _ in range(2):
                info = run_round(arch, opts, data, st, data.members(), m.server_options(), 0)
            assert np.isfinite(info["loss"])
            finals.append(st)
        item = next(iter(arch.item_tables))
        assert not torch.equal(start[item], finals[0].shared[item]), name
        for n in finals[0].shared:
            assert torch.equal(finals[0].shared[n], finals[1].shared[n]), name


def test_a_client_with_almost_every_item_still_gets_true_negatives() -> None:
    """Rejection sampling cannot find the two free items quickly; the exact fallback does."""
    n_items = 400
    data = ClientData.from_dataset(make_ds([(0, i) for i in range(n_items - 2)]
                                           + [(1, i) for i in range(3)], 2, n_items))
    owner, negs = draw_negatives(data, np.array([0, 1]), stream_key(0, "neg"), 0, 4)
    assert set(negs[owner == 0].tolist()) <= {n_items - 2, n_items - 1}
    assert not data.is_positive(owner, negs).any()
    with pytest.raises(ConfigError, match="holds every item"):
        ClientData.from_dataset(make_ds([(0, i) for i in range(n_items)], 1, n_items))


def test_option_combinations_that_would_do_something_else_are_refused() -> None:
    with pytest.raises(ConfigError, match="one local epoch"):
        LocalOptions(upload="gradient", local_epochs=2)
    with pytest.raises(ConfigError, match="SAM"):
        LocalOptions(upload="delta", alternate=True, rho_shared=0.1)
    with pytest.raises(ConfigError, match="takes no weights"):
        make_federated("fedmf", {"weighting": "examples"}).server_options()
    with pytest.raises(ConfigError, match="keeps 5 uploads"):
        robust_aggregate(np.zeros((3, 2), dtype=np.float32), "krum", keep=5)
