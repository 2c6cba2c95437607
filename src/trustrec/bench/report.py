"""Turn ``results.csv`` into ``summary.csv``, ``report.md``, ``report.html`` and PNG plots.

Aggregation: every metric of every group (dataset, model, method, grain, selection, ratio)
is averaged over its seeds, with the 95 % Student-t interval of the mean (n − 1 degrees of
freedom; a single seed has no interval). ``summary.csv`` holds these figures (``mean``,
``ci_low``, ``ci_high``, ``n`` per group × metric); the report shows ``mean ± h``, where
``[mean − h, mean + h]`` is that interval, or the value alone for one seed.

Layout: per dataset, request grain and forget ratio, one overview plot (utility against
forget time), then per forget-set selection (core / edge / random):

- a CURE4Rec-style table: rows = methods grouped by model; columns grouped by aspect —
  completeness (membership-inference AUC, user- and interaction-level, and top-k overlap
  with the retrained model), utility (NDCG@k, Recall@k), efficiency (forget seconds,
  speed-up over retraining) and fairness (A-IGF, shard fairness);
- a table of supporting metrics (values before forgetting, counts, other agreement
  measures);
- one figure per aspect, with a panel per metric, a bar per method and model, and the
  95 % intervals as error bars: completeness (the 0.5 line is chance; the learned model's
  AUC before forgetting is marked on each bar), utility, efficiency (log scale) and
  fairness.

The HTML page is self-contained (plots embedded as data URIs); the PNGs are also written
to ``<out>/plots/`` and linked from the Markdown report.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trustrec.bench.collect import read_results
from trustrec.bench.files import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.bench.spec import BenchSpec

PLOTS_DIR = "plots"
REFERENCE = "retrain"
#: Columns identifying a group of cells that differ only by seed.
GROUP = ["dataset", "model", "method", "grain", "selection", "ratio"]
SUMMARY_COLUMNS = [*GROUP, "metric", "mean", "ci_low", "ci_high", "n"]
SELECTION_ORDER = ["core", "edge", "random"]
GRAIN_ORDER = ["user", "interaction", "item"]
GRAIN_UNITS = {"user": "users", "interaction": "interactions", "item": "items"}


@dataclass(frozen=True)
class Column:
    """A report column: metric name template, header, how to format it, and its plot.

    Attributes:
        metric: metric name, ``{k}`` standing for the headline cut-off.
        header: column header (``{k}`` likewise).
        kind: ``"score"``, ``"seconds"``, ``"ratio"`` or ``"count"``.
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
#: A cell is *degenerate* when its membership AUCs rest on fewer users than this, or when
#: it forgets a single user: its figures are flagged, not printed as exact values.
DEGENERATE_MARK = "‡"


# ---------------------------------------------------------------------------- statistics
def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, int]:
    """Mean, half-width of the Student-t interval, and the count of finite values.

    The half-width is ``t(0.5 + level/2, n − 1) · s / √n`` (``s`` the sample standard
    deviation); None with fewer than two values (no interval: the value is shown as is).
    """
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    n = len(v)
    if n == 0:
        return float("nan"), None, 0
    mean = float(v.mean())
    if n < 2:
        return mean, None, n
    sem = float(v.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1) * sem), n


def _with_grain(results: pd.DataFrame) -> pd.DataFrame:
    if "grain" in results.columns:
        return results
    out = results.copy()
    out.insert(out.columns.get_loc("selection"), "grain", "user")
    return out


