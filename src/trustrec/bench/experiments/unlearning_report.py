"""The unlearning report: CURE4Rec-style tables and one figure per aspect, per selection.

Layout (sections for :mod:`trustrec.bench.render`): per dataset, request grain and forget
ratio, one overview plot (utility against forget time), then per forget-set selection
(core / edge / random) a table whose columns are grouped by aspect — completeness (the
attack suite's strongest AUC with its interval, and top-k overlap with the retrained
model), utility (NDCG@k, Recall@k), efficiency (forget seconds, speed-up over retraining,
parts retrained) and fairness (A-IGF, shard fairness) — a table of supporting metrics, and
one figure per aspect with a bar per method and model and the 95 % intervals as error bars
(the learned model's value before forgetting marked on each bar). Under the CURE4Rec
protocol, the paper's published figures come first, beside ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec.bench.experiments.unlearning import REFERENCE_METHOD
from trustrec.bench.render import (
    MARKERS,
    PLOTS_DIR,
    Details,
    Image,
    Section,
    Table,
    Text,
    colors_for,
    format_cell,
    log_axis,
    mean_ci,
    order,
    pyplot,
    save_figure,
    slug,
)

REFERENCE = REFERENCE_METHOD
SELECTION_ORDER = ["core", "edge", "random"]
GRAIN_ORDER = ["user", "interaction", "item"]
GRAIN_UNITS = {"user": "users", "interaction": "interactions", "item": "items"}


@dataclass(frozen=True)
class Column:
    """A report column: metric name template, header, how to format it, and its plot.

    Attributes:
        metric: metric name, ``{k}`` standing for the headline cut-off.
        header: column header (``{k}`` likewise).
        kind: ``"score"``, ``"small"`` (a tiny value such as a variance: 3 significant
            digits), ``"seconds"``, ``"ratio"`` or ``"count"``.
        reference: a value to draw as a dashed line in plots (chance, or retrain's).
        log: plot on a log scale.
        before: metric of the learned model to mark on the bar (e.g. the AUC before
            forgetting).
        baseline: where bars start (0.5 for an AUC: bars show the distance from chance).
        bounds: the metric's range, to clip the plot's y axis (e.g. ``(0, 1)``).
        se: metric holding the value's own standard error (a bootstrap SE): with one
            seed, the table and the plots show ``± 1.96 SE`` from it.
    """

    metric: str
    header: str
    kind: str = "score"
    reference: float | None = None
    log: bool = False
    before: str | None = None
    baseline: float = 0.0
    bounds: tuple[float, float] | None = None
    se: str | None = None

    def name(self, k: int) -> str:
        """The metric name at cut-off ``k``."""
        return self.metric.format(k=k)

    def title(self, k: int) -> str:
        """The header at cut-off ``k``."""
        return self.header.format(k=k)


#: The four aspects of CURE4Rec, in table and figure order.
ASPECTS: dict[str, tuple[Column, ...]] = {
    "completeness": (
        Column("mia_auc", "MIA, strongest attack (0.5 = forgotten)", reference=0.5,
               before="mia_auc_before", baseline=0.5, bounds=(0.0, 1.0), se="mia_auc_se"),
        Column("overlap@{k}_vs_retrain", "Overlap@{k} vs retrain", reference=1.0,
               bounds=(0.0, 1.0)),
    ),
    "utility": (
        Column("ndcg@{k}", "NDCG@{k}", before="ndcg@{k}_before"),
        Column("recall@{k}", "Recall@{k}", before="recall@{k}_before"),
    ),
    "efficiency": (
        Column("forget_seconds", "Forget s", "seconds", log=True),
        Column("speedup_vs_retrain", "Speed-up", "ratio", reference=1.0, log=True),
        Column("n_retrained_parts", "Parts retrained", "count"),
    ),
    "fairness": (
        Column("a_igf", "A-IGF ↓"),
        Column("shard_fairness", "Shard var ↓", "small"),
    ),
}
#: The completeness suite's attacks, each at both levels (supporting table).
SUITE_COLUMNS = tuple(
    Column(f"mia_{prefix}auc_{level}", f"MIA {name} {level}", reference=0.5,
           se=f"mia_{prefix}auc_{level}_se")
    for prefix, name in (("", "score-row"), ("foldin_", "fold-in"),
                         ("reference_", "reference"))
    for level in ("user", "interaction"))
MAIN_COLUMNS = tuple(c for cols in ASPECTS.values() for c in cols)
EXTRA_COLUMNS = (
    Column("ndcg@{k}_before", "NDCG@{k} before"),
    Column("hit@{k}", "HR@{k}"),
    Column("mia_auc_before", "MIA before (strongest)", se="mia_auc_before_se"),
    *SUITE_COLUMNS,
    Column("mia_n_users", "MIA users", "count"),
    Column("rank_corr_vs_retrain", "Rank corr vs retrain"),
    Column("forgotten_overlap@{k}_vs_retrain", "Forgotten users overlap@{k}"),
    Column("forgotten_item_pct_gap", "Forgotten item pct gap"),
    Column("a_igf_signed", "A-IGF signed (active − inactive)"),
    Column("a_igf_before", "A-IGF before"),
    Column("shard_fairness_before", "Shard var before", "small"),
    Column("retrain_forget_seconds", "Retrain s (same process)", "seconds"),
    Column("forget_repeats", "Forget runs timed", "count"),
    Column("learn_seconds", "Learn s", "seconds"),
    Column("n_forget_users", "Users forgotten", "count"),
    Column("n_forget_pairs", "Pairs forgotten", "count"),
    Column("n_forget_items", "Items forgotten", "count"),
    Column("rows_removed", "Rows removed", "count"),
)
#: Mark of a *degenerate* cell: its membership AUCs rest on fewer users than
#: :data:`trustrec.evaluate.suite.MIN_USERS`, or it forgets a single user; its figures are
#: flagged, not printed as exact values.
DEGENERATE_MARK = "‡"


def is_degenerate(sub: pd.DataFrame) -> bool:
    """Whether any seed of a (model, method) group rests on too few users (see
    :data:`DEGENERATE_MARK`): a flagged membership AUC or a single forgotten user."""
    def any_of(metric: str, test) -> bool:
        v = sub.loc[sub["metric"] == metric, "value"]
        return bool(len(v) and test(v).any())
    return (any_of("mia_degenerate", lambda v: v > 0)
            or any_of("n_forget_users", lambda v: v == 1))


def _methods(frame: pd.DataFrame) -> list[str]:
    return order(frame["method"].unique().tolist(), [REFERENCE])


def table(results: pd.DataFrame, columns: Sequence[Column], k: int,
          drop_empty: bool = False) -> pd.DataFrame:
    """Formatted table: one row per model × method, one column per ``columns`` entry.

    ``results`` must already be restricted to one dataset, grain, ratio and selection.
    With ``drop_empty``, columns without any measured value are left out.
    """
    rows = []
    present = set(results["metric"])
    if drop_empty:
        columns = [c for c in columns if c.name(k) in present]
    models = list(dict.fromkeys(results["model"]))
    for model in models:
        for method in _methods(results[results["model"] == model]):
            sub = results[(results["model"] == model) & (results["method"] == method)]
            row = {"Model": model, "Method": method}
            flag = is_degenerate(sub)
            for col in columns:
                vals = sub.loc[sub["metric"] == col.name(k), "value"].tolist()
                se = (sub.loc[sub["metric"] == col.se, "value"].tolist()
                      if col.se else [])
                mark = DEGENERATE_MARK if flag and col.metric.startswith("mia_") else ""
                row[col.title(k)] = format_cell(vals, col.kind, se, mark)
            rows.append(row)
    return pd.DataFrame(rows, columns=["Model", "Method", *[c.title(k) for c in columns]])


def cure4rec_table(results: pd.DataFrame, k: int) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """The CURE4Rec-style table of one selection and its column groups.

    Returns:
        The formatted table (rows = methods grouped by model; columns = the metrics of
        :data:`ASPECTS`) and the aspect spans ``[(aspect, n_columns), ...]`` for a
        two-level header.
    """
    spans = [(aspect, len(cols)) for aspect, cols in ASPECTS.items()]
    return table(results, MAIN_COLUMNS, k), spans



# ---------------------------------------------------------------------------- plots
def _agg(frame: pd.DataFrame, metric: str, by: list[str],
         se: str | None = None) -> pd.DataFrame:
    """Mean and interval half-width per group: the Student-t interval over seeds, or with
    one seed ``1.96 ×`` its ``se`` metric when given (0 when neither exists)."""
    sub = frame[frame["metric"] == metric]
    if sub.empty:
        return pd.DataFrame(columns=[*by, "mean", "h"])
    ses = frame[frame["metric"] == se] if se else None
    out = []
    for key, g in sub.groupby(by, sort=False):
        mean, h, n = mean_ci(g["value"].tolist())
        key = key if isinstance(key, tuple) else (key,)
        if h is None and n == 1 and ses is not None:
            s_g = ses
            for col, val in zip(by, key, strict=True):
                s_g = s_g[s_g[col] == val]
            v = s_g["value"].to_numpy(dtype=np.float64)
            h = 1.959964 * float(v[0]) if len(v) == 1 and np.isfinite(v[0]) else None
        out.append({**dict(zip(by, key, strict=True)), "mean": mean, "h": h or 0.0})
    return pd.DataFrame(out)


def _lookup(frame: pd.DataFrame, metric: str, se: str | None = None
            ) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, method) → (mean over seeds, interval half-width or 0) of one metric."""
    agg = _agg(frame, metric, ["model", "method"], se)
    return {(r["model"], r["method"]): (float(r["mean"]), float(r["h"]))
            for _, r in agg.iterrows()}


def plot_utility_vs_time(frame: pd.DataFrame, k: int, path: Path, title: str) -> Path:
    """NDCG@k after forgetting against forget seconds (log x), one panel per selection."""
    plt = pyplot()
    selections = order(frame["selection"].unique().tolist(), SELECTION_ORDER)
    methods, models = _methods(frame), list(dict.fromkeys(frame["model"]))
    colors = colors_for(methods)
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    ndcg = _agg(frame, f"ndcg@{k}", ["selection", "model", "method"])
    secs = _agg(frame, "forget_seconds", ["selection", "model", "method"])
    pts = ndcg.merge(secs, on=["selection", "model", "method"], suffixes=("_y", "_x"))
    fig, axes = plt.subplots(1, len(selections), figsize=(4.2 * len(selections) + 1.6, 3.8),
                             sharex=True, sharey=True, squeeze=False)
    for ax, sel in zip(axes[0], selections, strict=True):
        p = pts[pts["selection"] == sel]
        for _, r in p.iterrows():
            if not (np.isfinite(r["mean_x"]) and r["mean_x"] > 0 and np.isfinite(r["mean_y"])):
                continue
            ax.errorbar(r["mean_x"], r["mean_y"], xerr=r["h_x"] or None,
                        yerr=r["h_y"] or None, fmt=marker[r["model"]], ms=8,
                        color=colors[r["method"]], mec="white", mew=0.8, capsize=3)
            ax.annotate(r["model"], (r["mean_x"], r["mean_y"]), xytext=(6, 4),
                        textcoords="offset points", fontsize=8, color="0.3")
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_title(sel)
        ax.set_xlabel("forget time (s, log scale)")
    axes[0][0].set_ylabel(f"NDCG@{k} after forgetting")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colors[m], ms=8, label=m)
               for m in methods]
    handles += [Line2D([], [], ls="", marker=marker[m], color="0.4", ms=8, label=m)
                for m in models]
    fig.legend(handles=handles, loc="center right", title="method / model")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    return save_figure(fig, path)


