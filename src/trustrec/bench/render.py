"""One renderer for every experiment kind: sections of blocks → Markdown and HTML.

A report is a title, a header (the grid and where the figures come from), a list of
:class:`Section` s and "how to read this" notes. A section holds blocks: :class:`Text`,
:class:`Table` (a formatted DataFrame, optionally with a row of column groups),
:class:`Image` (a PNG, linked from the Markdown and embedded in the self-contained HTML)
and :class:`Details` (blocks folded away in HTML). Experiment kinds build sections; this
module alone decides how they look, so every report reads alike.

Also here, shared by every kind: the mean and Student-t interval over seeds
(:func:`mean_ci`, :func:`summary_frame`, :func:`format_cell`), the provenance lines and
the matplotlib helpers.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec.bench.files import write_atomic

PLOTS_DIR = "plots"


# ---------------------------------------------------------------------------- blocks
@dataclass
class Text:
    """A paragraph (plain text; ``**bold**`` and backticks are kept in Markdown)."""

    text: str


@dataclass
class Table:
    """A formatted table; ``spans`` = ``[(group, n_columns)]`` after two leading columns."""

    frame: pd.DataFrame
    spans: list[tuple[str, int]] | None = None
    group_by: str | None = "Model"


@dataclass
class Image:
    """A PNG file under the report folder."""

    path: Path


@dataclass
class Details:
    """Blocks folded under a summary line in HTML (plain in Markdown)."""

    summary: str
    blocks: list[Any]


@dataclass
class Section:
    """A titled part of a report (``level`` 2 or 3)."""

    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2


# ---------------------------------------------------------------------------- statistics
def wide_cells(results: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """One row per cell of a long ``results.csv`` frame: the ``axes`` and every metric as
    a column."""
    return results.pivot_table(index=list(axes), columns="metric", values="value",
                               aggfunc="first").reset_index()


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


def summary_frame(results: pd.DataFrame, group: Sequence[str],
                  level: float = 0.95) -> pd.DataFrame:
    """Per group and metric: mean over seeds, interval bounds and count.

    Args:
        results: the long results table.
        group: the columns that identify a group of cells differing only by seed.
        level: confidence level of the Student-t interval.

    Returns:
        Columns ``*group, metric, mean, ci_low, ci_high, n``; the interval is NaN for a
        group with one finite value, ``n`` counts the finite values (seeds).
    """
    group = list(group)
    rows = []
    for key, g in results.groupby([*group, "metric"], sort=False):
        mean, h, n = mean_ci(g["value"].tolist(), level)
        lo, hi = (float("nan"), float("nan")) if h is None else (mean - h, mean + h)
        rows.append({**dict(zip([*group, "metric"], key, strict=True)), "mean": mean,
                     "ci_low": lo, "ci_high": hi, "n": n})
    return pd.DataFrame(rows, columns=[*group, "metric", "mean", "ci_low", "ci_high", "n"])


def write_summary(out: Path, results: pd.DataFrame, group: Sequence[str]) -> Path:
    """Write ``summary.csv`` (:func:`summary_frame`) atomically."""
    buf = io.StringIO()
    summary_frame(results, group).to_csv(buf, index=False, float_format="%.10g")
    return write_atomic(out / "summary.csv", buf.getvalue().encode())


def fmt(x: float, kind: str) -> str:
    """A number as a report shows it (see :func:`format_cell` for the kinds)."""
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
    if kind == "short":
        return f"{x:.3f}"
    return f"{x:.4f}"


def format_cell(values: Sequence[float], kind: str, se: Sequence[float] = (),
                mark: str = "") -> str:
    """``mean ± h`` (several seeds) or the value (one seed, or identical values); ``–``
    when missing.

    Kinds: ``score`` (4 decimals), ``short`` (3 decimals), ``seconds`` (3 significant
    digits), ``ratio`` (``2.50×``), ``count`` (integer), ``small`` (3 significant digits,
    for variances). With one value and its standard error ``se``, the half-width is
    ``1.96 se`` (a bootstrap interval). ``mark`` prefixes a flagged value.
    """
    mean, h, _ = mean_ci(values)
    finite = [x for x in values if x is not None and math.isfinite(x)]
    if h is None and len(finite) == 1:
        s_fin = [x for x in se if x is not None and math.isfinite(x)]
        h = 1.959964 * s_fin[0] if len(s_fin) == 1 and s_fin[0] > 0 else None
    prefix = f"{mark} " if mark and finite else ""
    if h is None or (len(finite) > 1 and min(finite) == max(finite)):
        return prefix + fmt(mean, kind)
    return f"{prefix}{fmt(mean, kind)} ± {fmt(h, kind).rstrip('×')}"


def order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``values`` with the ``preferred`` ones first (in that order), the rest sorted."""
    seen = [v for v in preferred if v in set(values)]
    return seen + sorted(set(values) - set(seen))


