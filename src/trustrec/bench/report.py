"""Turn ``results.csv`` into ``report.md``, ``report.html`` and PNG plots.

The report has, per dataset and forget ratio, one table per forget-set selection (rows =
model × method; columns = utility, fairness, efficiency and completeness at the headline
cut-off), a second table of supporting metrics, and three plots: utility against forget
time, fairness per method × selection, and completeness (top-k overlap with the retrained
reference). With several seeds a cell shows ``mean ± h`` where ``[mean − h, mean + h]`` is
the 95 % Student-t interval of the mean; with one seed just the value.

The HTML page is self-contained (plots embedded as data URIs); the PNGs are also written
to ``<out>/plots/`` and linked from the Markdown report.
"""

from __future__ import annotations

import base64
import html
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


@dataclass(frozen=True)
class Column:
    """A report column: metric name template, header, and how to format it."""

    metric: str
    header: str
    kind: str = "score"  # "score", "seconds" or "ratio"

    def name(self, k: int) -> str:
        """The metric name at cut-off ``k``."""
        return self.metric.format(k=k)


MAIN_COLUMNS = (
    Column("ndcg@{k}", "NDCG@{k}"),
    Column("recall@{k}", "Recall@{k}"),
    Column("hit@{k}", "HR@{k}"),
    Column("a_igf", "A-IGF ↓"),
    Column("forget_seconds", "Forget s", "seconds"),
    Column("speedup_vs_retrain", "Speed-up", "ratio"),
    Column("overlap@{k}_vs_retrain", "Overlap@{k} vs retrain"),
    Column("rank_corr_vs_retrain", "Rank corr vs retrain"),
)
EXTRA_COLUMNS = (
    Column("ndcg@{k}_before", "NDCG@{k} before"),
    Column("a_igf_before", "A-IGF before"),
    Column("learn_seconds", "Learn s", "seconds"),
    Column("forgotten_overlap@{k}_vs_retrain", "Forgotten users overlap@{k}"),
    Column("forgotten_item_pct_gap", "Forgotten item pct gap"),
    Column("n_forget_users", "Users forgotten", "count"),
    Column("rows_removed", "Rows removed", "count"),
)


