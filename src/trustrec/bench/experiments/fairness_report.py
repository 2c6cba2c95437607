"""The fairness report: per dataset and model, a table of every method's utility, user-side
and item-side figures, and fairness against utility per side (users: |UGF| against NDCG;
items: tail NDCG against NDCG).

Every figure is a mean over seeds (``mean ± h``, 95 % Student-t interval, with several
seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.bench.render import Image, Section, Table, format_cell

NOTES = [
    "`none` is plain training of the same model with the same seed: every other method "
    "is read against it.",
    "UGF (Li et al., WWW 2021) = mean metric of the advantaged users (the most active "
    "5 % by training interactions) − that of the others; the table gives |UGF| and the "
    "sign tells which group is better served. F1@k is Li et al.'s per-user "
    "2|hits| / (|relevant| + k).",
    "UGF re-ranking (Li et al.) solves its 0-1 program with the test items as the "
    "relevance of its F1 constraint, as the paper's protocol does: it is marked (oracle), "
    "an upper bound on what re-ranking can do, not a deployable method. Its constraint "
    "is on F1@10 (ε = 0.05 by default): a base gap already within ε is left alone.",
    "Head items: the most frequent 20 % of items in training (FairRecSys' convention); "
    "head / tail NDCG rank the whole catalogue and count only the held-out items of "
    "that group. APLT@{k}: share of tail items in the lists; ARP@{k}: mean training "
    "count of the listed items; Gini@{k}: inequality of how often items are listed.",
]


def points(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the axes and every metric as columns."""
    return render.wide_cells(results, ["dataset", "model", "method", "seed"])


def columns(k: int) -> list[tuple[str, str, str]]:
    """(column, metric, format) of the per-method table at cut-off ``k``."""
    return [(f"NDCG@{k}", f"ndcg@{k}", "score"), (f"Recall@{k}", f"recall@{k}", "score"),
            (f"|UGF| NDCG@{k}", f"ugf_ndcg@{k}", "score"),
            ("UGF signed", f"ugf_ndcg@{k}_signed", "score"),
            (f"|UGF| F1@{k}", f"ugf_f1@{k}", "score"),
            ("head NDCG", f"ndcg@{k}_head", "score"), ("tail NDCG", f"ndcg@{k}_tail", "score"),
            ("tail Recall", f"recall@{k}_tail", "score"),
            (f"coverage@{k}", f"coverage@{k}", "short"), (f"Gini@{k}", f"gini@{k}", "short"),
            (f"APLT@{k}", f"aplt@{k}", "short"), ("train s", "train_seconds", "seconds")]


def method_label(method: str) -> str:
    """The method's name, marked when it reads the test labels (an oracle)."""
    from trustrec.fairness import FAIRNESS

    return f"{method} (oracle)" if FAIRNESS.get(method).uses_target_labels else method


def method_table(frame: pd.DataFrame, methods: Sequence[str], k: int) -> pd.DataFrame:
    """Rows: methods in spec order; columns: :func:`columns`."""
    rows = []
    for method in methods:
        g = frame[frame["method"] == method]
        if not len(g):
            continue
        row: dict[str, Any] = {"Method": method_label(method)}
        for title, metric, kind in columns(k):
            row[title] = format_cell(g[metric].tolist(), kind) if metric in g else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_tradeoff(frame: pd.DataFrame, path: Path, title: str, k: int) -> Path:
    """Two panels: |UGF| against NDCG (users) and tail NDCG against NDCG (items), one
    point per method (mean over seeds)."""
    plt = render.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    colors = render.colors_for(list(dict.fromkeys(frame["method"])))
    sides = ((f"ugf_ndcg@{k}", f"users: |UGF| NDCG@{k} (lower is fairer)"),
             (f"ndcg@{k}_tail", f"items: tail NDCG@{k} (higher is fairer)"))
    for ax, (metric, label) in zip(axes, sides, strict=True):
        if metric not in frame:
            ax.set_visible(False)
            continue
        m = frame.groupby("method", sort=False)[[f"ndcg@{k}", metric]].mean()
        for method, row in m.iterrows():
            ax.scatter(row[f"ndcg@{k}"], row[metric], label=method_label(method),
                       color=colors[method])
        ax.set_xlabel(f"utility: NDCG@{k}")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return render.save_figure(fig, path)


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """Per dataset and model: the table and the trade-off plot."""
    frame = points(results)
    if not len(frame):
        return []
    ks = list(getattr(spec, "ks", [10]))
    k = 20 if 20 in ks else max(ks)
    methods = list(getattr(spec, "methods", dict.fromkeys(frame["method"])))
    blocks = []
    for (ds, model), g in frame.groupby(["dataset", "model"], sort=False):
        head = f"{ds} — {model}"
        slug = render.slug(f"{ds}_{model}")
        blocks.append(Section(head, [
            Table(method_table(g, methods, k), group_by=None),
            Image(plot_tradeoff(g, out / render.PLOTS_DIR / f"fairness_{slug}.png",
                                f"Fairness vs utility — {head}", k))]))
    return blocks
