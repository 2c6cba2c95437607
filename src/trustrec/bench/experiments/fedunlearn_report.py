"""The federated-unlearning report: per request and target, a table of every method (the
original model's figures first) and a plot of forget against retain measures.

Every figure is a mean over seeds (``mean ± h``, 95 % Student-t interval, with several
seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.bench import render
from trustrec.bench.render import Image, Section, Table, Text, format_cell

NOTES = [
    "forget: class request — test accuracy on the forgotten class (retraining ≈ 0); "
    "backdoor request — attack success on triggered test images. retain: accuracy on "
    "the other test images (backdoor: all clean test images).",
    "MIA AUC: loss-based membership inference on the forget rows against unseen rows of "
    "the same kind (0.5 = chance). relearn: the forget measure after 3 SGD steps on 10 "
    "forget rows (and 10 retained rows): knowledge only hidden comes straight back.",
    "`none` and `mask` are negative controls: nothing done, and the forgotten class's "
    "output bias lowered just enough to hide it.",
    "time vs retrain: the method's seconds over retraining's mean seconds on the same "
    "request (same process, same machine).",
]

AXES = ["dataset", "request", "target", "method", "seed"]
#: A do-nothing control whose MIA AUC is within this of chance makes the MIA column blind.
MIA_BLIND = 0.05
COLUMNS = [("forget", "forget", "short"), ("retain", "retain", "short"),
           ("MIA AUC", "mia_auc", "short"), ("relearn", "relearn", "short"),
           ("rounds", "rounds", "count"), ("seconds", "seconds", "seconds")]


def method_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The original model's row, then one row per method."""
    retrain = frame.loc[frame["method"] == "retrain", "seconds"].mean()
    rows = []
    before = {"Method": "original (before)"}
    for title, metric, kind in COLUMNS[:4]:
        # every cell of a seed audits the same original model: one value per seed
        per_seed = frame.groupby("seed")[f"before_{metric}"].first().dropna()
        before[title] = format_cell(per_seed.tolist(), kind)
    rows.append(before)
    for method, g in frame.groupby("method", sort=False):
        row: dict[str, Any] = {"Method": method}
        for title, metric, kind in COLUMNS:
            row[title] = format_cell(g[metric].dropna().tolist(), kind)
        row["time vs retrain"] = (format_cell((g["seconds"] / retrain).tolist(), "ratio")
                                  if retrain > 0 else "–")
        rows.append(row)
    return pd.DataFrame(rows).fillna("–")


def plot_tradeoff(frame: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Retain against forget measure per method (mean over seeds), the original marked."""
    plt = render.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    means = frame.groupby("method", sort=False)[["forget", "retain", "relearn"]].mean()
    colors = render.colors_for(list(means.index))
    for method, row in means.iterrows():
        ax.scatter(row["forget"], row["retain"], color=colors[method], label=method, s=40)
        ax.annotate("", xy=(row["relearn"], row["retain"]),
                    xytext=(row["forget"], row["retain"]),
                    arrowprops={"arrowstyle": "->", "color": colors[method], "alpha": 0.5})
    ax.scatter(frame["before_forget"].mean(), frame["before_retain"].mean(), marker="*",
               s=120, color="black", label="original")
    ax.set_xlabel("forget measure (arrow: after the relearning attack)")
    ax.set_ylabel("retain accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return render.save_figure(fig, path)


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """Per request and target: the table and the trade-off plot."""
    frame = render.wide_cells(results, AXES)
    if not len(frame):
        return []
    blocks = []
    for (ds, request, target), g in frame.groupby(["dataset", "request", "target"],
                                                   sort=False):
        what = f"forget class {target}" if request == "class" else f"backdoor → {target}"
        head = f"{ds} — {what}"
        items: list[Any] = [Table(method_table(g), group_by=None)]
        control = g.loc[g["method"] == "none", "mia_auc"]
        if len(control) and abs(control.mean() - 0.5) < MIA_BLIND:
            items.append(Text(
                f"The do-nothing control's MIA AUC is {control.mean():.3f}: the attack "
                "cannot tell members from non-members of this forget set even when nothing "
                "was forgotten, so its figures are no verdict here (read `relearn`)."))
        img = plot_tradeoff(g, out / render.PLOTS_DIR /
                            f"fedunlearn_{render.slug(f'{ds}_{request}{target}')}.png", head)
        if img is not None:
            items.append(Image(img))
        blocks.append(Section(head, items))
    return blocks
