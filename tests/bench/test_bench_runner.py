"""A tiny real benchmark on MovieLens-100K: files, results.csv, report, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from trustrec.bench import RESULT_COLUMNS, run_bench, spec_from_mapping
from trustrec.bench.collect import read_results

FAST = {"bpr": {"epochs": 2, "dim": 8, "eval_every": 1, "patience": 1}}


def tiny_spec(ml100k_dir, out, **extra):
    values = {"datasets": [str(ml100k_dir)], "models": ["bpr"],
              "methods": ["retrain", "sisa"], "selections": ["core"], "ratios": [0.05],
              "seeds": [0], "out": str(out), "model_configs": FAST,
              "method_configs": {"sisa": {"n_shards": 2}}}
    values.update(extra)
    return spec_from_mapping(values)


RETRAIN = "ml-100k/bpr/retrain/core/p0.05/seed0"
SISA = "ml-100k/bpr/sisa/core/p0.05/seed0"


@pytest.fixture(scope="module")
def bench_run(ml100k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    spec = tiny_spec(ml100k_dir, out)
    result = run_bench(spec, quiet=True, stop_on_error=True)
    return spec, result


def test_cells_written_with_all_files(bench_run):
    spec, result = bench_run
    assert [c.status for c in result.cells] == ["done", "done"]
    for cid in (RETRAIN, SISA):
        folder = result.out / cid
        for name in ("config.json", "run.json", "metrics.json", "per_user.parquet"):
            assert (folder / name).is_file(), name
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] == "done"
        assert {"python", "torch", "numpy", "trustrec"} <= set(run["versions"])
        assert run["host"]["cpu_count"] >= 1
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_config"]["epochs"] == 2 and cfg["model_config"]["dim"] == 8
        assert cfg["cell"]["method"] in ("retrain", "sisa")
    cfg = json.loads((result.out / SISA / "config.json").read_text())
    assert cfg["method_config"]["n_shards"] == 2


def test_results_csv_long_format(bench_run):
    spec, result = bench_run
    frame = read_results(result.out / "results.csv")
    assert list(frame.columns) == RESULT_COLUMNS
    assert (result.out / "results.csv").read_text().splitlines()[0] == \
        "dataset,model,method,selection,ratio,seed,metric,value"
    assert set(frame["method"]) == {"retrain", "sisa"}
    assert set(frame["dataset"]) == {"ml-100k"}
    metrics = set(frame["metric"])
    for m in ("ndcg@20", "recall@20", "hit@20", "mrr@20", "precision@20", "ndcg@10",
              "ndcg@20_before", "a_igf", "forget_seconds", "learn_seconds",
              "speedup_vs_retrain", "overlap@20_vs_retrain", "rank_corr_vs_retrain",
              "forgotten_item_pct_gap"):
        assert m in metrics, m
    v = frame.set_index(["method", "metric"])["value"]
    # the retrain cell is the reference: it agrees with itself
    assert v[("retrain", "overlap@20_vs_retrain")] == pytest.approx(1.0)
    assert v[("retrain", "rank_corr_vs_retrain")] == pytest.approx(1.0)
    assert v[("retrain", "speedup_vs_retrain")] == pytest.approx(1.0)
    assert v[("retrain", "forgotten_item_pct_gap")] == pytest.approx(0.0)
    assert 0.0 <= v[("sisa", "overlap@20_vs_retrain")] <= 1.0
    # speed-up is retrain's forget time over the method's
    assert v[("sisa", "speedup_vs_retrain")] == pytest.approx(
        v[("retrain", "forget_seconds")] / v[("sisa", "forget_seconds")])
    # 5 % of 943 users forgotten; they are excluded from utility after forgetting
    assert v[("sisa", "n_forget_users")] == 47
    assert v[("sisa", "n_eval_users")] == v[("sisa", "n_eval_users_before")] - 47
    for m in ("ndcg@20", "a_igf"):
        assert np.isfinite(v[("sisa", m)])


def test_per_user_table_phases(bench_run):
    _, result = bench_run
    table = pd.read_parquet(result.out / SISA / "per_user.parquet")
    assert set(table["phase"]) == {"before", "after"}
    after = table[table["phase"] == "after"]
    before = table[table["phase"] == "before"]
    assert not after["forgotten"].any()
    assert before["forgotten"].sum() == 47
    assert {"user", "raw_user_id", "ndcg@20", "recall@20"} <= set(table.columns)
    metrics = json.loads((result.out / SISA / "metrics.json").read_text())
    assert metrics["ndcg@20"] == pytest.approx(after["ndcg@20"].mean())


def test_report_and_plots(bench_run):
    _, result = bench_run
    md = (result.out / "report.md").read_text()
    html = (result.out / "report.html").read_text()
    assert "| bpr | sisa |" in md and "| bpr | retrain |" in md
    assert "NDCG@20" in md and "A-IGF" in md and "Speed-up" in md
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    pngs = sorted(p.name for p in (result.out / "plots").glob("*.png"))
    assert len(pngs) == 3
    for p in (result.out / "plots").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_cells(bench_run):
    spec, result = bench_run
    stamps = {cid: (result.out / cid / "run.json").stat().st_mtime_ns
              for cid in (RETRAIN, SISA)}
    again = run_bench(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["skipped", "skipped"]
    for cid, ns in stamps.items():
        assert (result.out / cid / "run.json").stat().st_mtime_ns == ns
    assert len(read_results(result.out / "results.csv")) == len(result.results)


def test_killed_cells_are_redone(bench_run):
    spec, result = bench_run
    out = result.out
    # a cell whose run.json never got written (killed mid-cell) ...
    (out / SISA / "run.json").unlink()
    # ... and a half-written one: status still "running", metrics missing
    run = json.loads((out / RETRAIN / "run.json").read_text())
    (out / RETRAIN / "run.json").write_text(json.dumps({**run, "status": "running"}))
    (out / RETRAIN / "metrics.json").unlink()
    (out / RETRAIN / "stray.tmp").write_text("partial")
    old = read_results(out / "results.csv")
    again = run_bench(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["done", "done"]
    assert not (out / RETRAIN / "stray.tmp").exists()
    for cid in (RETRAIN, SISA):
        assert json.loads((out / cid / "run.json").read_text())["status"] == "done"
    new = read_results(out / "results.csv")
    # same seeds, same data: deterministic metrics (timings aside)
    key = ["method", "metric"]
    timing = new["metric"].str.contains("seconds|speedup")
    merged = new[~timing].merge(old, on=[*key, "dataset", "model", "selection", "ratio",
                                         "seed"])
    assert len(merged) == (~timing).sum()
    np.testing.assert_allclose(merged["value_x"], merged["value_y"], rtol=1e-6)


def test_changed_config_reruns_cells(bench_run, ml100k_dir):
    spec, result = bench_run
    out = result.out / "../changed"
    shutil.copytree(result.out, out)
    spec2 = tiny_spec(ml100k_dir, out, model_configs={"bpr": {**FAST["bpr"], "dim": 4}},
                      methods=["retrain"])
    again = run_bench(spec2, quiet=True, stop_on_error=True)
    assert [c.status for c in again.cells] == ["done"]
    cfg = json.loads((out / RETRAIN / "config.json").read_text())
    assert cfg["model_config"]["dim"] == 4
    frame = read_results(out / "results.csv")
    assert set(frame["method"]) == {"retrain"}


def test_sisa_without_retrain_in_grid_still_gets_reference(ml100k_dir, tmp_path):
    spec = tiny_spec(ml100k_dir, tmp_path / "run", methods=["sisa"])
    result = run_bench(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"]
    ref = tmp_path / "run" / "_reference" / "ml-100k" / "bpr" / "core" / "p0.05" / "seed0"
    assert json.loads((ref / "state.json").read_text())["status"] == "done"
    metrics = json.loads((tmp_path / "run" / SISA / "metrics.json").read_text())
    assert metrics["retrain_forget_seconds"] > 0
    assert np.isfinite(metrics["overlap@20_vs_retrain"])
