"""The unlearning experiment: learn, forget, and measure what forgetting did.

Axes: dataset × model × method × grain × selection × ratio × seed (CURE4Rec's grid plus
request grains). What one cell does:

1. **Data**: the dataset's split for the seed (every cell of a seed sees the same split).
2. **Learn**: the method around the model is fit on the training split (early stopping on
   validation). The learned state does not depend on the forget set: it is computed once
   per (dataset, model, method, seed) and stored under ``<out>/_learned/...``.
3. **Forget set**: selected on the training split by grain (``user``: core / edge /
   random users; ``interaction``: random pairs; ``item``: popular / unpopular / random
   items as core / edge / random; ratio p).
4. **Utility** before and after forgetting, on the *same* users and test rows: for the
   ``user`` grain the retained users, for the others every test user on the test rows the
   request does not name (an item request's items leave the truth).
5. **Completeness**: the attack suite (:mod:`trustrec.evaluate.suite`: score-row, fold-in,
   shadow-calibrated; the headline ``mia_auc`` is the strongest) on the forgotten training
   rows against held-out rows of the same scope, for the learned model (``*_before``) and
   after forgetting; agreement with the group's reference, the ``retrain`` model after the
   same request (stored once per group under ``<out>/_reference/...``); the shadow model
   (same kind, remaining data, another seed) is stored under ``<out>/_shadow/...``.
6. **Efficiency**: the method's forget and a retrain of the same request, both timed in
   this process (median of repeats when fast); ``speedup_vs_retrain`` is their ratio.
7. **Fairness**: A-IGF (absolute and signed) before and after, with activity groups from
   the remaining training data, and shard fairness.

Files: ``metrics.json``, ``per_user.parquet`` (per-user metrics, ``phase`` before/after,
``forgotten`` flag) besides the engine's ``config.json`` / ``run.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from trustrec.bench.context import GridContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import (
    Configs,
    GridSpec,
    Names,
    axis_of,
    check_configs,
    check_names,
    dataset_label,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import build_config, to_dict, typed_config
from trustrec.errors import ConfigError, UnknownNameError
from trustrec.seeding import child_seed

#: The methods' reference: completeness and speed-up are measured against it.
REFERENCE_METHOD = "retrain"
#: Bootstrap replicates of the membership-inference standard errors.
MIA_BOOTSTRAP = 200
#: A forget faster than this many seconds is repeated (on fresh copies of the learned
#: state) until :data:`FORGET_REPEATS` runs are timed; its median is reported.
REPEAT_BELOW = 2.0
FORGET_REPEATS = 3
UNLEARNER_DIR, SHADOW_DIR = "unlearner", "shadow"
#: Request grains: what a forget request names.
Grain = Literal["user", "interaction", "item"]
GRAINS: tuple[str, ...] = typing.get_args(Grain)
#: Per grain, the selections it accepts and what each means there. ``user``: CURE4Rec's
#: core / edge / random users (any selection registered in
#: :data:`trustrec.data.selection.SELECTIONS`). ``item``: the most popular / least popular /
#: random items. ``interaction``: a seeded draw of distinct training pairs only (single
#: interactions have no activity ranking that would make core / edge meaningful).
GRAIN_SELECTIONS: dict[str, dict[str, str] | None] = {
    "user": None,
    "interaction": {"random": "random"},
    "item": {"core": "popular", "edge": "unpopular", "random": "random"},
}
WARM_USERS, WARM_EPOCHS = 64, 2


def _unlearners() -> Any:
    import trustrec.unlearn  # noqa: F401  (its __init__ registers the methods)
    from trustrec.unlearn.base import UNLEARNERS

    return UNLEARNERS


# ---------------------------------------------------------------------------- spec
#: Shares of a grain's units to forget, each in (0, 1); request grains.
Ratios = axis_of(Annotated[float, Field(gt=0, lt=1)])
Grains = axis_of(Grain)


@typed_config
class BenchSpec(GridSpec):
    """An unlearning grid: the shared axes (:class:`~trustrec.bench.grid.GridSpec`) and

    Attributes:
        methods: registered unlearning methods (``trustrec.unlearn.base.UNLEARNERS``).
        grains: what a forget request names (:data:`GRAINS`): ``"user"`` (whole users, the
            default), ``"interaction"`` ((user, item) pairs) or ``"item"`` (whole items).
        selections: forget-set selections (``core``, ``edge``, ``random``); their meaning
            per grain is :data:`GRAIN_SELECTIONS`.
        ratios: shares of the grain's units (users, training pairs, items) to forget, each
            in (0, 1).
        method_configs: per method name, config values overriding the method's defaults.

    Example TOML::

        kind = "unlearning"          # the default
        datasets = ["ml-100k"]
        models = ["bpr", "wmf"]
        methods = ["retrain", "sisa"]
        selections = ["core", "edge", "random"]
        ratios = [0.05, 0.1]
        seeds = [0, 1, 2]
        out = "runs/bench"

        [method_configs.sisa]
        n_shards = 5
    """

    kind: ClassVar[str] = "unlearning"
    models: Names = default_list(["bpr", "wmf", "lightgcn"])
    methods: Names = default_list(["retrain", "sisa"])
    grains: Grains = default_list(["user"])
    selections: Names = default_list(["core", "edge", "random"])
    ratios: Ratios = default_list([0.05])
    method_configs: Configs = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_grains(self.grains, self.selections)

    def validate(self, where: str = "bench spec") -> None:
        """Check every name against its registry and every config against its dataclass.

        Raises:
            UnknownNameError: an unknown dataset, model, method or selection.
            ConfigError: a config key that the model or method does not have, a bad
                value, a method that does not support one of the grains, or a model
                without a capability a method needs (its ``needs``,
                :mod:`trustrec.models.capabilities`).
        """
        from trustrec.data.selection import SELECTIONS
        from trustrec.models import MODELS
        from trustrec.models.capabilities import require

        super().validate(where)
        unlearners = _unlearners()
        check_names(self.methods, unlearners, "methods", where)
        check_names(self.selections, SELECTIONS, "selections", where)
        if REFERENCE_METHOD not in unlearners:
            raise UnknownNameError(f"{where}: the reference method {REFERENCE_METHOD!r} is "
                                   "not registered")
        for method in dict.fromkeys([*self.methods, REFERENCE_METHOD]):
            supports = unlearners.get(method).supports
            missing = [g for g in self.grains if g not in supports]
            if missing:
                raise ConfigError(
                    f"{where}: method {method!r} cannot forget {missing[0]}s (it supports "
                    f"{', '.join(sorted(supports)) or 'nothing'}); remove it from methods or "
                    f"{missing[0]!r} from grains")
        for method in dict.fromkeys([*self.methods, REFERENCE_METHOD]):
            for model in self.models:
                require(MODELS.get(model), *unlearners.get(method).needs,
                        by=f"{where}: method {method!r}")
        check_configs(self.method_configs, unlearners, "method_configs", where)

    def method_config(self, method: str) -> dict[str, Any]:
        """The full config of ``method`` (defaults overridden by :attr:`method_configs`)."""
        cls = _unlearners().get(method)
        return to_dict(build_config(cls.Config, self.method_configs.get(method, {}),
                                    where=f"method_configs.{method}"))

    def cells(self) -> list[Cell]:
        """The grid's cells in a stable order (see :func:`enumerate_cells`)."""
        return enumerate_cells(self)


