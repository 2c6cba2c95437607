"""Federated recommenders: FedMF, FedNCF, PFedRec and FedRecGEL on the one core.

Each method is a typed config (its defaults are the released code's, where known) that
names its architecture (:mod:`~trustrec.federated.arch`), how clients train
(:class:`~trustrec.federated.local.LocalOptions`) and how the server aggregates and steps
(:class:`~trustrec.federated.server.ServerOptions`). Found by name in :data:`FEDERATED`.

Protocol choices shared by all (the papers' code differs; ours is stated once here):

- Implicit feedback, BCE-with-logits on every training positive plus ``n_neg`` fresh
  negatives per positive each round (FedMF's paper uses squared error on ratings; on
  implicit data the others' BCE protocol is the comparable one).
- A client trains on all its rows at once (one full batch per local epoch): clients
  hold ~100 rows on ML-100K, about one of the released code's batches.
- Rounds are chosen on validation (the released FedRecGEL/FedRAP code picks the best
  round on test); see :mod:`~trustrec.federated.fit`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from trustrec.config import (
    Configured,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    one_of,
    typed_config,
)
from trustrec.errors import ConfigError
from trustrec.federated.aggregate import AGGREGATORS
from trustrec.federated.arch import MF, NCF, Architecture, ScoreFunction
from trustrec.federated.local import LocalOptions
from trustrec.federated.server import ServerOptions
from trustrec.registry import Registry

AGGREGATOR_NAMES = ("sum", *AGGREGATORS)


@typed_config
class FederationConfig:
    """Options every federated method has.

    Attributes:
        rounds: communication rounds (the maximum, with ``patience``).
        participation: share of clients sampled per round, in (0, 1].
        n_neg: negatives per training positive, drawn fresh each round by each client.
        eval_every: rounds between validation evaluations (the best one is kept).
        patience: validation evaluations without improvement before stopping (0: never).
        aggregator: ``mean``, ``sum``, ``median``, ``trimmed_mean`` or ``krum``
            (:mod:`~trustrec.federated.aggregate`).
        weighting: ``mean``'s client weights, ``uniform`` or ``examples``.
        trim: share cut from each end by ``trimmed_mean``.
        malicious: Krum's assumed number of Byzantine clients.
        keep: Multi-Krum's number of averaged uploads (0: Krum).
        server_optimizer: ``sgd`` or ``adam`` on the aggregated upload.
        server_lr: the server optimiser's learning rate.
        init_scale: standard deviation of the embeddings' normal initialisation.
        max_rows: the in-process runtime's batch budget in rows (memory bound; see
            :class:`~trustrec.federated.server.ServerOptions`).
        num_threads: torch threads while training (0 keeps torch's setting).
    """

    rounds: PositiveInt = 100
    participation: UnitInterval = 0.1
    n_neg: PositiveInt = 4
    eval_every: PositiveInt = 5
    patience: NonNegativeInt = 0
    aggregator: Annotated[str, one_of(AGGREGATOR_NAMES, "aggregator")] = "mean"
    weighting: Literal["uniform", "examples"] = "uniform"
    trim: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    malicious: NonNegativeInt = 0
    keep: NonNegativeInt = 0
    server_optimizer: Literal["sgd", "adam"] = "adam"
    server_lr: PositiveFloat = 0.001
    init_scale: NonNegativeFloat = 0.01
    max_rows: PositiveInt = 1 << 14
    num_threads: NonNegativeInt = 1


class FedMethod(Configured):
    """A federated recommender: architecture + local options + server options."""

    name: ClassVar[str] = ""

    def architecture(self) -> Architecture:
        """The model being federated."""
        raise NotImplementedError

    def local_options(self, n_items: int) -> LocalOptions:
        """How clients train."""
        raise NotImplementedError

    def server_options(self) -> ServerOptions:
        """How the server samples, aggregates and steps."""
        c = self.config
        if c.weighting == "examples" and c.aggregator != "mean":
            raise ConfigError(f"weighting='examples' weights the mean; aggregator "
                              f"{c.aggregator!r} takes no weights")
        return ServerOptions(participation=c.participation, aggregator=c.aggregator,
                             weighting=c.weighting, trim=c.trim, malicious=c.malicious,
                             keep=c.keep, optimizer=c.server_optimizer, lr=c.server_lr,
                             n_neg=c.n_neg, max_rows=c.max_rows)

    def centralised(self) -> tuple[str, dict[str, Any]]:
        """The registered centralised model of the same architecture (the ceiling)."""
        raise NotImplementedError


FEDERATED: Registry[type[FedMethod]] = Registry("federated method")


def make_federated(name: str, config: Any = None) -> FedMethod:
    """The federated method registered as ``name`` (``config``: its typed config, a dict
    of options, or None for the defaults)."""
    from trustrec.config import build_config
    cls = FEDERATED.get(name)
    if isinstance(config, dict):
        config = build_config(cls.Config, config, where=f"federated method {name!r}")
    return cls(config)


@typed_config
class FedMFConfig(FederationConfig):
    """FedMF (Chai et al., IEEE Intelligent Systems 2020): private user vectors, the item
    matrix updated by the sum of the clients' item gradients.

    Attributes:
        dim: embedding dimension.
        lr: the clients' SGD step on their user vector (FedMF's code folds one lr into
            the user step and the item gradients; ``server_lr`` is the item step here).
            0.01: on the tuning seeds (100, 101) 0.05 and 0.02 diverged within 20 rounds
            and 0.01 reached validation NDCG@10 0.21.
        reg: L2 weight on the rows a client reads.
    """

    dim: PositiveInt = 32
    lr: PositiveFloat = 0.01
    reg: NonNegativeFloat = 0.0
    participation: UnitInterval = 1.0
    aggregator: Annotated[str, one_of(AGGREGATOR_NAMES, "aggregator")] = "sum"
    server_optimizer: Literal["sgd", "adam"] = "sgd"
    server_lr: PositiveFloat = 0.01


@FEDERATED.register("fedmf")
class FedMF(FedMethod):
    """FedMF on implicit feedback.

    A client computes its loss (BCE, summed over its rows) at the received item rows and
    its private user vector, steps its user vector by SGD (``lr``) and uploads the
    item-row gradients; the server adds them up (``aggregator="sum"``, FedMF's
    ``V ← V − Σ g``) and steps by ``server_lr``. Departures: BCE with sampled negatives
    instead of squared error on ratings (implicit data); the user step and the item
    gradients use the same received point (FedMF's code takes the item gradient after the
    user step, one rating at a time); no homomorphic encryption (it changes privacy, not
    the model).
    """

    Config = FedMFConfig
    name = "fedmf"

    def architecture(self) -> Architecture:  # noqa: D102
        return MF(self.config.dim, self.config.init_scale)

    def local_options(self, n_items: int) -> LocalOptions:  # noqa: D102
        c = self.config
        return LocalOptions(upload="gradient", private_optimizer="sgd", private_lr=c.lr,
                            reduction="sum", reg=c.reg)

    def centralised(self) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return "bcemf", {"dim": self.config.dim}


@typed_config
class FedNCFConfig(FederationConfig):
    """FedNCF as FedRecGEL's code runs it (Perifanis & Efraimidis, KBS 2022).

    Attributes:
        gmf_dim: GMF embedding width.
        mlp_dim: MLP embedding width (the tower's input is ``2 * mlp_dim``).
        layers: the MLP tower's hidden sizes.
        local_lr: the client's Adam step on its user embeddings (kept between rounds).
        loss_scale: the client's loss is ``loss_scale ×`` its summed BCE (the released
            code sums the mean BCE of 128-row chunks: ≈ sum / 128).
    """

    gmf_dim: PositiveInt = 32
    mlp_dim: PositiveInt = 128
    layers: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (128, 64, 32)
    local_lr: PositiveFloat = 0.1
    loss_scale: PositiveFloat = 1.0 / 128


@FEDERATED.register("fedncf")
class FedNCF(FedMethod):
    """FedNCF: NeuMF with private user embeddings and shared item embeddings and tower.

    As in FedRecGEL's released baseline: 10 % of clients per round; each takes one
    step, uploads the gradient of the shared parameters, and moves its user embeddings
    with its own persistent Adam (lr 0.1); the server averages the gradients (uniform)
    and takes an Adam step of lr 0.001 (the code's hard-coded server rate). The paper's
    MF-FedAvg decomposition and secure aggregation are not part of this baseline.
    """

    Config = FedNCFConfig
    name = "fedncf"

    def architecture(self) -> Architecture:  # noqa: D102
        c = self.config
        return NCF(c.gmf_dim, c.mlp_dim, c.layers, c.init_scale)

    def local_options(self, n_items: int) -> LocalOptions:  # noqa: D102
        c = self.config
        return LocalOptions(upload="gradient", private_optimizer="adam",
                            private_lr=c.local_lr, reduction="sum", loss_scale=c.loss_scale,
                            **self._sam())

    def _sam(self) -> dict[str, float]:
        return {}

    def centralised(self) -> tuple[str, dict[str, Any]]:  # noqa: D102
        c = self.config
        return "neumf", {"gmf_dim": c.gmf_dim, "mlp_dim": c.mlp_dim, "layers": c.layers,
                         "n_neg": c.n_neg}


@typed_config
class FedRecGELConfig(FedNCFConfig):
    """FedRecGEL: FedNCF plus client-side SAM.

    Attributes:
        rho_shared: SAM radius on the shared parameters (item embeddings, tower, output).
        rho_private: SAM radius on the private user embeddings.
    """

    rho_shared: NonNegativeFloat = 0.02
    rho_private: NonNegativeFloat = 0.02


@FEDERATED.register("fedrecgel")
class FedRecGEL(FedNCF):
    """FedRecGEL (Yu et al., WWW 2026): sharpness-aware federated recommendation.

    Item-centred multi-task view: every client's loss is a task over the shared item
    embeddings, and SAM seeks shared parameters whose loss stays low when perturbed, so
    they generalise across clients. As in the released code: each client perturbs the
    shared group by ``ρ_sh g_sh/‖g_sh‖`` and, separately, its user embeddings by
    ``ρ_ns g_ns/‖g_ns‖``, takes each group's gradient at its perturbed point (three
    passes), uploads the shared SAM gradient and steps its user embeddings with it. The
    rest is FedNCF's protocol (:class:`FedNCF`); ``rho_shared = rho_private = 0`` is
    FedNCF exactly. Only the paper's abstract is retrievable: the radii and their
    placement follow the code (``../shared/papers/federated.md``), and the defaults are
    the code's (0.02 each). On MovieLens-100K those radii did not help:
    ``benchmarks/tune_federated.py`` (seeds 100-101, 300 rounds, server rate 0.01) found
    FedRecGEL − FedNCF validation NDCG@10 of −0.004 to +0.002 at 0.02 / 0.02, and the
    largest gain, +0.0055, at ``rho_shared = 0.2``, ``rho_private = 0.02`` (the radii the
    bench spec and the effect test use).
    """

    Config = FedRecGELConfig
    name = "fedrecgel"

    def _sam(self) -> dict[str, float]:
        return {"rho_shared": self.config.rho_shared, "rho_private": self.config.rho_private}


@typed_config
class PFedRecConfig(FederationConfig):
    """PFedRec's options (released code's defaults).

    Attributes:
        dim: item embedding width.
        lr: SGD rate of the private score function.
        lr_eta: the item embedding's SGD rate is ``lr × n_items × lr_eta``.
        local_epochs: local epochs per round.
    """

    dim: PositiveInt = 32
    lr: PositiveFloat = 0.1
    lr_eta: PositiveFloat = 80.0
    local_epochs: PositiveInt = 1
    participation: UnitInterval = 1.0
    server_optimizer: Literal["sgd", "adam"] = "sgd"
    server_lr: PositiveFloat = 1.0


@FEDERATED.register("pfedrec")
class PFedRec(FedMethod):
    """PFedRec (Zhang et al., IJCAI 2023): dual personalisation.

    No user embedding: each client keeps a private score function ``(w_u, b_u)`` on the
    shared item embeddings. Per local epoch the client steps its score function (SGD,
    ``lr``), then recomputes the loss and steps its copy of the item rows (SGD,
    ``lr · n_items · lr_eta``); it uploads its item-row delta and the server averages the
    clients' tables (FedAvg: SGD of lr 1 on the mean delta), every client every round.
    Departure: the released code scores each client with its own fine-tuned copy of the
    item table from its last round. Those rows differ from the global table only on the
    items the client trained on: its positives, which full-sort evaluation excludes, and
    that round's random negatives. Keeping one stale table per client costs
    ``n_clients × n_items × dim`` floats, so clients score with the current global
    table and their private score function.
    """

    Config = PFedRecConfig
    name = "pfedrec"

    def architecture(self) -> Architecture:  # noqa: D102
        return ScoreFunction(self.config.dim, self.config.init_scale)

    def local_options(self, n_items: int) -> LocalOptions:  # noqa: D102
        c = self.config
        return LocalOptions(upload="delta", local_epochs=c.local_epochs,
                            local_lr=c.lr * n_items * c.lr_eta, private_optimizer="sgd",
                            private_lr=c.lr, alternate=True, reduction="mean")

    def centralised(self) -> tuple[str, dict[str, Any]]:  # noqa: D102
        return "bcemf", {"dim": self.config.dim}
