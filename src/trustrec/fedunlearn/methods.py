"""Federated unlearning methods, found by name in :data:`FED_UNLEARNERS`: FedAF and its
baselines, plus two negative controls. Each takes the trained federation's weights and
returns new weights and the communication rounds it used.

- ``fedaf`` — FedAF (Li et al., arXiv 2307.03363, KBS 2025): *new memories overwrite the
  target*. ``teachers`` untrained networks (keyed draws of the same architecture, every
  weight ``N(0, 1/d)`` with ``d`` the input width) label each forget row; their mean
  softmax is debiased — the target column zeroed (the paper rescales it; zero makes the
  new label never the target), L1-normalised — and its argmax is the row's new memory.
  ``unlearn_rounds`` rounds (the paper: one; eight here, see the config) in which each
  client holding forget rows minimises ``CE(new memories) + CE(retained) +
  (λ/2) Σ F (θ − θ*)²`` (an EWC anchor with the diagonal Fisher of the client's
  **retained** rows: the released code computes it on all rows, forget set included),
  then ``repair_rounds`` plain FedAvg rounds on the retained rows.
  Two choices the paper leaves open, made on the development seed 0 (class 3 and a
  backdoor to 3; the tests and the bench report other seeds): only the clients holding
  forget rows take part in the unlearning rounds (``forgetters_only``: with every client,
  the others' unchanged models averaged a backdoor's new memories away — attack success
  0.50 against 0.10), and the two cross-entropies are separate means (``balance``).
  Departure: the lineage code writes the retained term with a minus sign (ascent on the
  retained rows), which contradicts the paper's aim of preserving them; here it is a
  descent term.
- ``retrain`` — FedAvg from scratch on the retained rows, as many rounds as the original
  training (the gold standard, at full cost).
- ``finetune`` — ``unlearn_rounds + repair_rounds`` FedAvg rounds on the retained rows
  from θ* (FedAF's budget: forgetting by catastrophic interference only).
- ``gradient-ascent`` — one round in which clients ascend the cross-entropy of their forget
  rows at step ``ascent_lr`` (a client without any sends θ* back, with the weight of one
  row), then ``repair_rounds`` on the retained rows.
- ``none`` (control) — θ* unchanged.
- ``mask`` (control that only hides the obvious trace; class requests) — the target
  class's output bias lowered by one more than the largest margin it wins by on the
  forget rows: forget-class accuracy drops to ~zero at once, but every other weight
  still encodes the class; the relearning audit catches it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.errors import ConfigError
from trustrec.federated.classify import (
    ClassifierConfig,
    LocalTask,
    Params,
    StaticTasks,
    fit_federated_classifier,
    forward,
    init_params,
    one_hot,
)
from trustrec.fedunlearn.federation import N_CLASSES, UnlearnFederation
from trustrec.registry import Registry
from trustrec.seeding import child_seed


@typed_config
class FedUnlearnConfig:
    """Options of the unlearning methods.

    Attributes:
        teachers: FedAF's random teachers.
        anchor_weight: FedAF's EWC weight λ.
        unlearn_rounds: FedAF's rounds on new memories (the paper: one; eight here: on the
            development seed 0, backdoors to 1, 5 and 8 kept 0.38 / 0.19 / 0.19 attack
            success after three rounds and 0.13 / 0.05 / 0.02 after eight, at the same
            retained accuracy; a stop rule on the clients' own forget rows stopped too
            early — the poisoned rows themselves are forgotten long before the trigger).
        balance: FedAF's two cross-entropies as separate means (each half the weight)
            rather than one mean over all rows, where a small forget set is drowned.
        forgetters_only: only the clients holding forget rows take part in the
            unlearning rounds (the others' unchanged models would average the new
            memories away); every client takes part in the repair rounds.
        repair_rounds: plain rounds on the retained rows after the unlearning round.
        ascent_lr: the local step of gradient ascent.
    """

    teachers: PositiveInt = 10
    anchor_weight: NonNegativeFloat = 10.0
    unlearn_rounds: PositiveInt = 8
    balance: bool = True
    forgetters_only: bool = True
    repair_rounds: NonNegativeInt = 1
    ascent_lr: PositiveFloat = 0.05


@dataclass
class Unlearned:
    """A method's result: the weights and the communication rounds spent."""

    params: Params
    rounds: int