def _check_grains(grains: list[str], selections: list[str]) -> None:
    for g in grains:
        allowed = GRAIN_SELECTIONS[g]
        bad = [s for s in selections if allowed is not None and s not in allowed]
        if bad:
            raise ConfigError(
                f"selections: {bad[0]!r} is not defined for grain {g!r} (it takes "
                f"{', '.join(allowed)}); run grain {g!r} in a spec with selections = "
                f"{sorted(allowed)!r}")


# ---------------------------------------------------------------------------- cells
@dataclass(frozen=True, order=True)
class Cell:
    """One point of the unlearning grid.

    Attributes:
        dataset: the dataset label (a known name, or a path's last component).
        model: model name.
        method: unlearning method name.
        selection: forget-set selection (its meaning per grain: :data:`GRAIN_SELECTIONS`).
        ratio: share of the grain's units forgotten (users, training pairs or items).
        seed: root seed.
        grain: what the request names: ``"user"``, ``"interaction"`` or ``"item"``.
    """

    dataset: str
    model: str
    method: str
    selection: str
    ratio: float
    seed: int
    grain: str = "user"

    @property
    def id(self) -> str:
        """Stable id, also the cell's folder: ``ml-100k/bpr/sisa/core/p0.05/seed0``
        (a grain other than ``user`` is a level before the selection)."""
        grain = "" if self.grain == "user" else f"{self.grain}/"
        return (f"{self.dataset}/{self.model}/{self.method}/{grain}{self.selection}/"
                f"p{format(self.ratio, 'g')}/seed{self.seed}")

    @property
    def group(self) -> tuple[str, str, str, float, int, str]:
        """Cells sharing a group share the forget set and the retrained reference."""
        return (self.dataset, self.model, self.selection, self.ratio, self.seed, self.grain)

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