# ---------------------------------------------------------------------------- statistics
def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, int]:
    """Mean, half-width of the Student-t interval, and the count of finite values.

    The half-width is None with fewer than two values (no interval: the value is shown as
    is), NaN-free otherwise.
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
    return f"{x:.4f}"


def format_cell(values: Sequence[float], kind: str) -> str:
    """``mean ± h`` (several seeds) or the value (one seed); ``–`` when missing."""
    mean, h, _ = mean_ci(values)
    if h is None:
        return _fmt(mean, kind)
    return f"{_fmt(mean, kind)} ± {_fmt(h, kind).rstrip('×')}"


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    seen = [v for v in preferred if v in set(values)]
    return seen + sorted(set(values) - set(seen))


def _methods(frame: pd.DataFrame) -> list[str]:
    return _order(frame["method"].unique().tolist(), [REFERENCE])


def table(results: pd.DataFrame, columns: Sequence[Column], k: int) -> pd.DataFrame:
    """Formatted table: one row per model × method, one column per ``columns`` entry.

    ``results`` must already be restricted to one dataset, ratio and selection.
    """
    rows = []
    models = list(dict.fromkeys(results["model"]))
    for model in models:
        for method in _methods(results[results["model"] == model]):
            sub = results[(results["model"] == model) & (results["method"] == method)]
            row = {"Model": model, "Method": method}
            for col in columns:
                vals = sub.loc[sub["metric"] == col.name(k), "value"].tolist()
                row[col.header.format(k=k)] = format_cell(vals, col.kind)
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- plots
def _agg(frame: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    sub = frame[frame["metric"] == metric]
    if sub.empty:
        return pd.DataFrame(columns=[*by, "mean", "h"])
    out = []
    for key, g in sub.groupby(by, sort=False):
        mean, h, _ = mean_ci(g["value"].tolist())
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(by, key, strict=True)), "mean": mean, "h": h or 0.0})
    return pd.DataFrame(out)


def _style():
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


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    plt = _style()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_utility_vs_time(frame: pd.DataFrame, k: int, path: Path, title: str) -> Path:
    """NDCG@k after forgetting against forget seconds (log x), one panel per selection."""
    plt = _style()
    selections = _order(frame["selection"].unique().tolist(), ["core", "edge", "random"])
    methods, models = _methods(frame), list(dict.fromkeys(frame["model"]))
    colors = _colors(methods)
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
        ax.set_title(f"{sel} users")
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
    return _save(fig, path)


def plot_bars(frame: pd.DataFrame, metric: str, ylabel: str, path: Path, title: str,
              methods: Sequence[str] | None = None, reference_line: float | None = None,
              lower_is_better: bool = False) -> Path:
    """Grouped bars of ``metric``: one panel per model, selections on x, one bar per method."""
    plt = _style()
    selections = _order(frame["selection"].unique().tolist(), ["core", "edge", "random"])
    models = list(dict.fromkeys(frame["model"]))
    methods = list(methods) if methods is not None else _methods(frame)
    colors = _colors(_methods(frame))
    agg = _agg(frame, metric, ["model", "selection", "method"])
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models) + 1.6, 3.6),
                             sharey=True, squeeze=False)
    width = min(0.8 / max(len(methods), 1), 0.4)
    x = np.arange(len(selections))
    for ax, model in zip(axes[0], models, strict=True):
        for j, meth in enumerate(methods):
            a = agg[(agg["model"] == model) & (agg["method"] == meth)].set_index("selection")
            means = [a["mean"].get(s, np.nan) for s in selections]
            errs = [a["h"].get(s, 0.0) for s in selections]
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, means, width * 0.92,
                   yerr=errs if any(errs) else None, color=colors[meth], label=meth,
                   capsize=3)
        if reference_line is not None:
            ax.axhline(reference_line, color="0.2", ls="--", lw=1)
        ax.set_xticks(x, selections)
        ax.set_title(model)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel(ylabel + (" (lower is fairer)" if lower_is_better else ""))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if reference_line is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.2", ls="--", lw=1))
        labels.append(f"{REFERENCE} (reference)")
    fig.legend(handles, labels, loc="center right", title="method")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def make_plots(results: pd.DataFrame, out: Path, k: int) -> dict[tuple[str, float], list[Path]]:
    """Write the three plots per (dataset, ratio) into ``out/plots``; paths per pair."""
    plots: dict[tuple[str, float], list[Path]] = {}
    for (ds, ratio), frame in results.groupby(["dataset", "ratio"], sort=False):
        tag = f"{_slug(ds)}_p{format(ratio, 'g')}"
        where = f"{ds}, forget ratio {format(ratio, 'g')}"
        folder = out / PLOTS_DIR
        paths = [plot_utility_vs_time(frame, k, folder / f"utility_vs_time_{tag}.png",
                                      f"Utility vs forget time — {where}")]
        paths.append(plot_bars(frame, "a_igf", "A-IGF",
                               folder / f"fairness_{tag}.png",
                               f"Fairness after forgetting — {where}", lower_is_better=True))
        others = [m for m in _methods(frame) if m != REFERENCE] or _methods(frame)
        paths.append(plot_bars(frame, f"overlap@{k}_vs_retrain",
                               f"top-{k} overlap with retrain", folder / f"completeness_{tag}.png",
                               f"Completeness (agreement with retrain) — {where}",
                               methods=others, reference_line=1.0))
        plots[(ds, ratio)] = paths
    return plots


# ---------------------------------------------------------------------------- documents
NOTES = [
    "Utility after forgetting is measured on the test split of the *retained* users only: "
    "forgotten users are excluded (the model is no longer meant to serve them). "
    "\"before\" metrics cover every test user of the learned model.",
    "A-IGF = |mean NDCG@20(active) − mean NDCG@20(inactive)|, active = top 5 % of users "
    "by remaining training interactions; lower is fairer.",
    "Completeness compares each method with the model retrained from scratch on the "
    "remaining data (same seed): top-{k} overlap and Spearman rank correlation over the "
    "retained users; retrain is the reference (1 by construction).",
    "Speed-up = retrain's forget seconds / the method's forget seconds for the same "
    "dataset, model, selection, ratio and seed. Times are wall-clock on the machine that "
    "ran the bench.",
    "With several seeds, a cell reads mean ± half-width of the 95 % Student-t interval.",
]


def _grid_lines(results: pd.DataFrame, spec: BenchSpec | None) -> list[str]:
    def vals(col: str) -> str:
        v = list(dict.fromkeys(results[col]))
        if col == "ratio":
            return ", ".join(format(x, "g") for x in v)
        return ", ".join(str(x) for x in v)

    lines = [f"{col}s: {vals(col)}" if col != "dataset" else f"datasets: {vals(col)}"
             for col in ("dataset", "model", "method", "selection", "ratio", "seed")]
    n_cells = len(results.drop_duplicates(
        ["dataset", "model", "method", "selection", "ratio", "seed"]))
    lines.append(f"finished cells: {n_cells}")
    if spec is not None:
        expected = (len(spec.datasets) * len(spec.models) * len(spec.methods)
                    * len(spec.selections) * len(spec.ratios) * len(spec.seeds))
        lines[-1] += f" of {expected}"
        lines.append("split (train/valid/test): "
                     + "/".join(format(x, "g") for x in spec.split_ratios))
        for name, cfgs in (("model", spec.model_configs), ("method", spec.method_configs)):
            for key, cfg in cfgs.items():
                if cfg:
                    opts = ", ".join(f"{a}={b}" for a, b in cfg.items())
                    lines.append(f"{name} {key}: {opts}")
    return lines


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    prev_model = None
    for _, r in df.iterrows():
        cls = ' class="group"' if prev_model is not None and r["Model"] != prev_model else ""
        prev_model = r["Model"]
        cells = "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in df.columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table>")


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;max-width:1180px;margin:2em auto;padding:0 1.2em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:.2em}h3{margin-top:1.3em;font-size:1.1em}
.meta{color:#666;font-size:.9em}ul.grid{columns:2;font-size:.95em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em;
font-variant-numeric:tabular-nums}
th,td{padding:.35em .7em;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f5f6f8;border-bottom:2px solid #ccc}
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
tr.group td{border-top:2px solid #ccc}tbody tr:hover{background:#fafbff}
img{max-width:100%;margin:.5em 0 1.2em;border:1px solid #eee}
.notes li{margin:.3em 0}
"""


