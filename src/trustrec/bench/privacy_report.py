"""Turn the privacy ``results.csv`` into ``report.md``, ``report.html`` and PNG plots.

Per dataset and model, the report shows one privacy-vs-utility scatter plot with a panel
per attribute (x = NDCG@k on the test split, y = the best attacker's balanced accuracy,
dashed line = chance, one colour per method, error bars = 95 % intervals over seeds), and
one table per attribute: rows = method (and attribute set, when the attribute is in
several), columns = balanced accuracy per attacker, the best attacker's balanced accuracy,
macro-F1 and AUC, chance, NDCG@k, Recall@k, the relative NDCG drop against the undefended
model and the method's seconds. With several seeds a cell reads ``mean ± h`` (95 %
Student-t interval of the mean), with one seed just the value.

"Best" is the maximum over attackers, per seed and per metric (the strongest attack on
each measure), taken before averaging over seeds; the ``majority`` baseline is left out.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trustrec.bench.privacy_collect import read_privacy_results
from trustrec.bench.report import (
    colors_for,
    format_cell,
    html_table,
    md_table,
    mean_ci,
    pyplot,
    save_figure,
    write_pages,
)

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.bench.privacy_spec import PrivacySpec

PLOTS_DIR = "plots"
BASELINE = "none"
#: Attackers that are baselines, not attacks (left out of "best").
BASELINE_ATTACKERS = ("majority",)
CELL = ["dataset", "model", "method", "attributes", "seed"]
_MARKERS = "osD^vP*Xh<>"


# ---------------------------------------------------------------------------- tables
def headline_k(results: pd.DataFrame) -> int:
    """20 when ``ndcg@20`` was measured, else the largest measured NDCG cut-off."""
    ks = sorted(int(m[5:]) for m in results["metric"].unique()
                if m.startswith("ndcg@") and m[5:].isdigit())
    return 20 if 20 in ks or not ks else ks[-1]


def per_seed_points(results: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per (cell, attribute): attack and utility figures of one seed.

    Columns: the cell axes, ``attribute``, ``bacc:<attacker>`` per attacker,
    ``best_bacc``, ``best_macro_f1``, ``best_auc``, ``chance``, ``ndcg``, ``recall``,
    ``rel_drop``, ``seconds``.
    """
    attack = results[results["attribute"] != ""]
    util = results[results["attribute"] == ""]
    if attack.empty:
        return pd.DataFrame(columns=[*CELL, "attribute"])
    keys = [*CELL, "attribute"]
    bacc = attack[attack["metric"] == "balanced_accuracy"].pivot_table(
        index=keys, columns="attacker", values="value", aggfunc="first")
    bacc.columns = [f"bacc:{a}" for a in bacc.columns]
    real = attack[~attack["attacker"].isin(BASELINE_ATTACKERS)]
    best = real.pivot_table(index=keys, columns="metric", values="value", aggfunc="max")
    best = best.rename(columns={m: f"best_{m}" for m in ("balanced_accuracy", "macro_f1",
                                                         "auc")})
    best = best.rename(columns={"best_balanced_accuracy": "best_bacc"})
    chance = attack[attack["metric"] == "chance"].groupby(keys)["value"].first()
    table = bacc.join(best.drop(columns=["chance"], errors="ignore"), how="outer")
    table["chance"] = chance
    names = {f"ndcg@{k}": "ndcg", f"recall@{k}": "recall", f"ndcg@{k}_rel_drop": "rel_drop",
             "method_seconds": "seconds"}
    u = util[util["metric"].isin(list(names))].pivot_table(
        index=CELL, columns="metric", values="value", aggfunc="first").rename(columns=names)
    out = table.reset_index().merge(u.reset_index(), on=CELL, how="left")
    # pivot tables sort their keys; restore the grid's order (results are in cell order)
    order = {c: {v: i for i, v in enumerate(dict.fromkeys(results[c]))}
             for c in ("dataset", "model", "attributes", "method", "attribute")}
    out = out.sort_values(["dataset", "model", "attributes", "method", "attribute", "seed"],
                          key=lambda col: col.map(order[col.name]) if col.name in order
                          else col, kind="stable").reset_index(drop=True)
    for col in (*names.values(), "best_bacc", "best_macro_f1", "best_auc", "chance"):
        if col not in out:
            out[col] = np.nan
    return out


def _order(values: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(values))
    return ([BASELINE] if BASELINE in seen else []) + [v for v in seen if v != BASELINE]


def _pct(values: Sequence[float]) -> str:
    mean, h, _ = mean_ci([100 * v for v in values])
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.1f} %" if h is None else f"{mean:.1f} ± {h:.1f} %"