def enumerate_cells(spec: BenchSpec) -> list[Cell]:
    """The cartesian product of the spec's axes.

    Order: dataset, model, seed, ratio, grain, selection, then method with the reference
    method (``retrain``) first.
    """
    methods = sorted(spec.methods, key=lambda m: (m != REFERENCE_METHOD,
                                                  spec.methods.index(m)))
    return [Cell(dataset_label(d), m, meth, sel, r, seed, g)
            for d, m, seed, r, g, sel, meth in product(spec.datasets, spec.models, spec.seeds,
                                                       spec.ratios, spec.grains,
                                                       spec.selections, methods)]


# ---------------------------------------------------------------------------- context
class UnlearningContext(GridContext):
    """Shared, lazily computed state of one unlearning run: learned states, references,
    shadows and forget requests. Every artefact is keyed and idempotent: asking twice
    computes once (disk + memory)."""

    artefact_packages = (*GridContext.artefact_packages, "unlearn")

    def __init__(self, spec: BenchSpec, progress: bool = False) -> None:
        super().__init__(spec, progress)
        self._method_cfg = {m: spec.method_config(m)
                            for m in {*spec.methods, REFERENCE_METHOD}}

    # --------------------------------------------------------------- configs
    def learned_config(self, dataset: str, model: str, method: str, seed: int
                       ) -> dict[str, Any]:
        """Everything the learned state of (dataset, model, method, seed) depends on."""
        return {"dataset": dataset, "data": self.data_config(dataset), "model": model,
                "model_config": self.model_configs[model], "method": method,
                "method_config": self._method_cfg[method], "seed": seed}

    def reference_config(self, cell: Cell) -> dict[str, Any]:
        """Everything the retrained reference of a cell's group depends on."""
        base = self.learned_config(cell.dataset, cell.model, REFERENCE_METHOD, cell.seed)
        grain = {} if cell.grain == "user" else {"grain": cell.grain}
        return {**base, "selection": cell.selection, "ratio": cell.ratio, **grain}

    def shadow_config(self, cell: Cell) -> dict[str, Any]:
        """Everything the group's shadow model depends on (the reference's data and model,
        another seed)."""
        return {**self.reference_config(cell), "method": None, "method_config": None,
                "shadow_seed": child_seed(cell.seed, "shadow")}

    # --------------------------------------------------------------- folders
    def learned_dir(self, dataset: str, model: str, method: str, seed: int) -> Path:
        """``_learned/<dataset>/<model>/<method>/seed<seed>``."""
        return self.out / "_learned" / dataset / model / method / f"seed{seed}"

    def reference_dir(self, cell: Cell) -> Path:
        """``_reference/<dataset>/<model>/[<grain>/]<sel>/p<r>/seed<s>``."""
        grain = () if cell.grain == "user" else (cell.grain,)
        return (self.out.joinpath("_reference", cell.dataset, cell.model, *grain)
                / cell.selection / f"p{format(cell.ratio, 'g')}" / f"seed{cell.seed}")

    def shadow_dir(self, cell: Cell) -> Path:
        """``_shadow/...``, laid out like the reference."""
        return self.out / "_shadow" / self.reference_dir(cell).relative_to(
            self.out / "_reference")

    # --------------------------------------------------------------- artefacts
    def has_learned(self, dataset: str, model: str, method: str, seed: int) -> bool:
        """Whether the learned state is stored and current."""
        return self.is_stored(self.learned_dir(dataset, model, method, seed),
                              self.learned_config(dataset, model, method, seed))

    def learned(self, dataset: str, model: str, method: str, seed: int
                ) -> tuple[Path, dict[str, Any]]:
        """Make sure the learned state exists; return its unlearner folder and record."""
        from trustrec.unlearn.base import make_unlearner
        from trustrec.unlearn.persist import save_unlearner

        def build(folder: Path) -> dict[str, Any]:
            split = self.split(dataset, seed)
            unl = make_unlearner(method, model, self.model_configs[model],
                                 **self._method_cfg[method])
            t0 = time.perf_counter()
            unl.fit(split.train, split.valid, seed=seed, progress=self.progress)
            seconds = time.perf_counter() - t0
            save_unlearner(unl, folder / UNLEARNER_DIR)
            return {"learn_seconds": seconds}

        folder = self.learned_dir(dataset, model, method, seed)
        state = self.stored(folder, self.learned_config(dataset, model, method, seed), build)
        return folder / UNLEARNER_DIR, state

    def load_learned(self, dataset: str, model: str, method: str, seed: int
                     ) -> tuple[Any, float]:
        """A fresh copy of the learned unlearner (safe to ``forget`` on) and learn seconds."""
        from trustrec.unlearn.persist import load_unlearner

        path, state = self.learned(dataset, model, method, seed)
        return load_unlearner(path), float(state["learn_seconds"])

    def has_reference(self, cell: Cell) -> bool:
        """Whether the group's reference is stored and current."""
        return self.is_stored(self.reference_dir(cell), self.reference_config(cell))

    def reference(self, cell: Cell) -> Any:
        """The group's retrained reference (computed and stored if missing)."""
        from trustrec.unlearn.persist import load_unlearner, save_unlearner

        def build(folder: Path) -> dict[str, Any]:
            unl, _ = self.load_learned(cell.dataset, cell.model, REFERENCE_METHOD, cell.seed)
            report = unl.forget(self.forget_request(cell))
            save_unlearner(unl, folder / UNLEARNER_DIR)
            return {"forget_seconds": report.seconds}

        folder = self.reference_dir(cell)
        self.stored(folder, self.reference_config(cell), build)
        return load_unlearner(folder / UNLEARNER_DIR)

    def has_shadow(self, cell: Cell) -> bool:
        """Whether the group's shadow model is stored and current."""
        return self.is_stored(self.shadow_dir(cell), self.shadow_config(cell))

    def shadow(self, cell: Cell) -> Any:
        """The group's shadow: the auditor's model of the same kind and config, trained on
        the data that remains after the request with seed ``child_seed(seed, "shadow")``
        (it never saw the forget set); the suite's reference attack calibrates with it."""
        from trustrec.models import load_model, make_model

        cfg = self.shadow_config(cell)

        def build(folder: Path) -> dict[str, Any]:
            split = self.split(cell.dataset, cell.seed)
            request = self.forget_request(cell)
            train = split.train.select(~request.match_rows(split.train))
            valid = split.valid.select(~request.match_rows(split.valid))
            t0 = time.perf_counter()
            model = make_model(cell.model, **self.model_configs[cell.model]).fit(
                train, valid, seed=cfg["shadow_seed"])
            model.save(folder / SHADOW_DIR)
            return {"seconds": time.perf_counter() - t0}

        folder = self.shadow_dir(cell)
        self.stored(folder, cfg, build)
        return load_model(folder / SHADOW_DIR)

    # --------------------------------------------------------------- forget sets
    def forget_users(self, cell: Cell) -> np.ndarray:
        """The users whose training rows the cell's request removes (sorted indices)."""
        request = self.forget_request(cell)
        if cell.grain == "user":
            return np.asarray(request.users, dtype=np.int64)
        train = self.split(cell.dataset, cell.seed).train
        return np.unique(train.users[request.match_rows(train)]).astype(np.int64)

    def forget_request(self, cell: Cell) -> Any:
        """The cell's forget request, selected on the training split by grain (see
        :data:`GRAIN_SELECTIONS`)."""
        from trustrec.data.request import ForgetRequest
        from trustrec.data.selection import (
            select_forget_interactions,
            select_forget_items,
            select_forget_users,
        )

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
def timed_forget(load: Callable[[], Any], request: Any) -> tuple[Any, Any, list[float]]:
    """Forget ``request`` on a fresh copy of a learned state, timed, repeated when fast.

    A forget that takes under :data:`REPEAT_BELOW` seconds is repeated on new copies
    (``load()``) until :data:`FORGET_REPEATS` runs are timed. Every run is deterministic,
    so the first copy is the one returned.

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


def _per_user(table: pd.DataFrame, phase: str, forgotten: np.ndarray,
              user_ids: np.ndarray) -> pd.DataFrame:
    t = table.copy()
    t.insert(0, "phase", phase)
    t.insert(2, "raw_user_id", np.asarray(user_ids, dtype=str)[t["user"].to_numpy()])
    t.insert(3, "forgotten", np.isin(t["user"].to_numpy(), forgotten))
    return t


def _shard_fairness(per_user: pd.DataFrame, shards: np.ndarray | None, metric: str
                    ) -> float:
    """Variance across shards of the mean ``metric`` of each shard's evaluated users
    (0 for an unsharded method, as CURE4Rec defines it for Retrain; NaN when no shard has
    an evaluated user)."""
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


def compute_cell(ctx: UnlearningContext, cell: Cell) -> CellOutput:
    """Compute one cell (see the module docstring); writes no cell files."""
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
    ref = ctx.reference(cell)
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
    return CellOutput(metrics, {"per_user.parquet": per_user}, {"timings": timings})


# ---------------------------------------------------------------------------- the kind
@EXPERIMENTS.register("unlearning")
class Unlearning(Experiment):
    """The unlearning experiment kind (see the module docstring)."""

    name = "unlearning"
    title = "trustrec unlearning benchmark"
    spec_class = BenchSpec
    axes = ("dataset", "model", "method", "grain", "selection", "ratio", "seed")
    numeric_axes: ClassVar[dict[str, type]] = {"ratio": float, "seed": int}
    axis_defaults: ClassVar[dict[str, Any]] = {"grain": "user"}
    source_packages = ("data", "evaluate", "models", "train", "unlearn")
    report_module = "trustrec.bench.experiments.unlearning_report"
    private_dirs = ("_learned", "_reference", "_shadow", "plots")

    def context(self, spec: BenchSpec, progress: bool = False) -> UnlearningContext:
        """Datasets, splits, learned states, references and shadows of the run."""
        return UnlearningContext(spec, progress)

    def cell_from_axes(self, axes: dict[str, Any]) -> Cell:
        """The cell with these axes."""
        return Cell(**axes)

    def stages(self, ctx: UnlearningContext, pending: Sequence[Cell]) -> list[Stage]:
        """Learned states (each method's and retrain's), then per group the reference and
        the shadow, for the pending cells, skipping what is stored."""
        keys = [[c.dataset, c.model, m, c.seed] for c in pending
                for m in dict.fromkeys([c.method, REFERENCE_METHOD])]
        learn = [list(k) for k in dict.fromkeys(map(tuple, keys)) if not ctx.has_learned(*k)]
        groups = {c.group: dataclasses.replace(c, method=REFERENCE_METHOD) for c in pending}
        refs = [c.axes() for c in groups.values()
                if not (ctx.has_reference(c) and ctx.has_shadow(c))]
        return [Stage("learn", learn), Stage("reference", refs)]

    def dependencies(self, cell: Cell) -> list[tuple[str, Any]]:
        """Its learned state, retrain's, and its group's reference (keyed by the group's
        retrain cell)."""
        group = dataclasses.replace(cell, method=REFERENCE_METHOD)
        return [("learn", [cell.dataset, cell.model, cell.method, cell.seed]),
                ("learn", [cell.dataset, cell.model, REFERENCE_METHOD, cell.seed]),
                ("reference", group.axes())]

    def key_dependencies(self, stage: str, key: Any) -> list[tuple[str, Any]]:
        """A reference needs retrain's learned state."""
        if stage != "reference":
            return []
        return [("learn", [key["dataset"], key["model"], REFERENCE_METHOD, key["seed"]])]

    def describe_key(self, stage: str, key: Any) -> str:
        """``learned state ml-100k/bpr/sisa/1`` or ``reference of <group cell id>``."""
        if stage == "learn":
            return f"learned state {'/'.join(str(v) for v in key)}"
        return f"reference of {Cell(**key).id}"

    def run_stage(self, ctx: UnlearningContext, stage: str, key: Any) -> None:
        """Store a learned state, or a group's reference and shadow."""
        if stage == "learn":
            ctx.learned(*key)
            return
        cell = Cell(**key)
        ctx.reference(cell)
        ctx.shadow(cell)

    def warm_up(self, ctx: UnlearningContext, stages: Sequence[Stage],
                pending: Sequence[Cell]) -> None:
        """Compile every numba kernel the pending (model, method) pairs use, here.

        Numba's on-disk cache is written by whichever process compiles a kernel first; two
        workers compiling one kernel at once can leave an index pointing at another
        signature's code. So each pair is fitted once with at most :data:`WARM_EPOCHS`
        model epochs on tiny synthetic data (dtypes are those of every dataset) and
        forgets one unit of each of the spec's grains; errors are ignored (the real task
        reports them).
        """
        from trustrec.data.request import ForgetRequest
        from trustrec.data.split import random_split
        from trustrec.data.synthetic import ml1m_shaped
        from trustrec.unlearn.base import make_unlearner

        pairs = dict.fromkeys((c.model, m) for c in pending
                              for m in (c.method, REFERENCE_METHOD))
        tiny = ml1m_shaped(0, n_users=WARM_USERS, n_items=50,
                           n_interactions=WARM_USERS * 25)
        split = random_split(tiny, tuple(ctx.spec.split_ratios), seed=0)
        train = split.train
        one = {"user": ForgetRequest(users=train.users[:1]),
               "interaction": ForgetRequest(pairs=[[train.users[-1], train.items[-1]]]),
               "item": ForgetRequest(items=[int(np.argmax(train.item_counts()))])}
        requests = [one[g] for g in ctx.spec.grains if g in one]
        for model, method in pairs:
            try:
                cfg = dict(ctx.spec.model_config(model))
                if isinstance(cfg.get("epochs"), int):
                    cfg["epochs"] = min(cfg["epochs"], WARM_EPOCHS)
                unl = make_unlearner(method, model, cfg, **ctx.spec.method_config(method))
                unl.fit(split.train, split.valid, seed=0)
            except Exception:  # best effort: the real task reports errors
                continue
            for request in requests:
                try:
                    unl.forget(request)
                except Exception:  # e.g. a grain the method does not support
                    continue

    def cell_config(self, ctx: UnlearningContext, cell: Cell) -> dict[str, Any]:
        """The cell's full resolved config (written to ``config.json``)."""
        from trustrec.evaluate.suite import ATTACKS

        return {"cell": cell.axes(), "id": cell.id,
                "data": ctx.data_config(cell.dataset),
                "model_config": ctx.model_configs[cell.model],
                "method_config": ctx._method_cfg[cell.method],
                "reference": {"method": REFERENCE_METHOD,
                              "method_config": ctx._method_cfg[REFERENCE_METHOD]},
                "ks": list(ctx.spec.ks), "headline_k": ctx.k,
                "fairness": {"metric": f"ndcg@{ctx.k}", "active_share": 0.05,
                             "shard": "variance of per-shard mean ndcg (after)",
                             "a_igf_headline": ctx.protocol.a_igf},
                "ndcg_ideal": ctx.protocol.ndcg_ideal,
                "forget_request": {"user": "users", "interaction": "pairs",
                                   "item": "items"}[cell.grain],
                "measures": {"membership": {"suite": list(ATTACKS), "ties": "random",
                                            "nonmembers": "test rows of the request scope",
                                            "reference": "shadow model, seed 'shadow'",
                                            "n_bootstrap": MIA_BOOTSTRAP},
                             "timing": {"repeats": FORGET_REPEATS,
                                        "repeat_below_seconds": REPEAT_BELOW,
                                        "retrain": "same process"},
                             "utility_before": "same users as after"}}

    def compute_cell(self, ctx: UnlearningContext, cell: Cell) -> CellOutput:
        """See :func:`compute_cell`."""
        return compute_cell(ctx, cell)

    def is_legacy(self, columns: list[str]) -> bool:
        """``dataset, model, method, [grain,] selection, ratio, seed, metric, value``."""
        return [c for c in columns if c != "grain"] == [
            a for a in (*self.axes, "metric", "value") if a != "grain"]

    def from_legacy(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Add ``grain = "user"`` when missing."""
        frame = frame.copy()
        if "grain" not in frame.columns:
            frame.insert(frame.columns.get_loc("selection"), "grain", "user")
        return frame

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """Utility before → after, fairness, time, completeness."""
        from trustrec.evaluate.suite import attack_name

        g = functools.partial(metric_text, metrics)  # .4f unless given

        return (f"ndcg@{k} {g(f'ndcg@{k}_before')} → {g(f'ndcg@{k}')}, "
                f"a_igf {g('a_igf')}, forget {g('forget_seconds', '.2f')} s "
                f"(×{g('speedup_vs_retrain', '.1f')}), overlap@{k} "
                f"{g(f'overlap@{k}_vs_retrain', '.3f')}, mia "
                f"{g('mia_auc_before', '.3f')} → {g('mia_auc', '.3f')} "
                f"({attack_name(metrics.get('mia_attack', float('nan')))})")
