"""``trustrec audit``: the table, the CSV, and one-line errors with exit code 2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.cli import app
from trustrec.privacy.attack import METRICS, audit_model_dir

runner = CliRunner()
TINY = ["--epochs", "3", "--config", "dim=8", "--config", "eval_every=1", "--quiet"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_dir(ml100k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "model"
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", out, *TINY)
    assert res.exit_code == 0, res.output
    return out


def test_help_names_the_options():
    res = invoke("audit", "--help")
    assert res.exit_code == 0, res.output
    for word in ("--model-dir", "--attributes", "--attackers", "--folds", "--seed", "--out",
                 "--views", "fold_in", "--null-permutations", "majority", "chance"):
        assert word in res.output, word


def test_audit_prints_the_table_and_writes_the_csv(model_dir, tmp_path):
    csv = tmp_path / "audit.csv"
    res = invoke("audit", "--model-dir", model_dir, "--attributes", "gender,age",
                 "--attackers", "lr", "--null-permutations", "4", "--out", csv)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["attribute", "view", "attacker", *METRICS]
    rows = [ln.split() for ln in lines[1:9]]
    assert [r[:3] for r in rows] == [[a, v, x] for a in ("gender", "age")
                                     for v in ("released", "fold_in")
                                     for x in ("lr", "majority")]
    chance = METRICS.index("chance") + 3
    assert rows[0][chance] == "0.500" and rows[4][chance] == f"{1 / 7:.3f}"
    leak = [ln for ln in lines if ln.startswith("leakage ")]
    assert [ln.split(":")[0] for ln in leak] == [
        "leakage gender released", "leakage gender fold_in", "leakage age released",
        "leakage age fold_in"]
    assert all("null 95 % [" in ln for ln in leak)
    table = pd.read_csv(csv, keep_default_na=False, na_values={"value": [""]})
    assert list(table.columns) == ["attribute", "view", "attacker", "metric", "value"]
    assert set(table["metric"]) >= set(METRICS) and set(table["view"]) == {"released",
                                                                          "fold_in"}
    assert set(table["attacker"]) == {"lr", "majority", "permuted", "worst"}
    values = table.loc[table["metric"] != "permutations", "value"]
    assert values.between(0, 1).all()
    # The CSV is the library's result, rounded to 6 significant digits.
    direct = audit_model_dir(model_dir, "gender,age", attackers=["lr"], null_permutations=4)
    np.testing.assert_allclose(table["value"], direct["value"], rtol=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--attributes", "gender,zip"], "no user attribute 'zip'"),
    (["--attributes", " , "], "--attributes is empty"),
    (["--attributes", "gender", "--attackers", "lr,svm"], "unknown attacker 'svm'"),
    (["--attributes", "gender", "--folds", "1"], "folds must be an integer >= 2"),
    (["--attributes", "gender,gender"], "given twice"),
])
def test_bad_options_are_one_line_errors(model_dir, tmp_path, args, message):
    csv = tmp_path / "never.csv"
    res = invoke("audit", "--model-dir", model_dir, *args, "--out", csv)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not csv.exists()


def test_missing_directory_is_a_one_line_error(tmp_path):
    res = invoke("audit", "--model-dir", tmp_path / "nope", "--attributes", "gender")
    assert res.exit_code == 2
    assert res.output.startswith("error:") and "no such model directory" in res.output


def test_a_sharded_model_directory_is_refused(ml100k_dir, tmp_path):
    out = tmp_path / "sisa"
    res = invoke("train", "--dataset", ml100k_dir, "--model", "bpr", "--out", out,
                 "--method", "sisa", "--method-config", "n_shards=2", *TINY)
    assert res.exit_code == 0, res.output
    res = invoke("audit", "--model-dir", out, "--attributes", "gender")
    assert res.exit_code == 2
    assert "single released user table" in res.output