def metric_text(metrics: Mapping[str, float], name: str, spec: str = ".4f") -> str:
    """``metrics[name]`` formatted by ``spec`` for a log line; ``–`` when it is missing
    or not finite."""
    v = metrics.get(name)
    return "–" if v is None or not np.isfinite(v) else format(v, spec)


# ---------------------------------------------------------------------------- header
def provenance(spec: Any, data_info: dict[str, dict[str, float]] | None) -> list[str]:
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

        split = getattr(spec, "split", "random")
        ratios = "/".join(format(x, "g") for x in spec.split_ratios)
        lines.append(f"split: {split}" + (f" (train/valid/test {ratios})"
                                          if split != "leave_last_out" else ""))
        lines.append(f"protocol: {getattr(spec, 'protocol', 'trustrec')}")
        for name in spec.models:
            cfg = to_dict(make_model(name, **spec.model_config(name)).config)
            lines.append(f"model {name} (resolved): "
                         + ", ".join(f"{a}={b}" for a, b in cfg.items()))
        for kind in ("model", "method"):
            for key, cfg in (getattr(spec, f"{kind}_configs", None) or {}).items():
                if cfg:
                    opts = ", ".join(f"{a}={b}" for a, b in cfg.items())
                    lines.append(f"{kind} {key} (set in the spec): {opts}")
        if len(spec.seeds) == 1:
            lines.append("single seed: no interval over seeds")
    v = versions()
    lines.append("versions: " + ", ".join(f"{a} {b}" for a, b in v.items()))
    lines.append(f"git commit: {git_commit()}")
    h = host_info()
    lines.append(f"host: {h['platform']}, {h['cpus_usable']} usable CPUs")
    return lines


def axis_lines(results: pd.DataFrame, axes: Sequence[str], n_planned: int | None
               ) -> list[str]:
    """One line per axis (the values present), and the finished cells."""
    lines = []
    for col in axes:
        if col not in results.columns:
            continue
        v = list(dict.fromkeys(results[col]))
        text = ", ".join(format(x, "g") if isinstance(x, float) else str(x) for x in v)
        lines.append(f"{col if col.endswith('s') else col + 's'}: {text}")
    n = results["cell"].nunique() if "cell" in results.columns else 0
    lines.append(f"finished cells: {n}" + (f" of {n_planned}" if n_planned else ""))
    return lines


# ---------------------------------------------------------------------------- tables
def md_table(df: pd.DataFrame, spans: list[tuple[str, int]] | None = None) -> str:
    """A Markdown table; with ``spans``, headers name their group (``Group: column``)."""
    cols = [str(c) for c in df.columns]
    if spans:
        renamed, i = cols[:2], 2
        for group, n in spans:
            renamed += [f"{group.capitalize()}: {c}" for c in cols[i:i + n]]
            i += n
        cols = renamed + cols[i:]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(v) for v in r.tolist()) + " |")
    return "\n".join(out)


