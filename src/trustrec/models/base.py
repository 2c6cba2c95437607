"""The Recommender protocol, the model registry, and the shared embedding-model base.

Every model follows the scikit-learn contract: the constructor stores the config only,
``fit`` learns, learned state ends in ``_``. Models are saved as ``model.safetensors``
(tensors) plus ``model.json`` (name, config, shapes, training record); loading executes no
code from the files.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trustrec import __version__
from trustrec.config import build_config, to_dict
from trustrec.data.dataset import Dataset
from trustrec.data.query import Query, query_users
from trustrec.errors import DataFormatError, IntegrityError
from trustrec.fileio import atomic_write_bytes
from trustrec.registry import Registry

MODEL_JSON = "model.json"
MODEL_TENSORS = "model.safetensors"


@runtime_checkable
class Recommender(Protocol):
    """What every recommender offers.

    ``score`` takes the users to score as an array of user indices or as a
    :class:`~trustrec.data.query.Query` (user indices plus, optionally, each user's item
    history, for a model that scores from a sequence); it returns a float32 array
    ``(n_queried, n_items)``; higher is better. Items the user already has are *not*
    masked here: evaluation does that.

    What a method needs beyond this (a released user table, a differentiable objective, a
    warm start, ...) is a capability protocol of :mod:`trustrec.models.capabilities`.
    """

    name: ClassVar[str]

    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False) -> Self: ...

    def score(self, query: Query | np.ndarray) -> np.ndarray: ...

    def user_embeddings(self) -> np.ndarray: ...

    def item_embeddings(self) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...


MODELS: Registry[type[EmbeddingRecommender]] = Registry("model")

#: ``callback(model, epoch)`` run after each training epoch (see ``EmbeddingRecommender.fit``).
EpochCallback = Callable[["EmbeddingRecommender", int], None]
#: ``after_epoch(epoch)``: the fit's callback bound to its model, as the training loop runs it.
AfterEpoch = Callable[[int], None]


def make_model(name: str, **config: Any) -> EmbeddingRecommender:
    """Build a registered model by name; unknown names or config keys are clear errors."""
    cls = MODELS.get(name)
    return cls(build_config(cls.Config, config, where=f"model {name!r}"))


def normal_tables(gen: np.random.Generator, n_users: int, n_items: int, dim: int,
                  scale: float) -> dict[str, torch.Tensor]:
    """``{"user": (n_users, dim), "item": (n_items, dim)}`` float32 tables drawn from
    ``N(0, scale²)`` by ``gen`` (users first, then items).

    Args:
        gen: the seeded generator of the fit's initialisation.
        n_users: rows of the user table.
        n_items: rows of the item table.
        dim: width of both tables.
        scale: standard deviation.
    """
    return {name: torch.from_numpy((gen.standard_normal((n, dim)) * scale).astype(np.float32))
            for name, n in (("user", n_users), ("item", n_items))}


class EmbeddingRecommender:
    """Base for models whose state is a dict of named float tensors.

    Subclasses set ``name``, a typed ``Config`` (:func:`trustrec.config.typed_config`) and
    implement ``_fit``; they may override ``score``, ``user_embeddings`` and
    ``item_embeddings``. By default the user and item tables are ``params_["user"]`` and
    ``params_["item"]`` and the score is their dot product. Each subclass implements the
    capability protocols it supports (:mod:`trustrec.models.capabilities`) in its own file,
    with the helpers below (:meth:`_initial`, :meth:`_table_view`, :meth:`_with_table`,
    :meth:`_dot_pair_scorer`).

    Attributes:
        config: the model's typed config.
        params_: learned tensors (after ``fit`` or ``load``).
        n_users_, n_items_: shapes of the id space the model was fit on.
        fit_info_: JSON-ready record of training (epochs run, best epoch, seconds, history).
    """

    name: ClassVar[str] = ""
    #: Whether ``score`` reads each user's item history (a sequential model: evaluate it
    #: with ``evaluate_ranking(..., history=...)`` on a leave-last-out split).
    scores_from_history: ClassVar[bool] = False

    class Config:  # replaced by a typed config in every subclass
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.params_: dict[str, torch.Tensor] = {}
        self.n_users_ = 0
        self.n_items_ = 0
        self.fit_info_: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # ------------------------------------------------------------------ learning
    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False, init: Mapping[str, torch.Tensor] | None = None,
            callback: EpochCallback | None = None) -> Self:
        """Learn from ``train``; early-stop on ``valid`` NDCG when given.

        The run-time options travel as arguments to the model's training procedure; the
        model keeps only what it learned (``params_``, ``fit_info_``).

        Args:
            train: training interactions.
            valid: validation interactions for early stopping and model selection.
            seed: root seed of this fit; the same seed gives bitwise-equal parameters.
            progress: show a progress bar.
            init: warm start (models with the
                :class:`~trustrec.models.capabilities.WarmStart` capability): start from
                these parameters (copied; the same names and shapes as this model's
                ``params_``, e.g. another fit's ``warm_start_state()``) instead of the
                seeded initialisation. Everything else (sampling, order) still follows
                ``seed``.
            callback: called as ``callback(model, epoch)`` after every training epoch,
                before validation; it may change ``model.params_`` tensors *in place*
                (in-training defenses and regularisers use this).

        Raises:
            ConfigError: ``init`` given to a model without a warm start.
            ValueError: ``init`` tensors that do not match the model's names and shapes.
        """
        from trustrec.models.capabilities import WarmStart, require

        if init is not None:
            require(self, WarmStart, by="fit(init=...)")
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.fit_info_ = {"seed": int(seed)}
        if init is not None:
            self.fit_info_["warm_start"] = True
        after_epoch = None if callback is None else functools.partial(callback, self)
        self._fit(train, valid, seed=int(seed), progress=progress, init=init,
                  after_epoch=after_epoch)
        return self

    def _initial(self, fresh: dict[str, torch.Tensor],
                 init: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """``fresh`` (the seeded initialisation), or copies of the warm-start ``init``.

        Args:
            fresh: the seeded initial tensors.
            init: the ``fit(init=...)`` tensors, or None.

        Raises:
            ValueError: the warm-start tensors do not have ``fresh``'s names and shapes.
        """
        if init is None:
            return fresh
        if not set(fresh) <= set(init) or any(tuple(init[k].shape) != tuple(v.shape)
                                         for k, v in fresh.items()):
            want = {k: tuple(v.shape) for k, v in fresh.items()}
            got = {k: tuple(v.shape) for k, v in init.items()}
            raise ValueError(f"{self.name}: warm-start parameters {got} do not match the "
                             f"model's {want}")
        return {k: init[k].detach().clone().to(v.dtype).contiguous()
                for k, v in fresh.items()}

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int, progress: bool,
             init: Mapping[str, torch.Tensor] | None, after_epoch: AfterEpoch | None
             ) -> None:
        """Train into ``params_``: start from ``self._initial(fresh, init)`` and pass
        ``after_epoch`` to :func:`trustrec.train.loop.train_epochs`."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.params_:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load()")

    def param_shapes(self, n_users: int, n_items: int) -> dict[str, tuple[int, ...]]:
        """The names and shapes of ``params_`` that this config implies for an id space.

        Loading checks a file against it, so a missing, extra or reshaped tensor is an
        error instead of a model that silently scores wrong. Default: ``user`` and
        ``item`` tables of width ``config.dim``.
        """
        d = int(self.config.dim)
        return {"user": (n_users, d), "item": (n_items, d)}

    # ------------------------------------------------------------------ inference
    def user_embeddings(self) -> np.ndarray:
        """``(n_users, d)`` float32 user representations used for scoring."""
        self._check_fitted()
        return self.params_["user"].numpy()

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, d)`` float32 item representations used for scoring."""
        self._check_fitted()
        return self.params_["item"].numpy()

    def score(self, query: Query | np.ndarray) -> np.ndarray:
        """Scores ``(n_queried, n_items)`` for user indices or a
        :class:`~trustrec.data.query.Query` (its histories are not used: the users'
        embeddings are looked up by index)."""
        self._check_fitted()
        u = torch.as_tensor(query_users(query))
        with torch.no_grad():
            return (self._user_table()[u] @ self._item_table().T).numpy()

    def _user_table(self) -> torch.Tensor:
        return torch.from_numpy(self.user_embeddings())

    def _item_table(self) -> torch.Tensor:
        return torch.from_numpy(self.item_embeddings())

    # ------------------------------------------------------------------ capability helpers
    def _table_view(self, key: str) -> np.ndarray:
        """``params_[key]`` as a numpy view (writing into it changes the tensor)."""
        self._check_fitted()
        return self.params_[key].detach().numpy()

    def _with_table(self, key: str, table: np.ndarray | torch.Tensor) -> Self:
        """A copy of this model with ``params_[key]`` replaced by ``table`` (float32, same
        shape); the copy shares no tensor with this model.

        Raises:
            ValueError: ``table`` does not have ``params_[key]``'s shape.
        """
        self._check_fitted()
        table = torch.as_tensor(np.asarray(table, dtype=np.float32)).clone()
        if tuple(table.shape) != tuple(self.params_[key].shape):
            raise ValueError(f"user table of shape {tuple(table.shape)} does not match the "
                             f"model's {tuple(self.params_[key].shape)}")
        out = copy.copy(self)
        out.params_ = {k: (table if k == key else v.detach().clone())
                       for k, v in self.params_.items()}
        out.fit_info_ = copy.deepcopy(self.fit_info_)
        return out

    def _dot_pair_scorer(self, users: torch.Tensor, items: torch.Tensor, item_key: str,
                         bias_key: str | None = None
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``table -> (r, k)`` scores ``table[users[r]] · params_[item_key][items[r, j]]``
        (``+ params_[bias_key][items[r, j]]``), differentiable in ``table``; the item rows
        and biases are gathered once here."""
        p = self.params_
        vecs = p[item_key].detach()[items]
        bias = p[bias_key].detach()[items] if bias_key is not None else None

        def dot(table: torch.Tensor) -> torch.Tensor:
            s = torch.einsum("rd,rkd->rk", table[users], vecs)
            return s if bias is None else s + bias
        return dot

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write ``model.safetensors`` and ``model.json`` into directory ``path`` atomically."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.params_.items()}
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            tmp_file = Path(tmp) / MODEL_TENSORS
            save_file(tensors, str(tmp_file))
            os.replace(tmp_file, path / MODEL_TENSORS)
        meta = {"model": self.name, "config": to_dict(self.config), "n_users": self.n_users_,
                "n_items": self.n_items_, "fit_info": self.fit_info_,
                "trustrec_version": __version__}
        atomic_write_bytes(path / MODEL_JSON, json.dumps(meta, indent=2).encode())

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingRecommender:
        """Load a model saved by :meth:`save` (any registered model; no code executed)."""
        return load_model(path)


