"""The ``fairness`` kind: user- and item-side fairness methods against plain training.

Cells: dataset × model × method × seed, where the method applies to the model (In-UCDS and
In-Naive to models with user tables, S-DRO and the long-tail methods to the sequential
models and NeuMF, SAM and EISAM to BPR-MF too, UGF re-ranking to every model). Each cell
trains the model with the method (:data:`~trustrec.fairness.FAIRNESS`: ``none`` is the
control; In-UCDS, In-Naive, S-DRO and UGF re-ranking for users; SAM, EISAM, IPS and logit
adjustment for items) on the seed's split, early-stopped on validation, and scores the
test split by full ranking, the known items (training + validation) masked; a sequential
model reads them as its histories. A post-processing method (UGF re-ranking) re-ranks
the trained model's lists first (:meth:`~trustrec.fairness.FairTraining.serve`); one
that reads the test labels to do so is an oracle, and the cell records
``uses_target_labels``.

Metrics, at every cut-off of ``ks`` (default 10, the fairness papers'; the headline is 20
when listed, else the largest): utility (NDCG, Recall, F1), the user side (UGF of NDCG
and F1, signed = advantaged − disadvantaged, and absolute; advantaged = the top
``top`` share of users by training interactions, Li et al.'s 5 %) and the item side
(head / tail NDCG and Recall, coverage, Gini, APLT, ARP at the headline cut-off; head = the top
``head_share`` of items by training frequency, FairRecSys' 20 %), and the training
seconds. The per-user table (``per_user.parquet``, with each user's group) and the
per-item table (``per_item.parquet``) are kept in the cell.

The split defaults to leave-last-out: one held-out item per user, so a group's NDCG
reflects the model rather than how many items its users hold out (with a random 80/10/10
split the most active users hold out the most items and UGF measures mostly that).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Annotated, Any, ClassVar

from pydantic import Field

from trustrec.bench.context import GridContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import (
    Configs,
    Cutoffs,
    Folder,
    GridSpec,
    Names,
    Split,
    check_configs,
    dataset_label,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import UnitInterval, typed_config
from trustrec.errors import ConfigError


@typed_config
class FairnessSpec(GridSpec):
    """A fairness grid: the shared axes (:class:`~trustrec.bench.grid.GridSpec`) and

    Attributes:
        methods: fairness method names (:data:`~trustrec.fairness.FAIRNESS`); ``none``
            is the control every other method is read against.
        method_configs: per method name, config values overriding its defaults.
        top: share of users that are advantaged (the methods that pair users use it
            too).
        head_share: share of items that are head items.

    Example TOML::

        kind = "fairness"
        datasets = ["ml-100k"]
        models = ["neumf"]
        methods = ["none", "in-ucds", "in-naive"]
        seeds = [0, 1, 2]
        out = "runs/fairness"
    """

    kind: ClassVar[str] = "fairness"
    out: Folder = "runs/fairness"
    split: Split = "leave_last_out"
    models: Names = default_list(["neumf"])
    methods: Names = default_list(["none", "in-ucds", "in-naive"])
    method_configs: Configs = field(default_factory=dict)
    ks: Cutoffs = default_list([10])
    top: Annotated[float, Field(gt=0, lt=1)] = 0.05
    head_share: UnitInterval = 0.2

    def validate(self, where: str = "fairness spec") -> None:
        """Names and configs are checked; nothing is loaded or trained.

        Raises:
            UnknownNameError: an unknown dataset, model or method.
            ConfigError: a bad config.
        """
        from trustrec.fairness import FAIRNESS

        super().validate(where)
        for m in self.methods:
            FAIRNESS.get(m)
        check_configs(self.method_configs, FAIRNESS, "method_configs", where)
        for m, cfg in self.method_configs.items():
            if "top" in cfg and cfg["top"] != self.top:
                raise ConfigError(f"{where}: method_configs.{m}.top = {cfg['top']} differs "
                                  f"from the spec's top = {self.top}: the method's "
                                  "advantaged users must be the ones UGF measures (set "
                                  "top once, in the spec)")
        if not self.cells():
            raise ConfigError(f"{where}: no method applies to any model (In-UCDS and "
                              "In-Naive need a model with user tables, e.g. bpr or neumf; "
                              "S-DRO and the long-tail methods a sequential model or "
                              "neumf)")

    def method_options(self, method: str) -> dict[str, Any]:
        """The method's config values: ``method_configs`` and, for a method with a
        ``top``, the spec's ``top`` (one definition of the advantaged users); for one
        with a ``k`` (UGF re-ranking's list length), the headline cut-off the report
        reads, unless ``method_configs`` sets it."""
        from trustrec.fairness import FAIRNESS

        fields = {f.name for f in dataclasses.fields(FAIRNESS.get(method).Config)}
        headline = 20 if 20 in self.ks else max(self.ks)
        return {**({"top": self.top} if "top" in fields else {}),
                **({"k": headline} if "k" in fields else {}),
                **self.method_configs.get(method, {})}

    def cells(self) -> list[FairnessCell]:
        """Every cell whose method applies to its model (In-UCDS needs user tables, the
        long-tail methods the sequential trainer's options), ``none`` first within a
        (dataset, model, seed) group."""
        from trustrec.fairness import FAIRNESS

        methods = sorted(self.methods, key=lambda m: (m != "none", self.methods.index(m)))
        return [FairnessCell(dataset_label(d), m, f, s)
                for d, m, s, f in product(self.datasets, self.models, self.seeds, methods)
                if FAIRNESS.get(f).applies_to(m)]


@dataclass(frozen=True, order=True)
class FairnessCell:
    """One point of the fairness grid."""

    dataset: str
    model: str
    method: str
    seed: int

    @property
    def id(self) -> str:
        """Stable id and folder: ``ml-100k/neumf/in-ucds/seed0``."""
        return f"{self.dataset}/{self.model}/{self.method}/seed{self.seed}"

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


@EXPERIMENTS.register("fairness")
class FairnessExperiment(Experiment):
    """The fairness experiment kind (see the module docstring)."""

    name = "fairness"
    title = "trustrec fairness benchmark"
    spec_class = FairnessSpec
    axes = ("dataset", "model", "method", "seed")
    source_packages = ("data", "evaluate", "models", "train", "fairness")
    report_module = "trustrec.bench.experiments.fairness_report"

    def context(self, spec: FairnessSpec, progress: bool = False) -> GridContext:
        """Datasets and splits."""
        return GridContext(spec, progress)

    def cell_from_axes(self, axes: dict[str, Any]) -> FairnessCell:
        """The cell with these axes."""
        return FairnessCell(**axes)

    def stages(self, ctx: GridContext, pending: Sequence[FairnessCell]) -> list[Stage]:
        """None: every cell trains its own model."""
        return []

    def cell_config(self, ctx: GridContext, cell: FairnessCell) -> dict[str, Any]:
        """The cell's resolved config."""
        from trustrec.fairness import make_fairness

        spec = ctx.spec
        method = make_fairness(cell.method, **spec.method_options(cell.method))
        return {"cell": cell.axes(), "id": cell.id, "data": ctx.data_config(cell.dataset),
                "split": spec.split, "model_config": ctx.model_configs[cell.model],
                "method_config": method.config_dict(), "ks": spec.ks, "top": spec.top,
                "head_share": spec.head_share}

    def compute_cell(self, ctx: GridContext, cell: FairnessCell) -> CellOutput:
        """Train with the method, score the test split (see the module docstring)."""
        from trustrec.evaluate.fairness import a_igf_signed, activity_groups
        from trustrec.evaluate.longtail import longtail_report
        from trustrec.evaluate.ranking import evaluate_ranking, summarize
        from trustrec.fairness import make_fairness
        from trustrec.models import make_model

        spec = ctx.spec
        split = ctx.split(cell.dataset, cell.seed)
        t0 = time.perf_counter()
        method = make_fairness(cell.method, **spec.method_options(cell.method))
        model = method.fit(make_model(cell.model, **ctx.model_configs[cell.model]),
                           split.train, split.valid, seed=cell.seed, progress=ctx.progress)
        seconds = time.perf_counter() - t0
        known = split.known()
        history = known if model.scores_from_history else None
        scorer = method.serve(model, known, split.test, split.train, history)
        per_user = evaluate_ranking(scorer, known, split.test, ks=spec.ks, history=history)
        per_user["advantaged"] = activity_groups(split.train, spec.top)[per_user["user"]]
        metrics = {m: v for m, v in summarize(per_user).items()
                   if m.split("@")[0] in ("ndcg", "recall", "f1")}
        for m in (f"{name}@{k}" for name in ("ndcg", "f1") for k in spec.ks):
            signed = a_igf_signed(per_user, split.train, m, spec.top)
            metrics[f"ugf_{m}"], metrics[f"ugf_{m}_signed"] = abs(signed), signed
        side, per_item, items = longtail_report(scorer, known, split.test, ctx.k,
                                                spec.head_share, history, split.train)
        metrics.update({m: v for m, v in items.items() if m != "head_share"})
        metrics["train_seconds"] = seconds
        per_user = per_user.merge(side, on="user", how="left")
        return CellOutput(metrics, tables={"per_user.parquet": per_user,
                                           "per_item.parquet": per_item},
                          record={"fairness": model.fit_info_.get("fairness", {}),
                                  "uses_target_labels": method.uses_target_labels,
                                  "epochs_run": model.fit_info_.get("epochs_run")})

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """NDCG, UGF and tail NDCG at the headline cut-off."""
        g = functools.partial(metric_text, metrics)
        return (f"ndcg@{k} {g(f'ndcg@{k}')}, UGF {g(f'ugf_ndcg@{k}_signed', '+.4f')}, "
                f"tail ndcg {g(f'ndcg@{k}_tail')}, coverage {g(f'coverage@{k}', '.3f')}, "
                f"train {g('train_seconds', '.1f')} s")
