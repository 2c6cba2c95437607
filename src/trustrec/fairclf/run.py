"""Every fair-classification method behind one call: :func:`run_fair_method` trains a
method on a :class:`~trustrec.fairclf.federation.FairFederation` and returns its hard
predictions on each client's test rows.

- ``fedavg`` (federated): FedAvg on the labels, unconstrained.
- ``fedfact-post`` (federated, ξ): :mod:`~trustrec.fairclf.fedfact`.
- ``fedfact-in`` (federated, ξ): :mod:`~trustrec.fairclf.inprocess`.
- ``wassffed`` (federated, α; binary): :mod:`~trustrec.fairclf.wassffed`.
- ``erm`` (central): the same model trained on one client, unconstrained.
- ``optfair-post`` (central, ξ): :mod:`~trustrec.fairclf.optfair`.
- ``optfair-in`` (central, ξ): :mod:`~trustrec.fairclf.inprocess` with one client.
- ``fairlearn-expgrad`` (central, ξ; binary) and ``fairlearn-threshold`` (central;
  binary): :mod:`~trustrec.fairclf.peers`.

FedFACT's local budget is ``ξ + local_margin`` (None: no local constraint).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trustrec.config import build_config
from trustrec.errors import ConfigError
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import ClassifierConfig, Params, predict_proba


@dataclass(frozen=True)
class FairMethod:
    """A method's place in the table above, and how it runs.

    Attributes:
        federated: runs on a federation of clients (else on one client).
        knob: ``xi``, ``alpha`` or None.
        run: trains and predicts (:class:`FairCall` → :class:`FairRun`).
        binary_only: refuses a multi-class label.
        config: its typed config, if it has options.
    """

    federated: bool
    knob: str | None
    run: Callable[[FairCall], FairRun]
    binary_only: bool = False
    config: type | None = None


def fair_method(name: str) -> FairMethod:
    """The method ``name``.

    Raises:
        ConfigError: an unknown name (with the closest one).
    """
    from trustrec.config import suggest

    if name not in FAIR_METHODS:
        raise ConfigError(f"unknown fair-classification method {name!r}"
                          f"{suggest(name, list(FAIR_METHODS))}")
    return FAIR_METHODS[name]


#: Config fields a run sets from its own arguments (the bench's axes), never from options.
RUN_FIELDS = ("criterion", "xi", "xi_local", "alpha")


def method_config(name: str, values: Mapping[str, Any] | None, **knobs: Any) -> Any:
    """The typed config of ``name`` from ``values`` with the run's ``knobs`` set (None for
    a method without options).

    Raises:
        ConfigError: options for a method without any, an option that is a run field
            (:data:`RUN_FIELDS`), or a bad value.
    """
    cls = fair_method(name).config
    values = dict(values or {})
    if cls is None:
        if values:
            raise ConfigError(f"{name} takes no options; got {sorted(values)}")
        return None
    fixed = sorted(set(values) & set(RUN_FIELDS))
    if fixed:
        raise ConfigError(f"method_configs.{name}: {', '.join(fixed)} is set by the run (the "
                          "criteria, xis, alphas and local_margin of a spec), not here")
    return build_config(cls, {**values, **knobs}, where=f"method_configs.{name}")


@dataclass
class FairRun:
    """What :func:`run_fair_method` returns.

    Attributes:
        pred: hard predictions per client's test rows.
        rounds: communication rounds (training plus, for FedFACT post-processing, the
            dual's rounds); 0 for centralised methods.
        info: method-specific facts (dual convergence, final multipliers ...).
    """

    pred: list[np.ndarray]
    rounds: int
    info: dict[str, Any] = field(default_factory=dict)


RoundCallback = Callable[[int, list[np.ndarray]], None]


def run_fair_method(name: str, fed: FairFederation, criterion: str, *, xi: float | None = None,
                    alpha: float | None = None, local_margin: float | None = 0.01,
                    clf: ClassifierConfig | None = None,
                    configs: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
                    on_round: RoundCallback | None = None, joint: Params | None = None
                    ) -> FairRun:
    """Train ``name`` on ``fed`` and predict its test rows (see the module docstring).

    Args:
        name: a method of the table.
        fed: the federation (centralised methods need exactly one client).
        criterion: ``dp``, ``eop`` or ``eodds``.
        xi: the budget of ξ methods.
        alpha: WassFFed's cross-entropy weight.
        local_margin: FedFACT's ``ξ_l − ξ`` (None: global constraint only).
        clf: the model and FedAvg options (default :class:`ClassifierConfig`).
        configs: per method, options of its config.
        seed: root seed.
        on_round: called after each training round with the test predictions (the
            methods that predict with the model they train: not post-processing).
        joint: FedFACT post-processing's model of P(A, Y | x), already trained by
            :func:`~trustrec.fairclf.fedfact.fit_joint` on ``fed`` with ``clf`` and
            ``seed`` (a bench shares it between the cells of every ξ and criterion).

    Raises:
        ConfigError: an unknown method, a centralised method on several clients, a
            binary-only method on a multi-class label, or a missing knob.
    """
    method = fair_method(name)
    data = fed.data
    if not method.federated and fed.n_clients != 1:
        raise ConfigError(f"{name} is centralised: give it a one-client federation")
    if method.binary_only and data.n_classes != 2:
        raise ConfigError(f"{name} is binary; {data.name}'s label has {data.n_classes} classes")
    if method.knob == "xi" and xi is None or method.knob == "alpha" and alpha is None:
        raise ConfigError(f"{name} needs its {method.knob}")
    call = FairCall(name, fed, criterion, xi, alpha, local_margin, clf or ClassifierConfig(),
                    (configs or {}).get(name), seed, on_round, joint)
    return method.run(call)


@dataclass(frozen=True)
class FairCall:
    """One run's resolved arguments (see :func:`run_fair_method`)."""

    name: str
    fed: FairFederation
    criterion: str
    xi: float | None
    alpha: float | None
    local_margin: float | None
    clf: ClassifierConfig
    opts: Mapping[str, Any] | None
    seed: int
    on_round: RoundCallback | None
    joint: Params | None

    @property
    def federated(self) -> bool:  # noqa: D102
        return self.fed.n_clients > 1

    @property
    def rounds(self) -> int:
        """Training's communication rounds (0 for one client)."""
        return self.clf.rounds if self.federated else 0

    @property
    def xi_local(self) -> float | None:
        """FedFACT's local budget (None: centralised, or no local constraint)."""
        if not self.federated or self.local_margin is None or self.xi is None:
            return None
        return self.xi + self.local_margin

    def config(self, **knobs: Any) -> Any:
        """The method's config with the run's knobs."""
        return method_config(self.name, self.opts, **knobs)

    @functools.cached_property
    def x_test(self) -> list[torch.Tensor]:
        """Each client's standardised test rows (once per run: the hook reads them every
        round)."""
        return self.fed.x("test")

    def predict(self, params: Params) -> list[np.ndarray]:
        """The model's test predictions per client."""
        return [predict_proba(params, x).argmax(1) for x in self.x_test]

    def hook(self, r: int, params: Params) -> None:
        """The per-round callback."""
        if self.on_round is not None:
            self.on_round(r, self.predict(params))


def _labels(c: FairCall) -> FairRun:
    from trustrec.fairclf.fedfact import fit_labels

    return FairRun(c.predict(fit_labels(c.fed, c.clf, c.seed, on_round=c.hook)), c.rounds)


def _inprocess(c: FairCall) -> FairRun:
    from trustrec.fairclf.inprocess import fit_fair_inprocess

    xi_local = c.xi_local if c.name == "fedfact-in" else None
    cfg = c.config(criterion=c.criterion, xi=c.xi, xi_local=xi_local)
    params, lam = fit_fair_inprocess(c.fed, cfg, c.clf, c.seed, on_round=c.hook)
    return FairRun(c.predict(params), c.rounds, {"max_abs_lambda": float(np.abs(lam).max())})


def _wassffed(c: FairCall) -> FairRun:
    from trustrec.fairclf.wassffed import fit_wassffed

    params = fit_wassffed(c.fed, c.config(alpha=c.alpha), c.clf, c.seed, on_round=c.hook)
    return FairRun(c.predict(params), c.rounds)


def _fedfact_post(c: FairCall) -> FairRun:
    from trustrec.fairclf.fedfact import FedFACTPost, fit_joint, joint_proba

    cfg = c.config(criterion=c.criterion, xi=c.xi, xi_local=c.xi_local)
    joint = fit_joint(c.fed, c.clf, c.seed) if c.joint is None else c.joint
    shape = (c.fed.data.n_groups, c.fed.data.n_classes)
    fact = FedFACTPost(cfg).fit([joint_proba(joint, x, *shape) for x in c.fed.x("hold")])
    pred = [fact.predict(k, joint_proba(joint, x, *shape))
            for k, x in enumerate(c.x_test)]
    return FairRun(pred, c.rounds + fact.rounds_ if c.federated else 0,
                   {"dual_rounds": fact.rounds_, "dual_converged": fact.dual_converged_})


def _optfair_post(c: FairCall) -> FairRun:
    from trustrec.fairclf.optfair import OptFairPost

    d, tr, ho, te = c.fed.data, c.fed.train[0], c.fed.hold[0], c.fed.test[0]
    model = OptFairPost(c.config(criterion=c.criterion, xi=c.xi)).fit(
        d.x[tr], d.y[tr], d.group[tr], d.x[ho], d.n_classes, d.n_groups)
    return FairRun([model.predict(d.x[te])], 0, {"dual_converged": model.dual_converged_})


def _fairlearn(c: FairCall) -> FairRun:
    from trustrec.fairclf.peers import fairlearn_predict

    c.config()
    d, tr, te = c.fed.data, c.fed.train[0], c.fed.test[0]
    pred = fairlearn_predict(c.name, c.criterion, c.xi if c.xi is not None else 0.0,
                             d.x[tr], d.y[tr], d.group[tr], d.x[te], d.group[te], c.seed)
    return FairRun([pred], 0)


def _methods() -> dict[str, FairMethod]:
    from trustrec.fairclf.fedfact import FedFACTConfig
    from trustrec.fairclf.inprocess import FairInConfig
    from trustrec.fairclf.optfair import OptFairConfig
    from trustrec.fairclf.wassffed import WassFFedConfig

    return {
        "fedavg": FairMethod(True, None, _labels),
        "fedfact-post": FairMethod(True, "xi", _fedfact_post, config=FedFACTConfig),
        "fedfact-in": FairMethod(True, "xi", _inprocess, config=FairInConfig),
        "wassffed": FairMethod(True, "alpha", _wassffed, True, WassFFedConfig),
        "erm": FairMethod(False, None, _labels),
        "optfair-post": FairMethod(False, "xi", _optfair_post, config=OptFairConfig),
        "optfair-in": FairMethod(False, "xi", _inprocess, config=FairInConfig),
        "fairlearn-expgrad": FairMethod(False, "xi", _fairlearn, True),
        "fairlearn-threshold": FairMethod(False, None, _fairlearn, True),
    }


FAIR_METHODS = _methods()
