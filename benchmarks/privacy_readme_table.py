"""Print the README's attribute-privacy tables from a privacy grid's ``results.csv``.

Reads the results of ``trustrec bench --spec benchmarks/specs/privacy-ml100k.toml`` and
prints two Markdown tables, means over the seeds (``±`` the 95 % Student-t half-width):

1. the first attribute (gender): the headline leakage (first user set, worst attacker,
   worst view), its split by user set and view, the worst AUC distance, the seeds whose
   worst attacker fell outside the label-permutation null, and the relative NDCG@20 drop;
2. every attribute: the headline leakage, the seen users' released-view leakage (what
   the methods act on) and the NDCG@20 drop.

Leakage is ``|balanced accuracy − chance|`` (two-sided), see
:mod:`trustrec.privacy.attack`.

Usage: ``python benchmarks/privacy_readme_table.py [runs/privacy-ml100k/results.csv]``
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import pandas as pd

from trustrec.bench.collect import read_results
from trustrec.bench.experiments.privacy import expand_attack_rows
from trustrec.bench.experiments.privacy_report import per_seed_points
from trustrec.bench.render import mean_ci
from trustrec.bench.report import headline_k


def fmt(values: Sequence[float], pct: bool = False) -> str:
    """``mean ± h`` with 3 decimals (or a percentage)."""
    scale = 100.0 if pct else 1.0
    mean, h, _ = mean_ci([scale * v for v in values])
    if not math.isfinite(mean):
        return "–"
    unit = " %" if pct else ""
    body = f"{mean:.1f}" if pct else f"{mean:.3f}"
    if h is None:
        return body + unit
    return f"{body} ± {h:.1f}{unit}" if pct else f"{body} ± {h:.3f}"


def outside(values: Sequence[float]) -> str:
    """Seeds flagged outside the null, e.g. ``3/3``."""
    known = [v for v in values if math.isfinite(v)]
    return f"{sum(v > 0 for v in known)}/{len(known)}"


def main() -> None:
    """Print both tables."""
    path = sys.argv[1] if len(sys.argv) > 1 else "runs/privacy-ml100k/results.csv"
    results = expand_attack_rows(read_results(path))
    points = per_seed_points(results, headline_k(results))
    users, views = points.attrs["users"], points.attrs["views"]
    head = users[0]
    methods = list(dict.fromkeys(points["method"]))
    attributes = list(dict.fromkeys(points["attribute"]))
    first = points[points["attribute"] == attributes[0]]
    pairs = [(u, v) for u in users for v in views]
    cols = ["method", f"leakage ({head}, worst view)",
            *[f"{u} {v.replace('_', '-')}" for u, v in pairs], "AUC dist.",
            "outside null", "NDCG@20 drop"]
    print(f"Attribute: {attributes[0]}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for m in methods:
        g = first[first["method"] == m]
        cells = [m, fmt(g["leakage"]), *[fmt(g[f"leak:{u}:{v}"]) for u, v in pairs],
                 fmt(g["auc_distance"]), outside(g["outside_null"].tolist()),
                 fmt(g["rel_drop"], pct=True)]
        print("| " + " | ".join(cells) + " |")
    half = pd.concat([(first[f"high:{head}:{v}"] - first[f"low:{head}:{v}"]) / 2
                      for v in views])
    print(f"\nnull 95 % half-width ({attributes[0]}, {head}): {half.mean():.3f} "
          f"({half.min():.3f}-{half.max():.3f})")
    print("\nEvery attribute\n")
    cols = ["method"]
    for a in attributes:
        chance = points.loc[points["attribute"] == a, "chance"].iloc[0]
        cols += [f"{a} leakage (chance {chance:.3f})", f"{a} seen released",
                 f"{a} drop"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for m in methods:
        cells = [m]
        for a in attributes:
            g = points[(points["attribute"] == a) & (points["method"] == m)]
            seen = g[f"leak:seen:{views[0]}"] if f"leak:seen:{views[0]}" in g else []
            cells += [fmt(g["leakage"]), fmt(seen), fmt(g["rel_drop"], pct=True)]
        print("| " + " | ".join(cells) + " |")
    for a in attributes:
        g = points[points["attribute"] == a]
        half = (g[f"high:{head}:{views[0]}"] - g[f"low:{head}:{views[0]}"]) / 2
        print(f"null half-width {a}: {half.mean():.3f}")


if __name__ == "__main__":
    main()
