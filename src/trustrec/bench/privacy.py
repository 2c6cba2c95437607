"""Run the privacy grid: measure the attribute leak, remove it, and see what it costs.

What one cell (dataset, model, method, attribute set, seed) does:

1. **Data**: load the dataset and split it per user (train / validation / test), seeded by
   the cell's seed (cached in-process: every cell of a seed sees the same split). Labels of
   the set's attributes come from the dataset's user table
   (:func:`~trustrec.privacy.base.labels_for`).
2. **Threat model**: with ``label_share < 1`` (default 0.5) the method sees the labels of
   a seeded share of the labelled users only (:func:`~trustrec.privacy.base.label_share_users`,
   drawn from the cell's seed, so every method of a seed sees the same users); the others
   are *held out*: their labels reach no method, only the attacker.
3. **Base model**: per (dataset, model, seed) the undefended model is trained once on the
   training split, early-stopping on validation, and stored under
   ``<out>/_base/<dataset>/<model>/seed<seed>/`` (``model.safetensors`` + ``model.json``,
   and ``state.json`` with its training seconds and test utility, written last).
4. **Method**: ``"none"`` releases the base model as is; a post-training method
   (``PROTECTORS``) starts from a fresh copy of the stored base model and returns a model
   with a new user table; an in-training defense (``DEFENSES``) trains its own model from
   the same seed. Both get ``label_users`` = the seen share. ``method_seconds`` is the wall
   time of ``protect`` or of the defended ``fit`` (0 for ``"none"``); ``total_seconds``
   adds the base training a post-training method needs.
5. **Audit** (:func:`~trustrec.privacy.attack.audit_model`): every attribute of the set,
   every attacker, in every view (``released``: the released user table; ``fold_in``: users
   re-derived from the released item table and their training items), cross-validated on
   each user set of the spec's ``users`` (``held-out``: the users whose labels the method
   did not see, the headline; ``seen``: those it saw; ``all`` with ``label_share = 1``),
   with the label-permutation null. The cell's seed fixes the folds, so every method of a
   seed is attacked on the same folds.
6. **Utility**: full-ranking NDCG/Recall/... at every cut-off on the test split
   (:func:`~trustrec.evaluate.ranking.evaluate_ranking`, training items masked), and the
   relative NDCG drop against the base model: ``(NDCG_none − NDCG) / NDCG_none``.

Files per cell (written atomically): ``config.json`` (resolved config + fingerprint),
``metrics.json`` (utility, seconds, ``label_share`` and the numbers of seen and held-out
users; flat name → value), ``audit.csv`` (long attack table: attribute, view, users,
attacker, metric, value) and ``run.json`` (versions, host, timings,
``"status": "done"`` written last). A rerun skips cells whose ``run.json`` says done with
the same config fingerprint, so an interrupted run resumes and a changed method config
reruns only that method's cells. The fingerprint includes the source of
``trustrec.privacy`` (and the base model's that of data, models, train and evaluate,
:func:`~trustrec.bench.env.source_fingerprint`): after a code change the affected cells
are computed again rather than kept. Then ``results.csv`` (long format, :data:`RESULT_COLUMNS`)
and ``report.md`` / ``report.html`` with privacy-vs-utility plots
(:mod:`trustrec.bench.privacy_report`).

Execution is sequential and in-process, one thread per cell
(:func:`~trustrec.bench.engine.single_threaded`, as the unlearning grid's workers): a
privacy grid has few cells (tens) of small tensors, where extra threads mostly wait for
a core on a busy machine, and one thread makes every result bitwise reproducible. The
stages (base model, cell) are idempotent functions of the spec and a key, so a process
pool could map them later without changing what a cell computes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec.bench.collect import read_json
from trustrec.bench.engine import single_threaded
from trustrec.bench.env import source_fingerprint
from trustrec.bench.files import write_atomic, write_json
from trustrec.bench.privacy_collect import (
    AUDIT_COLUMNS,
    AUDIT_CSV,
    METRICS_JSON,
    RESULT_COLUMNS,
    collect_privacy,
    csv_bytes,
    read_audit,
    read_privacy_results,
)
from trustrec.bench.privacy_spec import (
    NO_DEFENSE,
    PrivacyCell,
    PrivacySpec,
    load_privacy_spec,
    load_privacy_spec_if_privacy,
    method_kind,
    privacy_spec_from_mapping,
)
from trustrec.bench.runner import (
    BenchResult,
    CellResult,
    GridData,
    emitter,
    finished_cells,
    fresh_folder,
    is_current,
    run_in_folder,
    run_serially,
)
from trustrec.bench.spec import fingerprint
from trustrec.config import suggest
from trustrec.errors import UnknownNameError
from trustrec.fileio import now_iso

__all__ = ["RESULT_COLUMNS", "PrivacyContext", "collect_privacy", "compute_privacy_cell",
           "load_privacy_spec", "load_privacy_spec_if_privacy", "privacy_spec_from_mapping",
           "read_privacy_results", "run_privacy_bench", "run_privacy_cell"]

STATE_JSON, MODEL_DIR = "state.json", "model"


# ---------------------------------------------------------------------------- context
class PrivacyContext(GridData):
    """Shared, lazily computed state of one privacy run (datasets, splits, base models).

    Every stage is keyed and idempotent: asking twice computes once (disk + memory).

    Attributes:
        spec: the grid.
        out: its output folder.
        k: the headline cut-off (20 when measured, else the largest).
        model_configs: per model, the full resolved config.
        method_configs: per method, the full resolved config (``{}`` for ``"none"``).
        method_kinds: per method, ``"none"``, ``"post-training"`` or ``"in-training"``.
    """

    def __init__(self, spec: PrivacySpec, progress: bool = False) -> None:
        super().__init__(spec, progress)
        self.model_configs = {m: spec.model_config(m) for m in spec.models}
        self.method_configs = {m: spec.method_config(m) for m in spec.methods}
        self.method_kinds = {m: method_kind(m) for m in spec.methods}

    def check_attributes(self, label: str) -> None:
        """Every attribute of the spec is a usable user attribute of the dataset.

        Raises:
            UnknownNameError: an attribute the dataset does not have (closest named).
            DataFormatError: an attribute with fewer than two classes or bad values.
        """
        from trustrec.privacy.base import attribute_labels

        ds = self.dataset(label)
        have = [str(c) for c in ds.user_attributes.columns]
        for name in dict.fromkeys(a for s in self.spec.attributes for a in s.split(",")):
            if name not in have:
                raise UnknownNameError(
                    f"privacy spec: attributes: dataset {label!r} has no user attribute "
                    f"{name!r}{suggest(name, have) if have else ' (it has none)'}")
            attribute_labels(ds, name)

    # --------------------------------------------------------------- configs
    def data_config(self, label: str) -> dict[str, Any]:
        """Where a dataset comes from and how it is split."""
        return {"source": self.sources[label], "data_dir": self.spec.data_dir,
                "split": "random_split", "split_ratios": list(self.spec.split_ratios)}

    def base_config(self, dataset: str, model: str, seed: int) -> dict[str, Any]:
        """Everything the base (undefended) model of (dataset, model, seed) depends on."""
        return {"dataset": dataset, "data": self.data_config(dataset), "model": model,
                "model_config": self.model_configs[model], "seed": seed,
                "ks": list(self.spec.ks),
                "code": source_fingerprint("data", "models", "train", "evaluate")}

    def cell_config(self, cell: PrivacyCell) -> dict[str, Any]:
        """The cell's full resolved config (written to ``config.json``)."""
        return {"cell": cell.axes(), "id": cell.id, "kind": "privacy",
                "data": self.data_config(cell.dataset),
                "model_config": self.model_configs[cell.model],
                "method_kind": self.method_kinds[cell.method],
                "method_config": self.method_configs[cell.method],
                "attributes": cell.attribute_list,
                "audit": {"attackers": list(self.spec.attackers), "folds": self.spec.folds,
                          "label_share": self.spec.label_share,
                          "users": list(self.spec.users), "views": list(self.spec.views),
                          "null_permutations": self.spec.null_permutations},
                "ks": list(self.spec.ks), "headline_k": self.k,
                "code": source_fingerprint("privacy"),
                "baseline": {"method": NO_DEFENSE,
                             "fingerprint": fingerprint(self.base_config(
                                 cell.dataset, cell.model, cell.seed))}}

    def base_dir(self, dataset: str, model: str, seed: int) -> Path:
        """Folder of a base model: ``_base/<dataset>/<model>/seed<seed>``."""
        return self.out / "_base" / dataset / model / f"seed{seed}"

    # --------------------------------------------------------------- base model
    def base(self, dataset: str, model: str, seed: int) -> tuple[Any, dict[str, Any]]:
        """A fresh copy of the base model (trained and stored if missing) and its record.

        The record holds ``train_seconds`` and ``utility`` (the test-split summary).
        """
        from trustrec.evaluate.ranking import evaluate_ranking, summarize
        from trustrec.models.base import load_model, make_model

        folder = self.base_dir(dataset, model, seed)
        cfg = self.base_config(dataset, model, seed)
        fp = fingerprint(cfg)
        if not is_current(folder, STATE_JSON, fp):
            fresh_folder(folder)
            split = self.split(dataset, seed)
            m = make_model(model, **self.model_configs[model])
            t0 = time.perf_counter()
            m.fit(split.train, split.valid, seed=seed, progress=self.progress)
            seconds = time.perf_counter() - t0
            utility = summarize(evaluate_ranking(m, split.train, split.test, self.spec.ks))
            m.save(folder / MODEL_DIR)
            write_json(folder / STATE_JSON, {"status": "done", "fingerprint": fp,
                                             "config": cfg, "train_seconds": seconds,
                                             "utility": utility, "finished": now_iso()})
        return load_model(folder / MODEL_DIR), read_json(folder / STATE_JSON)


