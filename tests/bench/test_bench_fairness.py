"""The ``fairness`` bench kind: its spec refuses what cannot run, only methods that apply
to a model make cells, and a small grid on real MovieLens-100K writes every cell with
its per-user and per-item tables, the report with its plot, and resumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustrec.bench.collect import read_results
from trustrec.bench.grid import grid_spec_from_mapping
from trustrec.bench.runner import run_grid
from trustrec.errors import ConfigError, UnknownNameError


def fairness_spec(**values):
    return grid_spec_from_mapping({"kind": "fairness", **values})


@pytest.mark.parametrize(("values", "error", "match"), [
    ({"methods": ["none", "in-ucd"]}, UnknownNameError, "in-ucds"),
    ({"method_configs": {"in-ucds": {"wieght": 1.0}}}, ConfigError, "wieght"),
    ({"models": ["sasrec"], "methods": ["in-ucds"]}, ConfigError, "no method applies"),
    ({"top": 0.0}, ConfigError, "top"),
    ({"top": 0.1, "method_configs": {"in-ucds": {"top": 0.05}}}, ConfigError, "differs"),
])
def test_bad_specs_fail_before_any_work(values, error, match):
    with pytest.raises(error, match=match):
        fairness_spec(**values)


def test_cells_pair_methods_with_the_models_they_apply_to():
    spec = fairness_spec(models=["bpr", "sasrec"],
                         methods=["eisam", "in-ucds", "none", "ips", "s-dro"])
    pairs = {(c.model, c.method) for c in spec.cells()}
    assert pairs == {("bpr", "none"), ("bpr", "in-ucds"), ("bpr", "eisam"),
                     ("sasrec", "none"), ("sasrec", "eisam"), ("sasrec", "ips"),
                     ("sasrec", "s-dro")}
    assert spec.split == "leave_last_out" and spec.cells()[0].method == "none"


def test_a_method_with_a_list_length_gets_the_headline_cutoff():
    assert fairness_spec(ks=[10, 20]).method_options("ugf-rerank")["k"] == 20
    assert fairness_spec(ks=[5]).method_options("ugf-rerank")["k"] == 5
    spec = fairness_spec(ks=[10, 20], method_configs={"ugf-rerank": {"k": 10}})
    assert spec.method_options("ugf-rerank")["k"] == 10
    assert "k" not in fairness_spec().method_options("in-ucds")


@pytest.mark.slow
def test_a_small_grid_runs_reports_and_resumes(ml100k_dir, tmp_path):
    spec = fairness_spec(datasets=[str(ml100k_dir)], models=["bpr"],
                         methods=["none", "in-ucds", "ugf-rerank"],
                         method_configs={"ugf-rerank": {"epsilon": 0.001}},
                         model_configs={"bpr": {"epochs": 10}}, workers=1,
                         out=str(tmp_path / "run"))
    result = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"] * 3
    rows = read_results(result.out / "results.csv")
    wide = rows.pivot_table(index="method", columns="metric", values="value")
    for m in ("ndcg@10", "ugf_ndcg@10", "ugf_f1@10_signed", "ndcg@10_tail", "gini@10",
              "coverage@10", "aplt@10", "arp@10"):
        assert np.isfinite(wide.loc["none", m]), m
    cell = result.out / "ml-100k" / "bpr" / "in-ucds" / "seed0"
    per_user = pd.read_parquet(cell / "per_user.parquet")
    assert per_user["advantaged"].sum() == 47 and "ndcg@10_tail" in per_user
    groups = per_user.groupby("advantaged")["ndcg@10"].mean()  # UGF from the kept table
    assert wide.loc["in-ucds", "ugf_ndcg@10_signed"] == pytest.approx(groups[True]
                                                                     - groups[False])
    assert len(pd.read_parquet(cell / "per_item.parquet")) == 1682
    assert abs(wide.loc["ugf-rerank", "ugf_f1@10_signed"]) <= 0.001 + 1e-9
    assert abs(wide.loc["none", "ugf_f1@10_signed"]) > 0.001  # so the constraint bound
    report = (result.out / "report.md").read_text()
    assert "|UGF| NDCG@10" in report and "tail NDCG" in report
    assert "ugf-rerank (oracle)" in report
    assert len(list((result.out / "plots").glob("*.png"))) == 1
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped"] * 3