def summary_frame(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per group (:data:`GROUP`) and metric: mean over seeds, interval bounds and count.

    Args:
        results: the long results table.
        level: confidence level of the Student-t interval.

    Returns:
        Columns :data:`SUMMARY_COLUMNS`; ``ci_low`` / ``ci_high`` are NaN for a group with
        one finite value, ``n`` counts the finite values (seeds).
    """
    results = _with_grain(results)
    rows = []
    for key, g in results.groupby([*GROUP, "metric"], sort=False):
        mean, h, n = mean_ci(g["value"].tolist(), level)
        lo, hi = (float("nan"), float("nan")) if h is None else (mean - h, mean + h)
        rows.append({**dict(zip([*GROUP, "metric"], key, strict=True)), "mean": mean,
                     "ci_low": lo, "ci_high": hi, "n": n})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def headline_k(results: pd.DataFrame) -> int:
    """20 when ``ndcg@20`` was measured, else the largest measured NDCG cut-off."""
    ks = sorted({int(m.group(1)) for m in
                 (re.fullmatch(r"ndcg@(\d+)", x) for x in results["metric"].unique()) if m})
    if not ks:
        return 20
    return 20 if 20 in ks else ks[-1]


def _fmt(x: float, kind: str) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if kind == "seconds":
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"
    if kind == "ratio":
        return f"{x:.2f}×"
    if kind == "count":
        return f"{x:.0f}"
    if kind == "small":
        return "0" if x == 0 else f"{x:.3g}"
    return f"{x:.4f}"


def format_cell(values: Sequence[float], kind: str, se: Sequence[float] = (),
                degenerate: bool = False) -> str:
    """``mean ± h`` (several seeds) or the value (one seed, or identical values); ``–``
    when missing.

    Kinds: ``score`` (4 decimals), ``seconds`` (3 significant digits), ``ratio``
    (``2.50×``), ``count`` (integer), ``small`` (3 significant digits, for variances).
    With one value and its standard error ``se``, the half-width is ``1.96 se`` (a
    bootstrap interval). A ``degenerate`` cell is prefixed with :data:`DEGENERATE_MARK`.
    """
    mean, h, _ = mean_ci(values)
    finite = [x for x in values if x is not None and math.isfinite(x)]
    if h is None and len(finite) == 1:
        s_fin = [x for x in se if x is not None and math.isfinite(x)]
        h = 1.959964 * s_fin[0] if len(s_fin) == 1 and s_fin[0] > 0 else None
    mark = f"{DEGENERATE_MARK} " if degenerate and finite else ""
    if h is None or (len(finite) > 1 and min(finite) == max(finite)):
        return mark + _fmt(mean, kind)
    return f"{mark}{_fmt(mean, kind)} ± {_fmt(h, kind).rstrip('×')}"


def is_degenerate(sub: pd.DataFrame) -> bool:
    """Whether any seed of a (model, method) group rests on too few users (see
    :data:`DEGENERATE_MARK`): a flagged membership AUC or a single forgotten user."""
    def any_of(metric: str, test) -> bool:
        v = sub.loc[sub["metric"] == metric, "value"]
        return bool(len(v) and test(v).any())
    return (any_of("mia_degenerate", lambda v: v > 0)
            or any_of("n_forget_users", lambda v: v == 1))


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    seen = [v for v in preferred if v in set(values)]
    return seen + sorted(set(values) - set(seen))


def _methods(frame: pd.DataFrame) -> list[str]:
    return _order(frame["method"].unique().tolist(), [REFERENCE])


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
                row[col.title(k)] = format_cell(vals, col.kind, se,
                                                flag and col.metric.startswith("mia_"))
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


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "legend.frameon": False,
    })
    return plt


_MARKERS = "osD^vP*Xh<>"


def colors_for(names: Sequence[str]) -> dict[str, tuple]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_utility_vs_time(frame: pd.DataFrame, k: int, path: Path, title: str) -> Path:
    """NDCG@k after forgetting against forget seconds (log x), one panel per selection."""
    plt = pyplot()
    selections = _order(frame["selection"].unique().tolist(), SELECTION_ORDER)
    methods, models = _methods(frame), list(dict.fromkeys(frame["model"]))
    colors = colors_for(methods)
    marker = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(models)}
    ndcg = _agg(frame, f"ndcg@{k}", ["selection", "model", "method"])
    secs = _agg(frame, "forget_seconds", ["selection", "model", "method"])
    pts = ndcg.merge(secs, on=["selection", "model", "method"], suffixes=("_y", "_x"))
    fig, axes = plt.subplots(1, len(selections), figsize=(4.2 * len(selections) + 1.6, 3.8),
                             sharex=True, sharey=True, squeeze=False)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
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
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_yscale("log")
            # 1-2-5 ticks so that a range within one decade still has labelled ticks
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
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


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _sections(results: pd.DataFrame):
    """(dataset, grain, ratio, frame) in report order."""
    results = _with_grain(results)
    for ds in dict.fromkeys(results["dataset"]):
        d = results[results["dataset"] == ds]
        for grain in _order(d["grain"].unique().tolist(), GRAIN_ORDER):
            g = d[d["grain"] == grain]
            for ratio in sorted(g["ratio"].unique()):
                yield ds, grain, float(ratio), g[g["ratio"] == ratio]


def _tag(ds: str, grain: str, ratio: float) -> str:
    grain_tag = "" if grain == "user" else f"_{grain}"
    return f"{_slug(ds)}{grain_tag}_p{format(ratio, 'g')}"


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
        for sel in _order(frame["selection"].unique().tolist(), SELECTION_ORDER):
            sub = frame[frame["selection"] == sel]
            entry[sel] = [
                plot_aspect(sub, cols, k, folder / f"{aspect}_{tag}_{_slug(sel)}.png",
                            f"{aspect.capitalize()} — {sel} {units}, {ds}, forget ratio "
                            f"{format(ratio, 'g')}")
                for aspect, cols in ASPECTS.items()]
        plots[(ds, grain, ratio)] = entry
    return plots


# ---------------------------------------------------------------------------- documents
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


def _provenance(spec: BenchSpec | None, data_info: dict[str, dict[str, float]] | None
                ) -> list[str]:
    """Lines on where the figures come from: data, models, protocol, code, machine."""
    from trustrec.bench.env import git_commit, host_info, versions

    lines = []
    for label, info in (data_info or {}).items():
        lines.append(f"data {label}: {info['users']:.0f} users × {info['items']:.0f} items, "
                     f"{info['interactions']:.0f} interactions, density "
                     f"{info['density']:.4%}")
    if spec is not None:
        from trustrec.config import to_dict
        from trustrec.models import make_model

        lines.append(f"protocol: {getattr(spec, 'protocol', 'trustrec')}")
        for name in spec.models:
            cfg = to_dict(make_model(name, **spec.model_config(name)).config)
            lines.append(f"model {name} (resolved): "
                         + ", ".join(f"{a}={b}" for a, b in cfg.items()))
        if len(spec.seeds) == 1:
            lines.append("single seed: no interval over seeds (MIA figures carry "
                         "bootstrap intervals)")
    v = versions()
    lines.append("versions: " + ", ".join(f"{a} {b}" for a, b in v.items()))
    lines.append(f"git commit: {git_commit()}")
    h = host_info()
    lines.append(f"host: {h['platform']}, {h['cpus_usable']} usable CPUs")
    return lines


def cure4rec_comparison(results: pd.DataFrame, k: int) -> pd.DataFrame:
    """CURE4Rec's published ML-100K "WMF" figures beside this grid's BCE-MF figures.

    Rows: learn, retrain, sisa, receraser, ultrare, scif; columns: the paper's NDCG@20 and
    ours (mean over seeds, per selection), the paper's MIO and our strongest-attack AUC.
    """
    from trustrec.bench.protocol import CURE4REC_ML100K_WMF as PAPER

    sub = results[(results["model"] == "bcemf") & (results["grain"] == "user")]
    selections = _order(sub["selection"].unique().tolist(), SELECTION_ORDER)
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


def _grid_lines(results: pd.DataFrame, spec: BenchSpec | None) -> list[str]:
    results = _with_grain(results)

    def vals(col: str) -> str:
        v = list(dict.fromkeys(results[col]))
        if col == "ratio":
            return ", ".join(format(x, "g") for x in v)
        return ", ".join(str(x) for x in v)

    lines = [f"{col}s: {vals(col)}" for col in ("dataset", "model", "method", "grain",
                                                "selection", "ratio", "seed")]
    n_cells = len(results.drop_duplicates([*GROUP, "seed"]))
    lines.append(f"finished cells: {n_cells}")
    if spec is not None:
        lines[-1] += f" of {len(spec.cells())}"
        lines.append("split (train/valid/test): "
                     + "/".join(format(x, "g") for x in spec.split_ratios))
        for name, cfgs in (("model", spec.model_configs), ("method", spec.method_configs)):
            for key, cfg in cfgs.items():
                if cfg:
                    opts = ", ".join(f"{a}={b}" for a, b in cfg.items())
                    lines.append(f"{name} {key}: {opts}")
    return lines


def md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def _md_grouped_table(df: pd.DataFrame, spans: list[tuple[str, int]]) -> str:
    """Markdown table whose headers name their aspect (``Completeness: MIA user``)."""
    renamed = list(df.columns[:2])
    i = 2
    for aspect, n in spans:
        renamed += [f"{aspect.capitalize()}: {c}" for c in df.columns[i:i + n]]
        i += n
    return md_table(df.set_axis(renamed, axis=1))


def html_table(df: pd.DataFrame, spans: list[tuple[str, int]] | None = None,
               group_by: str | None = "Model") -> str:
    """An HTML table of ``df`` (escaped cells).

    Args:
        df: the table.
        spans: ``(aspect, number of columns)`` for a header row above the column names
            (after two leading columns).
        group_by: a column whose change of value starts a visually separated group.
    """
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    if spans:
        top = '<th colspan="2"></th>' + "".join(
            f'<th colspan="{n}" class="aspect">{html.escape(a.capitalize())}</th>'
            for a, n in spans)
        head = f"<tr>{top}</tr><tr>{head}</tr>"
    else:
        head = f"<tr>{head}</tr>"
    body = []
    prev_model = None
    grouped = group_by is not None and group_by in df.columns
    for _, r in df.iterrows():
        key = r[group_by] if grouped else None
        cls = ' class="group"' if prev_model is not None and key != prev_model else ""
        prev_model = key
        cells = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in df.columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


REPORT_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;max-width:1180px;margin:2em auto;padding:0 1.2em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:.2em}h3{margin-top:1.3em;font-size:1.1em}
.meta{color:#666;font-size:.9em}ul.grid{columns:2;font-size:.95em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em;
font-variant-numeric:tabular-nums}
th,td{padding:.35em .7em;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f5f6f8;border-bottom:2px solid #ccc}th.aspect{text-align:center}
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
tr.group td{border-top:2px solid #ccc}tbody tr:hover{background:#fafbff}
img{max-width:100%;margin:.5em 0 1.2em;border:1px solid #eee}
.notes li{margin:.3em 0}
"""


def _img(path: Path, out: Path) -> tuple[str, str]:
    rel = path.relative_to(out).as_posix()
    alt = path.stem.replace("_", " ")
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"![{alt}]({rel})",
            f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')


def write_report(out: str | Path, results: pd.DataFrame | None = None,
                 spec: BenchSpec | None = None, title: str = "trustrec unlearning benchmark",
                 data_info: dict[str, dict[str, float]] | None = None) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md``, ``report.html`` and the plots.

    Args:
        out: the benchmark's output folder.
        results: the long results table (default: read ``<out>/results.csv``).
        spec: the spec that produced it (adds the split and configs to the description).
        title: the report's title.
        data_info: per dataset label, its ``users``, ``items``, ``interactions`` and
            ``density`` as the grid used it.

    Returns:
        Paths: ``"summary"``, ``"markdown"``, ``"html"`` and ``"plots"`` (the plots folder).
    """
    out = Path(out)
    if results is None:
        results = read_results(out / "results.csv")
    results = _with_grain(results)
    summary = summary_frame(results)
    buf = io.StringIO()
    summary.to_csv(buf, index=False, float_format="%.10g")
    write_atomic(out / "summary.csv", buf.getvalue().encode())
    k = headline_k(results) if len(results) else 20
    plots = make_plots(results, out, k) if len(results) else {}
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    grid = _grid_lines(results, spec) if len(results) else ["no finished cells"]
    grid += _provenance(spec, data_info)
    notes = [n.format(k=k) for n in NOTES]

    md = [f"# {title}", "", f"Generated {now} from `results.csv` (long format: one row per "
          "cell × metric); `summary.csv` has the mean and 95 % interval of every metric.",
          "", "## Grid", ""]
    md += [f"- {line}" for line in grid]
    hb = [f"<h1>{html.escape(title)}</h1>",
          f'<p class="meta">Generated {now} from <code>results.csv</code> (long format: one '
          "row per cell × metric); <code>summary.csv</code> has the mean and 95 % interval "
          "of every metric.</p>", "<h2>Grid</h2>", '<ul class="grid">']
    hb += [f"<li>{html.escape(line)}</li>" for line in grid] + ["</ul>"]

    if spec is not None and getattr(spec, "protocol", "") == "cure4rec" and len(results):
        comp = cure4rec_comparison(results, k)
        text = ("CURE4Rec's published MovieLens-100K figures for its \"WMF\" (BCE-MF) "
                "beside this grid's BCE-MF, under its protocol (80/20 split without "
                "validation, untruncated NDCG, 5-core data). The paper does not record "
                "which forget set its table used, so ours are shown per selection. Its "
                "MIO is an unspecified oracle (lower = more complete, retrain ≈ 0.54); "
                "ours is the strongest attack of trustrec's suite, a stronger auditor.")
        md += ["", "## Beside the CURE4Rec paper", "", text, "", md_table(comp)]
        hb += ["<h2>Beside the CURE4Rec paper</h2>", f"<p>{html.escape(text)}</p>",
               html_table(comp, group_by=None)]

    for ds, grain, ratio, frame in _sections(results):
        units = GRAIN_UNITS.get(grain, grain)
        head = f"{ds} — forgetting {units}, ratio {format(ratio, 'g')}"
        md += ["", f"## {head}"]
        hb += [f"<h2>{html.escape(head)}</h2>"]
        entry = plots.get((ds, grain, ratio), {})
        for p in entry.get("overview", []):
            m, h = _img(p, out)
            md += ["", m]
            hb += [h]
        for sel in _order(frame["selection"].unique().tolist(), SELECTION_ORDER):
            sub = frame[frame["selection"] == sel]
            main, spans = cure4rec_table(sub, k)
            extra = table(sub, EXTRA_COLUMNS, k, drop_empty=True)
            md += ["", f"### {sel} {units}", "", _md_grouped_table(main, spans), "",
                   "Supporting metrics:", "", md_table(extra), ""]
            hb += [f"<h3>{html.escape(sel)} {html.escape(units)}</h3>",
                   html_table(main, spans),
                   "<details><summary>Supporting metrics</summary>", html_table(extra),
                   "</details>"]
            for p in entry.get(sel, []):
                m, h = _img(p, out)
                md += [m, ""]
                hb += [h]

    md_path, html_path = write_pages(out, title, md, hb, notes)
    return {"summary": out / "summary.csv", "markdown": md_path, "html": html_path,
            "plots": out / PLOTS_DIR}


def write_pages(out: Path, title: str, md: list[str], hb: list[str], notes: list[str]
                ) -> tuple[Path, Path]:
    """Finish a report with its "How to read this" notes and write both pages atomically.

    Args:
        out: the report folder.
        title: the HTML page title.
        md: Markdown lines so far.
        hb: HTML body fragments so far.
        notes: one line each.

    Returns:
        ``(report.md, report.html)``.
    """
    md = [*md, "", "## How to read this", "", *[f"- {n}" for n in notes], ""]
    hb = [*hb, "<h2>How to read this</h2>", '<ul class="notes">',
          *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>\n"
            + "\n".join(hb) + "\n</body></html>\n")
    md_path, html_path = out / "report.md", out / "report.html"
    write_atomic(md_path, "\n".join(md))
    write_atomic(html_path, page)
    return md_path, html_path