# ---------------------------------------------------------------------------- one cell
def seen_users(ctx: PrivacyContext, cell: PrivacyCell, labels: dict[str, np.ndarray]
               ) -> np.ndarray | None:
    """The users whose labels the cell's method may see (None: every labelled user)."""
    from trustrec.privacy.base import label_share_users

    if ctx.spec.label_share >= 1:
        return None
    return label_share_users(labels, ctx.spec.label_share, cell.seed)


def released_model(ctx: PrivacyContext, cell: PrivacyCell, labels: dict[str, np.ndarray],
                   label_users: np.ndarray | None = None,
                   method_config: dict[str, Any] | None = None
                   ) -> tuple[Any, float, float]:
    """The model a cell releases, its method seconds and the base training seconds.

    ``"none"``: the base model (0 method seconds). Post-training: ``protect`` applied to
    a fresh copy of the base model. In-training: the defense's own ``fit`` (its base
    seconds are its own training).

    Args:
        ctx: the run's context.
        cell: the cell.
        labels: ``{attribute: labels}`` of the training split.
        label_users: the users whose labels the method may see (None: all).
        method_config: the method's config (default: the spec's,
            ``ctx.method_configs[cell.method]``; the tuning script passes candidates).
    """
    from trustrec.privacy.base import make_defense, make_protector

    split = ctx.split(cell.dataset, cell.seed)
    kind = ctx.method_kinds.get(cell.method) or method_kind(cell.method)
    cfg = ctx.method_configs.get(cell.method, {}) if method_config is None else method_config
    if kind == "in-training":
        defense = make_defense(cell.method, **cfg)
        t0 = time.perf_counter()
        model = defense.fit(cell.model, ctx.model_configs[cell.model], split.train,
                            split.valid, labels, seed=cell.seed, progress=False,
                            label_users=label_users)
        seconds = time.perf_counter() - t0
        return model, seconds, seconds
    base, state = ctx.base(cell.dataset, cell.model, cell.seed)
    train_s = float(state["train_seconds"])
    if kind == NO_DEFENSE:
        return base, 0.0, train_s
    protector = make_protector(cell.method, **cfg)
    t0 = time.perf_counter()
    model = protector.protect(base, split.train, labels, seed=cell.seed, progress=False,
                              label_users=label_users)
    return model, time.perf_counter() - t0, train_s


