"""The trustrec command: help texts, train → forget → evaluate, clear errors (exit 2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.cli import app
from trustrec.models import load_model

runner = CliRunner()
TINY = ["--epochs", "2", "--config", "dim=8", "--config", "eval_every=1", "--quiet"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command,words", [
    ([], ["bench", "train", "forget", "evaluate", "data"]),
    (["bench"], ["--datasets", "--models", "--methods", "--selections", "--ratios",
                 "--seeds", "--out", "--spec", "--data-dir", "--quiet", "results.csv"]),
    (["data"], ["fetch", "info"]),
    (["data", "fetch"], ["name", "--data-dir", "cache"]),
    (["data", "info"], ["name_or_path", "JSON"]),
    (["train"], ["--dataset", "--model", "--out", "--seed", "--epochs", "--config",
                 "--method"]),
    (["forget"], ["--model-dir", "--users", "--users-file", "--pairs", "--items", "--out"]),
    (["evaluate"], ["--model-dir", "--out", "A-IGF"]),
])
def test_help(command, words):
    res = invoke(*command, "--help")
    assert res.exit_code == 0, res.output
    for w in words:
        assert w in res.output, w


@pytest.fixture(scope="module")
def trained(ml100k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_a_model_directory(trained):
    meta = json.loads((trained / "trustrec.json").read_text())
    assert meta["model"] == "bpr" and meta["method"] == "retrain"
    assert meta["model_config"]["epochs"] == 2 and meta["model_config"]["dim"] == 8
    assert (trained / "unlearner" / "unlearner.json").is_file()
    test = pd.read_parquet(trained / "test.parquet")
    assert len(test) == meta["split"]["test_rows"] > 0
    model = load_model(trained / "model")
    assert model.score([0, 1]).shape == (2, 1682)


def test_round_trip_train_forget_evaluate(trained, tmp_path):
    work = tmp_path / "model"
    res = invoke("forget", "--model-dir", trained, "--users", "1,2", "--out", work)
    assert res.exit_code == 0, res.output
    report = json.loads((work / "forget_report.json").read_text())
    assert report["verification"]["passed"] is True
    assert report["verification"]["training_rows_remaining"] == 0
    assert report["removed"]["training_rows"] > 0
    assert report["retrained"] == ["full"]
    assert report["training_data"]["sha256_before"] != report["training_data"]["sha256_after"]
    assert "1" not in json.dumps(report["request"].get("users", []))  # ids not stored
    train = pd.read_parquet(work / "unlearner" / "data" / "train.parquet")
    assert not train["user"].isin(["1", "2"]).any()
    assert not pd.read_parquet(work / "test.parquet")["user"].isin(["1", "2"]).any()
    # the forgotten model is the one load_model reads
    meta = json.loads((work / "trustrec.json").read_text())
    assert [h["event"] for h in meta["history"]] == ["train", "forget"]

    # the pairs of another user, in place this time
    pairs = train[train["user"] == "3"].head(2)[["user", "item"]]
    pfile = tmp_path / "pairs.csv"
    pairs.to_csv(pfile, index=False)
    res = invoke("forget", "--model-dir", work, "--pairs", pfile)
    assert res.exit_code == 0, res.output
    left = pd.read_parquet(work / "unlearner" / "data" / "train.parquet")
    assert len(left) == len(train) - 2
    assert json.loads((work / "forget_report.json").read_text())["request"]["n_pairs"] == 2
    receipts = sorted((work / "receipts").glob("*.json"))
    assert len(receipts) == 2  # one per request, never overwritten

    res = invoke("evaluate", "--model-dir", work, "--out", tmp_path / "eval.json")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "eval.json").read_text())
    assert json.loads(res.stdout) == result
    assert 0 < result["metrics"]["ndcg@20"] < 1
    assert 0 <= result["a_igf"] < 1
    assert result["n_users"] == 941  # users 1 and 2 are gone


def test_unknown_user_is_exit_2_and_changes_nothing(trained):
    before = snapshot(trained)
    res = invoke("forget", "--model-dir", trained, "--users", "1,no-such-user")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "no-such-user" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    assert snapshot(trained) == before
    # nothing beside the directory but its lock file
    assert [p.name for p in trained.parent.iterdir() if p.name.startswith(".")] in (
        [], [".model.lock"])


def test_forget_errors(trained, tmp_path):
    before = snapshot(trained)
    for args in (["--items", "999999"], [], ["--users", "1", "--users-file", "x.txt"]):
        res = invoke("forget", "--model-dir", trained, *args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("error: ")
    res = invoke("forget", "--model-dir", tmp_path / "nope", "--users", "1")
    assert res.exit_code == 2 and "nope" in res.stderr
    bad = tmp_path / "pairs.csv"
    bad.write_text("user,item\n1\n")
    res = invoke("forget", "--model-dir", trained, "--pairs", bad)
    assert res.exit_code == 2 and "line 2" in res.stderr
    assert snapshot(trained) == before


def test_train_and_bench_errors(ml100k_dir, tmp_path):
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out",
                 tmp_path / "m", "--config", "dimm=8")
    assert res.exit_code == 2 and "did you mean 'dim'" in res.stderr
    assert not (tmp_path / "m").exists()
    res = invoke("bench", "--models", "bprr", "--out", tmp_path / "b", "--quiet")
    assert res.exit_code == 2 and "unknown model 'bprr'" in res.stderr
    assert not (tmp_path / "b").exists()


def test_data_info_of_a_path(ml100k_dir):
    res = invoke("data", "info", ml100k_dir)
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["users"] == 943 and info["items"] == 1682 and info["interactions"] == 100000


def test_data_fetch_unknown_name():
    res = invoke("data", "fetch", "ml-100kk")
    assert res.exit_code == 2 and "did you mean 'ml-100k'" in res.stderr


@pytest.mark.slow  # a real (small) grid: ~8 s on 2 busy cores
def test_bench_with_spec_file(ml100k_dir, tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text(f"""
datasets = ["{ml100k_dir}"]
models = ["bpr"]
methods = ["retrain"]
selections = ["edge"]
out = "{tmp_path / 'ignored'}"

