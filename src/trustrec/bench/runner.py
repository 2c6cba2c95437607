"""Run a benchmark grid: one folder per cell, resumable, then ``results.csv`` and reports.

What one cell (dataset, model, method, grain, selection, ratio, seed) does:

1. **Data**: load the dataset and split it per user (train / validation / test), seeded by
   the cell's seed (cached in-process, so every cell of a seed sees the same split).
2. **Learn**: build the unlearning method around the model and ``fit`` it on the training
   split (early stopping on validation). The learned state does not depend on the forget
   set, so it is computed once per (dataset, model, method, seed), saved under
   ``<out>/_learned/...`` and loaded by each cell that needs it.
3. **Utility before**: rank the test split with the learned model, on the same users and
   test rows as after forgetting (step 5).
4. **Forget**: select the forget set on the training split by grain (``user``: core /
   edge / random users; ``interaction``: random pairs; ``item``: popular / unpopular /
   random items as core / edge / random; ratio p) and call ``forget``; its wall time is
   ``forget_seconds``.
5. **Utility after**: rank the test split again. For the user grain only the *retained*
   users count: forgotten users are excluded from utility (the model must no longer serve
   them from their data, and they have no training rows left to mask). For the other
   grains every test user counts, on the test rows the request does not name.
6. **Fairness**: A-IGF (absolute and signed) of the per-user NDCG@k before and after, both
   with activity groups taken from the remaining training data; shard fairness, the
   variance across the method's user shards of their mean NDCG@k (0 for unsharded
   methods).
7. **Completeness**: agreement with the reference, the ``retrain`` method's model after the
   same forget request (same dataset, model, selection, ratio and seed): top-k overlap and
   Spearman rank correlation over retained users, overlap on the forgotten users, and the
   forgotten items' percentile gap. The reference is computed once per group and saved
   under ``<out>/_reference/...``; the ``retrain`` cell stores it when it runs first (cells
   are ordered so that it does), so its own agreement is 1 by construction. Membership
   inference by the completeness suite (:mod:`trustrec.evaluate.suite`): score-row,
   fold-in and shadow-calibrated attacks on the forgotten training rows against held-out
   rows of the same scope, after forgetting (``mia_*``) and for the learned model
   (``mia_*_before``); the headline ``mia_auc`` is the strongest attack with its interval.
   The shadow (the auditor's model of the same kind, trained on the remaining data with
   another seed) is computed once per group under ``<out>/_shadow/...``.
8. **Efficiency**: ``learn_seconds``, ``forget_seconds`` (median of repeats when under
   :data:`REPEAT_BELOW` s, with ``_min`` / ``_max``), ``retrain_forget_seconds`` (a
   retrain of the same request, timed in the same process) and ``speedup_vs_retrain``.

Files per cell (all written atomically): ``config.json`` (the resolved config and its
fingerprint), ``metrics.json`` (flat name → value), ``per_user.parquet`` (the per-user
metric tables with a ``phase`` column, ``before`` / ``after``, and a ``forgotten`` flag)
and ``run.json`` (versions, host, timings, status). ``run.json`` is written with
``"status": "running"`` first and ``"done"`` last: a finished cell is one whose ``run.json``
says done and whose config fingerprint matches, and a rerun skips it. A killed run resumes
where it stopped: half-written cells are cleared and redone. Shared state (``_learned``,
``_reference``) follows the same rule with its own marker file.

Execution: with ``workers = 1`` every cell runs here, in order. Otherwise (the default:
one worker per CPU) the three stages (learned states, references, cells), idempotent
functions of the spec and a key, run one after the other, each stage's items in parallel
on the spec's engine, local processes or Ray (:mod:`trustrec.bench.stages`,
:mod:`trustrec.bench.engine`). What a cell computes does not depend on how it is run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trustrec.bench.collect import (
    CONFIG_JSON,
    METRICS_JSON,
    PER_USER,
    RUN_JSON,
    collect,
    read_json,
)
from trustrec.bench.engine import default_workers, single_threaded
from trustrec.bench.env import host_info, versions
from trustrec.bench.files import write_json, write_parquet
from trustrec.bench.report import write_report
from trustrec.bench.spec import REFERENCE_METHOD, BenchSpec, Cell, dataset_label, fingerprint
from trustrec.data.dataset import Dataset
from trustrec.data.split import Split
from trustrec.errors import DataFormatError, TrustrecError
from trustrec.evaluate.suite import ATTACKS as SUITE_ATTACKS
from trustrec.evaluate.suite import attack_name
from trustrec.fileio import now_iso
from trustrec.seeding import child_seed

STATE_JSON = "state.json"
UNLEARNER_DIR = "unlearner"
SHADOW_DIR = "shadow"
#: Bootstrap replicates of the membership-inference standard errors.
MIA_BOOTSTRAP = 200
#: A forget faster than this many seconds is repeated (on fresh copies of the learned
#: state) until :data:`FORGET_REPEATS` runs are timed; its median is reported.
REPEAT_BELOW = 2.0
FORGET_REPEATS = 3


def is_current(folder: Path, marker: str, fp: str) -> bool:
    """Whether ``folder/marker`` says done with fingerprint ``fp``."""
    f = folder / marker
    if not f.is_file():
        return False
    try:
        state = read_json(f)
    except (DataFormatError, OSError):
        return False
    return (isinstance(state, dict) and state.get("status") == "done"
            and state.get("fingerprint") == fp)


def fresh_folder(folder: Path) -> None:
    """Remove whatever a killed or outdated run left in ``folder`` and recreate it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