def attribute_table(points: pd.DataFrame, attackers: Sequence[str], k: int) -> pd.DataFrame:
    """Formatted table of one (dataset, model, attribute): a row per (set, method)."""
    sets = list(dict.fromkeys(points["attributes"]))
    rows = []
    for attrs in sets:
        sub = points[points["attributes"] == attrs]
        for method in _order(sub["method"].tolist()):
            g = sub[sub["method"] == method]
            row = {"Method": method}
            if len(sets) > 1:
                row = {"Protected set": attrs, **row}
            for a in attackers:
                col = f"bacc:{a}"
                row[f"BAcc {a}"] = format_cell(g[col].tolist() if col in g else [], "score")
            row.update({
                "BAcc best": format_cell(g["best_bacc"].tolist(), "score"),
                "Macro-F1 best": format_cell(g["best_macro_f1"].tolist(), "score"),
                "AUC best": format_cell(g["best_auc"].tolist(), "score"),
                "Chance": format_cell(g["chance"].tolist(), "score"),
                f"NDCG@{k}": format_cell(g["ndcg"].tolist(), "score"),
                f"Recall@{k}": format_cell(g["recall"].tolist(), "score"),
                f"NDCG@{k} drop": _pct(g["rel_drop"].tolist()),
                "Seconds": format_cell(g["seconds"].tolist(), "seconds"),
                "Seeds": str(g["seed"].nunique()),
            })
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- plots
def _mean_h(values: Sequence[float]) -> tuple[float, float]:
    mean, h, _ = mean_ci(values)
    return mean, (h or 0.0)


