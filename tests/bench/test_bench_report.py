"""Report formatting: intervals over seeds, tables, plots from a results table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from trustrec.bench.collect import RESULT_COLUMNS, collect
from trustrec.bench.report import format_cell, headline_k, mean_ci, write_report


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


def _frame(seeds=(0, 1, 2)):
    rows = []
    for method, ndcg, secs in (("retrain", 0.30, 10.0), ("sisa", 0.25, 2.0)):
        for seed in seeds:
            m = {"ndcg@20": ndcg + 0.01 * seed, "recall@20": 0.2, "hit@20": 0.8,
                 "a_igf": 0.05, "forget_seconds": secs, "speedup_vs_retrain": 10.0 / secs,
                 "overlap@20_vs_retrain": 1.0 if method == "retrain" else 0.6,
                 "rank_corr_vs_retrain": 1.0 if method == "retrain" else 0.7}
            for k, v in m.items():
                rows.append({"dataset": "ml-100k", "model": "bpr", "method": method,
                             "selection": "core", "ratio": 0.05, "seed": seed,
                             "metric": k, "value": v})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def test_report_tables_with_intervals(tmp_path):
    paths = write_report(tmp_path, _frame())
    md = paths["markdown"].read_text()
    # NDCG@20 of retrain over seeds 0, 1, 2: 0.30, 0.31, 0.32 → 0.3100 ± t(0.975, 2)·0.01/√3
    h = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert f"| bpr | retrain | 0.3100 ± {h:.4f} |" in md
    assert "5.00×" in md  # sisa speed-up
    assert "seeds: 0, 1, 2" in md
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3
    html = paths["html"].read_text()
    assert html.count("<img") == 3 and "<table>" in html


def test_headline_k_falls_back_to_largest():
    f = _frame(seeds=(0,))
    assert headline_k(f) == 20
    f["metric"] = f["metric"].str.replace("@20", "@10")
    assert headline_k(f) == 10


def test_collect_of_empty_folder_writes_header_only(tmp_path):
    frame = collect(tmp_path)
    assert frame.empty
    assert (tmp_path / "results.csv").read_text().strip() == ",".join(RESULT_COLUMNS)
