"""User-oriented fairness in training: In-UCDS, In-Naive and the plain control.

A method here trains a registered model with a hook (``fit(callback=...)``) and returns
it. ``none`` trains it as it is: the control every fairness figure is compared with.

**In-UCDS** (Han et al., ACM MM 2023), stage 2: the training loss gets
``λ Σ_{(u,v)} ‖e_u − e_v‖²`` over the pairs of each disadvantaged user ``u`` with the
members ``v`` of its UCDS (stage 1, :func:`trustrec.fairness.ucds.dominant_sets`);
``e`` is every learned user table of the model (``TrainsUserTables``: BPR-MF's and
BCE-MF's factors, NeuMF's GMF and MLP tables, which the paper concatenates, LightGCN's
layer-0 table and its propagated cache). Advantaged users are the top ``top`` share by
training interactions (:func:`~trustrec.evaluate.fairness.activity_groups`, Li et al.'s
5 %). **In-Naive** is the same with each disadvantaged user's ``neighbors`` most similar
advantaged users.

How the term is optimised (a departure, the same objective): the term involves the user
tables only and no training row, so it is not added to each mini-batch's loss (the
released code adds all pairs to every batch) but applied after every epoch as its
proximal (implicit gradient) step: with ``L`` the Laplacian of the pair graph,
``E ← (I + weight·L)⁻¹ E``, the proximal operator of ``(weight/2)·Σ‖e_u − e_v‖²``
(``symmetric``, the paper's loss, which moves both ends of a pair), or, with
``symmetric = False``, only the disadvantaged end moves,
``e_u ← (e_u + weight Σ_v e_v) / (1 + weight·|N(u)|)``. Alternating a training epoch
with the proximal step is proximal-gradient splitting of ``L_rec + λR``; it works the
same way for models trained by SGD or Adam, and costs one sparse solve per epoch (not for
ALS: WMF re-solves its users exactly each epoch, erasing the step, so it lacks the
capability).
The step follows the model's learning-rate schedule (``weight × lr_decay^(epoch−1)`` for
a model with an ``lr_decay``), as the gradient steps of a loss term would: with a
constant step the pull outgrows BPR-MF's decaying updates over its hundreds of epochs.
``weight`` plays the part of ``2ηλ``: the paper's ``λ`` times the learning rate times the
steps of an epoch (its ``λ = 1e-5`` belongs to its NeuMF, Adam lr 1e-4 and 100 batches an
epoch, not to other backbones).

Defaults, chosen by ``benchmarks/tune_fairness.py`` (NeuMF, leave-last-out, training
seeds 100-104, the validation item; lowest mean |UGF| at most 5 % below plain NDCG@10):
In-UCDS ``weight`` 0.3, In-Naive 0.1, both symmetric on the **cosine** user graph (the
co-interaction count over ``sqrt(|I_u|·|I_v|)``). With the paper's raw counts the most
active advantaged users are every disadvantaged user's nearest (a dozen of the 47 make
every UCDS on MovieLens-100K, 44 with cosine), and the best count setting reached the same
|UGF| (0.0140 against plain training's 0.0171) at a lower NDCG; ``similarity = "count"``
restores the paper's graph.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from pydantic import Field

from trustrec.config import (
    Configured,
    NonNegativeFloat,
    PositiveInt,
    build_config,
    typed_config,
)
from trustrec.data.dataset import Dataset
from trustrec.evaluate.fairness import activity_groups
from trustrec.fairness.ucds import dominant_sets, naive_neighbors, pair_graph
from trustrec.models.base import MODELS, EmbeddingRecommender
from trustrec.models.capabilities import TrainsUserTables, has, require
from trustrec.registry import Registry


@typed_config
class NoOptions:
    """Plain training has no options."""


class FairTraining(Configured):
    """A fairness method (user or item side) applied while a model trains.

    Subclasses set ``name``, a typed ``Config`` and :meth:`fit`.
    """

    name: ClassVar[str] = ""
    #: Whether :meth:`serve` reads the labels the evaluation scores (an oracle).
    uses_target_labels: ClassVar[bool] = False

    @classmethod
    def applies_to(cls, model: str) -> bool:
        """Whether the method can train the registered model ``model``."""
        return True

    def serve(self, model: EmbeddingRecommender, known: Dataset, target: Dataset,
              train: Dataset, history: Dataset | None = None) -> object:
        """What the evaluation ranks with: the trained model itself for a method that acts
        in training; a post-processing method (re-ranking) returns a scorer that wraps it.

        Args:
            model: the model :meth:`fit` returned.
            known: the items never to recommend (training, or training + validation).
            target: the held-out items the evaluation scores.
            train: the training interactions (they define the user groups).
            history: the histories a sequential model scores from, or None.
        """
        return model

    def fit(self, model: EmbeddingRecommender, train: Dataset, valid: Dataset | None = None,
            *, seed: int = 0, progress: bool = False) -> EmbeddingRecommender:
        """Train ``model`` (unfitted, any config) on ``train`` with the method; early
        stopping on ``valid`` as the model's own. Returns the fitted model, with the
        method's record in ``fit_info_["fairness"]``."""
        raise NotImplementedError


FAIRNESS: Registry[type[FairTraining]] = Registry("fairness method")


def make_fairness(name: str, **config: Any) -> FairTraining:
    """Build a registered fairness method; unknown names or options are errors."""
    cls = FAIRNESS.get(name)
    return cls(build_config(cls.Config, config, where=f"fairness method {name!r}"))


