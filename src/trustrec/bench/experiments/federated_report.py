"""The federated report: per dataset, a table of every method (and ceiling) and the
utility curves per round (mean over seeds), with the centralised ceiling drawn across.

Every figure is a mean over seeds (``mean ± h``, 95 % Student-t interval, with several
seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.bench.experiments.federated import CENTRAL, FederatedCell
from trustrec.bench.render import Image, Section, Table, format_cell

NOTES = [
    "One client per user. Federated cells keep the round with the best validation NDCG "
    "(the papers' code picks it on test); the test columns are at that round.",
    "NDCG / Recall / HR rank the whole catalogue minus the user's training items; the "
    "`sampled` columns rank each held-out item against 99 sampled items (the papers' "
    "protocol, shown for comparison with them, not for conclusions).",
    "`central` rows are the same architecture trained centrally on the same clients' "
    "data: the ceiling a federation approaches.",
    "Curves: test NDCG on evaluated rounds, for reading only (rounds are chosen on "
    "validation); the dashed line is the ceiling's test NDCG.",
]

AXES = ["dataset", "method", "model", "clients", "participation", "rounds", "seed"]


def points(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the axes and every metric as columns."""
    return render.wide_cells(results, AXES)


def columns(k: int) -> list[tuple[str, str, str]]:
    """(column, metric, format) of the table at cut-off ``k``."""
    return [(f"NDCG@{k}", f"ndcg@{k}", "score"), (f"Recall@{k}", f"recall@{k}", "score"),
            (f"HR@{k}", f"hit@{k}", "score"), (f"sampled NDCG@{k}", f"sampled_ndcg@{k}", "score"),
            ("round", "best_round", "short"), ("s/round", "seconds_per_round", "seconds"),
            ("train s", "train_seconds", "seconds")]


def _label(row: pd.Series) -> str:
    if row["method"] == CENTRAL:
        return f"central {row['model']}"
    share = "default" if row["participation"] == 0 else f"{row['participation']:g}"
    return f"{row['method']} (p {share}, {int(row['rounds'])} rounds)"


def method_table(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per (method, clients, participation, rounds), ceilings first."""
    rows = []
    keys = ["method", "model", "clients", "participation", "rounds"]
    for _, g in frame.groupby(keys, sort=False):
        first = g.iloc[0]
        row: dict[str, Any] = {"Method": _label(first),
                               "clients": "all" if first["clients"] == 0 else int(first["clients"])}
        for title, metric, kind in columns(k):
            vals = g[metric].dropna().tolist() if metric in g else []
            row[title] = format_cell(vals, kind) if vals else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(frame: pd.DataFrame, out: Path, path: Path, title: str, k: int) -> Path | None:
    """Test NDCG@k per evaluated round, mean over seeds, one line per federated method;
    the ceilings as dashed lines."""
    col = f"test_ndcg@{k}"
    plt = render.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    fed = frame[frame["method"] != CENTRAL]
    colors = render.colors_for(list(dict.fromkeys(fed.apply(_label, axis=1))))
    drawn = False
    for label, g in fed.groupby(fed.apply(_label, axis=1), sort=False):
        curves = []
        for _, row in g.iterrows():
            cell = FederatedCell(**{a: row[a] for a in AXES})
            f = out / cell.id / "curve.parquet"
            if f.is_file():
                c = pd.read_parquet(f)
                if col in c:
                    curves.append(c.dropna(subset=[col]).set_index("round")[col])
        if curves:
            mean = pd.concat(curves, axis=1).mean(axis=1)
            ax.plot(mean.index, mean.values, marker="o", markersize=3, label=label,
                    color=colors[label])
            drawn = True
    for style, (model, g) in zip(("--", ":", "-."), frame[frame["method"] == CENTRAL]
                                 .groupby("model"), strict=False):
        ax.axhline(g[f"ndcg@{k}"].mean(), linestyle=style, color="grey",
                   label=f"central {model} (ceiling)")
    if not drawn:
        render.pyplot().close(fig)
        return None
    ax.set_xlabel("round")
    ax.set_ylabel(f"test NDCG@{k}")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return render.save_figure(fig, path)


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """Per dataset and federation size: the table and the curves."""
    frame = points(results)
    if not len(frame):
        return []
    ks = list(getattr(spec, "ks", [10]))
    k = 20 if 20 in ks else max(ks)
    blocks = []
    for (ds, clients), g in frame.groupby(["dataset", "clients"], sort=False):
        head = f"{ds} — {'all users' if clients == 0 else f'{int(clients)} clients'}"
        blocks_ = [Table(method_table(g, k), group_by=None)]
        img = plot_curves(g, out, out / render.PLOTS_DIR /
                          f"federated_{render.slug(f'{ds}_{clients}')}.png",
                          f"Utility per round — {head}", k)
        if img is not None:
            blocks_.append(Image(img))
        blocks.append(Section(head, blocks_))
    return blocks
