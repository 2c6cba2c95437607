"""The human report of one federation: the chosen round, test figures, the curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.fileio import write_atomic


def plot_curves(curve: pd.DataFrame, path: Path, title: str) -> Path:
    """Validation (and test) metric per evaluated round, one line per ``*_ndcg@k`` column."""
    plt = render.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    evaluated = curve.dropna(subset=[c for c in curve.columns if c.startswith("valid_")])
    for col in [c for c in curve.columns if c.startswith(("valid_", "test_"))]:
        ax.plot(evaluated["round"], evaluated[col], marker="o", markersize=3, label=col)
    ax.set_xlabel("round")
    ax.set_ylabel("metric")
    ax.set_title(title)
    ax.legend()
    return render.save_figure(fig, path)


def write_run_report(out: Path, record: dict[str, Any], curve: pd.DataFrame | None) -> Path:
    """``out/report.md`` (and ``out/curve.png`` when there is a curve)."""
    info = record["model"]
    lines = [f"# Federation: {record['method']} on {record['dataset']}", "",
             f"- runtime: {record['spec']['runtime']}; seed {record['spec']['seed']}; "
             f"split {record['spec']['split']}",
             f"- rounds run: {info.get('rounds_run')}; chosen round (best validation): "
             f"{info.get('best_round', 'last (Flower runtime)')}",
             f"- training seconds: {info.get('seconds', float('nan')):.1f}",
             "", "## Test figures at the chosen round", "", "| metric | value |", "|---|---|"]
    lines += [f"| {m} | {v:.4f} |" for m, v in record["test"].items()]
    lines += ["", "`sampled_*` rank each held-out item against 99 sampled items (the "
              "papers' protocol); the others rank the whole catalogue minus training items."]
    if curve is not None and len(curve):
        plot_curves(curve, out / "curve.png", record["method"])
        lines += ["", "## Curve", "", "![curve](curve.png)", "",
                  "The round is chosen on validation; test is drawn for reading only."]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path
