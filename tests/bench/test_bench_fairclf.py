"""The ``fairclf`` and ``fedunlearn`` bench kinds: bad specs fail before any work; small
grids on the real tables write per-cell curves and local figures, the report with its
Pareto and trade-off plots, and resume."""

from __future__ import annotations

import pandas as pd
import pytest

from trustrec.bench.collect import read_results
from trustrec.bench.grid import grid_spec_from_mapping
from trustrec.bench.runner import run_grid
from trustrec.errors import ConfigError, UnknownNameError


def spec_of(kind, **values):
    return grid_spec_from_mapping({"kind": kind, **values})


@pytest.mark.parametrize(("kind", "values", "error", "match"), [
    ("fairclf", {"methods": ["fedfact-pots"]}, ConfigError, "fedfact-post"),
    ("fairclf", {"datasets": ["german"]}, UnknownNameError, "unknown table"),
    ("fairclf", {"criteria": ["parity"]}, ConfigError, "unknown fairness criterion"),
    ("fairclf", {"xis": [-0.1]}, ConfigError, "xis"),
    ("fairclf", {"clients": [1]}, ConfigError, "clients"),
    ("fairclf", {"dirichlet": 0}, ConfigError, "dirichlet"),
    ("fairclf", {"classifier": {"rounds": 0}}, ConfigError, "rounds"),
    ("fairclf", {"method_configs": {"fedfact-post": {"tua": 0.1}}}, ConfigError, "tua"),
    ("fairclf", {"method_configs": {"fedavg": {"lr": 0.1}}}, ConfigError, "no options"),
    ("fedunlearn", {"methods": ["fedfa"]}, UnknownNameError, "fedaf"),
    ("fedunlearn", {"requests": ["user"]}, ConfigError, "unknown request"),
    ("fedunlearn", {"targets": [10]}, ConfigError, "targets"),
    ("fedunlearn", {"datasets": ["mnist"]}, UnknownNameError, "digits"),
    ("fedunlearn", {"unlearn": {"teacher": 3}}, ConfigError, "teacher"),
])
def test_bad_specs_fail_before_any_work(kind, values, error, match):
    with pytest.raises(error, match=match):
        spec_of(kind, **values)


@pytest.mark.parametrize("kind", ["fairclf", "fedunlearn"])
def test_a_client_left_with_one_class_fails_the_run_before_any_cell(kind, tmp_path):
    values = ({"clients": [40], "dirichlet": 0.05} if kind == "fairclf"
              else {"n_clients": 60, "dirichlet": 0.01})
    spec = spec_of(kind, workers=1, out=str(tmp_path / "run"), **values)
    with pytest.raises(ConfigError, match="single class|class\\(es\\)"):
        run_grid(spec, quiet=True)
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_dir()]  # no cell folder


def test_cells_give_each_method_its_knob_and_place():
    spec = spec_of("fairclf", datasets=["adult", "compas"], xis=[0.02, 0.05], alphas=[0.5],
                   clients=[4, 8])
    cells = spec.cells()
    adult = [c for c in cells if c.dataset == "adult"]
    post = [c for c in adult if c.method == "fedfact-post"]
    assert {(c.xi, c.clients) for c in post} == {(0.02, 4), (0.05, 4), (0.02, 8), (0.05, 8)}
    assert {(c.xi, c.clients) for c in adult if c.method == "optfair-post"} == {
        (0.02, 1), (0.05, 1)}
    assert {(c.alpha, c.xi) for c in adult if c.method == "wassffed"} == {(0.5, -1.0)}
    assert [c.knob for c in adult if c.method == "erm"] == ["default"]
    compas = {c.method for c in cells if c.dataset == "compas"}
    assert "wassffed" not in compas and "fairlearn-expgrad" not in compas  # 3 classes
    assert "fedfact-post" in compas
    un = spec_of("fedunlearn", methods=["none", "mask", "fedaf"]).cells()
    assert {(c.request, c.method) for c in un} == {
        ("class", "none"), ("class", "mask"), ("class", "fedaf"), ("backdoor", "none"),
        ("backdoor", "fedaf")}


@pytest.mark.slow
def test_a_small_fairclf_grid_runs_reports_and_resumes(tmp_path):
    spec = spec_of("fairclf", methods=["fedavg", "fedfact-post", "optfair-post",
                                       "fairlearn-expgrad"],
                   xis=[0.05], clients=[3], classifier={"rounds": 3}, workers=1,
                   out=str(tmp_path / "run"))
    result = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"] * 4
    wide = read_results(result.out / "results.csv").pivot_table(
        index="method", columns="metric", values="value")
    assert set(wide.index) == {"fedavg", "fedfact-post", "optfair-post", "fairlearn-expgrad"}
    assert wide["accuracy"].between(0.7, 0.9).all()
    assert wide.loc["fedfact-post", "rounds"] > 3  # training plus dual rounds
    assert wide.loc["optfair-post", "rounds"] == 0
    curve = pd.read_parquet(result.out / "adult/dp/fedavg/default/k3/seed0/curve.parquet")
    assert list(curve["round"]) == [1, 2, 3]
    local = pd.read_parquet(result.out / "adult/dp/fedfact-post/xi0.05/k3/seed0/local.parquet")
    assert len(local) == 3 and local["local_disparity"].notna().all()
    report = (result.out / "report.md").read_text()
    assert "plots/fairclf_pareto_adult-dp.png" in report
    assert (result.out / "plots" / "fairclf_curves_adult-dp.png").is_file()
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped"] * 4


@pytest.mark.slow
def test_a_small_fedunlearn_grid_runs_and_reports(tmp_path):
    spec = spec_of("fedunlearn", methods=["none", "retrain", "fedaf"], requests=["class"],
                   classifier={"hidden": 16, "rounds": 4}, unlearn={"unlearn_rounds": 2},
                   workers=1,
                   out=str(tmp_path / "run"))
    result = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"] * 3
    wide = read_results(result.out / "results.csv").pivot_table(
        index="method", columns="metric", values="value")
    assert wide.loc["none", "forget"] == wide.loc["none", "before_forget"]
    assert wide.loc["retrain", "rounds"] == 4 and wide.loc["fedaf", "rounds"] == 3
    report = (result.out / "report.md").read_text()
    assert "original (before)" in report and "time vs retrain" in report
    assert (result.out / "plots" / "fedunlearn_digits-class3.png").is_file()


@pytest.mark.parametrize(("control_mia", "warned"), [(0.51, True), (0.70, False)])
def test_the_fedunlearn_report_flags_a_blind_membership_attack(tmp_path, control_mia, warned):
    """When the do-nothing control's MIA AUC is at chance the report says the MIA column
    is no verdict; when the attack sees the control's members it stays silent."""
    from trustrec.bench.experiments.fedunlearn_report import sections
    from trustrec.bench.render import Text

    rows = []
    for method, mia in (("none", control_mia), ("retrain", 0.5)):
        for metric, value in (("forget", 0.0), ("retain", 0.9), ("mia_auc", mia),
                              ("relearn", 0.5), ("rounds", 1.0), ("seconds", 1.0),
                              ("before_forget", 0.9), ("before_retain", 0.9),
                              ("before_mia_auc", mia), ("before_relearn", 0.9)):
            rows.append({"dataset": "digits", "request": "class", "target": 3,
                         "method": method, "seed": 0, "metric": metric, "value": value})
    blocks = sections(pd.DataFrame(rows), None, tmp_path)[0].blocks
    assert any(isinstance(b, Text) and "no verdict" in b.text for b in blocks) == warned