def plot_aspect(frame: pd.DataFrame, columns: Sequence[Column], k: int, path: Path,
                title: str, methods: Sequence[str] | None = None) -> Path:
    """One figure for one aspect of one selection: a panel per metric.

    In each panel the models are on x and each method has a bar (mean over seeds) with
    its 95 % interval as an error bar. A column's ``reference`` is a dashed line, its
    ``before`` metric a black tick on the bar (the learned model's value before
    forgetting), and ``log`` columns use a log scale.

    Args:
        frame: results of one dataset, grain, ratio and selection.
        columns: the aspect's metrics (panels).
        k: headline cut-off.
        path: PNG to write.
        title: figure title.
        methods: methods to show, in order (default: every method, ``retrain`` first).
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    models = list(dict.fromkeys(frame["model"]))
    methods = list(methods) if methods is not None else _methods(frame)
    colors = colors_for(_methods(frame))
    fig, axes = plt.subplots(1, len(columns), figsize=(3.5 * len(columns) + 1.8, 3.6),
                             squeeze=False)
    width = min(0.8 / max(len(methods), 1), 0.35)
    x = np.arange(len(models))
    marked_before = False
    for ax, col in zip(axes[0], columns, strict=True):
        stat = _lookup(frame, col.name(k), col.se)
        before = _lookup(frame, col.before.format(k=k)) if col.before else {}
        for j, meth in enumerate(methods):
            means = np.array([stat.get((m, meth), (np.nan, 0.0))[0] for m in models])
            errs = np.array([stat.get((m, meth), (np.nan, 0.0))[1] for m in models])
            if col.log:
                means = np.where(means > 0, means, np.nan)
            pos = x + (j - (len(methods) - 1) / 2) * width
            base = 0.0 if col.log else col.baseline
            ax.bar(pos, means - base, width * 0.92, bottom=base,
                   yerr=errs if errs.any() else None, color=colors[meth], label=meth,
                   capsize=3)
            bm = np.array([before.get((m, meth), (np.nan, 0.0))[0] for m in models])
            if np.isfinite(bm).any():
                ax.scatter(pos, bm, marker="_", s=220, linewidths=2.2, color="black",
                           zorder=4)
                marked_before = True
        if col.reference is not None:
            ax.axhline(col.reference, color="0.25", ls="--", lw=1)
        if col.log:
            ax.set_yscale("log")
            log_axis(ax.yaxis)  # 1-2-5 ticks: a range within one decade stays labelled
        if col.bounds is not None:
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, col.bounds[0]), min(hi, col.bounds[1]))
        ax.set_xticks(x, models)
        ax.set_title(col.title(k))
        ax.grid(axis="x", visible=False)
    handles = [Line2D([], [], ls="", marker="s", ms=9, color=colors[m], label=m)
               for m in methods]
    if marked_before:
        handles.append(Line2D([], [], ls="", marker="_", ms=14, mew=2.2, color="black",
                              label="learned model\n(before forgetting)"))
    if any(c.reference is not None for c in columns):
        handles.append(Line2D([], [], color="0.25", ls="--", lw=1,
                              label="chance / retrain level"))
    fig.legend(handles=handles, loc="center right", title="method")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))
    return save_figure(fig, path)


def _sections(results: pd.DataFrame):
    """(dataset, grain, ratio, frame) in report order."""
    for ds in dict.fromkeys(results["dataset"]):
        d = results[results["dataset"] == ds]
        for grain in order(d["grain"].unique().tolist(), GRAIN_ORDER):
            g = d[d["grain"] == grain]
            for ratio in sorted(g["ratio"].unique()):
                yield ds, grain, float(ratio), g[g["ratio"] == ratio]


def _tag(ds: str, grain: str, ratio: float) -> str:
    grain_tag = "" if grain == "user" else f"_{grain}"
    return f"{slug(ds)}{grain_tag}_p{format(ratio, 'g')}"


def make_plots(results: pd.DataFrame, out: Path, k: int
               ) -> dict[tuple[str, str, float], dict[str, list[Path]]]:
    """Write the plots into ``out/plots``.

    Returns:
        Per (dataset, grain, ratio): ``{"overview": [path], "<selection>": [one path per
        aspect]}``.
    """
    plots: dict[tuple[str, str, float], dict[str, list[Path]]] = {}
    folder = out / PLOTS_DIR
    for ds, grain, ratio, frame in _sections(results):
        tag = _tag(ds, grain, ratio)
        where = f"{ds}, {GRAIN_UNITS.get(grain, grain)}, forget ratio {format(ratio, 'g')}"
        entry = {"overview": [plot_utility_vs_time(
            frame, k, folder / f"utility_vs_time_{tag}.png",
            f"Utility vs forget time — {where}")]}
        units = GRAIN_UNITS.get(grain, grain)
        for sel in order(frame["selection"].unique().tolist(), SELECTION_ORDER):
            sub = frame[frame["selection"] == sel]
            entry[sel] = [
                plot_aspect(sub, cols, k, folder / f"{aspect}_{tag}_{slug(sel)}.png",
                            f"{aspect.capitalize()} — {sel} {units}, {ds}, forget ratio "
                            f"{format(ratio, 'g')}")
                for aspect, cols in ASPECTS.items()]
        plots[(ds, grain, ratio)] = entry
    return plots


# ---------------------------------------------------------------------------- sections
NOTES = [
    "Completeness is a suite of membership attacks on the forgotten training rows "
    "(members) against held-out rows of the same users (items, for item requests): "
    "score-row (the item's rank in the user's own score row), fold-in (the user is "
    "re-derived from the released item table and its candidate items by an ALS solve, "
    "ignoring the user's own row, which a method could simply reset) and reference (the "
    "fold-in signal minus that of a shadow model of the same kind trained without the "
    "forget set, another seed), each at user and interaction level. The headline MIA is "
    "the attack with the largest |AUC − 0.5|: 0.5 = the rows look never seen (what "
    "retraining achieves), above = the model remembers, far below = it over-forgets, "
    "which is information too. Being a maximum over six estimates, a model with no "
    "memory reads a little off 0.5: compare a method with retrain of the same group. "
    "Ties are broken at random, so no attack reads exactly 0.5. \"before\" is the "
    "learned model on the same rows. The negative controls noop (does nothing) and "
    "reset-rows (zeroes the forgotten rows only) must read as not forgotten. "
    "Overlap@{k}: share of top-{k} lists in common with the model retrained from "
    "scratch on the remaining data (same seed), over the retained users.",
    "Utility before and after forgetting is measured on the same users and rows: for "
    "user requests the retained users, for interaction and item requests every test "
    "user without the test rows the request names. The bar marks (and NDCG before in "
    "the supporting table) are the learned model on those users.",
    "Efficiency: the method's forget and a retrain of the same request are timed in the "
    "same process (a forget under 2 s is run 3 times on fresh copies and the median "
    "kept); speed-up = retrain seconds / the method's seconds. Parts retrained: shards, "
    "stages or models a request retrained (retrain: 1). Times are wall-clock on the "
    "machine that ran the bench.",
    "Fairness: A-IGF = |mean NDCG@{k}(active) − mean NDCG@{k}(inactive)|, active = top 5 % "
    "of users by remaining training interactions (the signed gap is in the supporting "
    "table); shard var = variance across a method's shards of their users' mean NDCG@{k} "
    "(0 for unsharded methods). Lower is fairer.",
    "Intervals: with several seeds a cell reads mean ± half-width of the 95 % Student-t "
    "interval over seeds (n − 1 degrees of freedom); with one seed the MIA figures carry "
    "± 1.96 × their user-cluster bootstrap SE and the other figures no interval. Error "
    "bars show the same intervals. " + DEGENERATE_MARK + " marks a degenerate cell (fewer "
    "than 10 users with both member and non-member rows, or a single forgotten user): "
    "its AUCs rest on a handful of profiles. summary.csv has every metric.",
]


def cure4rec_comparison(results: pd.DataFrame, k: int) -> pd.DataFrame:
    """CURE4Rec's published ML-100K "WMF" figures beside this grid's BCE-MF figures.

    Rows: learn, retrain, sisa, receraser, ultrare, scif; columns: the paper's NDCG@20 and
    ours (mean over seeds, per selection), the paper's MIO and our strongest-attack AUC.
    """
    from trustrec.bench.protocol import CURE4REC_ML100K_WMF as PAPER

    sub = results[(results["model"] == "bcemf") & (results["grain"] == "user")]
    selections = order(sub["selection"].unique().tolist(), SELECTION_ORDER)
    rows = []
    for method in ("learn", "retrain", "sisa", "receraser", "ultrare", "scif"):
        row: dict[str, str] = {"Method": method,
                               "paper NDCG@20": _paper(PAPER["ndcg@20"].get(method))}
        for sel in selections:
            s = sub[sub["selection"] == sel]
            src, nd, mia = ((s[s["method"] == REFERENCE], f"ndcg@{k}_before", "mia_auc_before")
                            if method == "learn" else
                            (s[s["method"] == method], f"ndcg@{k}", "mia_auc"))
            row[f"ours NDCG@{k} ({sel})"] = format_cell(
                src.loc[src["metric"] == nd, "value"].tolist(), "score")
            row[f"ours MIA ({sel})"] = format_cell(
                src.loc[src["metric"] == mia, "value"].tolist(), "score")
        row["paper MIO"] = _paper(PAPER["mio"].get(method))
        rows.append(row)
    return pd.DataFrame(rows)


def _paper(v: float | str | None) -> str:
    return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))




def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """The unlearning report's sections (see the module docstring)."""
    from trustrec.bench.report import headline_k

    k = headline_k(results)
    plots = make_plots(results, out, k)
    secs: list[Section] = []
    if spec is not None and getattr(spec, "protocol", "") == "cure4rec":
        secs.append(Section("Beside the CURE4Rec paper", [
            Text("CURE4Rec's published MovieLens-100K figures for its \"WMF\" (BCE-MF) "
                 "beside this grid's BCE-MF, under its protocol (80/20 split without "
                 "validation, untruncated NDCG, 5-core data). The paper does not record "
                 "which forget set its table used, so ours are shown per selection. Its "
                 "MIO is an unspecified oracle (lower = more complete, retrain ≈ 0.54); "
                 "ours is the strongest attack of trustrec's suite, a stronger auditor."),
            Table(cure4rec_comparison(results, k), group_by=None)]))
    for ds, grain, ratio, frame in _sections(results):
        units = GRAIN_UNITS.get(grain, grain)
        entry = plots.get((ds, grain, ratio), {})
        secs.append(Section(f"{ds} — forgetting {units}, ratio {format(ratio, 'g')}",
                            [Image(p) for p in entry.get("overview", [])]))
        for sel in order(frame["selection"].unique().tolist(), SELECTION_ORDER):
            sub = frame[frame["selection"] == sel]
            main, spans = cure4rec_table(sub, k)
            extra = table(sub, EXTRA_COLUMNS, k, drop_empty=True)
            secs.append(Section(f"{sel} {units}", [
                Table(main, spans), Details("Supporting metrics", [Table(extra)]),
                *[Image(p) for p in entry.get(sel, [])]], level=3))
    return secs