# ---------------------------------------------------------------------------- results
@dataclass
class CellResult:
    """Outcome of one cell in this run: ``done`` (ran now), ``skipped`` or ``failed``."""

    cell: Cell
    status: str
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BenchResult:
    """What :func:`run_bench` did and wrote.

    Attributes:
        out: the output folder.
        cells: one result per cell, in run order.
        results: the long results table (also in ``results.csv``).
        paths: ``results``, ``markdown``, ``html``, ``plots``.
    """

    out: Path
    cells: list[CellResult]
    results: pd.DataFrame
    paths: dict[str, Path]

    def count(self, status: str) -> int:
        """Number of cells with the given status."""
        return sum(c.status == status for c in self.cells)

    @property
    def failed(self) -> list[CellResult]:
        """The cells that raised."""
        return [c for c in self.cells if c.status == "failed"]


# ---------------------------------------------------------------------------- context
class GridData:
    """The datasets and seeded splits of a grid spec, each loaded or computed once.

    Base of the run contexts of both grids. Attributes: ``spec``, ``out`` (its output
    folder), ``progress``, ``sources`` (label -> name or path) and ``k`` (the headline
    cut-off: 20 when measured, else the largest).
    """

    def __init__(self, spec: Any, progress: bool = False) -> None:
        self.spec = spec
        self.out = Path(spec.out)
        self.progress = progress
        self.sources = {dataset_label(d): d for d in spec.datasets}
        self.k = 20 if 20 in spec.ks else max(spec.ks)
        self._datasets: dict[str, Dataset] = {}
        self._splits: dict[tuple[str, int], Split] = {}

    # --------------------------------------------------------------- data
    @property
    def protocol(self) -> Any:
        """The spec's evaluation protocol (:mod:`trustrec.bench.protocol`)."""
        from trustrec.bench.protocol import get_protocol

        return get_protocol(getattr(self.spec, "protocol", "trustrec"))

    def dataset(self, label: str) -> Dataset:
        """The loaded dataset of a label (loaded once; the protocol's k-core applied)."""
        if label not in self._datasets:
            from trustrec.data.filter import k_core
            from trustrec.data.loaders import load_dataset

            ds = load_dataset(self.sources[label], self.spec.data_dir,
                              progress=self.progress)
            k = self.protocol.k_core
            self._datasets[label] = k_core(ds, k, k) if k else ds
        return self._datasets[label]

    def split(self, label: str, seed: int) -> Split:
        """The seeded per-user random split of a dataset (computed once per seed)."""
        key = (label, seed)
        if key not in self._splits:
            from trustrec.data.split import random_split

            self._splits[key] = random_split(self.dataset(label),
                                             tuple(self.spec.split_ratios), seed=seed)
        return self._splits[key]


