"""The ``attack`` bench kind: its spec refuses what cannot run, and a small grid on real
MovieLens-100K writes every cell, the report with both plots and the paper's figures,
and resumes."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.bench.collect import read_results
from trustrec.bench.experiments.attack import POPULARITY, target_item
from trustrec.bench.grid import grid_spec_from_mapping
from trustrec.bench.runner import run_grid
from trustrec.data.split import leave_last_out
from trustrec.errors import ConfigError, UnknownNameError


def attack_spec(**values):
    return grid_spec_from_mapping({"kind": "attack", **values})


@pytest.mark.parametrize(("values", "error", "match"), [
    ({"models": ["bpr"]}, ConfigError, "not a sequential model"),
    ({"attacks": ["none", "creet"]}, UnknownNameError, "creat"),
    ({"budgets": [0.0]}, ConfigError, "budgets"),
    ({"budgets": [1.5]}, ConfigError, "budgets"),
    ({"targets": ["middle"]}, ConfigError, "targets"),
    ({"attack_configs": {"creat": {"groups": 2}}}, ConfigError, "groups"),
    ({"defense_config": {"detectr": "pca"}}, ConfigError, "detectr"),
])
def test_bad_specs_fail_before_any_work(values, error, match):
    with pytest.raises(error, match=match):
        attack_spec(**values)


def test_defaults_are_leave_last_out_and_none_first():
    spec = attack_spec(attacks=["random", "none"])
    assert spec.split == "leave_last_out"
    assert [c.attack for c in spec.cells()] == ["none", "random"]


def test_targets_come_from_their_popularity_class(ml100k):
    train = leave_last_out(ml100k).train
    counts = train.item_counts()
    picked = {p: counts[target_item(train, p, 0)] for p in POPULARITY}
    assert picked["head"] > picked["medium"] > picked["tail"]
    assert target_item(train, "tail", 0) == target_item(train, "tail", 0)


@pytest.mark.slow
def test_a_small_grid_runs_reports_and_resumes(ml100k_dir, tmp_path):
    spec = attack_spec(datasets=[str(ml100k_dir)], models=["sasrec"],
                       attacks=["none", "random"], targets=["medium"], budgets=[0.02],
                       model_configs={"sasrec": {"dim": 16, "epochs": 5, "eval_every": 5}},
                       workers=1, out=str(tmp_path / "run"))
    result = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done", "done"]
    rows = read_results(result.out / "results.csv")
    metric = rows[rows["metric"] == "rank_shift"].set_index("attack")["value"]
    assert metric["none"] == 0 and np.isfinite(metric["random"])
    report = (result.out / "report.md").read_text()
    assert "target HR@10 sampled" in report and "Table 1" in report
    assert len(list((result.out / "plots").glob("*.png"))) == 2
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped", "skipped"]
