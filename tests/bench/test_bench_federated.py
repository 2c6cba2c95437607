"""The ``federated`` bench kind: bad specs fail before any work; a small grid on real
MovieLens-100K writes each cell's curve, the report with its plot, and resumes."""

from __future__ import annotations

import pandas as pd
import pytest

from trustrec.bench.collect import read_results
from trustrec.bench.grid import grid_spec_from_mapping
from trustrec.bench.runner import run_grid
from trustrec.errors import ConfigError, UnknownNameError


def fed_spec(**values):
    return grid_spec_from_mapping({"kind": "federated", **values})


@pytest.mark.parametrize(("values", "error", "match"), [
    ({"methods": ["fedncf", "fedrecgl"]}, UnknownNameError, "fedrecgel"),
    ({"method_configs": {"fedncf": {"rho_shared": 0.1}}}, ConfigError, "rho_shared"),
    ({"participation": [1.5]}, ConfigError, "participation"),
    ({"models": ["bpr"]}, ConfigError, "no listed method federates"),
    ({"rounds": [0]}, ConfigError, "rounds"),
])
def test_bad_specs_fail_before_any_work(values, error, match):
    with pytest.raises(error, match=match):
        fed_spec(**values)


def test_cells_put_ceilings_first_and_take_the_axes():
    spec = fed_spec(methods=["fedmf", "fedncf"], models=["neumf", "bcemf"],
                    participation=[0.0, 0.5], rounds=[10])
    cells = spec.cells()
    assert [c.method for c in cells[:2]] == ["central", "central"]
    fed = [c for c in cells if c.method != "central"]
    assert {(c.method, c.model) for c in fed} == {("fedmf", "bcemf"), ("fedncf", "neumf")}
    assert len(fed) == 4
    assert spec.method("fedncf", 0.5, 10).config.participation == 0.5
    assert spec.method("fedncf", 0.0, 10).config.participation == 0.1  # its default
    assert spec.ceiling_config("neumf")["mlp_dim"] == 128  # FedNCF's architecture


@pytest.mark.slow
def test_a_small_grid_runs_reports_and_resumes(ml100k_dir, tmp_path):
    spec = fed_spec(datasets=[str(ml100k_dir)], methods=["fedmf", "fedncf"], models=["neumf"],
                    clients=[80], rounds=[4], workers=1, out=str(tmp_path / "run"),
                    method_configs={"fedncf": {"gmf_dim": 8, "mlp_dim": 8, "layers": [8],
                                               "eval_every": 2},
                                    "fedmf": {"dim": 8, "eval_every": 2}},
                    model_configs={"neumf": {"epochs": 3}})
    result = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"] * 3
    rows = read_results(result.out / "results.csv")
    wide = rows.pivot_table(index="method", columns="metric", values="value")
    assert set(wide.index) == {"central", "fedmf", "fedncf"}
    assert (wide["ndcg@10"] > 0).all() and "sampled_ndcg@10" in wide
    assert wide.loc["fedncf", "best_round"] in (2, 4)
    curve = pd.read_parquet(result.out / "ml-100k" / "fedncf" / "n80" / "pdefault" / "r4"
                            / "seed0" / "curve.parquet")
    assert list(curve["round"]) == [1, 2, 3, 4] and curve["valid_ndcg@10"].notna().sum() == 2
    report = (result.out / "report.md").read_text()
    assert "central neumf" in report and "plots/federated_" in report
    again = run_grid(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped"] * 3  # already done
