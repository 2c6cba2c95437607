"""The ``fedunlearn`` kind: class-wise and backdoor federated unlearning on scikit-learn's
digits.

Cells: request (``class``, ``backdoor``) × target (the class to forget, or the backdoor's
label) × method × seed. A cell builds the federation
(:func:`~trustrec.fedunlearn.federation.make_digits_federation`), trains the original
model by FedAvg, audits it (``before_*``), runs the method
(:data:`~trustrec.fedunlearn.methods.FED_UNLEARNERS`), times it and audits the result
(:func:`~trustrec.fedunlearn.audit.audit`). The ``mask`` control applies to class
requests only.
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

from trustrec.bench.context import WEIGHTS_DIR, TableContext
from trustrec.bench.experiments.base import EXPERIMENTS, CellOutput, Experiment, Stage
from trustrec.bench.grid import Folder, GridSpec, Names, axis_of, check_names, default_list
from trustrec.bench.render import metric_text
from trustrec.config import PositiveFloat, build_config, typed_config
from trustrec.errors import ConfigError, UnknownNameError


@typed_config
class FedUnlearnSpec(GridSpec):
    """A federated-unlearning grid: the shared fields (``seeds``, ``out``, ``workers``) and

    Attributes:
        datasets: ``digits`` (the only image table).
        methods: of :data:`~trustrec.fedunlearn.methods.FED_UNLEARNERS`.
        requests: ``class`` and/or ``backdoor``.
        targets: classes to forget / backdoor labels (0–9).
        n_clients: clients (≥ 2).
        dirichlet: the label-skew concentration of the client split.
        classifier: options of :class:`~trustrec.federated.classify.ClassifierConfig`.
        unlearn: options of :class:`~trustrec.fedunlearn.methods.FedUnlearnConfig`.
    """

    kind: ClassVar[str] = "fedunlearn"
    out: Folder = "runs/fedunlearn"
    datasets: Names = default_list(["digits"])
    models: Annotated[list[str], Field(min_length=0)] = default_list([])
    methods: Names = default_list(["none", "mask", "retrain", "finetune", "gradient-ascent",
                                   "fedaf"])
    requests: Names = default_list(["class", "backdoor"])
    targets: axis_of(Annotated[int, Field(ge=0, le=9)]) = default_list([3])
    n_clients: Annotated[int, Field(ge=2)] = 5
    dirichlet: PositiveFloat = 1.0
    classifier: dict[str, Any] = field(default_factory=lambda: {
        "hidden": 64, "rounds": 30, "lr": 0.1, "local_epochs": 2, "batch_size": 32})
    unlearn: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str = "fedunlearn spec") -> None:
        """Names and configs are checked; nothing is loaded or trained.

        Raises:
            UnknownNameError: an unknown dataset or method.
            ConfigError: an unknown request or a bad config.
        """
        from trustrec.fedunlearn.federation import REQUESTS
        from trustrec.fedunlearn.methods import FED_UNLEARNERS

        for d in self.datasets:
            if d != "digits":
                raise UnknownNameError(f"{where}: datasets: unknown image table {d!r}; "
                                       "known: digits")
        check_names(self.methods, FED_UNLEARNERS, "methods", where)
        for r in self.requests:
            if r not in REQUESTS:
                raise ConfigError(f"{where}: requests: unknown request {r!r}; choose from "
                                  f"{', '.join(REQUESTS)}")
        self.classifier_config()
        self.unlearn_config()

    def classifier_config(self) -> Any:
        """The resolved :class:`ClassifierConfig`."""
        from trustrec.federated.classify import ClassifierConfig

        return build_config(ClassifierConfig, self.classifier, where="classifier")

    def unlearn_config(self) -> Any:
        """The resolved :class:`FedUnlearnConfig`."""
        from trustrec.fedunlearn.methods import FedUnlearnConfig

        return build_config(FedUnlearnConfig, self.unlearn, where="unlearn")

    def cells(self) -> list[FedUnlearnCell]:
        """Every cell in spec order (``mask`` only on class requests)."""
        from trustrec.fedunlearn.methods import APPLIES

        return [FedUnlearnCell(d, r, t, m, s)
                for d, r, t, s, m in product(self.datasets, self.requests, self.targets,
                                             self.seeds, self.methods)
                if r in APPLIES.get(m, (r,))]


@dataclass(frozen=True, order=True)
class FedUnlearnCell:
    """One point of the federated-unlearning grid."""

    dataset: str
    request: str
    target: int
    method: str
    seed: int

    @property
    def id(self) -> str:
        """Stable id and folder, e.g. ``digits/class3/fedaf/seed0``."""
        return f"{self.dataset}/{self.request}{self.target}/{self.method}/seed{self.seed}"

    def axes(self) -> dict[str, Any]:
        """The axis values as a dict."""
        return dataclasses.asdict(self)


def _load(label: str) -> Any:
    from trustrec.data.images import load_digits

    return load_digits()


def _federation(ctx: TableContext, dataset: str, request: str, target: int, seed: int
                ) -> Any:
    from trustrec.fedunlearn.federation import make_digits_federation

    spec = ctx.spec
    return make_digits_federation(request, target, n_clients=spec.n_clients,
                                  alpha=spec.dirichlet, seed=seed, data=ctx.dataset(dataset))


def _original_key(cell: FedUnlearnCell) -> tuple[str, str, int, int]:
    return (cell.dataset, cell.request, cell.target, cell.seed)


def _original_config(ctx: TableContext, dataset: str, request: str, target: int, seed: int
                     ) -> dict[str, Any]:
    from trustrec.config import to_dict

    spec = ctx.spec
    return {"dataset": dataset, "request": request, "target": target, "seed": seed,
            "n_clients": spec.n_clients, "dirichlet": spec.dirichlet,
            "classifier": to_dict(spec.classifier_config())}


def _original(ctx: TableContext, dataset: str, request: str, target: int, seed: int
              ) -> tuple[Any, Any, float]:
    """The federation, its original model (trained once, stored) and its training
    seconds."""
    from trustrec.fedunlearn.methods import train_original

    fed = _federation(ctx, dataset, request, target, seed)
    params, seconds = ctx.weights(
        ("original", dataset, request, target, seed),
        _original_config(ctx, dataset, request, target, seed),
        lambda: train_original(fed, ctx.spec.classifier_config(), seed))
    return fed, params, seconds


@EXPERIMENTS.register("fedunlearn")
class FedUnlearnExperiment(Experiment):
    """The federated-unlearning experiment kind (see the module docstring)."""

    name = "fedunlearn"
    title = "trustrec federated unlearning benchmark"
    spec_class = FedUnlearnSpec
    axes = ("dataset", "request", "target", "method", "seed")
    numeric_axes: ClassVar[dict[str, type]] = {"seed": int, "target": int}
    source_packages = ("data", "federated", "fedunlearn")
    report_module = "trustrec.bench.experiments.fedunlearn_report"

    def context(self, spec: FedUnlearnSpec, progress: bool = False) -> TableContext:
        """The image table (checked once)."""
        return TableContext(spec, _load, progress)

    private_dirs = (WEIGHTS_DIR, "plots")

    def check_dataset(self, ctx: TableContext, label: str) -> None:
        """Build every federation of the spec, so that a bad split (a client with one
        class) fails the run before any cell starts."""
        for request, target, seed in product(ctx.spec.requests, ctx.spec.targets,
                                             ctx.spec.seeds):
            _federation(ctx, label, request, target, seed)

    def cell_from_axes(self, axes: dict[str, Any]) -> FedUnlearnCell:
        """The cell with these axes."""
        return FedUnlearnCell(**axes)

    def stages(self, ctx: TableContext, pending: Sequence[FedUnlearnCell]) -> list[Stage]:
        """The original models the pending cells start from, skipping stored ones (every
        method of a (request, target, seed) starts from the same one)."""
        keys = list(dict.fromkeys(_original_key(c) for c in pending))
        return [Stage("original", [list(k) for k in keys
                                   if not ctx.has_weights(("original", *k),
                                                          _original_config(ctx, *k))])]

    def dependencies(self, cell: FedUnlearnCell) -> list[tuple[str, Any]]:
        """Its original model."""
        return [("original", list(_original_key(cell)))]

    def describe_key(self, stage: str, key: Any) -> str:
        """``original digits/class/3/0``."""
        return f"original {'/'.join(str(v) for v in key)}"

    def run_stage(self, ctx: TableContext, stage: str, key: Any) -> None:
        """Train and store an original model."""
        _original(ctx, *key)

    def cell_config(self, ctx: TableContext, cell: FedUnlearnCell) -> dict[str, Any]:
        """The cell's resolved config."""
        from trustrec.config import to_dict

        spec = ctx.spec
        return {"cell": cell.axes(), "id": cell.id, "n_clients": spec.n_clients,
                "dirichlet": spec.dirichlet, "classifier": to_dict(spec.classifier_config()),
                "unlearn": to_dict(spec.unlearn_config()),
                "original": ctx.artefact_fingerprint(_original_config(ctx, *_original_key(cell)))}

    def compute_cell(self, ctx: TableContext, cell: FedUnlearnCell) -> CellOutput:
        """Train, audit, unlearn (timed), audit again."""
        from trustrec.fedunlearn.audit import audit
        from trustrec.fedunlearn.methods import unlearn

        spec = ctx.spec
        clf = spec.classifier_config()
        fed, original, train_seconds = _original(ctx, *_original_key(cell))
        before = audit(fed, original, cell.seed)
        t0 = time.perf_counter()
        result = unlearn(cell.method, fed, original, spec.unlearn_config(), clf, cell.seed)
        seconds = time.perf_counter() - t0
        after = audit(fed, result.params, cell.seed)
        metrics = {**after, **{f"before_{k}": v for k, v in before.items()},
                   "seconds": seconds, "train_seconds": train_seconds,
                   "rounds": float(result.rounds), "train_rounds": float(clf.rounds)}
        return CellOutput(metrics)

    def summary_line(self, metrics: dict[str, float], k: int) -> str:
        """Forget and retain measures, MIA, relearning."""
        g = functools.partial(metric_text, metrics)
        return (f"forget {g('forget', '.3f')} (before {g('before_forget', '.3f')}), retain "
                f"{g('retain', '.3f')}, MIA AUC {g('mia_auc', '.3f')}, relearn "
                f"{g('relearn', '.3f')}, {g('seconds', '.2f')} s")
