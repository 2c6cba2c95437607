"""The attack report: per dataset, victim and defense, a table of every attack's strength
and stealth, the target's exposure against the budget, and stealth against strength; the
CREAT paper's Table 1 beside it, with the protocol difference stated.

Every figure is a mean over seeds (``mean ± h``, 95 % Student-t interval, with several
seeds). "Full" ranks the target among every item the user has not seen; "sampled" among
100 random unseen items, ties at random (the papers' protocol; 3–6× more flattering).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.bench.render import Image, Section, Table, Text, format_cell

#: (column, metric, format) of the per-attack table.
COLUMNS = (
    ("target HR@10 full", "target_hit@10", "score"),
    ("target NDCG@10 full", "target_ndcg@10", "score"),
    ("target HR@10 sampled", "sampled_target_hit@10", "score"),
    ("target rank", "target_rank", "count"),
    ("NDCG@10 shift", "ndcg_shift", "score"),
    ("PCA AUC", "pca_auc", "short"),
    ("DegSim AUC", "degsim_auc", "short"),
    ("distance", "sequence_distance", "short"),
    ("attack s", "attack_seconds", "seconds"),
)
#: CREAT's Table 1, ML-1M, sampled 1 + 100 (target HR@10 / NDCG@10), per victim.
PAPER_TABLE1 = {
    "narm": {"none": (0.0174, 0.0096), "popular": (0.0695, 0.0365),
             "random": (0.0560, 0.0291), "simalter": (0.0658, 0.0369),
             "replace": (0.1027, 0.0515), "creat": (0.1428, 0.0765)},
    "bert4rec": {"none": (0.0128, 0.0051), "popular": (0.1065, 0.0515),
                 "random": (0.0560, 0.0255), "simalter": (0.0563, 0.0328),
                 "replace": (0.0938, 0.0493), "creat": (0.1492, 0.0666)},
}

NOTES = [
    "The audience is every user without the target in its clean data and not polluted; "
    "its histories are clean. A polluted user has the target in its history, where a "
    "ranking masks it.",
    "`none` changes nothing: its detector AUC is the detectors' score on the users the "
    "attacks would pick (selected for long sequences), the level a stealthy attack "
    "should stay near.",
    "Full-catalogue figures are the ones to compare methods on; sampled ones follow "
    "the papers' 1 + 100 protocol (random ties) and are printed only beside them.",
]


def points(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the axes and every metric as columns."""
    return render.wide_cells(results, ["dataset", "model", "target", "budget", "defense",
                                       "attack", "seed"])


def attack_table(frame: pd.DataFrame, attacks: Sequence[str]) -> pd.DataFrame:
    """Rows: attack × target × budget; columns: :data:`COLUMNS`, clean → attacked for
    the target figures."""
    rows = []
    for (target, budget, attack), g in frame.groupby(["target", "budget", "attack"],
                                                     sort=False):
        row: dict[str, Any] = {"Attack": attack, "Target": target, "Budget": f"{budget:g}"}
        for title, metric, kind in COLUMNS:
            cell = format_cell(g[metric].tolist(), kind) if metric in g else "–"
            clean = f"clean_{metric}"
            if clean in g:
                cell = f"{format_cell(g[clean].tolist(), kind)} → {cell}"
            row[title] = cell
        rows.append(row)
    table = pd.DataFrame(rows)
    order = {a: i for i, a in enumerate(attacks)}
    return table.sort_values(["Target", "Budget", "Attack"],
                             key=lambda c: c.map(order) if c.name == "Attack" else c,
                             kind="stable").reset_index(drop=True)


def plot_budget(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Target HR@10 (full) against the budget, one line per attack, a panel per target
    class."""
    plt = render.pyplot()
    targets = list(dict.fromkeys(frame["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4),
                             squeeze=False)
    colors = render.colors_for(list(dict.fromkeys(frame["attack"])))
    for ax, target in zip(axes[0], targets, strict=True):
        sub = frame[frame["target"] == target]
        for attack, g in sub.groupby("attack", sort=False):
            m = g.groupby("budget")["target_hit@10"].mean()
            ax.plot(m.index, m.values, marker="o", label=attack, color=colors[attack])
        ax.set_title(f"{target} target")
        ax.set_xlabel("budget (share of users)")
        ax.set_ylabel("target HR@10 (full)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    return render.save_figure(fig, path)


def plot_stealth(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """PCA detector AUC against target HR@10 (full), one point per attack and target."""
    plt = render.pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    colors = render.colors_for(list(dict.fromkeys(frame["attack"])))
    for attack, g in frame.groupby("attack", sort=False):
        m = g.groupby(["target", "budget"])[["target_hit@10", "pca_auc"]].mean()
        ax.scatter(m["target_hit@10"], m["pca_auc"], label=attack, color=colors[attack])
    ax.axhline(0.5, ls="--", color="grey", lw=0.8)
    ax.set_xlabel("strength: target HR@10 (full)")
    ax.set_ylabel("detectability: PCA AUC")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return render.save_figure(fig, path)


def paper_note(models: Sequence[str]) -> Text:
    """The CREAT paper's ML-1M figures (its victims; those in the run first)."""
    lines = []
    for model in sorted(PAPER_TABLE1, key=lambda m: m not in models):
        cells = ", ".join(f"{a} {hr:.4f} / {nd:.4f}"
                          for a, (hr, nd) in PAPER_TABLE1[model].items())
        lines.append(f"{model}: {cells}")
    return Text("CREAT paper, Table 1 (ML-1M, 1% of users, 5 replacements each, target "
                "HR@10 / NDCG@10 **sampled 1 + 100**; ties unstated): " + "; ".join(lines)
                + ". Ours above are on the run's data with full-catalogue and sampled "
                "figures side by side; compare the ordering, not the values.")


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """Per dataset, victim and defense: the table and both plots; the paper's figures."""
    frame = points(results)
    if not len(frame):
        return []
    attacks = list(getattr(spec, "attacks", dict.fromkeys(frame["attack"])))
    blocks: list[Section] = []
    for (ds, model, defense), g in frame.groupby(["dataset", "model", "defense"],
                                                 sort=False):
        head = f"{ds} — {model} — defense {defense}"
        slug = render.slug(f"{ds}_{model}_{defense}")
        blocks.append(Section(head, [
            Table(attack_table(g, attacks), group_by=None),
            Image(plot_budget(g, out / render.PLOTS_DIR / f"budget_{slug}.png",
                              f"Exposure vs budget — {head}")),
            Image(plot_stealth(g, out / render.PLOTS_DIR / f"stealth_{slug}.png",
                               f"Stealth vs strength — {head}"))]))
    blocks.append(Section("The paper's figures",
                          [paper_note(list(dict.fromkeys(frame["model"])))]))
    return blocks
