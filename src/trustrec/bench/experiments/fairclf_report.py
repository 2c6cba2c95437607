"""The fair-classification report: per dataset and criterion, a table of every method and
knob, the accuracy-against-disparity Pareto plot (fairlearn's points on it) and the
per-round curves of the trained methods.

Every figure is a mean over seeds (``mean ± h``, 95 % Student-t interval, with several
seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.bench.experiments.fairclf import FairClfCell
from trustrec.bench.render import Image, Section, Table, format_cell

NOTES = [
    "Disparity is the criterion's largest |P(h = k | A = a, S) − P(h = k | S)| on the test "
    "rows (the figure ξ bounds); `gap` is the largest between-group difference "
    "(fairlearn's *difference*). Global: all clients' test rows pooled; local: within "
    "each client, then the mean and the worst client.",
    "Post-processing duals are fitted on each client's hold-out rows; the test rows only "
    "measure. FedFACT's local budget is ξ + the spec's local margin.",
    "fairlearn's mitigators are centralised and binary; ThresholdOptimizer reads the "
    "sensitive attribute at prediction time (the other methods never do).",
    "Rounds: communication rounds (training, plus FedFACT's dual rounds); 0 for "
    "centralised methods.",
]

AXES = ["dataset", "criterion", "method", "xi", "alpha", "clients", "seed"]
COLUMNS = [("accuracy", "accuracy", "short"), ("disparity", "global_disparity", "short"),
           ("gap", "global_gap", "short"), ("mean local", "mean_local_disparity", "short"),
           ("worst local", "max_local_disparity", "short"), ("rounds", "rounds", "count"),
           ("train s", "train_seconds", "seconds")]


def _knob(row: pd.Series) -> str:
    if row["xi"] >= 0:
        return f"ξ {row['xi']:g}"
    return f"α {row['alpha']:g}" if row["alpha"] >= 0 else "–"


def _where(row: pd.Series) -> str:
    return "central" if row["clients"] == 1 else f"{int(row['clients'])} clients"


def method_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, knob, clients)."""
    rows = []
    for _, g in frame.groupby(["method", "xi", "alpha", "clients"], sort=False):
        first = g.iloc[0]
        row: dict[str, Any] = {"Method": first["method"], "knob": _knob(first),
                               "where": _where(first)}
        for title, metric, kind in COLUMNS:
            vals = g[metric].dropna().tolist() if metric in g else []
            row[title] = format_cell(vals, kind) if vals else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_pareto(frame: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Accuracy against global disparity, mean over seeds, one line per method (and
    federation size) across its knob; unconstrained and fairlearn points marked."""
    plt = render.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    labels = frame.apply(lambda r: f"{r['method']} ({_where(r)})", axis=1)
    colors = render.colors_for(list(dict.fromkeys(labels)))
    for label, g in frame.groupby(labels, sort=False):
        pts = (g.groupby(["xi", "alpha"])[["global_disparity", "accuracy"]].mean()
               .sort_values("global_disparity"))
        peer = label.startswith("fairlearn")
        ax.plot(pts["global_disparity"], pts["accuracy"], marker="s" if peer else "o",
                linestyle=":" if peer else ("--" if "central" in label else "-"),
                markersize=5, label=label, color=colors[label])
    ax.set_xlabel("global disparity (test)")
    ax.set_ylabel("accuracy (test)")
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2)
    return render.save_figure(fig, path)


def plot_curves(frame: pd.DataFrame, out: Path, path: Path, title: str) -> Path | None:
    """Test accuracy and global disparity per round, mean over seeds, for the trained
    methods at the knob nearest ξ = 0.02 (WassFFed: α nearest 0.5)."""
    plt = render.pyplot()
    fig, (acc, dis) = plt.subplots(1, 2, figsize=(9, 3.5))
    drawn = False
    labels = frame.apply(lambda r: f"{r['method']} {_knob(r)} ({_where(r)})", axis=1)
    colors = render.colors_for(list(dict.fromkeys(labels)))
    for _, g in frame.groupby(["method", "clients"], sort=False):
        for knob, near in (("xi", 0.02), ("alpha", 0.5)):
            values = g.loc[g[knob] >= 0, knob]
            if len(values):
                g = g[g[knob] == values.iloc[(values - near).abs().argmin()]]
        curves = []
        for _, row in g.iterrows():
            f = out / FairClfCell(**{a: row[a] for a in AXES}).id / "curve.parquet"
            if f.is_file():
                curves.append(pd.read_parquet(f).set_index("round"))
        if not curves:
            continue
        mean = pd.concat(curves).groupby(level=0).mean()
        label = labels[g.index[0]]
        acc.plot(mean.index, mean["accuracy"], label=label, color=colors[label])
        dis.plot(mean.index, mean["global_disparity"], label=label, color=colors[label])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    acc.set_xlabel("round")
    acc.set_ylabel("test accuracy")
    dis.set_xlabel("round")
    dis.set_ylabel("global disparity")
    acc.legend(fontsize=6)
    fig.suptitle(title)
    return render.save_figure(fig, path)


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """Per dataset and criterion: the table, the Pareto plot and the curves."""
    frame = render.wide_cells(results, AXES)
    if not len(frame):
        return []
    blocks = []
    for (ds, crit), g in frame.groupby(["dataset", "criterion"], sort=False):
        head = f"{ds} — {crit}"
        name = render.slug(f"{ds}_{crit}")
        items: list[Any] = [Table(method_table(g), group_by=None)]
        for img in (plot_pareto(g, out / render.PLOTS_DIR / f"fairclf_pareto_{name}.png",
                                f"Accuracy against disparity — {head}"),
                    plot_curves(g, out, out / render.PLOTS_DIR / f"fairclf_curves_{name}.png",
                                f"Per round — {head}")):
            if img is not None:
                items.append(Image(img))
        blocks.append(Section(head, items))
    return blocks