class BenchContext(GridData):
    """Shared, lazily computed state of one benchmark run (datasets, splits, stages).

    Every stage is keyed and idempotent: asking twice computes once (disk + memory).
    """

    def __init__(self, spec: BenchSpec, progress: bool = False) -> None:
        super().__init__(spec, progress)
        self._model_cfg = {m: spec.model_config(m) for m in spec.models}
        self._method_cfg = {m: spec.method_config(m)
                            for m in {*spec.methods, REFERENCE_METHOD}}

    # --------------------------------------------------------------- configs
    def data_config(self, label: str) -> dict[str, Any]:
        """Where a dataset comes from, how it is filtered and split (the protocol is part
        of it only when it is not the default, so stored states stay current)."""
        extra = ({} if self.protocol.name == "trustrec"
                 else {"protocol": self.protocol.name, "k_core": self.protocol.k_core})
        return {"source": self.sources[label], "data_dir": self.spec.data_dir,
                "split": "random_split", "split_ratios": list(self.spec.split_ratios),
                **extra}

    def learned_config(self, dataset: str, model: str, method: str, seed: int
                       ) -> dict[str, Any]:
        """Everything the learned state of (dataset, model, method, seed) depends on."""
        return {"dataset": dataset, "data": self.data_config(dataset), "model": model,
                "model_config": self._model_cfg[model], "method": method,
                "method_config": self._method_cfg[method], "seed": seed}

    def reference_config(self, cell: Cell) -> dict[str, Any]:
        """Everything the retrained reference of a cell's group depends on.

        The grain is part of it only when it is not ``user`` (so user-grain references
        stored before grains existed stay current).
        """
        base = self.learned_config(cell.dataset, cell.model, REFERENCE_METHOD, cell.seed)
        grain = {} if cell.grain == "user" else {"grain": cell.grain}
        return {**base, "selection": cell.selection, "ratio": cell.ratio, **grain}

    def cell_config(self, cell: Cell) -> dict[str, Any]:
        """The cell's full resolved config (written to ``config.json``).

        ``measures`` names what the cell computes beyond utility (membership inference,
        shard fairness): a cell finished by an older version lacking them has another
        fingerprint and is recomputed (its learned state and reference are reused).
        """
        return {"cell": cell.axes(), "id": cell.id,
                "data": self.data_config(cell.dataset),
                "model_config": self._model_cfg[cell.model],
                "method_config": self._method_cfg[cell.method],
                "reference": {"method": REFERENCE_METHOD,
                              "method_config": self._method_cfg[REFERENCE_METHOD]},
                "ks": list(self.spec.ks), "headline_k": self.k,
                "fairness": {"metric": f"ndcg@{self.k}", "active_share": 0.05,
                             "shard": "variance of per-shard mean ndcg (after)",
                             "a_igf_headline": self.protocol.a_igf},
                "ndcg_ideal": self.protocol.ndcg_ideal,
                "forget_request": {"user": "users", "interaction": "pairs",
                                   "item": "items"}[cell.grain],
                "measures": {"membership": {"suite": list(SUITE_ATTACKS),
                                            "ties": "random",
                                            "nonmembers": "test rows of the request scope",
                                            "reference": "shadow model, seed 'shadow'",
                                            "n_bootstrap": MIA_BOOTSTRAP},
                             "timing": {"repeats": FORGET_REPEATS,
                                        "repeat_below_seconds": REPEAT_BELOW,
                                        "retrain": "same process"},
                             "utility_before": "same users as after"}}

    # --------------------------------------------------------------- folders
    def learned_dir(self, dataset: str, model: str, method: str, seed: int) -> Path:
        """Folder of a learned state: ``_learned/<dataset>/<model>/<method>/seed<seed>``."""
        return self.out / "_learned" / dataset / model / method / f"seed{seed}"

    def reference_dir(self, cell: Cell) -> Path:
        """Folder of a group's reference: ``_reference/<dataset>/<model>/<sel>/p<r>/seed<s>``
        (with a ``<grain>/`` level before ``<sel>`` for a grain other than ``user``)."""
        grain = () if cell.grain == "user" else (cell.grain,)
        return (self.out.joinpath("_reference", cell.dataset, cell.model, *grain)
                / cell.selection / f"p{format(cell.ratio, 'g')}" / f"seed{cell.seed}")

    # --------------------------------------------------------------- stage 1: learn
    def learned(self, dataset: str, model: str, method: str, seed: int
                ) -> tuple[Path, dict[str, Any]]:
        """Make sure the learned state exists; return its unlearner folder and record."""
        from trustrec.unlearn.base import make_unlearner
        from trustrec.unlearn.persist import save_unlearner

        folder = self.learned_dir(dataset, model, method, seed)
        cfg = self.learned_config(dataset, model, method, seed)
        fp = fingerprint(cfg)
        if not is_current(folder, STATE_JSON, fp):
            fresh_folder(folder)
            split = self.split(dataset, seed)
            unl = make_unlearner(method, model, self._model_cfg[model],
                                 **self._method_cfg[method])
            t0 = time.perf_counter()
            unl.fit(split.train, split.valid, seed=seed, progress=self.progress)
            seconds = time.perf_counter() - t0
            save_unlearner(unl, folder / UNLEARNER_DIR)
            write_json(folder / STATE_JSON, {"status": "done", "fingerprint": fp,
                                             "config": cfg, "learn_seconds": seconds,
                                             "finished": now_iso()})
        return folder / UNLEARNER_DIR, read_json(folder / STATE_JSON)

    def load_learned(self, dataset: str, model: str, method: str, seed: int
                     ) -> tuple[Any, float]:
        """A fresh copy of the learned unlearner (safe to ``forget`` on) and learn seconds."""
        from trustrec.unlearn.persist import load_unlearner

        path, state = self.learned(dataset, model, method, seed)
        return load_unlearner(path), float(state["learn_seconds"])

    # --------------------------------------------------------------- stage 2: reference
    def has_reference(self, cell: Cell) -> bool:
        """Whether the group's reference is stored and current."""
        return is_current(self.reference_dir(cell), STATE_JSON,
                           fingerprint(self.reference_config(cell)))

    def store_reference(self, cell: Cell, unlearner: Any, forget_seconds: float,
                        learn_seconds: float) -> None:
        """Save a retrain unlearner after the group's forget request as the reference."""
        from trustrec.unlearn.persist import save_unlearner

        folder = self.reference_dir(cell)
        cfg = self.reference_config(cell)
        fresh_folder(folder)
        save_unlearner(unlearner, folder / UNLEARNER_DIR)
        write_json(folder / STATE_JSON, {"status": "done", "fingerprint": fingerprint(cfg),
                                         "config": cfg, "forget_seconds": forget_seconds,
                                         "learn_seconds": learn_seconds,
                                         "finished": now_iso()})

    def reference(self, cell: Cell) -> tuple[Any, dict[str, Any]]:
        """The group's retrained reference (computed and stored if missing) and its record."""
        from trustrec.unlearn.persist import load_unlearner

        if not self.has_reference(cell):
            unl, learn_s = self.load_learned(cell.dataset, cell.model, REFERENCE_METHOD,
                                             cell.seed)
            report = unl.forget(self.forget_request(cell))
            self.store_reference(cell, unl, float(report.seconds), learn_s)
        folder = self.reference_dir(cell)
        return load_unlearner(folder / UNLEARNER_DIR), read_json(folder / STATE_JSON)

    # --------------------------------------------------------------- shadow
    def shadow_config(self, cell: Cell) -> dict[str, Any]:
        """Everything the group's shadow model depends on (the reference's data and model,
        another seed)."""
        return {**self.reference_config(cell), "method": None, "method_config": None,
                "shadow_seed": child_seed(cell.seed, "shadow")}

    def shadow_dir(self, cell: Cell) -> Path:
        """Folder of a group's shadow model (``_shadow/...``, laid out like the reference)."""
        rel = self.reference_dir(cell).relative_to(self.out / "_reference")
        return self.out / "_shadow" / rel

    def has_shadow(self, cell: Cell) -> bool:
        """Whether the group's shadow model is stored and current."""
        return is_current(self.shadow_dir(cell), STATE_JSON,
                          fingerprint(self.shadow_config(cell)))

    def shadow(self, cell: Cell) -> Any:
        """The group's shadow: the auditor's model of the same kind and config, trained
        on the data that remains after the request with seed ``child_seed(seed,
        "shadow")`` (it never saw the forget set). The completeness suite's reference
        attack calibrates against it (:mod:`trustrec.evaluate.suite`)."""
        from trustrec.models import load_model, make_model

        folder = self.shadow_dir(cell)
        cfg = self.shadow_config(cell)
        if not is_current(folder, STATE_JSON, fingerprint(cfg)):
            fresh_folder(folder)
            split = self.split(cell.dataset, cell.seed)
            request = self.forget_request(cell)
            train = split.train.select(~request.match_rows(split.train))
            valid = split.valid.select(~request.match_rows(split.valid))
            t0 = time.perf_counter()
            model = make_model(cell.model, **self._model_cfg[cell.model]).fit(
                train, valid, seed=cfg["shadow_seed"])
            model.save(folder / SHADOW_DIR)
            write_json(folder / STATE_JSON, {"status": "done", "fingerprint": fingerprint(cfg),
                                             "config": cfg, "finished": now_iso(),
                                             "seconds": time.perf_counter() - t0})
        return load_model(folder / SHADOW_DIR)

    # --------------------------------------------------------------- forget sets
    def forget_users(self, cell: Cell) -> np.ndarray:
        """The users whose training rows the cell's request removes (sorted indices).

        For the ``user`` grain these are the selected users themselves (core / edge /
        random); for the other grains, every user that loses at least one training row.
        """
        request = self.forget_request(cell)
        if cell.grain == "user":
            return np.asarray(request.users, dtype=np.int64)
        train = self.split(cell.dataset, cell.seed).train
        return np.unique(train.users[request.match_rows(train)]).astype(np.int64)

    def forget_request(self, cell: Cell) -> Any:
        """The cell's :class:`~trustrec.unlearn.request.ForgetRequest`, selected on the
        training split by grain (see :data:`trustrec.bench.spec.GRAIN_SELECTIONS`).

        ``user``: ``select_forget_users(train, selection, ratio, seed)``; ``interaction``:
        ``select_forget_interactions(train, ratio, seed)`` (selection ``random`` only);
        ``item``: ``select_forget_items`` with core / edge / random meaning popular /
        unpopular / random items.

        Raises:
            ConfigError: a grain or a (grain, selection) the spec does not define.
        """
        from trustrec.bench.spec import GRAIN_SELECTIONS
        from trustrec.data.selection import (
            select_forget_interactions,
            select_forget_items,
            select_forget_users,
        )
        from trustrec.errors import ConfigError
        from trustrec.unlearn.request import ForgetRequest

        train = self.split(cell.dataset, cell.seed).train
        if cell.grain == "user":
            return ForgetRequest(users=select_forget_users(train, cell.selection, cell.ratio,
                                                           cell.seed))
        allowed = GRAIN_SELECTIONS.get(cell.grain)
        if allowed is None or cell.selection not in allowed:
            raise ConfigError(f"cell {cell.id}: selection {cell.selection!r} is not defined "
                              f"for grain {cell.grain!r}")
        if cell.grain == "interaction":
            return ForgetRequest(pairs=select_forget_interactions(train, cell.ratio,
                                                                  cell.seed))
        return ForgetRequest(items=select_forget_items(train, cell.ratio, cell.seed,
                                                       allowed[cell.selection]))