def html_table(df: pd.DataFrame, spans: list[tuple[str, int]] | None = None,
               group_by: str | None = "Model") -> str:
    """An HTML table of ``df`` (escaped cells).

    Args:
        df: the table.
        spans: ``(group, number of columns)`` for a header row above the column names
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
    prev = None
    grouped = group_by is not None and group_by in df.columns
    for _, r in df.iterrows():
        key = r[group_by] if grouped else None
        cls = ' class="group"' if prev is not None and key != prev else ""
        prev = key
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in r.tolist())
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


# ---------------------------------------------------------------------------- rendering
def _block(block: Any, out: Path) -> tuple[list[str], list[str]]:
    if isinstance(block, Text):
        return [block.text, ""], [f"<p>{html.escape(block.text)}</p>"]
    if isinstance(block, Table):
        return ([md_table(block.frame, block.spans), ""],
                [html_table(block.frame, block.spans, block.group_by)])
    if isinstance(block, Image):
        rel = block.path.relative_to(out).as_posix()
        alt = block.path.stem.replace("_", " ")
        data = base64.b64encode(block.path.read_bytes()).decode()
        return ([f"![{alt}]({rel})", ""],
                [f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'])
    if isinstance(block, Details):
        md, hb = [f"{block.summary}:", ""], [f"<details><summary>{html.escape(block.summary)}"
                                             "</summary>"]
        for b in block.blocks:
            m, h = _block(b, out)
            md += m
            hb += h
        return md, [*hb, "</details>"]
    raise TypeError(f"not a report block: {type(block).__name__}")


def render(out: str | Path, title: str, header: Sequence[str], sections: Sequence[Section],
           notes: Sequence[str]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (self-contained) into ``out``.

    Args:
        out: the report folder (images must lie under it).
        title: the title.
        header: the grid and provenance lines (a bullet list under "Grid").
        sections: the kind's sections.
        notes: "how to read this" lines.

    Returns:
        ``(report.md, report.html)``.
    """
    out = Path(out)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"Generated {now} from `results.csv` (long format: one row per cell × metric); "
             "`summary.csv` has the mean and 95 % interval of every metric.")
    md = [f"# {title}", "", intro, "", "## Grid", "", *[f"- {line}" for line in header]]
    hb = [f"<h1>{html.escape(title)}</h1>",
          f'<p class="meta">{html.escape(intro).replace("`", "")}</p>', "<h2>Grid</h2>",
          '<ul class="grid">', *[f"<li>{html.escape(line)}</li>" for line in header], "</ul>"]
    for sec in sections:
        md += ["", f"{'#' * sec.level} {sec.title}", ""]
        hb += [f"<h{sec.level}>{html.escape(sec.title)}</h{sec.level}>"]
        for block in sec.blocks:
            m, h = _block(block, out)
            md += m
            hb += h
    md += ["", "## How to read this", "", *[f"- {n}" for n in notes], ""]
    hb += ["<h2>How to read this</h2>", '<ul class="notes">',
           *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>\n"
            + "\n".join(hb) + "\n</body></html>\n")
    md_path, html_path = out / "report.md", out / "report.html"
    write_atomic(md_path, "\n".join(md))
    write_atomic(html_path, page)
    return md_path, html_path


# ---------------------------------------------------------------------------- plots
def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend with the reports' style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "font.size": 10, "axes.titlesize": 11,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.3, "legend.frameon": False,
    })
    return plt


MARKERS = "osD^vP*Xh<>"


def colors_for(names: Sequence[str]) -> dict[str, tuple]:
    """A tab10 colour per name, in order."""
    cmap = pyplot().get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def log_axis(axis: Any) -> None:
    """A log scale with readable 1-2-5 ticks (labelled even within one decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def save_figure(fig: Any, path: Path) -> Path:
    """Save a figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def slug(text: str) -> str:
    """``text`` as a file-name part."""
    import re

    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")