def write_report(out: str | Path, results: pd.DataFrame | None = None,
                 spec: BenchSpec | None = None, title: str = "trustrec unlearning benchmark"
                 ) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the plots for a benchmark folder.

    Args:
        out: the benchmark's output folder.
        results: the long results table (default: read ``<out>/results.csv``).
        spec: the spec that produced it (adds the split and configs to the description).
        title: the report's title.

    Returns:
        Paths: ``"markdown"``, ``"html"`` and ``"plots"`` (the plots folder).
    """
    out = Path(out)
    if results is None:
        results = read_results(out / "results.csv")
    k = headline_k(results) if len(results) else 20
    plots = make_plots(results, out, k) if len(results) else {}
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    grid = _grid_lines(results, spec) if len(results) else ["no finished cells"]
    notes = [n.format(k=k) for n in NOTES]

    md = [f"# {title}", "", f"Generated {now} from `results.csv` (long format: one row per "
          "cell × metric).", "", "## Grid", ""]
    md += [f"- {line}" for line in grid]
    hb = [f"<h1>{html.escape(title)}</h1>",
          f'<p class="meta">Generated {now} from <code>results.csv</code> (long format: one '
          "row per cell × metric).</p>", "<h2>Grid</h2>", '<ul class="grid">']
    hb += [f"<li>{html.escape(line)}</li>" for line in grid] + ["</ul>"]

    for (ds, ratio), frame in results.groupby(["dataset", "ratio"], sort=False):
        head = f"{ds} — forget ratio {format(ratio, 'g')}"
        md += ["", f"## {head}"]
        hb += [f"<h2>{html.escape(head)}</h2>"]
        selections = _order(frame["selection"].unique().tolist(), ["core", "edge", "random"])
        for sel in selections:
            sub = frame[frame["selection"] == sel]
            main, extra = table(sub, MAIN_COLUMNS, k), table(sub, EXTRA_COLUMNS, k)
            md += ["", f"### {sel} users", "", _md_table(main), "", "Supporting metrics:", "",
                   _md_table(extra)]
            hb += [f"<h3>{html.escape(sel)} users</h3>", _html_table(main),
                   "<details><summary>Supporting metrics</summary>", _html_table(extra),
                   "</details>"]
        md += ["", "### Plots", ""]
        hb += ["<h3>Plots</h3>"]
        for p in plots.get((ds, ratio), []):
            rel = p.relative_to(out).as_posix()
            alt = p.stem.replace("_", " ")
            md += [f"![{alt}]({rel})", ""]
            data = base64.b64encode(p.read_bytes()).decode()
            hb += [f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">']

    md += ["", "## How to read this", ""] + [f"- {n}" for n in notes] + [""]
    hb += ["<h2>How to read this</h2>", '<ul class="notes">']
    hb += [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(hb) + "\n</body></html>\n")
    md_path, html_path = out / "report.md", out / "report.html"
    write_atomic(md_path, "\n".join(md).encode())
    write_atomic(html_path, page.encode())
    return {"markdown": md_path, "html": html_path, "plots": out / PLOTS_DIR}