# ---------------------------------------------------------------------------- one cell
def _per_user(table: pd.DataFrame, phase: str, forgotten: np.ndarray,
              user_ids: np.ndarray) -> pd.DataFrame:
    t = table.copy()
    t.insert(0, "phase", phase)
    t.insert(2, "raw_user_id", np.asarray(user_ids, dtype=str)[t["user"].to_numpy()])
    t.insert(3, "forgotten", np.isin(t["user"].to_numpy(), forgotten))
    return t


def _shard_fairness(per_user: pd.DataFrame, shards: np.ndarray | None, metric: str
                    ) -> float:
    """Variance across shards of the mean ``metric`` of each shard's evaluated users.

    ``shards`` is the unlearner's :meth:`user_shards` (None for an unsharded method: 0, as
    CURE4Rec defines shard fairness for Retrain). Users of no shard (``-1``) and shards
    without an evaluated user are left out; NaN when no shard has an evaluated user.
    """
    from trustrec.evaluate.fairness import shard_fairness

    if shards is None:
        return 0.0
    owner = np.asarray(shards, dtype=np.int64)[per_user["user"].to_numpy(dtype=np.int64)]
    values = per_user[metric].to_numpy(dtype=np.float64)
    ok = owner >= 0
    if not ok.any():
        return float("nan")
    _, inv = np.unique(owner[ok], return_inverse=True)
    means = np.bincount(inv, weights=values[ok]) / np.bincount(inv)
    return shard_fairness(means)