@FAIRNESS.register("none")
class Plain(FairTraining):
    """Ordinary training: the control."""

    name = "none"
    Config = NoOptions

    def fit(self, model: EmbeddingRecommender, train: Dataset, valid: Dataset | None = None,
            *, seed: int = 0, progress: bool = False) -> EmbeddingRecommender:
        """``model.fit`` as it is."""
        model.fit(train, valid, seed=seed, progress=progress)
        model.fit_info_["fairness"] = {"method": self.name}
        return model


@typed_config
class PullConfig:
    """Options of In-UCDS and In-Naive (see the module docstring).

    Attributes:
        weight: size of the proximal step of the pull term after each epoch.
        neighbors: advantaged partners per disadvantaged user (the released code's 3).
        top: share of users that are advantaged, by training interactions, in (0, 1).
        symmetric: the paper's loss (both ends of a pair move); False moves only the
            disadvantaged user.
        similarity: the user–user graph: ``"count"`` of co-interacted items (the
            paper's) or ``"cosine"`` (the count over ``sqrt(|I_u|·|I_v|)``).
    """

    weight: NonNegativeFloat = 0.1
    neighbors: PositiveInt = 3
    top: Annotated[float, Field(gt=0, lt=1)] = 0.05
    symmetric: bool = True
    similarity: Literal["count", "cosine"] = "cosine"


@typed_config
class UCDSConfig(PullConfig):
    """In-UCDS's options (:class:`PullConfig`; its own tuned ``weight``)."""

    weight: NonNegativeFloat = 0.3


class UserPull(FairTraining):
    """Training with the pull of each disadvantaged user toward its advantaged partners."""

    Config = PullConfig

    @classmethod
    def applies_to(cls, model: str) -> bool:
        """Models with learned user tables (``TrainsUserTables``)."""
        return has(MODELS.get(model), TrainsUserTables)

    def pairs(self, train: Dataset, advantaged: np.ndarray
              ) -> tuple[np.ndarray, dict[str, float]]:
        """``(n, 2)`` (disadvantaged user, partner) pairs and a record."""
        raise NotImplementedError

    def fit(self, model: EmbeddingRecommender, train: Dataset, valid: Dataset | None = None,
            *, seed: int = 0, progress: bool = False) -> EmbeddingRecommender:
        """Find the pairs, then train with the proximal pull after every epoch."""
        require(model, TrainsUserTables, by=f"fairness method {self.name!r}")
        cfg: PullConfig = self.config
        t0 = time.perf_counter()
        advantaged = activity_groups(train, cfg.top)
        pairs, record = self.pairs(train, advantaged)
        seconds = time.perf_counter() - t0
        decay = float(getattr(model.config, "lr_decay", 1.0))
        steps = functools.lru_cache(maxsize=1)(  # one factorisation while the step holds
            lambda weight: pull_step(pairs, train.n_users, weight, cfg.symmetric))

        def callback(m: EmbeddingRecommender, epoch: int) -> None:
            step = steps(cfg.weight * decay ** (epoch - 1))
            for name in m.trained_user_tables():  # type: ignore[attr-defined]
                table = m.params_[name]
                with torch.no_grad():
                    table.copy_(torch.from_numpy(step(table.detach().numpy())))

        model.fit(train, valid, seed=seed, progress=progress, callback=callback)
        model.fit_info_["fairness"] = {
            "method": self.name, "config": self.config_dict(), "pairs": int(len(pairs)),
            "advantaged": int(advantaged.sum()), "pairing_seconds": seconds, **record}
        return model


def pull_step(pairs: np.ndarray, n_users: int, weight: float, symmetric: bool
              ) -> Callable[[np.ndarray], np.ndarray]:
    """The proximal step of ``(weight/2)·Σ_pairs ‖e_u − e_v‖²`` (see the module docstring):
    a function ``(n_users, d) -> (n_users, d)`` (the sparse factorisation is done here,
    once for every table it is applied to)."""
    if weight == 0 or not len(pairs):
        return lambda table: table
    if symmetric:
        adj = pair_graph(pairs, n_users)
        lap = sp.diags(np.asarray(adj.sum(1)).ravel()) - adj
        solve = spla.splu((sp.identity(n_users) + weight * lap).tocsc()).solve
        return lambda table: solve(table.astype(np.float64)).astype(table.dtype)
    links = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                          shape=(n_users, n_users))
    links.data[:] = 1.0  # duplicates collapse
    degree = np.asarray(links.sum(1)).ravel()
    moving = degree > 0

    def one_sided(table: np.ndarray) -> np.ndarray:
        out = table.copy()
        pulled = (table + weight * (links @ table)) / (1 + weight * degree)[:, None]
        out[moving] = pulled[moving]
        return out
    return one_sided


@FAIRNESS.register("in-ucds")
class InUCDS(UserPull):
    """In-UCDS: partners from the constrained dominant sets (stage 1)."""

    name = "in-ucds"
    Config = UCDSConfig

    def pairs(self, train: Dataset, advantaged: np.ndarray
              ) -> tuple[np.ndarray, dict[str, float]]:
        """Stage 1, :func:`~trustrec.fairness.ucds.dominant_sets`."""
        return dominant_sets(train, advantaged, self.config.neighbors,
                             similarity=self.config.similarity)


@FAIRNESS.register("in-naive")
class InNaive(UserPull):
    """In-Naive: partners by most co-interactions."""

    name = "in-naive"

    def pairs(self, train: Dataset, advantaged: np.ndarray
              ) -> tuple[np.ndarray, dict[str, float]]:
        """:func:`~trustrec.fairness.ucds.naive_neighbors`."""
        pairs = naive_neighbors(train, advantaged, self.config.neighbors,
                                self.config.similarity)
        return pairs, {"users_with_set": float(len(np.unique(pairs[:, 0])))}