def plot_privacy_utility(points: pd.DataFrame, k: int, path: Path, title: str) -> Path:
    """Best attacker's balanced accuracy against NDCG@k, one panel per attribute.

    One marker per method (colour) and attribute set (shape, when there are several);
    error bars are 95 % intervals over seeds; the dashed line is chance.
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    attributes = list(dict.fromkeys(points["attribute"]))
    methods = _order(points["method"].tolist())
    sets = list(dict.fromkeys(points["attributes"]))
    colors = colors_for(methods)
    shape = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(sets)}
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.4 * len(attributes) + 2.0, 4.0),
                             squeeze=False)
    for ax, attr in zip(axes[0], attributes, strict=True):
        p = points[points["attribute"] == attr]
        for (attrs, method), g in p.groupby(["attributes", "method"], sort=False):
            x, hx = _mean_h(g["ndcg"].tolist())
            y, hy = _mean_h(g["best_bacc"].tolist())
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            ax.errorbar(x, y, xerr=hx or None, yerr=hy or None, fmt=shape[attrs], ms=8,
                        color=colors[method], mec="white", mew=0.8, capsize=3)
            ax.annotate(method, (x, y), xytext=(6, 4), textcoords="offset points",
                        fontsize=8, color="0.3")
        chance = float(np.nanmean(p["chance"])) if p["chance"].notna().any() else None
        if chance is not None:
            ax.axhline(chance, color="0.2", ls="--", lw=1)
        ax.set_title(attr)
        ax.set_xlabel(f"NDCG@{k} (test) →  better utility")
        ax.set_ylabel("best attacker's balanced accuracy ↓")
    handles = [Line2D([], [], ls="", marker="o", color=colors[m], ms=8, label=m)
               for m in methods]
    if len(sets) > 1:
        handles += [Line2D([], [], ls="", marker=shape[s], color="0.4", ms=8,
                           label=f"protects {s}") for s in sets]
    handles.append(Line2D([], [], color="0.2", ls="--", lw=1, label="chance"))
    fig.legend(handles=handles, loc="center right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))
    return save_figure(fig, path)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text).strip("-")


# ---------------------------------------------------------------------------- documents
NOTES = [
    "Attack: each attacker is trained to predict the attribute from the released user "
    "table (the representation the model scores users with) with stratified k-fold "
    "cross-validation over the labelled users; scores are out-of-fold. Balanced accuracy "
    "and macro-F1 weigh every class equally; AUC is one-vs-rest for several classes. "
    "Chance is the balanced accuracy of guessing (1 / number of classes). Lower is more "
    "private; chance is the floor.",
    "\"Best\" is the strongest attacker on each measure, per seed (the majority baseline "
    "left out), then averaged over seeds.",
    "Utility: full ranking over all items minus the user's training items on the test "
    "split. NDCG@{k} drop = (NDCG@{k} of the undefended model 'none' − NDCG@{k}) / "
    "NDCG@{k} of 'none', same dataset, model and seed; positive means utility lost.",
    "Seconds: wall time of the method — the post-training step (PoT-AU, LEGO, output "
    "noise) on top of the trained model, or the whole defended training (RAID, "
    "adversarial); 0 for 'none'. metrics.json also has base_train_seconds and "
    "total_seconds.",
    "With several seeds, a cell reads mean ± half-width of the 95 % Student-t interval; "
    "error bars in the plots are the same intervals.",
]


def _grid_lines(results: pd.DataFrame, spec: PrivacySpec | None) -> list[str]:
    lines = [f"{col}: {', '.join(str(v) for v in dict.fromkeys(results[col]))}"
             for col in ("dataset", "model", "method", "attributes", "seed")]
    attackers = [a for a in dict.fromkeys(results["attacker"])
                 if a and a not in BASELINE_ATTACKERS]
    baselines = [a for a in BASELINE_ATTACKERS if a in set(results["attacker"])]
    lines.append(f"attackers: {', '.join(attackers)}"
                 + (f" (baseline: {', '.join(baselines)})" if baselines else ""))
    n = len(results.drop_duplicates(CELL))
    lines.append(f"finished cells: {n}")
    if spec is not None:
        expected = (len(spec.datasets) * len(spec.models) * len(spec.methods)
                    * len(spec.attributes) * len(spec.seeds))
        lines[-1] += f" of {expected}"
        lines.append(f"attack folds: {spec.folds}")
        lines.append("split (train/valid/test): "
                     + "/".join(format(x, "g") for x in spec.split_ratios))
        for name, cfgs in (("model", spec.model_configs), ("method", spec.method_configs)):
            for key, cfg in cfgs.items():
                if cfg:
                    lines.append(f"{name} {key}: "
                                 + ", ".join(f"{a}={b}" for a, b in cfg.items()))
    return lines


def write_privacy_report(out: str | Path, results: pd.DataFrame | None = None,
                         spec: PrivacySpec | None = None,
                         title: str = "trustrec attribute-privacy benchmark"
                         ) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the plots for a privacy benchmark folder.

    Args:
        out: the benchmark's output folder.
        results: the long results table (default: read ``<out>/results.csv``).
        spec: the spec that produced it (adds folds, split and configs to the description).
        title: the report's title.

    Returns:
        Paths: ``"markdown"``, ``"html"`` and ``"plots"`` (the plots folder).
    """
    out = Path(out)
    if results is None:
        results = read_privacy_results(out / "results.csv")
    k = headline_k(results)
    points = per_seed_points(results, k) if len(results) else pd.DataFrame()
    attackers = [a for a in dict.fromkeys(results["attacker"])
                 if a and a not in BASELINE_ATTACKERS]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    grid = _grid_lines(results, spec) if len(results) else ["no finished cells"]
    notes = [n.format(k=k) for n in NOTES]
    intro = ("How much each released user table leaks its users' attributes, and what "
             "removing the leak costs in recommendation quality.")
    md = [f"# {title}", "", intro, "", f"Generated {now} from `results.csv` (long format: "
          "one row per cell × metric).", "", "## Grid", ""] + [f"- {x}" for x in grid]
    hb = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>",
          f'<p class="meta">Generated {now} from <code>results.csv</code> (long format: one '
          "row per cell × metric).</p>", "<h2>Grid</h2>", '<ul class="grid">']
    hb += [f"<li>{html.escape(x)}</li>" for x in grid] + ["</ul>"]

    groups = points.groupby(["dataset", "model"], sort=False) if len(points) else []
    for (ds, model), frame in groups:
        head = f"{ds} — {model}"
        plot = plot_privacy_utility(
            frame, k, out / PLOTS_DIR / f"privacy_utility_{_slug(ds)}_{_slug(model)}.png",
            f"Privacy vs utility — {head}")
        rel = plot.relative_to(out).as_posix()
        data = base64.b64encode(plot.read_bytes()).decode()
        md += ["", f"## {head}", "", f"![privacy vs utility, {head}]({rel})"]
        hb += [f"<h2>{html.escape(head)}</h2>",
               f'<img alt="privacy vs utility, {html.escape(head)}" '
               f'src="data:image/png;base64,{data}">']
        for attr in dict.fromkeys(frame["attribute"]):
            tab = attribute_table(frame[frame["attribute"] == attr], attackers, k)
            md += ["", f"### Attribute: {attr}", "", md_table(tab)]
            hb += [f"<h3>Attribute: {html.escape(attr)}</h3>", html_table(tab, group_by=None)]

    md_path, html_path = write_pages(out, title, md, hb, notes)
    return {"markdown": md_path, "html": html_path, "plots": out / PLOTS_DIR}