def _user_shards(unl: Any) -> np.ndarray | None:
    hook = getattr(unl, "user_shards", None)
    return None if hook is None else hook()


def timed_forget(load: Callable[[], Any], request: Any) -> tuple[Any, Any, list[float]]:
    """Forget ``request`` on a fresh copy of a learned state, timed, repeated when fast.

    A forget that takes under :data:`REPEAT_BELOW` seconds is repeated on new copies
    (``load()``) until :data:`FORGET_REPEATS` runs are timed, so that a sub-second figure
    is a median rather than one noisy draw. Every run is deterministic, so the first copy
    is the one returned.

    Returns:
        ``(unlearner after the forget, its ForgetReport, seconds of every run)``.
    """
    unl = load()
    report = unl.forget(request)
    seconds = [float(report.seconds)]
    while seconds[0] < REPEAT_BELOW and len(seconds) < FORGET_REPEATS:
        seconds.append(float(load().forget(request).seconds))
    return unl, report, seconds


def _timing_metrics(prefix: str, seconds: list[float]) -> dict[str, float]:
    return {f"{prefix}_seconds": float(np.median(seconds)),
            f"{prefix}_seconds_min": float(min(seconds)),
            f"{prefix}_seconds_max": float(max(seconds)),
            f"{prefix}_repeats": float(len(seconds))}


