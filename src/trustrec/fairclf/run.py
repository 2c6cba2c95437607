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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustrec.config import build_config
from trustrec.errors import ConfigError
from trustrec.fairclf.federation import FairFederation
from trustrec.federated.classify import ClassifierConfig, Params, predict_proba


@dataclass(frozen=True)
class FairMethod:
    """A method's place in the table above."""

    federated: bool
    knob: str | None
    binary_only: bool = False
    config: type | None = None


def _methods() -> dict[str, FairMethod]:
    from trustrec.fairclf.fedfact import FedFACTConfig
    from trustrec.fairclf.inprocess import FairInConfig
    from trustrec.fairclf.optfair import OptFairConfig
    from trustrec.fairclf.wassffed import WassFFedConfig

    return {
        "fedavg": FairMethod(True, None),
        "fedfact-post": FairMethod(True, "xi", config=FedFACTConfig),
        "fedfact-in": FairMethod(True, "xi", config=FairInConfig),
        "wassffed": FairMethod(True, "alpha", True, WassFFedConfig),
        "erm": FairMethod(False, None),
        "optfair-post": FairMethod(False, "xi", config=OptFairConfig),
        "optfair-in": FairMethod(False, "xi", config=FairInConfig),
        "fairlearn-expgrad": FairMethod(False, "xi", True),
        "fairlearn-threshold": FairMethod(False, None, True),
    }


FAIR_METHODS = _methods()


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


def _argmax(params: Params, xs: list) -> list[np.ndarray]:
    return [predict_proba(params, x).argmax(1) for x in xs]


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
    clf = clf or ClassifierConfig()
    federated = fed.n_clients > 1
    rounds = clf.rounds if federated else 0
    opts = (configs or {}).get(name)
    x_test = fed.x("test")

    def hook(r: int, params: Params) -> None:
        if on_round is not None:
            on_round(r, _argmax(params, x_test))

    if name in ("fedavg", "erm"):
        from trustrec.fairclf.fedfact import fit_labels

        params = fit_labels(fed, clf, seed, on_round=hook)
        return FairRun(_argmax(params, x_test), rounds)
    if name in ("fedfact-in", "optfair-in"):
        from trustrec.fairclf.inprocess import fit_fair_inprocess

        margin = local_margin if name == "fedfact-in" and federated else None
        cfg = method_config(name, opts, criterion=criterion, xi=xi,
                            xi_local=None if margin is None else xi + margin)
        params, lam = fit_fair_inprocess(fed, cfg, clf, seed, on_round=hook)
        return FairRun(_argmax(params, x_test), rounds,
                       {"max_abs_lambda": float(np.abs(lam).max())})
    if name == "wassffed":
        from trustrec.fairclf.wassffed import fit_wassffed

        params = fit_wassffed(fed, method_config(name, opts, alpha=alpha), clf, seed,
                              on_round=hook)
        return FairRun(_argmax(params, x_test), rounds)
    if name == "fedfact-post":
        from trustrec.fairclf.fedfact import FedFACTPost, fit_joint, joint_proba

        margin = local_margin if federated else None
        cfg = method_config(name, opts, criterion=criterion, xi=xi,
                            xi_local=None if margin is None else xi + margin)
        joint = fit_joint(fed, clf, seed) if joint is None else joint
        shape = (data.n_groups, data.n_classes)
        fact = FedFACTPost(cfg).fit([joint_proba(joint, x, *shape) for x in fed.x("hold")])
        pred = [fact.predict(k, joint_proba(joint, x, *shape)) for k, x in enumerate(x_test)]
        return FairRun(pred, rounds + fact.rounds_ if federated else 0,
                       {"dual_rounds": fact.rounds_, "dual_converged": fact.dual_converged_})
    tr, ho, te = fed.train[0], fed.hold[0], fed.test[0]
    if name == "optfair-post":
        from trustrec.fairclf.optfair import OptFairPost

        cfg = method_config(name, opts, criterion=criterion, xi=xi)
        model = OptFairPost(cfg).fit(data.x[tr], data.y[tr], data.group[tr], data.x[ho],
                                     data.n_classes, data.n_groups)
        return FairRun([model.predict(data.x[te])], 0,
                       {"dual_converged": model.dual_converged_})
    from trustrec.fairclf.peers import fairlearn_predict

    method_config(name, opts)
    bound = xi if xi is not None else 0.0
    pred = fairlearn_predict(name, criterion, bound, data.x[tr], data.y[tr], data.group[tr],
                             data.x[te], data.group[te], seed)
    return FairRun([pred], 0)