def load_model(path: str | Path) -> EmbeddingRecommender:
    """Load a model directory written by ``save``: JSON metadata + safetensors tensors."""
    path = Path(path)
    meta_file = path / MODEL_JSON
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a model directory: {MODEL_JSON} missing")
    try:
        meta = json.loads(meta_file.read_text())
        name, config = meta["model"], meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{meta_file}: not a trustrec model description ({exc})") from exc
    model = make_model(name, **config)
    tensor_file = path / MODEL_TENSORS
    if not tensor_file.is_file():
        raise FileNotFoundError(f"{tensor_file} missing")
    try:
        n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"{meta_file}: no valid id-space size ({exc})") from None
    try:
        params = dict(load_file(str(tensor_file)))
    except Exception as exc:  # safetensors raises its own types for damaged files
        raise IntegrityError(f"{tensor_file}: not a readable safetensors file "
                             f"({type(exc).__name__}: {exc})") from None
    check_params(params, model.param_shapes(n_users, n_items), tensor_file)
    model.params_ = params
    model.n_users_, model.n_items_ = n_users, n_items
    model.fit_info_ = meta.get("fit_info", {})
    return model


def check_params(params: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                 where: Path) -> None:
    """Raise IntegrityError unless ``params`` has exactly the expected names and shapes
    and only finite values (names the file, the tensor and what is wrong)."""
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise IntegrityError(f"{where}: tensors do not match the model description "
                             f"(missing {missing}, unexpected {extra})")
    for name, shape in expected.items():
        got = tuple(params[name].shape)
        if got != tuple(shape):
            raise IntegrityError(f"{where}: tensor {name!r} has shape {got}, the model "
                                 f"description implies {tuple(shape)}")
        if params[name].is_floating_point() and not bool(torch.isfinite(params[name]).all()):
            raise IntegrityError(f"{where}: tensor {name!r} holds NaN or infinite values")
