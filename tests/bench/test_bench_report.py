"""Report formatting: intervals over seeds, tables, plots from a results table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trustrec.bench import run_bench, spec_from_mapping
from trustrec.bench.collect import collect, read_results, result_columns
from trustrec.bench.experiments.unlearning import Unlearning
from trustrec.bench.render import format_cell, mean_ci, summary_frame
from trustrec.bench.report import headline_k, write_report

RESULT_COLUMNS = result_columns(Unlearning.axes)
GROUP = [a for a in Unlearning.axes if a != "seed"]


def test_mean_ci_is_a_student_t_interval():
    vals = [0.30, 0.32, 0.35]
    mean, h, n = mean_ci(vals)
    sem = pd.Series(vals).std(ddof=1) / math.sqrt(3)
    assert n == 3 and mean == pytest.approx(0.32333333)
    assert h == pytest.approx(stats.t.ppf(0.975, 2) * sem)


def test_one_seed_shows_the_value_only():
    assert format_cell([0.31234], "score") == "0.3123"
    assert format_cell([], "score") == "–"
    assert format_cell([float("nan"), 0.5], "score") == "0.5000"
    assert " ± " in format_cell([0.3, 0.4], "score")
    assert format_cell([2.5], "ratio") == "2.50×"
    assert format_cell([47.0, 47.0], "count") == "47"  # identical seeds: no "± 0"
    assert format_cell([2.1234e-5], "small") == "2.12e-05"


def _frame(seeds=(0, 1, 2)):
    rows = []
    for method, ndcg, secs in (("retrain", 0.30, 10.0), ("sisa", 0.25, 2.0)):
        for seed in seeds:
            m = {"ndcg@20": ndcg + 0.01 * seed, "recall@20": 0.2, "hit@20": 0.8,
                 "a_igf": 0.05, "forget_seconds": secs, "speedup_vs_retrain": 10.0 / secs,
                 "overlap@20_vs_retrain": 1.0 if method == "retrain" else 0.6,
                 "rank_corr_vs_retrain": 1.0 if method == "retrain" else 0.7}
            for k, v in m.items():
                rows.append({"kind": "unlearning", "cell": "", "dataset": "ml-100k",
                             "model": "bpr", "method": method,
                             "grain": "user", "selection": "core", "ratio": 0.05,
                             "seed": seed, "metric": k, "value": v})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_report_tables_with_intervals(tmp_path):
    paths = write_report(tmp_path, _frame())
    md = paths["markdown"].read_text()
    # NDCG@20 of retrain over seeds 0, 1, 2: 0.30, 0.31, 0.32 → 0.3100 ± t(0.975, 2)·0.01/√3
    # CURE4Rec-style columns: MIA, strongest attack (not measured here: "–"), overlap
    # (identical over seeds: the value alone), then NDCG@20 and Recall@20
    h = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert f"| bpr | retrain | – | 1.0000 | 0.3100 ± {h:.4f} | 0.2000 |" in md
    assert "5.00×" in md  # sisa speed-up
    assert "seeds: 0, 1, 2" in md
    # one overview plot, then one figure per aspect of the one selection
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5
    html = paths["html"].read_text()
    assert html.count("<img") == 5 and "<table>" in html
    assert '<th colspan="2" class="aspect">Completeness</th>' in html
    summary = pd.read_csv(paths["summary"])
    row = summary[(summary["method"] == "retrain") & (summary["metric"] == "ndcg@20")]
    assert row["ci_high"].item() - row["mean"].item() == pytest.approx(h)


def test_summary_frame_is_mean_and_student_t_interval():
    frame = _frame()
    frame.loc[(frame["method"] == "sisa") & (frame["metric"] == "a_igf"), "value"] = \
        [0.01, 0.04, 0.10]
    s = summary_frame(frame, GROUP).set_index(["method", "metric"])
    vals = np.array([0.01, 0.04, 0.10])
    h = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / math.sqrt(3)
    row = s.loc[("sisa", "a_igf")]
    assert row["n"] == 3 and row["mean"] == pytest.approx(vals.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((vals.mean() - h, vals.mean() + h))
    one = summary_frame(_frame(seeds=(0,)), GROUP).set_index(["method", "metric"])
    assert one.loc[("sisa", "a_igf"), "n"] == 1
    assert np.isnan(one.loc[("sisa", "a_igf"), "ci_low"])


def test_headline_k_falls_back_to_largest():
    f = _frame(seeds=(0,))
    assert headline_k(f) == 20
    f["metric"] = f["metric"].str.replace("@20", "@10")
    assert headline_k(f) == 10


def test_collect_of_empty_folder_writes_header_only(tmp_path):
    frame = collect(tmp_path, Unlearning())
    assert frame.empty
    assert (tmp_path / "results.csv").read_text().strip() == ",".join(RESULT_COLUMNS)


@pytest.mark.slow
def test_real_two_seed_grid_has_intervals_figures_and_table(ml100k_dir, tmp_path):
    fast = {"bpr": {"epochs": 2, "dim": 8, "eval_every": 1, "patience": 1}}
    spec = spec_from_mapping({
        "datasets": [str(ml100k_dir)], "models": ["bpr"], "methods": ["retrain", "sisa"],
        "selections": ["edge"], "ratios": [0.05], "seeds": [0, 1], "out": str(tmp_path),
        "model_configs": fast, "method_configs": {"sisa": {"n_shards": 2}}, "workers": 1})
    result = run_bench(spec, quiet=True, stop_on_error=True)
    assert [c.status for c in result.cells] == ["done"] * 4
    frame = read_results(tmp_path / "results.csv")
    summary = pd.read_csv(result.paths["summary"])
    # every (group, metric) of results.csv is summarised over its two seeds
    assert len(summary) == len(frame.drop_duplicates(["method", "metric"]))
    for metric in ("mia_auc_user", "mia_auc_interaction", "ndcg@20", "shard_fairness",
                   "forget_seconds"):
        vals = frame[(frame["method"] == "sisa") & (frame["metric"] == metric)]["value"]
        row = summary[(summary["method"] == "sisa") & (summary["metric"] == metric)]
        h = stats.t.ppf(0.975, 1) * vals.std(ddof=1) / math.sqrt(2)
        assert row["n"].item() == 2 and row["mean"].item() == pytest.approx(vals.mean())
        assert row["ci_high"].item() == pytest.approx(vals.mean() + h)
    md = result.paths["markdown"].read_text()
    assert "### edge users" in md and "| bpr | sisa |" in md
    sisa_row = next(line for line in md.splitlines() if line.startswith("| bpr | sisa |"))
    assert sisa_row.count(" ± ") >= 5  # intervals over the two seeds
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == [f"{a}_ml-100k_p0.05_edge.png" for a in
                    ("completeness", "efficiency", "fairness", "utility")] + [
                        "utility_vs_time_ml-100k_p0.05.png"]


def test_results_written_before_experiment_kinds_are_read_in_todays_columns(tmp_path):
    from trustrec.bench.experiments.privacy import Privacy, expand_attack_rows

    old = tmp_path / "unlearning.csv"
    old.write_text("dataset,model,method,selection,ratio,seed,metric,value\n"
                   "ml-100k,bpr,sisa,core,0.05,0,ndcg@20,0.25\n")
    frame = read_results(old)
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame.loc[0, ["kind", "grain", "value"]].tolist() == ["unlearning", "user", 0.25]
    priv = tmp_path / "privacy.csv"
    priv.write_text("dataset,model,method,attributes,seed,attribute,view,users,attacker,"
                    "metric,value\n"
                    "ml-100k,bpr,lego,gender,0,gender,released,held-out,lr,auc,0.61\n"
                    "ml-100k,bpr,lego,gender,0,,,,,ndcg@20,0.3\n")
    frame = read_results(priv)
    assert list(frame.columns) == result_columns(Privacy.axes)
    assert frame["metric"].tolist() == ["attack/gender/held-out/released/lr/auc", "ndcg@20"]
    rows = expand_attack_rows(frame)
    assert rows.loc[0, ["attribute", "users", "view", "attacker", "metric"]].tolist() == [
        "gender", "held-out", "released", "lr", "auc"]
    assert rows.loc[1, ["attribute", "metric"]].tolist() == ["", "ndcg@20"]
