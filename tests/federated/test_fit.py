"""Running a federation: validation choice, checkpoints and resume, saved models, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.federated.conftest import TINY_NCF
from trustrec.cli import app
from trustrec.errors import ConfigError
from trustrec.federated.fit import fit_federation
from trustrec.federated.methods import make_federated
from trustrec.federated.model import FederatedRecommender

CFG = {**TINY_NCF, "rounds": 4, "eval_every": 1, "participation": 0.5}


class Stop(Exception):
    """Stands for a killed run."""


def test_a_killed_run_resumes_to_the_same_model(small_split, tmp_path) -> None:
    method = make_federated("fedrecgel", CFG)
    whole = fit_federation(method, small_split.train, small_split.valid, seed=1)

    def kill_at_two(row):
        if row["round"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit_federation(method, small_split.train, small_split.valid, seed=1,
                       checkpoint=tmp_path, on_round=kill_at_two)
    resumed = fit_federation(method, small_split.train, small_split.valid, seed=1,
                             checkpoint=tmp_path)
    assert resumed.resumed_from == 2
    assert resumed.best_round == whole.best_round
    for n, t in whole.model.shared.items():
        assert torch.equal(t, resumed.model.shared[n])
    for n, t in whole.model.private.items():
        assert torch.equal(t, resumed.model.private[n])
    assert list(resumed.curve["round"]) == [1, 2, 3, 4]
    # Another federation in the same directory is refused, not silently mixed.
    with pytest.raises(ConfigError, match="another federation"):
        fit_federation(method, small_split.train, small_split.valid, seed=2,
                       checkpoint=tmp_path)


def test_the_round_is_chosen_on_validation(small_split) -> None:
    fit = fit_federation(make_federated("fedmf", {"dim": 4, "rounds": 5, "eval_every": 1}),
                         small_split.train, small_split.valid, test=small_split.test, seed=0)
    curve = fit.curve
    assert fit.best_round == int(curve.loc[curve["valid_ndcg@10"].idxmax(), "round"])
    assert "test_ndcg@10" in curve and fit.model.info["best_round"] == fit.best_round


def test_patience_stops_early(small_split) -> None:
    """A federation that cannot improve (rates ~0) stops after ``patience`` evaluations."""
    fit = fit_federation(make_federated("fedmf", {"dim": 4, "rounds": 50, "eval_every": 1,
                                                  "patience": 1, "lr": 1e-12,
                                                  "server_lr": 1e-12}),
                         small_split.train, small_split.valid, seed=0)
    assert fit.model.info["rounds_run"] == 2 and fit.best_round == 1


def test_a_diverging_federation_is_a_clear_error(small_split) -> None:
    with pytest.raises(ConfigError, match="diverged in round"):
        fit_federation(make_federated("fedmf", {"dim": 4, "rounds": 30, "lr": 50.0,
                                                "server_lr": 50.0}),
                       small_split.train, small_split.valid, seed=0)


def test_saved_model_scores_the_same(small_split, tmp_path) -> None:
    fit = fit_federation(make_federated("pfedrec", {"dim": 4, "rounds": 2}),
                         small_split.train, small_split.valid, seed=0)
    fit.model.save(tmp_path / "m")
    back = FederatedRecommender.load(tmp_path / "m")
    users = np.arange(10)
    np.testing.assert_array_equal(back.score(users), fit.model.score(users))
    assert back.user_embeddings().shape == (small_split.train.n_users, 5)
    assert back.item_embeddings().shape == (small_split.train.n_items, 4)


def test_sampled_protocol_is_labelled_and_unknown_protocol_refused(small_split) -> None:
    fit = fit_federation(make_federated("fedmf", {"dim": 4, "rounds": 1}), small_split.train,
                         small_split.valid, seed=0, protocol="sampled")
    assert "valid_sampled_ndcg@10" in fit.curve
    with pytest.raises(ConfigError, match="unknown protocol"):
        fit_federation(make_federated("fedmf"), small_split.train, small_split.valid,
                       protocol="sampeld")


def test_cli_fed_run_writes_everything_and_resumes(ml100k_dir, tmp_path) -> None:
    out = tmp_path / "run"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'dataset = "{ml100k_dir}"\nmethod = "fedmf"\nclients = 60\n'
                    f'out = "{out}"\n[config]\ndim = 4\nrounds = 3\neval_every = 1\n')
    runner = CliRunner()
    res = runner.invoke(app, ["fed", "run", "--spec", str(spec), "-q"])
    assert res.exit_code == 0, res.output
    for name in ("model/federated.safetensors", "curve.parquet", "result.json", "report.md",
                 "curve.png", "checkpoint/checkpoint.safetensors"):
        assert (out / name).is_file(), name
    record = json.loads((out / "result.json").read_text())
    assert record["test"]["ndcg@10"] > 0 and "sampled_ndcg@10" in record["test"]
    again = runner.invoke(app, ["fed", "run", "--spec", str(spec), "-q"])
    assert again.exit_code == 0 and "resumed from round 3" in again.output
    spec.write_text(spec.read_text().replace("rounds = 3", "rouns = 3"))
    bad = runner.invoke(app, ["fed", "run", "--spec", str(spec), "-q"])
    assert bad.exit_code == 2 and "rouns" in bad.output