[model_configs.bpr]
epochs = 1
dim = 4
""")
    out = tmp_path / "bench"
    res = invoke("bench", "--spec", spec, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert f"results: {out / 'results.csv'}" in res.stdout
    assert "report.html" in res.stdout
    assert (out / "ml-100k/bpr/retrain/edge/p0.05/seed0/run.json").is_file()
    assert not (tmp_path / "ignored").exists()
    res = invoke("bench", "--spec", spec, "--out", out, "--quiet")
    assert res.exit_code == 0 and "0 run, 1 already done" in res.stdout


def test_sisa_model_directory_forgets_from_a_users_file(ml100k_dir, tmp_path):
    out = tmp_path / "sisa"
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", out,
                 "--method", "sisa", "--method-config", "n_shards=2", *TINY)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "trustrec.json").read_text())
    assert meta["method"] == "sisa" and meta["method_config"]["n_shards"] == 2
    assert meta["model_dirs"] == ["unlearner/shards/000", "unlearner/shards/001"]
    assert load_model(out / meta["model_dirs"][1]).score([5]).shape == (1, 1682)
    ids = tmp_path / "users.txt"
    ids.write_text("# users who asked to be forgotten\n10\n\n11\n")
    res = invoke("forget", "--model-dir", out, "--users-file", ids)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "forget_report.json").read_text())
    assert report["request"]["n_users"] == 2
    assert set(report["retrained"]) <= {"shard 0", "shard 1"} and report["retrained"]
    assert report["verification"]["passed"] is True
    ids.write_text("10\n")  # already forgotten: rejected, nothing written
    before = snapshot(out)
    res = invoke("forget", "--model-dir", out, "--users-file", ids)
    assert res.exit_code == 2 and "already forgotten" in res.stderr
    assert snapshot(out) == before


def test_bad_spec_values_name_the_field_and_the_accepted_values(tmp_path):
    """`kind = "privcy"` and `lr = "fast"` are one-line errors naming the file and field."""
    spec = tmp_path / "grid.toml"
    spec.write_text('kind = "privcy"\nmodels = ["bpr"]\n')
    res = invoke("bench", "--spec", spec, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 2 and "unknown kind 'privcy'" in res.stderr
    assert "did you mean 'privacy'" in res.stderr and str(spec) in res.stderr
    spec.write_text('models = ["bpr"]\n[model_configs.bpr]\nlr = "fast"\n')
    res = invoke("bench", "--spec", spec, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 2 and "BPRConfig.lr" in res.stderr and "'fast'" in res.stderr
    assert "valid number" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    spec.write_text('kind = "unlearning"\nmodels = ["bprr"]\n')  # the kind is accepted
    res = invoke("bench", "--spec", spec, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 2 and "unknown model 'bprr'" in res.stderr
    assert not (tmp_path / "o").exists()


def test_config_values_are_converted_by_the_field_type(ml100k_dir, tmp_path):
    from trustrec.errors import ConfigError
    from trustrec.models import make_model

    assert make_model("bpr", use_bias="false").config.use_bias is False
    assert make_model("bpr", dim="8").config.dim == 8
    with pytest.raises(ConfigError, match=r"BPRConfig.dim .*integer.*8.5"):
        make_model("bpr", dim=8.5)
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", tmp_path / "m",
                 "--config", "dim=8.5")
    assert res.exit_code == 2 and "BPRConfig.dim" in res.stderr
    assert not (tmp_path / "m").exists()


def test_config_text_from_the_command_line_is_typed_by_the_field(ml100k_dir, tmp_path):
    """`--config use_bias=false` is a boolean False, `--method-config n_shards=2` an integer;
    `n_shards=2.5` is an error naming the field."""
    out = tmp_path / "m"
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", out,
                 "--method", "sisa", "--method-config", "n_shards=2", "--epochs", "1",
                 "--config", "dim=8", "--config", "use_bias=false", "--config", "lr=0.05",
                 "--quiet")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "trustrec.json").read_text())
    assert meta["model_config"] == {"dim": 8, "use_bias": False, "lr": 0.05, "epochs": 1}
    assert meta["method_config"]["n_shards"] == 2
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", tmp_path / "x",
                 "--method", "sisa", "--method-config", "n_shards=2.5", "--quiet")
    assert res.exit_code == 2 and "SISAConfig.n_shards in method 'sisa'" in res.stderr
    assert "valid integer" in res.stderr and not (tmp_path / "x").exists()
