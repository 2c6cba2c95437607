"""The Recommender protocol, the model registry, and the shared embedding-model base.

Every model follows the scikit-learn contract: the constructor stores the config only,
``fit`` learns, learned state ends in ``_``. Models are saved as ``model.safetensors``
(tensors) plus ``model.json`` (name, config, shapes, training record); loading executes no
code from the files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trustrec import __version__
from trustrec.config import build_config, to_dict
from trustrec.data.dataset import Dataset
from trustrec.errors import DataFormatError, IntegrityError
from trustrec.fileio import atomic_write_bytes
from trustrec.registry import Registry

MODEL_JSON = "model.json"
MODEL_TENSORS = "model.safetensors"


@runtime_checkable
class Recommender(Protocol):
    """What every recommender offers.

    ``score`` returns a float32 array ``(len(users), n_items)``; higher is better. Items the
    user already has are *not* masked here: evaluation does that.
    """

    name: ClassVar[str]

    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False) -> Self: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...

    def user_embeddings(self) -> np.ndarray: ...

    def item_embeddings(self) -> np.ndarray: ...

    def save(self, path: str | Path) -> None: ...


MODELS: Registry[type[EmbeddingRecommender]] = Registry("model")

#: ``callback(model, epoch)`` run after each training epoch (see ``EmbeddingRecommender.fit``).
EpochCallback = Callable[["EmbeddingRecommender", int], None]


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
    ``item_embeddings``. By default the user and
    item tables are ``params_["user"]`` and ``params_["item"]`` and the score is their dot
    product.

    Attributes:
        config: the model's typed config.
        params_: learned tensors (after ``fit`` or ``load``).
        n_users_, n_items_: shapes of the id space the model was fit on.
        fit_info_: JSON-ready record of training (epochs run, best epoch, seconds, history).
    """

    name: ClassVar[str] = ""

    class Config:  # replaced by a typed config in every subclass
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.params_: dict[str, torch.Tensor] = {}
        self.n_users_ = 0
        self.n_items_ = 0
        self.fit_info_: dict[str, Any] = {}
        self._warm: dict[str, torch.Tensor] | None = None
        self._callback: EpochCallback | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # ------------------------------------------------------------------ learning
    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False, init: dict[str, torch.Tensor] | None = None,
            callback: EpochCallback | None = None) -> Self:
        """Learn from ``train``; early-stop on ``valid`` NDCG when given.

        Args:
            train: training interactions.
            valid: validation interactions for early stopping and model selection.
            seed: root seed of this fit; the same seed gives bitwise-equal parameters.
            progress: show a progress bar.
            init: warm start: start from these parameters (copied; the same names and
                shapes as this model's ``params_``) instead of the seeded initialisation.
                Everything else (sampling, order) still follows ``seed``.
            callback: called as ``callback(model, epoch)`` after every training epoch,
                before validation; it may change ``model.params_`` tensors *in place*
                (in-training defenses and regularisers use this).
        """
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.fit_info_ = {"seed": int(seed)}
        if init is not None:
            self.fit_info_["warm_start"] = True
        self._warm, self._callback = init, callback
        try:
            self._fit(train, valid, seed=int(seed), progress=progress)
        finally:
            self._warm = self._callback = None
        return self

    def _initial(self, fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``fresh`` (the seeded initialisation), or copies of ``fit(init=...)`` when given.

        Raises:
            ValueError: the warm-start tensors do not have ``fresh``'s names and shapes.
        """
        warm = getattr(self, "_warm", None)
        if warm is None:
            return fresh
        if not set(fresh) <= set(warm) or any(tuple(warm[k].shape) != tuple(v.shape)
                                         for k, v in fresh.items()):
            want = {k: tuple(v.shape) for k, v in fresh.items()}
            got = {k: tuple(v.shape) for k, v in warm.items()}
            raise ValueError(f"{self.name}: warm-start parameters {got} do not match the "
                             f"model's {want}")
        return {k: warm[k].detach().clone().to(v.dtype).contiguous()
                for k, v in fresh.items()}

    def after_epoch(self, epoch: int) -> None:
        """Run the ``fit(callback=...)`` hook, if any (the training loop calls this)."""
        cb = getattr(self, "_callback", None)
        if cb is not None:
            cb(self, epoch)

    def _fit(self, train: Dataset, valid: Dataset | None, *, seed: int,
             progress: bool) -> None:
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

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` for the given user indices."""
        self._check_fitted()
        u = torch.as_tensor(np.asarray(users, dtype=np.int64))
        with torch.no_grad():
            return (self._user_table()[u] @ self._item_table().T).numpy()

    def _user_table(self) -> torch.Tensor:
        return torch.from_numpy(self.user_embeddings())

    def _item_table(self) -> torch.Tensor:
        return torch.from_numpy(self.item_embeddings())

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