def compute_cell(ctx: BenchContext, cell: Cell) -> tuple[dict[str, float], pd.DataFrame,
                                                         dict[str, float]]:
    """Compute one cell's metrics, per-user table and timings (writes no cell files).

    Besides the steps in the module docstring:

    * **Utility** before and after forgetting is measured on the *same* users and test
      rows: for the ``user`` grain the retained users, for the other grains every test
      user on the test rows the request does not name (an item request's items leave the
      truth). Changing the population would let forgetting "improve" utility.
    * **Completeness**: the suite of :mod:`trustrec.evaluate.suite` (score-row, fold-in
      and shadow-calibrated attacks, user and interaction level; the headline
      ``mia_auc`` is the strongest) on the request's members and non-members, for the
      learned model (``*_before``) and after forgetting; the shadow is the group's
      (:meth:`BenchContext.shadow`).
    * **Efficiency**: the method's forget and a ``retrain`` forget of the same request are
      both timed here, in this process (:func:`timed_forget`, median of repeats when
      fast); ``speedup_vs_retrain`` is the ratio of the medians.
    * **Fairness**: A-IGF (absolute and signed) and shard fairness, before and after.

    Returns:
        ``(metrics, per_user, timings)``.
    """
    from trustrec.evaluate.completeness import agreement_report
    from trustrec.evaluate.fairness import a_igf_signed
    from trustrec.evaluate.membership import membership_sets
    from trustrec.evaluate.ranking import evaluate_ranking, summarize
    from trustrec.evaluate.suite import completeness_suite

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    split = ctx.split(cell.dataset, cell.seed)
    ks, k = ctx.spec.ks, ctx.k
    request = ctx.forget_request(cell)
    forget = ctx.forget_users(cell)
    members, nonmembers = membership_sets(request, split.train, split.test)
    retained = np.setdiff1d(np.arange(split.train.n_users), forget)
    eval_users = retained if cell.grain == "user" else None
    truth = (split.test if cell.grain == "user"
             else split.test.select(~request.match_rows(split.test)))
    side = "item" if cell.grain == "item" else "user"
    shadow = ctx.shadow(cell)
    timings["data_seconds"] = time.perf_counter() - t0

    def suite(model: Any) -> dict[str, float]:
        return completeness_suite(model, members, nonmembers, reference=shadow, side=side,
                                  seed=cell.seed, n_bootstrap=MIA_BOOTSTRAP)

    learned, learn_s = ctx.load_learned(cell.dataset, cell.model, cell.method, cell.seed)
    ideal = ctx.protocol.ndcg_ideal
    t1 = time.perf_counter()
    before = evaluate_ranking(learned, split.train, truth, ks, users=eval_users,
                              ndcg_ideal=ideal)
    shards_before = _user_shards(learned)
    timings["eval_before_seconds"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    mia_before = suite(learned)
    timings["membership_before_seconds"] = time.perf_counter() - t1
    del learned

    unl, report, seconds = timed_forget(
        lambda: ctx.load_learned(cell.dataset, cell.model, cell.method, cell.seed)[0],
        request)
    remaining = unl.train_
    if cell.method == REFERENCE_METHOD:
        retrain_seconds = seconds
        if not ctx.has_reference(cell):
            ctx.store_reference(cell, unl, float(np.median(seconds)), learn_s)
    else:
        _, _, retrain_seconds = timed_forget(
            lambda: ctx.load_learned(cell.dataset, cell.model, REFERENCE_METHOD,
                                     cell.seed)[0], request)

    t2 = time.perf_counter()
    after = evaluate_ranking(unl, remaining, truth, ks, users=eval_users, ndcg_ideal=ideal)
    metric = f"ndcg@{k}"
    fairness = a_igf_signed(after, remaining, metric=metric)
    # the same users, grouped by the same (remaining) activity, before and after
    fairness_before = a_igf_signed(before, remaining, metric=metric)
    shard_fair = _shard_fairness(after, _user_shards(unl), metric)
    shard_fair_before = _shard_fairness(before, shards_before, metric)
    timings["eval_after_seconds"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    ref, _ = ctx.reference(cell)
    agreement = agreement_report(unl, ref, remaining, members, retained, k=k)
    mia = suite(unl)
    timings["completeness_seconds"] = time.perf_counter() - t3

    forget_s, retrain_s = float(np.median(seconds)), float(np.median(retrain_seconds))
    counts = {"user": {"n_forget_users": float(len(request.users))},
              "interaction": {"n_forget_pairs": float(len(request.pairs))},
              "item": {"n_forget_items": float(len(request.items))}}[cell.grain]
    metrics: dict[str, float] = dict(summarize(after))
    metrics.update({f"{m}_before": v for m, v in summarize(before).items()})
    metrics.update({
        "a_igf": abs(fairness), "a_igf_before": abs(fairness_before),
        "a_igf_signed": fairness, "a_igf_signed_before": fairness_before,
        "shard_fairness": shard_fair, "shard_fairness_before": shard_fair_before,
        **agreement,
        **mia,
        **{f"{name}_before": v for name, v in mia_before.items()
           if name.startswith("mia_") and not name.startswith("mia_n_")},
        **_timing_metrics("forget", seconds),
        **_timing_metrics("retrain_forget", retrain_seconds),
        "learn_seconds": learn_s,
        "speedup_vs_retrain": retrain_s / forget_s if forget_s > 0 else float("nan"),
        **counts,
        "n_users_affected": float(len(forget)),
        "rows_removed": float(report.rows_removed),
        "rows_remaining": float(report.rows_remaining),
        "n_retrained_parts": float(len(report.retrained)),
        "n_eval_users_before": float(len(before)),
        "n_eval_users": float(len(after)),
    })
    user_ids = split.train.user_ids
    per_user = pd.concat([_per_user(before, "before", forget, user_ids),
                          _per_user(after, "after", forget, user_ids)], ignore_index=True)
    timings["forget_seconds"] = forget_s
    timings["learn_seconds"] = learn_s
    return metrics, per_user, timings


def run_in_folder(folder: Path, cell: Any, config: dict[str, Any],
                  compute: Callable[[], tuple[Callable[[], dict[str, float]], dict[str, Any]]],
                  finished: Callable[[], dict[str, float]]) -> CellResult:
    """The life cycle every grid's cell shares, in its own folder.

    A finished cell (``run.json`` done, same config fingerprint) is skipped with
    ``finished()``; anything else in its folder is cleared first. ``config.json`` and a
    running ``run.json`` are written, then ``compute()`` returns ``(save, record)``:
    ``save()`` writes the cell's result files and returns its summary metrics, and
    ``record`` is added to ``run.json``, which is written last (done, or failed with the
    error and traceback when ``compute`` raises).
    """
    fp = fingerprint(config)
    if is_current(folder, RUN_JSON, fp):
        return CellResult(cell, "skipped", metrics=finished())
    fresh_folder(folder)
    t0 = time.perf_counter()
    run: dict[str, Any] = {"status": "running", "fingerprint": fp, "cell": cell.id,
                           "started": now_iso(), "versions": versions(), "host": host_info(),
                           "pid": os.getpid()}
    write_json(folder / CONFIG_JSON, {**config, "fingerprint": fp})
    write_json(folder / RUN_JSON, run)
    try:
        save, record = compute()
    except Exception as exc:
        seconds = time.perf_counter() - t0
        write_json(folder / RUN_JSON, {**run, "status": "failed", "finished": now_iso(),
                                       "seconds": seconds,
                                       "error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()})
        return CellResult(cell, "failed", seconds, error=f"{type(exc).__name__}: {exc}")
    metrics = save()
    seconds = time.perf_counter() - t0
    write_json(folder / RUN_JSON, {**run, "status": "done", "finished": now_iso(),
                                   "seconds": seconds, **record})
    return CellResult(cell, "done", seconds, metrics)


def run_cell(ctx: BenchContext, cell: Cell) -> CellResult:
    """Run one cell into ``<out>/<cell.id>`` unless it is already finished
    (:func:`run_in_folder`): ``metrics.json``, ``per_user.parquet``, ``run.json``."""
    folder = ctx.out / cell.id

    def compute() -> tuple[Callable[[], dict[str, float]], dict[str, Any]]:
        metrics, per_user, timings = compute_cell(ctx, cell)

        def save() -> dict[str, float]:
            write_json(folder / METRICS_JSON, metrics)
            write_parquet(folder / PER_USER, per_user)
            return metrics
        return save, {"timings": timings}

    return run_in_folder(folder, cell, ctx.cell_config(cell), compute,
                         lambda: read_json(folder / METRICS_JSON))


def summary_line(res: CellResult, k: int = 20) -> str:
    """One line per cell: id, utility before → after, fairness, time, completeness."""
    m = res.metrics

    def g(name: str, fmt: str = ".4f") -> str:
        v = m.get(name)
        return "–" if v is None or not np.isfinite(v) else format(v, fmt)

    if res.status == "failed":
        return f"{res.cell.id}: FAILED ({res.error})"
    tag = " (already done)" if res.status == "skipped" else f" [{res.seconds:.1f} s]"
    return (f"{res.cell.id}: ndcg@{k} {g(f'ndcg@{k}_before')} → {g(f'ndcg@{k}')}, "
            f"a_igf {g('a_igf')}, forget {g('forget_seconds', '.2f')} s "
            f"(×{g('speedup_vs_retrain', '.1f')}), overlap@{k} "
            f"{g(f'overlap@{k}_vs_retrain', '.3f')}, mia "
            f"{g('mia_auc_before', '.3f')} → {g('mia_auc', '.3f')} "
            f"({attack_name(m.get('mia_attack', float('nan')))}){tag}")


# ---------------------------------------------------------------------------- the grid
def run_bench(spec: BenchSpec, *, quiet: bool = False, stop_on_error: bool = False,
              log: Callable[[str], None] | None = None) -> BenchResult:
    """Run every cell of ``spec`` (skipping finished ones), then collect and report.

    With ``spec.workers`` above 1 (unset means one per CPU) or ``spec.engine = "ray"``,
    the pending work runs in parallel, stage by stage (see
    :func:`trustrec.bench.stages.run_parallel`); with 1 it runs here, cell by cell.

    Args:
        spec: the grid; validated before anything is loaded or trained.
        quiet: no progress bar and no per-cell log lines.
        stop_on_error: re-raise the first cell error instead of recording it and going on.
        log: where log lines go (default: above the progress bar, on stderr).

    Returns:
        A :class:`BenchResult`; failed cells are listed in it (their ``run.json`` holds
        the traceback) and are retried by the next run.
    """

    spec.validate()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.to_json())
    ctx = BenchContext(spec, progress=False)
    cells = spec.cells()
    workers = spec.workers if spec.workers is not None else default_workers()

    emit = emitter(quiet, log)

    done = finished_cells(ctx, cells)
    if done:
        emit(f"{len(done)} of {len(cells)} cells already finished in {out}; they are skipped")
    # Load every dataset a pending cell needs before the first cell: a dataset that cannot
    # be fetched or parsed is an error of the whole run, not of each of its cells.
    ctx.progress = not quiet
    for label in dict.fromkeys(c.dataset for c in cells if c not in done):
        ctx.dataset(label)
    ctx.progress = False
    if workers > 1 or spec.engine != "local":
        from trustrec.bench.stages import run_parallel

        finished = set(done)
        ran = run_parallel(ctx, [c for c in cells if c not in finished], engine=spec.engine,
                           workers=workers, emit=emit, quiet=quiet,
                           stop_on_error=stop_on_error)
        results = [ran.get(c) or CellResult(c, "skipped",
                                            metrics=read_json(out / c.id / METRICS_JSON))
                   for c in cells]
        return _finish(out, cells, spec, results, ctx)

    def one(cell: Cell) -> CellResult:
        with single_threaded():  # as in a worker: results do not depend on the engine
            return run_cell(ctx, cell)

    results = run_serially(cells, one, out=out, k=ctx.k, desc="bench", quiet=quiet,
                           stop_on_error=stop_on_error, emit=emit)
    return _finish(out, cells, spec, results, ctx)


def emitter(quiet: bool, log: Callable[[str], None] | None) -> Callable[[str], None]:
    """Where a grid's one-line messages go: ``log``, else above the progress bar; nothing
    when ``quiet``."""
    def emit(line: str) -> None:
        if quiet:
            return
        if log is not None:
            log(line)
        else:
            tqdm.write(line, file=sys.stderr)
    return emit


def finished_cells(ctx: Any, cells: list[Any]) -> list[Any]:
    """The cells whose folder already holds a finished run of their current config."""
    return [c for c in cells
            if is_current(ctx.out / c.id, RUN_JSON, fingerprint(ctx.cell_config(c)))]


def run_serially(cells: list[Any], run_one: Callable[[Any], CellResult], *, out: Path,
                 k: int, desc: str, quiet: bool, stop_on_error: bool,
                 emit: Callable[[str], None]) -> list[CellResult]:
    """Run ``cells`` one after the other in this process, with a progress bar.

    A summary line is emitted per cell that ran; with ``stop_on_error`` the first failed
    cell raises TrustrecError with its traceback from ``run.json``.
    """
    results: list[CellResult] = []
    bar = tqdm(total=len(cells), desc=desc, unit="cell", disable=quiet, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for cell in cells:
            bar.set_postfix_str(cell.id, refresh=False)
            res = run_one(cell)
            results.append(res)
            if res.status == "failed" and stop_on_error:
                trace = read_json(out / cell.id / RUN_JSON).get("traceback", "")
                raise TrustrecError(f"cell {cell.id} failed: {res.error}\n{trace}")
            if res.status != "skipped":
                emit(summary_line(res, k))
            bar.update(1)
    finally:
        bar.close()
    return results


def _finish(out: Path, cells: list[Cell], spec: BenchSpec, results: list[CellResult],
            ctx: GridData | None = None) -> BenchResult:
    """Collect the finished cells into ``results.csv`` and write the reports."""
    frame = collect(out, cells)
    paths = {"results": out / "results.csv"}
    paths.update(write_report(out, frame, spec, data_info=data_info(ctx)))
    return BenchResult(out, results, frame, paths)


def data_info(ctx: GridData | None) -> dict[str, dict[str, float]]:
    """Size and density of every dataset a context loaded (for the report)."""
    if ctx is None:
        return {}
    out = {}
    for label in ctx.sources:
        ds = ctx.dataset(label)
        cells = max(ds.n_users * ds.n_items, 1)
        out[label] = {"users": ds.n_users, "items": ds.n_items,
                      "interactions": ds.n_interactions, "density": ds.n_interactions / cells}
    return out
