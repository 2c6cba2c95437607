"""The privacy report's sections: threat model, privacy-vs-utility plots, attribute tables.

Per dataset and model, the report shows one privacy-vs-utility scatter plot with a panel
per attribute (x = NDCG@k on the test split, y = the headline **leakage**, dashed line =
the half-width of the label-permutation null, one colour per method, error bars = 95 %
intervals over seeds), and one table per attribute: rows = method (and attribute set, when
the attribute is in several).

**Leakage** is the two-sided distance of the worst attacker's balanced accuracy from
chance, ``max |BA − 1/C|`` over the real attackers (the ``majority`` baseline left out)
and over the views (the released user table and users folded back in from the released
item table), on the *first* user set of the audit: ``held-out`` by default, the users
whose labels the method did not see. A below-chance attacker counts (flipping its answers
reads the attribute). The table splits the headline into each (users, view) pair, and
gives the worst AUC distance ``|AUC − 0.5|``, the null interval of balanced accuracy and
how many seeds' worst attacker fell outside it. With several seeds a cell reads
``mean ± h`` (95 % Student-t interval of the mean), with one seed just the value; "worst"
is taken per seed, before averaging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec.bench import render
from trustrec.bench.experiments.privacy import NO_DEFENSE, Privacy
from trustrec.bench.render import Image, Section, Table, Text, format_cell, mean_ci

BASELINE = NO_DEFENSE
#: Attackers that are baselines or summaries, not attacks.
BASELINE_ATTACKERS = ("majority", "permuted", "worst")
CELL = list(Privacy.axes)
#: How user sets and views read in column names.
_USERS_TEXT = {"held-out": "held-out", "seen": "seen", "all": "all users"}
_VIEW_TEXT = {"released": "released", "fold_in": "fold-in"}


# ---------------------------------------------------------------------------- tables
def audit_layout(results: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The user sets (headline first) and views present in the attack rows, in order."""
    attack = results[results["attribute"] != ""]
    return (list(dict.fromkeys(attack["users"])), list(dict.fromkeys(attack["view"])))


