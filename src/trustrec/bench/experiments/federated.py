"""The ``federated`` kind: federated recommenders against each other and their ceiling.

Cells: dataset × method × clients × participation × rounds × seed, plus one centralised
ceiling cell per (dataset, model, clients, seed). A federated cell trains the method
(:data:`~trustrec.federated.methods.FEDERATED`) in the in-process simulator, one client
per user, evaluating on validation every ``eval_every`` rounds and keeping the best round
(:func:`~trustrec.federated.fit.fit_federation`); it scores the test split at that round by
full ranking (training items masked) and, labelled ``sampled_``, by the papers' 1 + 99
protocol. The per-round curve (loss, validation and test NDCG) is kept in the cell
(``curve.parquet``). A ceiling cell trains the registered centralised model of the same
architecture (``models``: ``neumf`` for FedNCF/FedRecGEL, ``bcemf`` for FedMF/PFedRec) on
the same clients' data with early stopping on validation.

Axes: ``clients`` 0 means every user; N a seeded subset of N users (the same for every
method of a seed). ``participation`` 0 means each method's own default (FedNCF and
FedRecGEL 10 %, FedMF and PFedRec every client); ``rounds`` the maximum rounds.
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
    Seeds,
    axis_of,
    check_configs,
    check_names,
    dataset_label,
    default_list,
)
from trustrec.bench.render import metric_text
from trustrec.config import NonNegativeInt, PositiveInt, typed_config
from trustrec.errors import ConfigError

CENTRAL = "central"
Shares = axis_of(Annotated[float, Field(ge=0, le=1)])


@typed_config
class FederatedSpec(GridSpec):
    """A federated-recommendation grid: the shared axes and

    Attributes:
        methods: federated method names.
        method_configs: per method, config values overriding its defaults.
        models: the centralised ceilings (registered models) trained beside them; empty
            list: none.
        clients: federation sizes (0: every user).
        participation: shares of clients per round (0: each method's default).
        rounds: maximum rounds.

    Example TOML::

        kind = "federated"
        datasets = ["ml-100k"]
        methods = ["fedmf", "fedncf", "pfedrec", "fedrecgel"]
        models = ["neumf"]
        seeds = [0, 1, 2]
        out = "runs/federated"
    """

    kind: ClassVar[str] = "federated"
    out: Folder = "runs/federated"
    methods: Names = default_list(["fedmf", "fedncf", "pfedrec", "fedrecgel"])
    method_configs: Configs = field(default_factory=dict)
    models: Annotated[list[str], Field(min_length=0)] = default_list(["neumf"])
    clients: axis_of(NonNegativeInt) = default_list([0])
    participation: Shares = default_list([0.0])
    rounds: axis_of(PositiveInt) = default_list([100])
    seeds: Seeds = default_list([0])
    ks: Cutoffs = default_list([10])

    def validate(self, where: str = "federated spec") -> None:
        """Names and configs are checked; nothing is loaded or trained.

        Raises:
            UnknownNameError: an unknown dataset, method or model.
            ConfigError: a bad config, or a ceiling no listed method shares.
        """
        from trustrec.federated.methods import FEDERATED
        from trustrec.models import MODELS

        super().validate(where)
        check_names(self.methods, FEDERATED, "methods", where)
        check_configs(self.method_configs, FEDERATED, "method_configs", where)
        check_names(self.models, MODELS, "models", where)
        for model in self.models:
            if self.ceiling_config(model) is None:
                raise ConfigError(f"{where}: models: no listed method federates {model!r} "
                                  "(neumf: fedncf/fedrecgel; bcemf: fedmf/pfedrec)")

    def method(self, name: str, participation: float = 0.0, rounds: int | None = None
               ) -> Any:
        """The federated method with the spec's config and the cell's axes."""
        from trustrec.federated.methods import make_federated

        cfg = dict(self.method_configs.get(name, {}))
        if participation > 0:
            cfg["participation"] = participation
        if rounds is not None:
            cfg["rounds"] = rounds
        return make_federated(name, cfg)

    def ceiling_config(self, model: str) -> dict[str, Any] | None:
        """The ceiling's config: the first listed method of its architecture's dims,
        overlaid with ``model_configs``; None when no method federates ``model``."""
        for name in self.methods:
            central, cfg = self.method(name).centralised()
            if central == model:
                return {**cfg, **self.model_configs.get(model, {})}
        return None

    def model_config(self, model: str) -> dict[str, Any]:
        """A ceiling's resolved config (what the report's provenance shows)."""
        return self.ceiling_config(model) or super().model_config(model)

    def cells(self) -> list[FederatedCell]:
        """Ceilings first, then every federated cell, in spec order."""
        out = [FederatedCell(dataset_label(d), CENTRAL, m, c, 0.0, 0, s)
               for d, s, c, m in product(self.datasets, self.seeds, self.clients, self.models)]
        for d, s, c, f, p, r in product(self.datasets, self.seeds, self.clients, self.methods,
                                        self.participation, self.rounds):
            out.append(FederatedCell(dataset_label(d), f, self.method(f).centralised()[0], c,
                                     float(p), r, s))
        return out


@dataclass(frozen=True, order=True)
class FederatedCell:
    """One point of the federated grid (a ceiling has method ``central``)."""

    dataset: str
    method: str
    model: str
    clients: int
    participation: float
    rounds: int
    seed: int

    @property
    def id(self) -> str:
        """Stable id and folder, e.g. ``ml-100k/fedncf/all/p0.1/r100/seed0``."""
        clients = "all" if self.clients == 0 else f"n{self.clients}"
        if self.method == CENTRAL:
            return f"{self.dataset}/{CENTRAL}-{self.model}/{clients}/seed{self.seed}"
        share = "default" if self.participation == 0 else f"{self.participation:g}"
        return f"{self.dataset}/{self.method}/{clients}/p{share}/r{self.rounds}/seed{self.seed}"

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


@EXPERIMENTS.register("federated")
class FederatedExperiment(Experiment):
    """The federated-recommendation experiment kind (see the module docstring)."""

    name = "federated"
    title = "trustrec federated recommendation benchmark"
    spec_class = FederatedSpec
    axes = ("dataset", "method", "model", "clients", "participation", "rounds", "seed")
    numeric_axes: ClassVar[dict[str, type]] = {"seed": int, "clients": int,
                                                "participation": float, "rounds": int}
    source_packages = ("data", "evaluate", "models", "train", "federated")
    report_module = "trustrec.bench.experiments.federated_report"

    def context(self, spec: FederatedSpec, progress: bool = False) -> GridContext:
        """Datasets and splits."""
        return GridContext(spec, progress)

    def cell_from_axes(self, axes: dict[str, Any]) -> FederatedCell:
        """The cell with these axes."""
        return FederatedCell(**axes)

    def stages(self, ctx: GridContext, pending: Sequence[FederatedCell]) -> list[Stage]:
        """None: every cell trains its own federation."""
        return []

    def cell_config(self, ctx: GridContext, cell: FederatedCell) -> dict[str, Any]:
        """The cell's resolved config."""
        from trustrec.config import to_dict

        spec = ctx.spec
        base = {"cell": cell.axes(), "id": cell.id, "data": ctx.data_config(cell.dataset),
                "split": spec.split, "ks": spec.ks}
        if cell.method == CENTRAL:
            return {**base, "model_config": spec.ceiling_config(cell.model)}
        method = spec.method(cell.method, cell.participation, cell.rounds)
        return {**base, "method_config": to_dict(method.config)}

    def compute_cell(self, ctx: GridContext, cell: FederatedCell) -> CellOutput:
        """Train (federated or central), score the test split (module docstring)."""
        from trustrec.federated.fit import fit_federation
        from trustrec.federated.run import choose_clients, score_test_split
        from trustrec.models import make_model

        spec = ctx.spec
        split = ctx.split(cell.dataset, cell.seed)
        clients = choose_clients(split.train, cell.clients, cell.seed)
        t0 = time.perf_counter()
        tables = {}
        record: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        if cell.method == CENTRAL:
            train, valid = split.train, split.valid
            if clients is not None:
                train, valid = train.restrict_users(clients), valid.restrict_users(clients)
            model = make_model(cell.model, **spec.ceiling_config(cell.model))
            model.fit(train, valid, seed=cell.seed, progress=ctx.progress)
            record["epochs_run"] = model.fit_info_.get("epochs_run")
        else:
            fit = fit_federation(spec.method(cell.method, cell.participation, cell.rounds),
                                 split.train, split.valid, seed=cell.seed, test=split.test,
                                 clients=clients, k=ctx.k, progress=ctx.progress)
            model = fit.model
            tables["curve.parquet"] = fit.curve
            rounds_run = int(fit.model.info["rounds_run"])
            metrics["best_round"] = float(fit.best_round)
            metrics["seconds_per_round"] = fit.model.info["seconds"] / max(1, rounds_run)
        metrics["train_seconds"] = time.perf_counter() - t0
        for k in spec.ks:
            metrics.update(score_test_split(model, split.train, split.test, k, clients, cell.seed))
        return CellOutput(metrics, tables=tables, record=record)

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """NDCG (full and sampled) and the chosen round."""
        g = functools.partial(metric_text, metrics)
        return (f"ndcg@{k} {g(f'ndcg@{k}')}, sampled ndcg@{k} {g(f'sampled_ndcg@{k}')}, "
                f"round {g('best_round', '.0f')}, train {g('train_seconds', '.1f')} s")
