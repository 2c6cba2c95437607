"""Conformance tests every registered Recommender must pass (a new model gets them for free).

Each model is trained with a small per-model config from :data:`FAST` (structure tests) and
:data:`LEARN` (the learning test on real MovieLens-100K); a model without an entry gets
the defaults below. Add an entry when you add a model and these defaults are too slow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import trustrec.models  # noqa: F401  (registers every model)
from trustrec.data.query import Query
from trustrec.data.split import leave_last_out
from trustrec.errors import ConfigError, DataFormatError
from trustrec.evaluate.ranking import evaluate_ranking
from trustrec.models import MODELS, load_model, make_model
from trustrec.models.base import MODEL_JSON, MODEL_TENSORS
from trustrec.models.capabilities import (
    DotProductScores,
    HasTrainingObjective,
    PairScorer,
    ReleasesUserTable,
    WarmStart,
    has,
    models_with,
)

# Small, fast settings for the structural tests (shapes, determinism, persistence).
FAST_DEFAULT: dict[str, Any] = {"epochs": 2, "dim": 8}
FAST: dict[str, dict[str, Any]] = {
    "bcemf": {"epochs": 2, "dim": 8, "batch_size": 8192},
    "bpr": {"epochs": 3, "dim": 8},
    "wmf": {"epochs": 2, "dim": 8},
    "lightgcn": {"epochs": 2, "dim": 8},
    "neumf": {"epochs": 2, "gmf_dim": 8, "mlp_dim": 8, "layers": [16, 8]},
    "sasrec": {"epochs": 2, "dim": 8, "max_len": 20, "eval_every": 1},
    "gru4rec": {"epochs": 2, "dim": 8, "hidden": 8, "max_len": 20, "eval_every": 1},
    "narm": {"epochs": 2, "dim": 8, "hidden": 8, "max_len": 20, "eval_every": 1},
    "bert4rec": {"epochs": 2, "dim": 8, "max_len": 20, "eval_every": 1},
    "llmrec": {"epochs": 1, "dim": 8, "max_len": 10, "batch_size": 512, "eval_every": 1},
}
# Settings under which the model must clearly beat popularity on ML-100K test NDCG@20.
LEARN_DEFAULT: dict[str, Any] = {"epochs": 10, "dim": 32}
LEARN: dict[str, dict[str, Any]] = {
    "bcemf": {"epochs": 10, "dim": 32, "lr": 0.01, "batch_size": 4096},
    "bpr": {"epochs": 20, "dim": 32},  # ~0.24 vs popularity 0.134
    "wmf": {"epochs": 5, "dim": 32},  # ~0.30
    "lightgcn": {"epochs": 10, "dim": 32},  # ~0.22
    "neumf": {"epochs": 3, "gmf_dim": 16, "mlp_dim": 16, "layers": [16, 8]},  # ~0.20
    "sasrec": {"epochs": 30, "dim": 32, "eval_every": 5},  # leave-last-out: ~0.09 vs 0.045
    "gru4rec": {"epochs": 20, "lr": 0.005, "eval_every": 5},  # ~0.075 vs 0.045 @10
    "narm": {"epochs": 10, "lr": 0.005, "eval_every": 5},  # ~0.068
    "bert4rec": {"epochs": 60, "eval_every": 5},  # ~0.062
    "llmrec": {"epochs": 8, "max_len": 20, "eval_every": 4},  # tiny backbone
}

NAMES = MODELS.names()


def fast_config(name: str) -> dict[str, Any]:
    """The structural-test config of model ``name``."""
    return dict(FAST.get(name, FAST_DEFAULT))


@pytest.fixture(scope="module")
def fitted(ml100k_split):
    """``fitted(name)`` → the model trained once with its fast config, seed 0 (cached)."""
    cache: dict[str, Any] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = make_model(name, **fast_config(name)).fit(
                ml100k_split.train, ml100k_split.valid, seed=0)
        return cache[name]

    return get


def _params_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_models_are_registered():
    assert {"bpr", "wmf"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_records_training(name, ml100k_split):
    cfg = fast_config(name)
    model = make_model(name, **cfg)
    out = model.fit(ml100k_split.train, ml100k_split.valid, seed=0)
    assert out is model
    info = model.fit_info_
    for key in ("epochs_run", "best_epoch", "train_seconds"):
        assert key in info, f"fit_info_ lacks {key!r}"
    assert 1 <= info["epochs_run"] <= cfg.get("epochs", info["epochs_run"])
    assert 1 <= info["best_epoch"] <= info["epochs_run"]
    assert info["train_seconds"] >= 0
    json.dumps(info)  # JSON-ready
    assert (model.n_users_, model.n_items_) == (ml100k_split.train.n_users,
                                                ml100k_split.train.n_items)


@pytest.mark.parametrize("name", NAMES)
def test_score_shape_and_dtype(name, fitted, ml100k_split):
    model = fitted(name)
    users = np.array([0, 5, 17, 942])
    s = model.score(users)
    assert isinstance(s, np.ndarray)
    assert s.shape == (len(users), ml100k_split.train.n_items)
    assert s.dtype == np.float32
    assert np.isfinite(s).all()
    # A user's row does not depend on which other users are scored with it.
    np.testing.assert_allclose(model.score(np.array([17]))[0], s[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_embedding_shapes(name, fitted, ml100k_split):
    model = fitted(name)
    u, v = model.user_embeddings(), model.item_embeddings()
    assert u.ndim == 2 and v.ndim == 2
    assert u.shape[0] == ml100k_split.train.n_users
    assert v.shape[0] == ml100k_split.train.n_items
    assert u.shape[1] == v.shape[1] >= 1
    assert u.dtype == np.float32 and v.dtype == np.float32
    assert np.isfinite(u).all() and np.isfinite(v).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_parameters(name, fitted, ml100k_split):
    first = fitted(name)
    again = make_model(name, **fast_config(name)).fit(ml100k_split.train, ml100k_split.valid,
                                                      seed=0)
    assert _params_equal(first.params_, again.params_)
    other = make_model(name, **fast_config(name)).fit(ml100k_split.train, ml100k_split.valid,
                                                      seed=1)
    assert first.params_.keys() == other.params_.keys()
    assert not _params_equal(first.params_, other.params_)


@pytest.mark.parametrize("name", NAMES)
def test_fit_bits_do_not_depend_on_memory_layout_or_thread(name, fitted, ml100k_split):
    """The same fit after other allocations, and in a worker thread, gives the same bits
    (kernels sum in an order that does not depend on where their arrays lie)."""
    from concurrent.futures import ThreadPoolExecutor

    first = fitted(name)

    def again(_: int = 0):
        return make_model(name, **fast_config(name)).fit(ml100k_split.train,
                                                         ml100k_split.valid, seed=0)

    keep = [np.empty(1 + 17 * k, dtype=np.float32) for k in range(5)]  # shift the heap
    assert _params_equal(first.params_, again().params_)
    with ThreadPoolExecutor(1) as pool:
        assert _params_equal(first.params_, pool.submit(again).result().params_)
    del keep


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, fitted, tmp_path: Path):
    model = fitted(name)
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == sorted([MODEL_JSON, MODEL_TENSORS])  # nothing else, no pickle
    raw = (tmp_path / "m" / MODEL_TENSORS).read_bytes()  # safetensors: u64 size + JSON
    header = int.from_bytes(raw[:8], "little")
    assert isinstance(json.loads(raw[8:8 + header]), dict)  # not a pickle
    meta = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    assert meta["model"] == name
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert _params_equal(loaded.params_, model.params_)
    users = np.arange(0, 943, 7)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    np.testing.assert_array_equal(loaded.user_embeddings(), model.user_embeddings())
    np.testing.assert_array_equal(loaded.item_embeddings(), model.item_embeddings())
    assert loaded.fit_info_["best_epoch"] == model.fit_info_["best_epoch"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("corrupt", ['{"model": "', "[1, 2]", "{}"])
def test_load_corrupted_json_is_a_format_error(name, corrupt, fitted, tmp_path: Path):
    fitted(name).save(tmp_path / "m")
    (tmp_path / "m" / MODEL_JSON).write_text(corrupt)
    with pytest.raises(DataFormatError, match=MODEL_JSON):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("name", NAMES)
def test_param_shapes_describe_the_fitted_tensors(name, fitted, ml100k_split):
    m = fitted(name)
    want = m.param_shapes(ml100k_split.train.n_users, ml100k_split.train.n_items)
    assert {k: tuple(v.shape) for k, v in m.params_.items()} == want


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("damage", ["drop", "reshape", "nan", "truncate"])
def test_damaged_tensors_are_an_integrity_error(name, damage, fitted, tmp_path: Path):
    """A missing, reshaped or NaN tensor, or a truncated file, is a one-line error naming
    the file, never a model that silently scores wrong."""
    from safetensors.torch import save_file

    from trustrec.errors import IntegrityError

    fitted(name).save(tmp_path / "m")
    f = tmp_path / "m" / MODEL_TENSORS
    params = dict(fitted(name).params_)
    first = sorted(params)[-1]
    if damage == "drop":
        del params[first]
    elif damage == "reshape":
        params[first] = params[first].reshape(-1)[:-1].clone()
    elif damage == "nan":
        params[first] = params[first].clone()
        params[first].view(-1)[0] = float("nan")
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:-9])
    else:
        save_file({k: v.contiguous() for k, v in params.items()}, str(f))
    with pytest.raises(IntegrityError, match=str(f)) as err:
        load_model(tmp_path / "m")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_config_typo_is_a_config_error(name):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        make_model(name, epoch=3)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_model_refuses_to_score(name):
    with pytest.raises(RuntimeError, match="not fitted"):
        make_model(name).score(np.array([0]))


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if MODELS.get(n).scores_from_history else n
    for n in NAMES])  # sequential models: 20-40 s each, their effect tests are slow too
def test_learns_better_than_popularity(name, ml100k, ml100k_split):
    """On its task: the random split for models that look users up, leave-last-out with
    the history (training + validation items) for models that score from histories."""
    sequential = MODELS.get(name).scores_from_history
    split = leave_last_out(ml100k) if sequential else ml100k_split
    known = split.known() if sequential else split.train
    history = known if sequential else None
    counts = split.train.item_counts().astype(np.float32)

    def popularity(users: np.ndarray) -> np.ndarray:
        return np.tile(counts, (len(users), 1))

    pop = evaluate_ranking(popularity, known, split.test, ks=(20,))["ndcg@20"].mean()
    model = make_model(name, **LEARN.get(name, LEARN_DEFAULT)).fit(split.train, split.valid,
                                                                   seed=0)
    got = evaluate_ranking(model, known, split.test, ks=(20,), history=history)[
        "ndcg@20"].mean()
    assert got > 1.2 * pop, f"{name}: test NDCG@20 {got:.4f} vs popularity {pop:.4f}"


# ---------------------------------------------------------------------------- queries
@pytest.mark.parametrize("name", NAMES)
def test_score_accepts_a_query(name, fitted, ml100k_split):
    """``score`` takes user indices or a Query (users + histories); a model that looks
    users up by index gives the same scores either way."""
    model = fitted(name)
    users = np.array([3, 0, 942, 3])
    query = Query.from_dataset(ml100k_split.train, users)
    assert query.has_history and len(query) == 4
    np.testing.assert_array_equal(model.score(query), model.score(users))
    np.testing.assert_array_equal(model.score(Query(users)), model.score(users))


# ---------------------------------------------------------------------------- capabilities
CAPABILITIES = (ReleasesUserTable, PairScorer, HasTrainingObjective, WarmStart,
                DotProductScores)


@pytest.mark.parametrize("name", NAMES)
def test_capabilities_are_the_same_on_the_class_and_the_model(name, fitted):
    """Methods check a model class before training (by name) and a fitted model after:
    both must give the same answer."""
    cls, model = MODELS.get(name), fitted(name)
    for cap in CAPABILITIES:
        assert has(cls, cap) == has(model, cap) == isinstance(model, cap), cap.__name__


def test_every_embedding_model_releases_a_user_table():
    """What attribute attackers read: every model with a user embedding table releases
    it; a sequential model (a user is its history) releases none."""
    assert {"bcemf", "bpr", "lightgcn", "neumf", "wmf"} <= set(models_with(ReleasesUserTable))
    assert "sasrec" not in models_with(ReleasesUserTable)


@pytest.mark.parametrize("name", models_with(ReleasesUserTable))
def test_released_user_table_round_trips(name, fitted, ml100k_split):
    model = fitted(name)
    table = model.released_user_table()
    assert table.dtype == np.float32 and table.ndim == 2
    assert table.shape[0] == ml100k_split.train.n_users
    # a view of the model's own tensor (in-training defenses write through it)
    assert any(np.shares_memory(table, v.detach().numpy()) for v in model.params_.values())
    before = {k: v.clone() for k, v in model.params_.items()}
    new = np.random.default_rng(0).standard_normal(table.shape).astype(np.float32)
    copy = model.with_released_user_table(new)
    assert type(copy) is type(model) and copy is not model
    np.testing.assert_array_equal(copy.released_user_table(), new)
    assert _params_equal(model.params_, before)  # the original is unchanged
    changed = [k for k in copy.params_ if not torch.equal(copy.params_[k], before[k])]
    assert len(changed) == 1  # only the released table differs
    assert not any(np.shares_memory(copy.params_[k].numpy(), v.numpy())
                   for k in copy.params_ for v in model.params_.values())
    again = copy.with_released_user_table(table)
    assert _params_equal(again.params_, before)
    np.testing.assert_array_equal(again.score(np.arange(10)), model.score(np.arange(10)))
    with pytest.raises(ValueError, match="shape"):
        model.with_released_user_table(new[:-1])


@pytest.mark.parametrize("name", models_with(PairScorer))
def test_pair_scorer_equals_score_on_the_same_pairs(name, fitted, ml100k_split):
    model = fitted(name)
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(0, ml100k_split.train.n_users, (40,), generator=gen)
    items = torch.randint(0, ml100k_split.train.n_items, (40, 6), generator=gen)
    table = torch.from_numpy(model.released_user_table().copy()).requires_grad_(True)
    got = model.pair_scorer(users, items)(table)
    want = np.take_along_axis(model.score(users.numpy()), items.numpy(), 1)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    assert table.grad is not None and float(table.grad[users].abs().sum()) > 0


@pytest.mark.parametrize("name", models_with(HasTrainingObjective))
def test_training_objective_is_finite_and_has_gradients(name, fitted, ml100k_split):
    model = fitted(name)
    train = ml100k_split.train
    obj = model.training_objective(seed=0)
    assert set(obj.tables) <= set(model.params_)
    rows = obj.rows(train.select(np.arange(train.n_interactions) % 50 == 0))
    params = {k: v.requires_grad_() for k, v in obj.params().items()}
    loss = obj.loss(params, rows)
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    loss.backward()
    grads = [params[k].grad for k in obj.tables]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    # the same seed gives the same objective (hashed negatives)
    again = model.training_objective(seed=0)
    assert float(again.loss(again.params(), again.rows(
        train.select(np.arange(train.n_interactions) % 50 == 0)))) == loss.item()


@pytest.mark.parametrize("name", models_with(DotProductScores))
def test_score_factors_multiply_to_the_score(name, fitted):
    model = fitted(name)
    users, items = model.score_factors()
    rows = np.array([0, 7, 300])
    np.testing.assert_allclose(users[rows] @ items.T, model.score(rows), rtol=1e-5,
                               atol=1e-5)


def test_init_without_a_warm_start_is_refused(ml100k_split, monkeypatch):
    from trustrec.models.bpr import BPR

    monkeypatch.delattr(BPR, "warm_start_state")
    with pytest.raises(ConfigError, match=r"fit\(init=\.\.\.\) needs a model with a warm "
                                          r"start.*model 'bpr' does not have one"):
        make_model("bpr", **fast_config("bpr")).fit(ml100k_split.train, seed=0,
                                                    init={"user": torch.zeros(1)})


# ---------------------------------------------------------------------------- warm start, hooks
@pytest.mark.parametrize("name", models_with(WarmStart))
def test_warm_start_and_epoch_callback(name, fitted, ml100k_split):
    """``fit(init=...)`` starts from the given tensors; ``callback`` runs once per epoch."""
    tr = ml100k_split.train
    other = make_model(name, **fast_config(name)).fit(tr, seed=1)
    seen: list[tuple[int, dict[str, torch.Tensor]]] = []

    def record(model, epoch):
        seen.append((epoch, {k: v.detach().clone() for k, v in model.params_.items()}))

    def one_epoch(init=None):
        seen.clear()
        make_model(name, **{**fast_config(name), "epochs": 1}).fit(
            tr, seed=0, init=init, callback=record)
        assert [e for e, _ in seen] == [1]
        return seen[0][1]

    fresh = one_epoch()
    warm = one_epoch(other.warm_start_state())
    warm_again = one_epoch(other.warm_start_state())
    assert all(torch.equal(warm[k], warm_again[k]) for k in warm)  # deterministic
    assert not torch.equal(fresh["user"] if "user" in fresh else fresh["user_gmf"],
                           warm["user"] if "user" in warm else warm["user_gmf"])
    assert other.params_ and all(not v.requires_grad for v in other.params_.values())
    bad = {k: v[:-1] for k, v in other.params_.items()}
    with pytest.raises(ValueError, match="warm-start"):
        make_model(name, **fast_config(name)).fit(tr, seed=0, init=bad)
