"""LASER: hypergraph groups, curriculum, SeqTrain, exact forgetting from a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustrec.data.dataset import Dataset
from trustrec.data.selection import select_forget_interactions
from trustrec.errors import ConfigError, DataFormatError
from trustrec.models import make_model
from trustrec.seeding import child_seed, rng
from trustrec.unlearn import CURRICULA, LASER, ForgetRequest
from trustrec.unlearn.laser import (
    curriculum_order,
    hypergraph_embedding,
    popularity_difficulty,
)
from trustrec.unlearn.partition import balanced_kmeans

from .conftest import build, params_equal

#: Small but real: 5 groups, BPR with 10 epochs (2 per stage) and WMF with 5 (1 per stage).
K = 5
MODELS = {"bpr": {"epochs": 10, "dim": 16}, "wmf": {"epochs": 5, "dim": 8}}


def laser(split, model: str = "bpr", seed: int = 0, **cfg) -> LASER:
    return build("laser", model, MODELS[model], **{"n_groups": K, "embed_dim": 8,
                                                   **cfg}).fit(split.train, split.valid,
                                                               seed=seed)


@pytest.fixture(scope="module")
def fitted(split) -> LASER:
    """One fitted LASER-BPR, never changed by the tests (they forget on copies)."""
    return laser(split)


def clone(u: LASER) -> LASER:
    """An independent copy of a fitted LASER (models copied, data shared: it is immutable)."""
    v = LASER(u.model, u.model_config, u.config)
    v.train_, v.valid_, v.seed_, v.history_ = u.train_, u.valid_, u.seed_, list(u.history_)
    v.restore_state({f"checkpoints/{g:03d}": copy_model(m)
                     for g, m in enumerate(u.checkpoints_)}, u.persistent_arrays())
    return v


def copy_model(m):
    c = make_model(m.name, **vars(m.config))
    c.params_ = {k: t.clone() for k, t in m.params_.items()}
    c.n_users_, c.n_items_, c.fit_info_ = m.n_users_, m.n_items_, dict(m.fit_info_)
    return c


def jaccard(train: Dataset) -> np.ndarray:
    """Dense user × user Jaccard similarity of the users' training item sets."""
    h = train.to_csr(np.float64)
    inter = (h @ h.T).toarray()
    deg = np.diag(inter).copy()
    union = deg[:, None] + deg[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ---------------------------------------------------------------------------- group module
def test_groups_are_balanced_and_cover_every_user(fitted, split):
    n = split.train.n_users
    g = fitted.user_shards()
    assert g.shape == (n,) and g.dtype == np.int64 and g.min() >= 0 and g.max() < K
    sizes = np.bincount(g, minlength=K)
    assert sizes.max() <= math.ceil(n / K) and sizes.min() > 0  # capacity 1.0
    assert sorted(fitted.order_.tolist()) == list(range(K))
    np.testing.assert_array_equal(np.bincount(fitted.user_stages(), minlength=K),
                                  sizes[fitted.order_])
    # the groups are the balanced k-means of the hypergraph embedding, with derived seeds
    emb = hypergraph_embedding(split.train, 8, 0)
    np.testing.assert_array_equal(g, balanced_kmeans(emb, K, child_seed(0, "laser", "groups"),
                                                     iters=50, capacity=1.0))


def test_hypergraph_embedding_puts_co_interacting_users_together(split):
    train = split.train
    emb = hypergraph_embedding(train, 16, seed=0)
    assert emb.shape == (train.n_users, 16)
    np.testing.assert_array_equal(emb, hypergraph_embedding(train, 16, seed=0))
    np.testing.assert_allclose(emb.T @ emb, np.eye(16), atol=1e-8)  # orthonormal eigenvectors
    jac = jaccard(train)
    n = train.n_users
    idx = np.arange(n)
    sq = (emb * emb).sum(1)
    dist = sq[:, None] + sq[None] - 2 * emb @ emb.T
    np.fill_diagonal(dist, np.inf)
    nn = jac[idx, dist.argmin(1)].mean()
    other = rng(0, "test", "random user").integers(0, n - 1, n)
    other += other >= idx
    deg = np.asarray(train.to_csr().sum(axis=1), dtype=np.float64).ravel()
    deg_dist = np.abs(deg[:, None] - deg[None])
    np.fill_diagonal(deg_dist, np.inf)
    # On ML-100K the embedding neighbour shares ~0.18 Jaccard of items, a random user
    # ~0.07 and the user of the closest activity ~0.10: a degree-only or random embedding
    # (the ways this can go wrong) fails these margins.
    assert nn > 2.0 * jac[idx, other].mean()
    assert nn > 1.5 * jac[idx, deg_dist.argmin(1)].mean()
    # Groups: users in one group share more items than users of different groups
    # (~0.12 vs ~0.06), and more than groups of equal activity (~0.10).
    groups = balanced_kmeans(emb, 10, 0)
    same = groups[:, None] == groups[None]
    off = ~np.eye(n, dtype=bool)
    by_activity = np.empty(n, dtype=np.int64)
    by_activity[np.argsort(deg, kind="stable")] = idx * 10 // n
    same_act = by_activity[:, None] == by_activity[None]
    within = jac[same & off].mean()
    assert within > 1.5 * jac[~same].mean()
    assert within > 1.1 * jac[same_act & off].mean()


def test_user_without_rows_gets_a_zero_embedding_and_a_group():
    users = np.array([0, 0, 1, 1, 2, 3, 3, 4, 4, 5])
    items = np.array([0, 1, 0, 1, 2, 2, 3, 3, 4, 4])
    n = len(users)
    ds = Dataset(name="tiny", users=users, items=items, timestamps=np.zeros(n, np.int64),
                 n_users=7, n_items=5, user_ids=np.arange(7).astype(str),
                 item_ids=np.arange(5).astype(str))  # user 6 has no rows
    emb = hypergraph_embedding(ds, 2, seed=1)
    np.testing.assert_array_equal(emb[6], 0.0)
    u = LASER("bpr", {"epochs": 2, "dim": 4}, {"n_groups": 2, "embed_dim": 2})
    u.fit(ds, seed=1)
    assert u.user_shards()[6] in (0, 1)
    assert np.bincount(u.user_shards()).tolist() in ([4, 3], [3, 4])


def test_curriculum_orders_groups_from_easy_to_hard(fitted, split):
    details = fitted.history_[0]["details"]
    diff = popularity_difficulty(split.train, fitted.groups_, K)
    np.testing.assert_array_equal(fitted.order_, curriculum_order(diff))
    assert np.all(np.diff(details["difficulty"]) >= 0)
    # a group interacting with popular items is easier than one with rare items: users
    # 0-2 (group 1) share items 0 and 1, user 3 (group 0) has items 2 and 3 to itself
    users, items = np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.array([0, 1, 0, 1, 0, 1, 2, 3])
    ds = Dataset(name="x", users=users, items=items, timestamps=np.zeros(8, np.int64),
                 n_users=4, n_items=4, user_ids=np.arange(4).astype(str),
                 item_ids=np.arange(4).astype(str))
    d = popularity_difficulty(ds, np.array([1, 1, 1, 0]), 2)
    np.testing.assert_allclose(d, [-np.log(1 / 8), -np.log(3 / 8)])
    assert curriculum_order(d).tolist() == [1, 0]
    assert set(CURRICULA.names()) >= {"popularity", "activity", "none"}


# ---------------------------------------------------------------------------- SeqTrain
@pytest.fixture(scope="module")
def fitted_paper(split) -> LASER:
    """LASER-BPR with the paper's schedule (each stage on its own group, ⌈E/K⌉ epochs)."""
    return laser(split, schedule="paper")


def test_paper_schedule_runs_one_warm_started_model_through_the_groups(fitted_paper):
    fitted = fitted_paper
    e = math.ceil(MODELS["bpr"]["epochs"] / K)
    assert fitted.stage_epochs == e and len(fitted.checkpoints_) == K
    stages = fitted.user_stages()
    prev = None
    for g, m in enumerate(fitted.checkpoints_):
        assert m.fit_info_["epochs_run"] == e and m.fit_info_["laser_stage"] == g
        assert m.fit_info_["seed"] == child_seed(0, "laser", "stage", g)
        assert m.fit_info_.get("warm_start", False) == (g > 0)
        data = fitted.stage_data(g)
        assert set(np.unique(data.users)) <= set(np.flatnonzero(stages == g))
        # a stage is model.fit on the group's rows, from the previous checkpoint
        ref = make_model("bpr", **{**MODELS["bpr"], "epochs": e}).fit(
            data, None, seed=fitted.stage_seed(g), init=None if prev is None else prev.params_)
        assert params_equal(m.params_, ref.params_)
        if prev is not None:  # only the group's users moved
            moved = (m.params_["user"] != prev.params_["user"]).any(1).numpy()
            assert not moved[stages != g].any() and moved[stages == g].any()
        prev = m
    np.testing.assert_array_equal(fitted.score(np.arange(5)),
                                  fitted.checkpoints_[-1].score(np.arange(5)))
    assert fitted.history_[0]["details"]["epochs_trained"] == K * e


def test_cumulative_schedule_trains_each_stage_on_the_groups_so_far(fitted, split):
    e = fitted.stage_epochs
    stages = fitted.user_stages()
    prev = None
    for g, m in enumerate(fitted.checkpoints_):
        data = fitted.stage_data(g)
        assert set(np.unique(data.users)) == set(split.train.active_users()[
            stages[split.train.active_users()] <= g])
        assert 1 <= m.fit_info_["epochs_run"] <= e  # early stopping inside the stage
        # a stage is model.fit on the rows of stages 0..g, early-stopping on their
        # validation rows, from the previous checkpoint
        ref = make_model("bpr", **{**MODELS["bpr"], "epochs": e}).fit(
            data, fitted.stage_data(g, split.valid), seed=fitted.stage_seed(g),
            init=None if prev is None else prev.params_)
        assert params_equal(m.params_, ref.params_)
        if prev is not None:  # users of later stages keep their initial rows
            moved = (m.params_["user"] != prev.params_["user"]).any(1).numpy()
            assert not moved[stages > g].any() and moved[stages <= g].any()
        prev = m


def test_wmf_stages_keep_the_users_of_later_groups(split):
    u = laser(split, "wmf")
    stages = u.user_stages()
    for g in range(1, K):
        now, before = u.checkpoints_[g].params_["user"], u.checkpoints_[g - 1].params_["user"]
        assert torch.equal(now[stages > g], before[stages > g])
    # every user with rows was fitted: none collapsed to zero
    norms = u.checkpoints_[-1].params_["user"].norm(dim=1)
    active = split.train.user_counts() > 0
    assert (norms[active] > 1e-3).all()


def test_paper_schedule_wmf_stages_keep_the_users_of_other_groups(split):
    u = laser(split, "wmf", schedule="paper")
    stages = u.user_stages()
    for g in range(1, K):
        now, before = u.checkpoints_[g].params_["user"], u.checkpoints_[g - 1].params_["user"]
        assert torch.equal(now[stages != g], before[stages != g])


# ---------------------------------------------------------------------------- forgetting
def assert_exact(u: LASER, before: list, start: int) -> None:
    """Checkpoints equal a fresh SeqTrain on the remaining data; earlier ones are untouched."""
    fresh = u.train_stages(u.train_, 0, valid=u.valid_)
    for g in range(K):
        assert params_equal(u.checkpoints_[g].params_, fresh[g].params_), f"stage {g}"
        assert (u.checkpoints_[g] is before[g]) == (g < start)


@pytest.mark.parametrize("model", ["bpr", "wmf"])
def test_forget_users_of_a_middle_group_is_exact(model, fitted, split):
    u = fitted if model == "bpr" else laser(split, model)
    u = clone(u)
    before = list(u.checkpoints_)
    stages = u.user_stages()
    users = np.concatenate([np.flatnonzero(stages == 2)[:4], np.flatnonzero(stages == 4)[:2]])
    rep = u.forget(ForgetRequest(users=users))
    assert rep.details["restart_stage"] == 2 and rep.retrained == ["stage 2", "stage 3",
                                                                   "stage 4"]
    assert rep.details["groups_retrained"] == u.order_[2:].tolist()
    assert 3 <= rep.details["epochs_trained"] <= 3 * u.stage_epochs
    assert not np.isin(u.train_.users, users).any()
    assert_exact(u, before, 2)


@pytest.mark.parametrize("grain", ["interaction", "item"])
def test_forget_pairs_and_items_is_exact(grain, fitted, split):
    u = clone(fitted)
    before = list(u.checkpoints_)
    if grain == "interaction":
        req = ForgetRequest(pairs=select_forget_interactions(split.train, 0.005, seed=1))
    else:
        req = ForgetRequest(items=[int(np.argmax(split.train.item_counts()))])
    removed = req.match_rows(split.train)
    start = int(u.user_stages()[split.train.users[removed]].min())
    rep = u.forget(req)
    assert rep.details["restart_stage"] == start
    assert_exact(u, before, start)


def test_forgetting_the_last_group_costs_less_than_the_first(split):
    """The fidelity check of the issue: cost grows with how early the forgotten group runs."""
    u = laser(split, "bpr", n_groups=10, schedule="paper")
    k, e = 10, u.stage_epochs
    stages = u.user_stages()
    reports = {}
    for name, stage in (("first", 0), ("last", k - 1)):
        v = clone(u)
        users = np.flatnonzero(stages == stage)[:10]
        reports[name] = v.forget(ForgetRequest(users=users))
    first, last = reports["first"], reports["last"]
    assert last.retrained == [f"stage {k - 1}"] and last.details["epochs_trained"] == e
    assert first.retrained == [f"stage {g}" for g in range(k)]
    assert first.details["epochs_trained"] == k * e > last.details["epochs_trained"]


@pytest.mark.parametrize("schedule", ["paper", "cumulative"])
def test_validation_only_request(schedule, fitted, fitted_paper, split):
    """The paper's stages never see validation rows; cumulative stages early-stop on them,
    so removing only a user's validation rows reruns from that user's stage."""
    u = clone(fitted_paper if schedule == "paper" else fitted)
    user = int(np.intersect1d(split.train.active_users(), np.unique(split.valid.users))[0])
    pairs = np.stack([split.train.users, split.train.items], 1)[split.train.users == user]
    u.forget(ForgetRequest(pairs=pairs))  # the user's training rows; validation rows stay
    before = list(u.checkpoints_)
    rep = u.forget(ForgetRequest(users=[user]))
    assert rep.rows_removed == 0 and rep.details["valid_rows_removed"] > 0
    if schedule == "paper":
        assert rep.retrained == [] and rep.details["epochs_trained"] == 0
        assert all(a is b for a, b in zip(u.checkpoints_, before, strict=True))
    else:
        start = int(u.user_stages()[user])
        assert rep.details["restart_stage"] == start
        assert_exact(u, before, start)


def test_exception_during_forget_leaves_everything_unchanged(fitted, split, monkeypatch):
    u = clone(fitted)
    before = {"train": u.train_, "valid": u.valid_, "history": len(u.history_),
              "checkpoints": list(u.checkpoints_),
              "params": [{k: t.clone() for k, t in m.params_.items()} for m in u.checkpoints_],
              "scores": u.score(np.arange(50))}
    calls = []
    run = LASER._run_stage

    def failing(self, stage, train, valid, prev, progress=False):
        calls.append(stage)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return run(self, stage, train, valid, prev, progress)

    monkeypatch.setattr(LASER, "_run_stage", failing)
    users = np.flatnonzero(u.user_stages() == 0)[:3]
    with pytest.raises(RuntimeError, match="disk full"):
        u.forget(ForgetRequest(users=users))
    assert calls == [0, 1, 2]
    assert u.train_ is before["train"] and u.valid_ is before["valid"]
    assert len(u.history_) == before["history"]
    assert all(a is b for a, b in zip(u.checkpoints_, before["checkpoints"], strict=True))
    for m, p in zip(u.checkpoints_, before["params"], strict=True):
        assert params_equal(m.params_, p)
    np.testing.assert_array_equal(u.score(np.arange(50)), before["scores"])
    monkeypatch.undo()
    u.forget(ForgetRequest(users=users))  # and it still works afterwards
    assert not np.isin(u.train_.users, users).any()


# ---------------------------------------------------------------------------- state, config
def test_restore_state_checks_shapes(fitted):
    u = clone(fitted)
    models = u.persistent_models()
    assert sorted(models) == [f"checkpoints/{g:03d}" for g in range(K)]
    arrays = u.persistent_arrays()
    for bad in ({**arrays, "groups": arrays["groups"][:-1]},
                {**arrays, "groups": np.full_like(arrays["groups"], K)},
                {**arrays, "order": np.zeros(K, np.int64)},
                {"groups": arrays["groups"]}):
        with pytest.raises(DataFormatError, match="LASER state"):
            u.restore_state(models, bad)
    assert u.checkpoints_[0] is models["checkpoints/000"]


def test_config_errors(split):
    with pytest.raises(ConfigError, match="n_groups"):
        build("laser", n_groups=0)
    with pytest.raises(ConfigError, match="integer"):
        build("laser", n_groups=2.5)
    with pytest.raises(ConfigError, match="did you mean 'popularity'"):
        build("laser", curriculum="popularty")
    with pytest.raises(ConfigError, match="schedule"):
        build("laser", schedule="cumulativ")
    with pytest.raises(ConfigError, match="exceeds the number of users"):
        build("laser", n_groups=split.train.n_users + 1).fit(split.train)
    with pytest.raises(ConfigError, match="embed_dim"):
        build("laser", embed_dim=split.train.n_users).fit(split.train)