Method = Callable[[UnlearnFederation, Params, FedUnlearnConfig, ClassifierConfig, int],
                  Unlearned]
FED_UNLEARNERS: Registry[Method] = Registry("federated unlearning method")
#: The methods that apply to each request.
APPLIES = {"mask": ("class",)}


def train_original(fed: UnlearnFederation, clf: ClassifierConfig, seed: int) -> Params:
    """FedAvg on every row (the model a request arrives at)."""
    tasks = [LocalTask(one_hot(y, N_CLASSES)) for y in fed.y]
    return fit_federated_classifier(StaticTasks(fed.x, tasks), N_CLASSES, clf, seed)


def _retained_fit(fed: UnlearnFederation, clf: ClassifierConfig, seed: int, rounds: int,
                  init: Params | None, first_round: int) -> Params:
    kept = [fed.retained(k) for k in range(fed.n_clients)]
    tasks = [LocalTask(one_hot(y, N_CLASSES)) for _, y in kept]
    return fit_federated_classifier(StaticTasks([x for x, _ in kept], tasks), N_CLASSES, clf,
                                    seed, init=init, rounds=rounds, first_round=first_round)


@FED_UNLEARNERS.register("none")
def _none(fed, params, cfg, clf, seed) -> Unlearned:
    return Unlearned({k: v.clone() for k, v in params.items()}, 0)


@FED_UNLEARNERS.register("mask")
def _mask(fed, params, cfg, clf, seed) -> Unlearned:
    if fed.request != "class":
        raise ConfigError("the mask control applies to class requests only")
    out = {k: v.clone() for k, v in params.items()}
    xf, _ = fed.all_forgotten()
    with torch.no_grad():
        logits = forward(params, xf)
        others = logits.clone()
        others[:, fed.target] = -torch.inf
        margin = float((logits[:, fed.target] - others.max(1).values).max())
    out[f"b{len(params) // 2 - 1}"][fed.target] -= max(margin, 0.0) + 1.0
    return Unlearned(out, 0)


@FED_UNLEARNERS.register("retrain")
def _retrain(fed, params, cfg, clf, seed) -> Unlearned:
    return Unlearned(_retained_fit(fed, clf, seed, clf.rounds, None, 0), clf.rounds)


@FED_UNLEARNERS.register("finetune")
def _finetune(fed, params, cfg, clf, seed) -> Unlearned:
    rounds = cfg.unlearn_rounds + cfg.repair_rounds
    return Unlearned(_retained_fit(fed, clf, seed, rounds, params, clf.rounds), rounds)


@FED_UNLEARNERS.register("gradient-ascent")
def _ascent(fed, params, cfg, clf, seed) -> Unlearned:
    xs, tasks = [], []
    for k in range(fed.n_clients):
        xf, yf = fed.forgotten(k)
        if len(yf) == 0:  # nothing to ascend: a zero target keeps θ* (zero gradient)
            xf, yf = fed.x[k][:1], fed.y[k][:1]
            tasks.append(LocalTask(torch.zeros(1, N_CLASSES)))
        else:
            tasks.append(LocalTask(-one_hot(yf, N_CLASSES)))
        xs.append(xf)
    ascent = dataclasses.replace(clf, lr=cfg.ascent_lr)
    out = fit_federated_classifier(StaticTasks(xs, tasks), N_CLASSES, ascent, seed,
                                   init=params, rounds=1, first_round=clf.rounds)
    out = _retained_fit(fed, clf, seed, cfg.repair_rounds, out, clf.rounds + 1)
    return Unlearned(out, 1 + cfg.repair_rounds)