def per_seed_points(results: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per (cell, attribute): attack and utility figures of one seed.

    Columns: the cell axes, ``attribute``; per (user set ``u``, view ``v``):
    ``leak:u:v`` (worst attacker's ``|BA − chance|``), ``auc:u:v`` (worst ``|AUC − 0.5|``),
    ``low:u:v`` / ``high:u:v`` (null interval), ``out:u:v`` (1: worst attacker outside it)
    and ``bacc:u:v:<attacker>``; the headline (first user set, worst over views)
    ``leakage``, ``auc_distance``, ``outside_null``, ``null_half`` (mean half-width of the
    null intervals around their centre); ``chance``, ``ndcg``, ``recall``, ``rel_drop``,
    ``seconds``, ``label_share``, ``seen_users``, ``held_out_users``.
    """
    attack = results[results["attribute"] != ""]
    util = results[results["attribute"] == ""]
    if attack.empty:
        return pd.DataFrame(columns=[*CELL, "attribute"])
    keys = [*CELL, "attribute"]
    users, views = audit_layout(results)
    a = attack.assign(col="")
    worst = a["attacker"] == "worst"
    null = a["attacker"] == "permuted"
    real = ~a["attacker"].isin(BASELINE_ATTACKERS)
    tag = a["users"] + ":" + a["view"]
    picks = [(worst & (a["metric"] == "bacc_distance"), "leak:"),
             (worst & (a["metric"] == "auc_distance"), "auc:"),
             (worst & (a["metric"] == "outside_null"), "out:"),
             (null & (a["metric"] == "bacc_low"), "low:"),
             (null & (a["metric"] == "bacc_high"), "high:")]
    for mask, prefix in picks:
        a.loc[mask, "col"] = prefix + tag[mask]
    ba = real & (a["metric"] == "balanced_accuracy")
    a.loc[ba, "col"] = "bacc:" + tag[ba] + ":" + a.loc[ba, "attacker"]
    # (no dropna=False: it would add every combination of the index levels, e.g. an
    # "age" row for a cell that protected and audited gender only)
    wide = a[a["col"] != ""].pivot_table(index=keys, columns="col", values="value",
                                         aggfunc="first")
    chance = attack[attack["metric"] == "chance"].groupby(keys)["value"].first()
    table = wide.copy()
    table["chance"] = chance
    head = users[0]
    for prefix, name in (("leak", "leakage"), ("auc", "auc_distance"),
                         ("out", "outside_null")):
        cols = [f"{prefix}:{head}:{v}" for v in views if f"{prefix}:{head}:{v}" in table]
        table[name] = table[cols].max(axis=1, skipna=True) if cols else np.nan
    halves = [(table[f"high:{head}:{v}"] - table[f"low:{head}:{v}"]) / 2 for v in views
              if f"high:{head}:{v}" in table]
    table["null_half"] = pd.concat(halves, axis=1).mean(axis=1) if halves else np.nan
    names = {f"ndcg@{k}": "ndcg", f"recall@{k}": "recall", f"ndcg@{k}_rel_drop": "rel_drop",
             "method_seconds": "seconds", "label_share": "label_share",
             "seen_users": "seen_users", "held_out_users": "held_out_users"}
    u = util[util["metric"].isin(list(names))].pivot_table(
        index=CELL, columns="metric", values="value", aggfunc="first").rename(columns=names)
    out = table.reset_index().merge(u.reset_index(), on=CELL, how="left")
    # pivot tables sort their keys; restore the grid's order (results are in cell order)
    order = {c: {v: i for i, v in enumerate(dict.fromkeys(results[c]))}
             for c in ("dataset", "model", "attributes", "method", "attribute")}
    out = out.sort_values(["dataset", "model", "attributes", "method", "attribute", "seed"],
                          key=lambda col: col.map(order[col.name]) if col.name in order
                          else col, kind="stable").reset_index(drop=True)
    for col in (*names.values(), "leakage", "auc_distance", "outside_null", "null_half",
                "chance"):
        if col not in out:
            out[col] = np.nan
    out.attrs.update({"users": users, "views": views})
    return out


def _order(values: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(values))
    return ([BASELINE] if BASELINE in seen else []) + [v for v in seen if v != BASELINE]


def _pct(values: Sequence[float]) -> str:
    mean, h, _ = mean_ci([100 * v for v in values])
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.1f} %" if h is None else f"{mean:.1f} ± {h:.1f} %"


def _interval(lows: Sequence[float], highs: Sequence[float]) -> str:
    lo = [x for x in lows if math.isfinite(x)]
    hi = [x for x in highs if math.isfinite(x)]
    if not lo or not hi:
        return "–"
    return f"{np.mean(lo):.3f}–{np.mean(hi):.3f}"


def _count(flags: Sequence[float]) -> str:
    known = [x for x in flags if math.isfinite(x)]
    return f"{int(sum(x > 0 for x in known))}/{len(known)}" if known else "–"


def attribute_table(points: pd.DataFrame, attackers: Sequence[str], k: int) -> pd.DataFrame:
    """Formatted table of one (dataset, model, attribute): a row per (set, method).

    Columns: ``Leakage`` (the headline), one ``Leakage <users> <view>`` per user set and
    view, ``AUC dist.`` (headline users, worst view), ``Null 95 %`` (mean interval over
    seeds, headline users, first view), ``Outside null`` (seeds whose worst attacker, in
    any view, fell outside its null), balanced accuracy per attacker (headline users,
    first view: the side of chance it falls on), utility and seconds.
    """
    users = points.attrs.get("users") or []
    views = points.attrs.get("views") or []
    head = users[0] if users else ""
    sets = list(dict.fromkeys(points["attributes"]))
    rows = []
    for attrs in sets:
        sub = points[points["attributes"] == attrs]
        for method in _order(sub["method"].tolist()):
            g = sub[sub["method"] == method]

            def col(name: str, frame: pd.DataFrame = g) -> list[float]:
                return frame[name].tolist() if name in frame else []

            row = {"Method": method}
            if len(sets) > 1:
                row = {"Protected set": attrs, **row}
            row["Leakage"] = format_cell(col("leakage"), "score")
            for u in users:
                for v in views:
                    row[f"{_USERS_TEXT.get(u, u)} {_VIEW_TEXT.get(v, v)}"] = format_cell(
                        col(f"leak:{u}:{v}"), "score")
            row["AUC dist."] = format_cell(col("auc_distance"), "score")
            if views:
                row["Null 95 %"] = _interval(col(f"low:{head}:{views[0]}"),
                                             col(f"high:{head}:{views[0]}"))
            row["Outside null"] = _count(col("outside_null"))
            for a in attackers:
                if views:
                    row[f"BAcc {a}"] = format_cell(col(f"bacc:{head}:{views[0]}:{a}"),
                                                   "score")
            row.update({
                "Chance": format_cell(col("chance"), "score"),
                f"NDCG@{k}": format_cell(col("ndcg"), "score"),
                f"Recall@{k}": format_cell(col("recall"), "score"),
                f"NDCG@{k} drop": _pct(col("rel_drop")),
                "Seconds": format_cell(col("seconds"), "seconds"),
                "Seeds": str(g["seed"].nunique()),
            })
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- plots
def _mean_h(values: Sequence[float]) -> tuple[float, float]:
    mean, h, _ = mean_ci(values)
    return mean, (h or 0.0)


def plot_privacy_utility(points: pd.DataFrame, k: int, path: Path, title: str) -> Path:
    """Headline leakage against NDCG@k, one panel per attribute.

    One marker per method (colour) and attribute set (shape, when there are several);
    error bars are 95 % intervals over seeds; the dashed line is the mean half-width of
    the label-permutation null (below it, the worst attacker is within what random labels
    give, for one attacker).
    """
    plt = render.pyplot()
    from matplotlib.lines import Line2D

    attributes = list(dict.fromkeys(points["attribute"]))
    methods = _order(points["method"].tolist())
    sets = list(dict.fromkeys(points["attributes"]))
    colors = render.colors_for(methods)
    shape = {s: render.MARKERS[i % len(render.MARKERS)] for i, s in enumerate(sets)}
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.4 * len(attributes) + 2.0, 4.0),
                             squeeze=False)
    users = points.attrs.get("users") or [""]
    for ax, attr in zip(axes[0], attributes, strict=True):
        p = points[points["attribute"] == attr]
        for (attrs, method), g in p.groupby(["attributes", "method"], sort=False):
            x, hx = _mean_h(g["ndcg"].tolist())
            y, hy = _mean_h(g["leakage"].tolist())
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            ax.errorbar(x, y, xerr=hx or None, yerr=hy or None, fmt=shape[attrs], ms=8,
                        color=colors[method], mec="white", mew=0.8, capsize=3)
            ax.annotate(method, (x, y), xytext=(6, 4), textcoords="offset points",
                        fontsize=8, color="0.3")
        half = p["null_half"].dropna()
        if len(half):
            ax.axhline(float(half.mean()), color="0.2", ls="--", lw=1)
        ax.set_ylim(bottom=0)
        ax.set_title(attr)
        ax.set_xlabel(f"NDCG@{k} (test) →  better utility")
        ax.set_ylabel(f"leakage |BA − chance|, {users[0]} users ↓")
    handles = [Line2D([], [], ls="", marker="o", color=colors[m], ms=8, label=m)
               for m in methods]
    if len(sets) > 1:
        handles += [Line2D([], [], ls="", marker=shape[s], color="0.4", ms=8,
                           label=f"protects {s}") for s in sets]
    handles.append(Line2D([], [], color="0.2", ls="--", lw=1, label="null half-width"))
    fig.legend(handles=handles, loc="center right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / fig.get_figwidth(), 1))
    return render.save_figure(fig, path)


# ---------------------------------------------------------------------------- documents
NOTES = [
    "Attack: each attacker is trained to predict the attribute from user features with "
    "stratified k-fold cross-validation over the scored users; scores are out-of-fold. "
    "Views: 'released' attacks the released user table (what the model scores users "
    "with); 'fold-in' attacks user vectors re-derived from the released item table and "
    "each user's training items (an ALS user step), which a method that edits only the "
    "user table cannot change.",
    "Leakage = |balanced accuracy − chance| of the worst attacker (two-sided: an attacker "
    "below chance reads the attribute by flipping its answers), worst over the views; "
    "0 is the floor. AUC dist. = |AUC − 0.5| of the worst attacker (one-vs-rest for "
    "several classes). Chance = 1 / number of classes.",
    "Null 95 %: the balanced accuracy that logistic regression reaches on the same users "
    "and folds after the labels are permuted (mean ± 1.96 sd over the permutations): what "
    "'no information' looks like. Outside null counts the seeds whose worst attacker lies "
    "outside it in some view (one-attacker 95 % intervals, so a table without information "
    "is flagged somewhat more often than 5 % of the time).",
    "Utility: full ranking over all items minus the user's training items on the test "
    "split. NDCG@{k} drop = (NDCG@{k} of the undefended model 'none' − NDCG@{k}) / "
    "NDCG@{k} of 'none', same dataset, model and seed; positive means utility lost.",
    "Seconds: wall time of the method — the post-training step (PoT-AU, LEGO, output "
    "noise, hide-table) on top of the trained model, or the whole defended training "
    "(RAID, adversarial); 0 for 'none'. metrics.json also has base_train_seconds and "
    "total_seconds. 'hide-table' is a negative control (it replaces the released user "
    "table with noise), not a method.",
    "With several seeds, a cell reads mean ± half-width of the 95 % Student-t interval; "
    "error bars in the plots are the same intervals.",
]


def threat_model_note(points: pd.DataFrame) -> str:
    """One sentence stating whose labels the methods saw and whom the attacks scored."""
    users = points.attrs.get("users") or []
    share = points["label_share"].dropna() if "label_share" in points else pd.Series([])
    if not len(share):
        return ("Threat model: not recorded in these results (no label_share metric).")
    share_v = float(share.iloc[0])
    seen = float(points["seen_users"].mean())
    held = float(points["held_out_users"].mean())
    if share_v >= 1:
        return ("Threat model: in-sample. Every method saw the labels of every labelled "
                f"user ({seen:.0f}), and the attackers are scored on the same users.")
    sets = ", ".join(f"'{_USERS_TEXT.get(u, u)}'" for u in users)
    return (f"Threat model: held-out users. Each method saw the labels of a seeded "
            f"{100 * share_v:.0f} % of the labelled users only ({seen:.0f} users; the same "
            f"users for every method of a seed); the other {held:.0f} are held out and "
            f"their labels reach only the attacker. Attacks are cross-validated within "
            f"each user set ({sets}); the headline is '{_USERS_TEXT.get(users[0], users[0])}'"
            ".")



def header_lines(results: pd.DataFrame, spec: Any) -> list[str]:
    """The audit's lines of the report header: attackers, scored users and views, folds,
    label share and null permutations."""
    from trustrec.bench.experiments.privacy import expand_attack_rows

    if not len(results):
        return []
    rows = expand_attack_rows(results)
    attackers = [a for a in dict.fromkeys(rows["attacker"])
                 if a and a not in BASELINE_ATTACKERS]
    baselines = [a for a in ("majority",) if a in set(rows["attacker"])]
    users, views = audit_layout(rows)
    lines = [f"attackers: {', '.join(attackers)}"
             + (f" (baseline: {', '.join(baselines)})" if baselines else ""),
             f"scored users: {', '.join(users)}; views: {', '.join(views)}"]
    if spec is not None:
        lines.append(f"attack folds: {spec.folds}; label share seen by the methods: "
                     f"{spec.label_share:g}; null permutations: {spec.null_permutations}")
    return lines


def sections(results: pd.DataFrame, spec: Any, out: Path) -> list[Section]:
    """The threat model, then per dataset and model the privacy-vs-utility plot and one
    table per attribute."""
    from trustrec.bench.experiments.privacy import expand_attack_rows
    from trustrec.bench.report import headline_k

    rows = expand_attack_rows(results)
    k = headline_k(results)
    points = per_seed_points(rows, k)
    if not len(points):
        return []
    attackers = [a for a in dict.fromkeys(rows["attacker"])
                 if a and a not in BASELINE_ATTACKERS]
    out_sections = [Section("Threat model", [Text(
        "How much each released user table leaks its users' attributes, and what "
        "removing the leak costs in recommendation quality. " + threat_model_note(points))])]
    for (ds, model), frame in points.groupby(["dataset", "model"], sort=False):
        head = f"{ds} — {model}"
        frame.attrs.update(points.attrs)
        name = f"privacy_utility_{render.slug(ds)}_{render.slug(model)}.png"
        plot = plot_privacy_utility(frame, k, out / render.PLOTS_DIR / name,
                                    f"Privacy vs utility — {head}")
        out_sections.append(Section(head, [Image(plot)]))
        for attr in dict.fromkeys(frame["attribute"]):
            sub = frame[frame["attribute"] == attr]
            sub.attrs.update(points.attrs)
            out_sections.append(Section(f"Attribute: {attr}", [
                Table(attribute_table(sub, attackers, k), group_by=None)], level=3))
    return out_sections