def scored_user_sets(ctx: PrivacyContext, seen: np.ndarray | None
                     ) -> dict[str, np.ndarray | None]:
    """``{user set: users to score}`` for the spec's ``users`` (None: every labelled user)."""
    out: dict[str, np.ndarray | None] = {}
    for name in ctx.spec.users:
        if name == "all" or seen is None:
            out[name] = None
        else:
            out[name] = ~seen if name == "held-out" else seen
    return out


def audit_released(ctx: PrivacyContext, cell: PrivacyCell, model: Any,
                   seen: np.ndarray | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Attack the released model on every attribute of the cell's set.

    Every view of the spec, every user set (``held-out`` users are those outside
    ``seen``), with the spec's attackers, folds and null permutations.

    Returns:
        ``(audit, notes)``: the long table (:data:`AUDIT_COLUMNS`) and, per attribute,
        a note when classes with fewer users than folds were left out of its attack.
    """
    from trustrec.privacy.attack import audit_model

    split = ctx.split(cell.dataset, cell.seed)
    parts, notes = [], {}
    for name, users in scored_user_sets(ctx, seen).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            audit = audit_model(model, split.train, cell.attribute_list,
                                views=tuple(ctx.spec.views), users=users,
                                attackers=tuple(ctx.spec.attackers), folds=ctx.spec.folds,
                                seed=cell.seed,
                                null_permutations=ctx.spec.null_permutations)
        notes.update({f"{a} ({name})": n for a, n in audit.attrs.get("notes", {}).items()})
        parts.append(audit.assign(users=name))
    audit = pd.concat(parts, ignore_index=True).loc[:, AUDIT_COLUMNS]
    audit["value"] = audit["value"].astype(float)
    return audit, notes


def compute_privacy_cell(ctx: PrivacyContext, cell: PrivacyCell,
                         method_config: dict[str, Any] | None = None
                         ) -> tuple[dict[str, float], pd.DataFrame, dict[str, Any]]:
    """Compute one cell's metrics, audit table and timings (writes no cell files).

    Args:
        ctx: the run's context.
        cell: the cell.
        method_config: the method's config (default: the spec's; see
            :func:`released_model`).

    Returns:
        ``(metrics, audit, record)``: utility at every cut-off, ``ndcg@{k}_rel_drop``,
        seconds, ``label_share``, ``seen_users`` and ``held_out_users``; the long audit
        table; for ``run.json``, ``"timings"`` (wall time of each stage) and
        ``"audit_notes"`` (classes left out of an attack).
    """
    from trustrec.evaluate.ranking import evaluate_ranking, summarize
    from trustrec.privacy.base import labels_for

    timings: dict[str, float] = {}
    split = ctx.split(cell.dataset, cell.seed)
    labels = labels_for(split.train, cell.attribute_list)
    seen = seen_users(ctx, cell, labels)
    model, method_s, train_s = released_model(ctx, cell, labels, seen, method_config)
    timings["method_seconds"] = method_s

    t0 = time.perf_counter()
    audit, notes = audit_released(ctx, cell, model, seen)
    timings["audit_seconds"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    per_user = evaluate_ranking(model, split.train, split.test, ctx.spec.ks)
    utility = summarize(per_user)
    timings["eval_seconds"] = time.perf_counter() - t1

    base_state = ctx.base(cell.dataset, cell.model, cell.seed)[1]
    k = ctx.k
    ref = float(base_state["utility"][f"ndcg@{k}"])
    in_training = (ctx.method_kinds.get(cell.method) or method_kind(cell.method)) \
        == "in-training"
    labelled = np.any(np.stack([v >= 0 for v in labels.values()]), axis=0)
    n_seen = int(labelled.sum()) if seen is None else int(seen.sum())
    metrics: dict[str, float] = dict(utility)
    metrics.update({
        f"ndcg@{k}_none": ref,
        f"ndcg@{k}_rel_drop": (ref - utility[f"ndcg@{k}"]) / ref if ref > 0 else float("nan"),
        "method_seconds": method_s,
        "base_train_seconds": float(base_state["train_seconds"]),
        "total_seconds": method_s if in_training else train_s + method_s,
        "audit_seconds": timings["audit_seconds"],
        "n_eval_users": float(len(per_user)),
        "label_share": float(ctx.spec.label_share),
        "seen_users": float(n_seen),
        "held_out_users": float(int(labelled.sum()) - n_seen),
    })
    return metrics, audit, {"timings": timings, "audit_notes": notes}


def run_privacy_cell(ctx: PrivacyContext, cell: PrivacyCell) -> CellResult:
    """Run one cell into ``<out>/<cell.id>`` unless it is already finished
    (:func:`~trustrec.bench.runner.run_in_folder`): ``metrics.json``, ``audit.csv``,
    ``run.json``."""
    folder = ctx.out / cell.id

    def compute() -> tuple[Callable[[], dict[str, float]], dict[str, Any]]:
        metrics, audit, record = compute_privacy_cell(ctx, cell)

        def save() -> dict[str, float]:
            write_json(folder / METRICS_JSON, metrics)
            write_atomic(folder / AUDIT_CSV, csv_bytes(audit))
            return _cell_summary(folder)
        return save, record

    return run_in_folder(folder, cell, ctx.cell_config(cell), compute,
                         lambda: _cell_summary(folder))


def _cell_summary(folder: Path) -> dict[str, float]:
    """metrics.json plus, per attribute, the headline leakage and its null flag.

    Headline: the first user set of the audit (``held-out`` by default), the worst
    attacker over every view (``<attribute>:leakage``, two-sided ``|BA − chance|``), and
    ``<attribute>:outside_null`` (1 when that attacker lies outside its view's null
    interval).
    """
    from trustrec.privacy.attack import leakage, outside_null

    metrics = {k: float("nan") if v is None else float(v)
               for k, v in read_json(folder / METRICS_JSON).items()}
    audit = read_audit(folder / AUDIT_CSV)
    if audit.empty:
        return metrics
    head = audit[audit["users"] == audit["users"].iloc[0]]
    for attr, g in head.groupby("attribute", sort=False):
        metrics[f"{attr}:leakage"] = leakage(g)
        flag = outside_null(g)
        if flag is not None:
            metrics[f"{attr}:outside_null"] = float(flag)
    return metrics


def summary_line(res: CellResult, k: int = 20) -> str:
    """One line per cell: headline leakage per attribute, utility, seconds."""
    if res.status == "failed":
        return f"{res.cell.id}: FAILED ({res.error})"
    m = res.metrics

    def g(name: str, fmt: str = ".3f") -> str:
        v = m.get(name)
        return "–" if v is None or not np.isfinite(v) else format(v, fmt)

    attrs = [name.split(":")[0] for name in m if name.endswith(":leakage")]
    leak = ", ".join(f"{a} leakage {g(f'{a}:leakage')}"
                     + (" (outside null)" if m.get(f"{a}:outside_null") == 1.0 else "")
                     for a in attrs)
    drop = m.get(f"ndcg@{k}_rel_drop")
    drop_txt = ("–" if drop is None or not np.isfinite(drop)
                else f"{0.0 - 100 * drop + 0.0:+.1f} %")
    tag = " (already done)" if res.status == "skipped" else f" [{res.seconds:.1f} s]"
    return (f"{res.cell.id}: {leak}; ndcg@{k} {g(f'ndcg@{k}', '.4f')} ({drop_txt}), "
            f"method {g('method_seconds', '.2f')} s{tag}")


# ---------------------------------------------------------------------------- the grid
def run_privacy_bench(spec: PrivacySpec, *, quiet: bool = False, stop_on_error: bool = False,
                      log: Callable[[str], None] | None = None) -> BenchResult:
    """Run every cell of a privacy grid (skipping finished ones), then collect and report.

    Args:
        spec: the grid; validated before anything is loaded or trained, and its attributes
            checked against each dataset before the first cell.
        quiet: no progress bar and no per-cell log lines.
        stop_on_error: re-raise the first cell error instead of recording it and going on.
        log: where log lines go (default: above the progress bar, on stderr).

    Returns:
        A :class:`~trustrec.bench.runner.BenchResult` whose ``results`` is the privacy
        table (:data:`RESULT_COLUMNS`) and ``paths`` hold ``results``, ``markdown``,
        ``html`` and ``plots``; failed cells are listed (their ``run.json`` holds the
        traceback) and are retried by the next run.
    """

    from trustrec.bench.privacy_report import write_privacy_report

    spec.validate()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.to_json())
    ctx = PrivacyContext(spec)
    cells = spec.cells()

    emit = emitter(quiet, log)

    done = finished_cells(ctx, cells)
    if done:
        emit(f"{len(done)} of {len(cells)} cells already finished in {out}; they are skipped")
    # A dataset that cannot be loaded, or lacks an attribute, fails the run, not each cell.
    ctx.progress = not quiet
    for label in dict.fromkeys(c.dataset for c in cells if c not in done):
        ctx.check_attributes(label)
    ctx.progress = False
    def one(cell: PrivacyCell) -> CellResult:
        with single_threaded():  # bitwise reproducible, and robust on a busy machine
            res = run_privacy_cell(ctx, cell)
        if res.status != "skipped":
            emit(summary_line(res, ctx.k))
        return res

    # run_serially's own per-cell line is the unlearning grid's; this grid emits its own
    results = run_serially(cells, one, out=out, k=ctx.k, desc="privacy bench", quiet=quiet,
                           stop_on_error=stop_on_error, emit=lambda line: None)
    frame = collect_privacy(out, cells)
    paths = {"results": out / "results.csv"}
    paths.update(write_privacy_report(out, frame, spec))
    return BenchResult(out, results, frame, paths)