def new_memories(x: torch.Tensor, target: int, clf: ClassifierConfig, teachers: int,
                 seed: int) -> np.ndarray:
    """FedAF's new labels for the forget rows ``x``: the debiased argmax of the mean
    softmax of ``teachers`` untrained networks (module docstring)."""
    scale = dataclasses.replace(clf, init_scale=1.0 / math.sqrt(x.shape[1]))
    with torch.no_grad():
        votes = torch.stack([
            torch.softmax(forward(init_params(x.shape[1], N_CLASSES, scale,
                                              child_seed(seed, "fedaf", "teacher", t)), x), 1)
            for t in range(teachers)]).mean(0).numpy()
    votes[:, target] = 0.0
    votes /= votes.sum(1, keepdims=True)
    return votes.argmax(1)


def diagonal_fisher(params: Params, x: torch.Tensor, y: np.ndarray) -> Params:
    """The empirical diagonal Fisher ``E[(∂ log p(y | x)/∂θ)²]`` over the rows (per-row
    gradients by ``torch.func``; zero for no rows)."""
    if len(y) == 0:
        return {k: torch.zeros_like(v) for k, v in params.items()}

    def logp(p: Params, xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return (torch.log_softmax(forward(p, xi[None]), 1)[0] * ti).sum()

    grads = torch.func.vmap(torch.func.grad(logp), in_dims=(None, 0, 0))(
        params, x, one_hot(y, N_CLASSES))
    return {k: (g ** 2).mean(0) for k, g in grads.items()}


@FED_UNLEARNERS.register("fedaf")
def _fedaf(fed, params, cfg, clf, seed) -> Unlearned:
    tasks = []
    for k in range(fed.n_clients):
        y = fed.y[k].copy()
        forget = fed.forget[k]
        if forget.any():
            y[forget] = new_memories(fed.x[k][torch.from_numpy(forget)], fed.target, clf,
                                     cfg.teachers, child_seed(seed, "fedaf", k))
        xr, yr = fed.retained(k)
        targets = one_hot(y, N_CLASSES)
        if forget.any() and cfg.balance:
            # CE(new memories) + CE(retained) as two means, each half the weight
            n = len(y)
            scale = np.where(forget, n / (2.0 * forget.sum()), n / (2.0 * (~forget).sum()))
            targets = targets * torch.from_numpy(scale.astype(np.float32))[:, None]
        tasks.append(LocalTask(targets, anchor=params,
                               fisher=diagonal_fisher(params, xr, yr),
                               anchor_weight=cfg.anchor_weight))
    who = [k for k in range(fed.n_clients)
           if fed.forget[k].any() or not cfg.forgetters_only]
    out = fit_federated_classifier(StaticTasks([fed.x[k] for k in who], [tasks[k] for k in who],
                                               ids=who),
                                   N_CLASSES, clf, seed, init=params, rounds=cfg.unlearn_rounds,
                                   first_round=clf.rounds)
    out = _retained_fit(fed, clf, seed, cfg.repair_rounds, out,
                        clf.rounds + cfg.unlearn_rounds)
    return Unlearned(out, cfg.unlearn_rounds + cfg.repair_rounds)


def unlearn(name: str, fed: UnlearnFederation, params: Params, cfg: FedUnlearnConfig,
            clf: ClassifierConfig, seed: int) -> Unlearned:
    """Run the method ``name`` on the request of ``fed``.

    Raises:
        UnknownNameError: an unknown method (with the closest name).
        ConfigError: a method that does not apply to the request.
    """
    method = FED_UNLEARNERS.get(name)
    if fed.request not in APPLIES.get(name, (fed.request,)):
        raise ConfigError(f"{name} does not apply to {fed.request} requests")
    return method(fed, params, cfg, clf, seed)
