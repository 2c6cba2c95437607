"""Write a grid's ``summary.csv``, ``report.md``, ``report.html`` and plots, any kind.

The header (the grid's axes, the data, the resolved model configs, versions, the git
commit, the machine) is the same for every kind; the body is the kind's sections
(:meth:`~trustrec.bench.experiments.base.Experiment.sections`), rendered by
:mod:`trustrec.bench.render`. ``summary.csv`` holds, per group of cells that differ only
by seed and per metric, the mean and its 95 % Student-t interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench.collect import read_results
from trustrec.bench.render import PLOTS_DIR, axis_lines, provenance, render, write_summary


def write_report(out: str | Path, results: pd.DataFrame | None = None, spec: Any = None,
                 title: str | None = None, *, experiment: Any = None,
                 data_info: dict[str, dict[str, float]] | None = None) -> dict[str, Path]:
    """Write ``summary.csv``, ``report.md``, ``report.html`` and the plots.

    Args:
        out: the grid's output folder.
        results: the long results table (default: read ``<out>/results.csv``).
        spec: the spec that produced it (adds the split and configs to the header).
        title: the report's title (default: the kind's).
        experiment: the kind (default: the spec's, else the results' ``kind`` column).
        data_info: per dataset label, its ``users``, ``items``, ``interactions`` and
            ``density`` as the grid used it.

    Returns:
        Paths: ``"summary"``, ``"markdown"``, ``"html"`` and ``"plots"``.
    """
    from trustrec.bench.experiments import get_experiment

    out = Path(out)
    if results is None:
        results = read_results(out / "results.csv")
    if experiment is None:
        kind = spec.kind if spec is not None else (
            str(results["kind"].iloc[0]) if len(results) else "unlearning")
        experiment = get_experiment(kind)
    group = [a for a in experiment.axes if a != "seed"]
    summary = write_summary(out, results, group)
    k = headline_k(results)
    header = (axis_lines(results, experiment.axes, len(spec.cells()) if spec else None)
              if len(results) else ["no finished cells"])
    header += experiment.header(results, spec) if len(results) else []
    header += provenance(spec, data_info)
    sections = experiment.sections(results, spec, out) if len(results) else []
    md, page = render(out, title or experiment.title, header, sections, experiment.notes(k))
    return {"summary": summary, "markdown": md, "html": page, "plots": out / PLOTS_DIR}


def headline_k(results: pd.DataFrame) -> int:
    """20 when ``ndcg@20`` was measured, else the largest measured NDCG cut-off."""
    import re

    ks = sorted({int(m.group(1)) for m in
                 (re.fullmatch(r"ndcg@(\d+)", x) for x in results["metric"].unique()) if m})
    if not ks:
        return 20
    return 20 if 20 in ks else ks[-1]
