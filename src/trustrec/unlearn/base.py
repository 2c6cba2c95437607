"""The Unlearner protocol, its report, and the method registry.

An Unlearner wraps a model factory: ``fit`` learns (whole, sharded or sequential),
``forget(request)`` removes data and updates the model, ``score`` recommends from the
current state. The Unlearner owns the only internal copy of its training data
(``train_``); after ``forget`` the requested rows are physically absent from it and from
every shard's copy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from trustrec.config import build_config, to_dict, typed_config
from trustrec.data.dataset import Dataset
from trustrec.data.request import ForgetRequest
from trustrec.errors import DataFormatError, InvalidRequestError, UnsupportedRequestError
from trustrec.fileio import now_iso, to_jsonable
from trustrec.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from trustrec.models.base import EmbeddingRecommender


@dataclass
class ForgetReport:
    """What a ``forget`` call did, as evidence for the requester.

    Attributes:
        method: unlearning method name.
        exact: whether the result equals retraining what was retrained.
        request: the request as JSON (indices).
        rows_removed: training rows physically removed.
        users_affected: user indices that lost at least one training row.
        retrained: what was retrained, e.g. ``["full"]`` or ``["shard 3", "shard 7"]``.
        seconds: wall time of the ``forget`` call.
        rows_remaining: training rows left after the call.
        details: method-specific extras (JSON-ready).
    """

    method: str
    exact: bool
    request: dict[str, Any]
    rows_removed: int
    users_affected: list[int]
    retrained: list[str]
    seconds: float
    rows_remaining: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (numpy scalars and arrays become Python numbers and lists)."""
        return jsonable(asdict(self))

    def summary(self) -> dict[str, Any]:
        """The report without any forgotten id: counts, what was retrained, and timing.

        This is what an unlearner keeps in its history and writes to disk: enough for an
        auditor to see how many requests were served, how much data each removed, what was
        retrained and how long it took, but not which users, items or pairs were named.
        """
        req = self.request
        return jsonable({
            "method": self.method,
            "exact": self.exact,
            "kinds": [k for k, key in (("user", "users"), ("interaction", "pairs"),
                                       ("item", "items")) if len(req.get(key, []))],
            "n_users": len(req.get("users", [])),
            "n_pairs": len(req.get("pairs", [])),
            "n_items": len(req.get("items", [])),
            "rows_removed": self.rows_removed,
            "valid_rows_removed": self.details.get("valid_rows_removed", 0),
            "n_users_affected": len(self.users_affected),
            "retrained": list(self.retrained),
            "seconds": self.seconds,
            "rows_remaining": self.rows_remaining,
        })


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays (also nested in dicts, lists, tuples) made JSON-ready."""
    return to_jsonable(obj)


@runtime_checkable
class Unlearner(Protocol):
    """Learn, then forget, on the same object."""

    name: ClassVar[str]
    exact: ClassVar[bool]
    supports: ClassVar[frozenset[str]]  # subset of {"user", "interaction", "item"}
    needs: ClassVar[tuple[type, ...]]  # model capabilities (trustrec.models.capabilities)
    train_: Dataset

    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False) -> Self: ...

    def forget(self, request: ForgetRequest) -> ForgetReport: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


UNLEARNERS: Registry[type] = Registry("unlearning method")


def make_unlearner(name: str, model: str, model_config: dict[str, Any] | None = None,
                   **config: Any) -> Unlearner:
    """Build a registered unlearning method around a registered model.

    Args:
        name: method name, e.g. ``"retrain"`` or ``"sisa"``.
        model: model name, e.g. ``"bpr"``.
        model_config: the model's config values.
        **config: the method's own config values (unknown keys are an error).
    """
    cls = UNLEARNERS.get(name)
    cfg = build_config(cls.Config, config, where=f"method {name!r}")
    return cls(model=model, model_config=dict(model_config or {}), config=cfg)


class UnlearnerBase:
    """Shared machinery of the unlearning methods: config, data, validation, reports, history.

    A subclass sets ``name``, ``exact``, ``supports``, a typed ``Config``
    (:func:`trustrec.config.typed_config`) and ``needs`` (the capability protocols of
    :mod:`trustrec.models.capabilities` it uses from the model: the constructor raises
    ConfigError for a model class without them) and implements four hooks:

    * ``_fit(progress) -> dict``: train from ``self.train_`` / ``self.valid_`` with
      ``self.seed_``; returns JSON-ready details for the history.
    * ``_forget(train, valid, train_removed, valid_removed) -> (retrained, details)``:
      retrain what the removal touches, given the remaining data and boolean masks of the
      removed rows over the *current* ``train_`` / ``valid_``. It must build every new model
      first and replace its own models only at the end, so an exception leaves the
      unlearner unchanged; the base commits the new data after it returns.
    * ``score(users)``.
    * ``persistent_models()``, ``persistent_arrays()`` and ``restore_state(models,
      arrays)``, used by :mod:`trustrec.unlearn.persist`.

    Data held (the only internal copies; after ``forget`` the removed rows are gone from
    both):

    * ``train_``: the remaining training rows.
    * ``valid_``: the remaining validation rows (or None). A request removes from the
      validation data the rows of forgotten users, of forgotten items and of forgotten
      (user, item) pairs, because validation rows are data about that user or item too, and
      they steer early stopping. Test data is never held.

    Attributes:
        model: the wrapped model's registered name.
        model_config: its config values as given, converted by the fields' types (``"8"``
            for ``dim`` is 8).
        config: the method's typed config.
        seed_: root seed given to ``fit``.
        history_: one JSON-ready record per ``fit`` / ``forget`` call (counts, what was
            retrained, seconds, UTC time; never the forgotten ids).
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    supports: ClassVar[frozenset[str]] = frozenset()
    #: Model capabilities the method uses (:mod:`trustrec.models.capabilities`).
    needs: ClassVar[tuple[type, ...]] = ()

    @typed_config
    class Config:  # replaced by a typed config in every subclass
        pass

    def __init__(self, model: str, model_config: Mapping[str, Any] | None = None,
                 config: Any = None) -> None:
        from trustrec.models import make_model  # registers the models
        from trustrec.models.capabilities import require

        self.model = str(model)
        given = dict(model_config or {})
        if config is None or isinstance(config, Mapping):
            config = build_config(self.Config, config, where=f"method {self.name!r}")
        self.config = config
        built = make_model(self.model, **given)  # a bad name or value: fail now
        require(type(built), *self.needs, by=f"method {self.name!r}")
        typed = to_dict(built.config)
        self.model_config = {k: typed[k] for k in given}
        self.seed_: int | None = None
        self.train_: Dataset | None = None
        self.valid_: Dataset | None = None
        self.history_: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, config={self.config})"

    # ------------------------------------------------------------------ helpers
    def _new_model(self) -> EmbeddingRecommender:
        from trustrec.models import make_model

        return make_model(self.model, **self.model_config)

    def _check_fitted(self) -> None:
        if self.train_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load it")

    def _check_users(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n = self.train_.n_users
        if len(users) and (users.min() < 0 or users.max() >= n):
            bad = users[(users < 0) | (users >= n)][:5].tolist()
            raise IndexError(f"user index(es) {bad} out of range: the data has {n} users")
        return users

    # ------------------------------------------------------------------ learning
    def fit(self, train: Dataset, valid: Dataset | None = None, *, seed: int = 0,
            progress: bool = False) -> Self:
        """Learn from ``train`` (early stopping on ``valid`` when given).

        Args:
            train: training interactions; the unlearner keeps this object as ``train_``.
            valid: validation interactions in the same id space, or None.
            seed: root seed; every model's seed is derived from it.
            progress: show progress bars.
        """
        if valid is not None and (valid.n_users, valid.n_items) != (train.n_users,
                                                                    train.n_items):
            raise DataFormatError(
                f"validation data {valid.name!r} has {valid.n_users} users x {valid.n_items} "
                f"items, training data {train.name!r} has {train.n_users} x {train.n_items}; "
                "both must come from one split of one dataset")
        t0 = time.perf_counter()
        self.train_, self.valid_, self.seed_ = train, valid, int(seed)
        self.history_ = []
        try:
            details = self._fit(progress)
        except BaseException:
            self.train_ = self.valid_ = self.seed_ = None
            raise
        self.history_.append(jsonable({
            "event": "fit", "time": now_iso(), "method": self.name, "exact": self.exact,
            "seconds": time.perf_counter() - t0, "rows": train.n_interactions,
            "valid_rows": None if valid is None else valid.n_interactions,
            "details": details or {}}))
        return self

    def _fit(self, progress: bool) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ forgetting
    def check_request(self, request: ForgetRequest) -> None:
        """Raise unless ``forget(request)`` would be accepted; changes nothing.

        Raises:
            UnsupportedRequestError: the request uses a grain the method does not support.
            InvalidRequestError: an id outside the id space, a (user, item) pair that is not
                a training interaction, or a user / item with no remaining rows (already
                forgotten, or never in the training data).
        """
        self._check_fitted()
        if not isinstance(request, ForgetRequest):
            raise InvalidRequestError(f"forget() takes a ForgetRequest, got "
                                      f"{type(request).__name__}")
        unsupported = request.kinds - self.supports
        if unsupported:
            raise UnsupportedRequestError(
                f"method {self.name!r} cannot forget {', '.join(sorted(unsupported))}s; it "
                f"supports {', '.join(sorted(self.supports)) or 'nothing'}")
        request.validate(self.train_)
        for what, ids, counts in (("user", request.users, self._held_counts("users")),
                                  ("item", request.items, self._held_counts("items"))):
            if len(ids):
                missing = ids[counts[ids] == 0]
                if len(missing):
                    raise InvalidRequestError(
                        f"{what} index(es) {missing[:5].tolist()} not in the training data "
                        f"of this {self.name!r} unlearner (already forgotten, or never had "
                        "any interaction)")

    def _held_counts(self, column: str) -> np.ndarray:
        n = self.train_.n_users if column == "users" else self.train_.n_items
        counts = np.bincount(getattr(self.train_, column), minlength=n)
        if self.valid_ is not None:
            counts = counts + np.bincount(getattr(self.valid_, column), minlength=n)
        return counts

    def forget(self, request: ForgetRequest) -> ForgetReport:
        """Remove every row the request names and update the model(s).

        The request is checked first (:meth:`check_request`); a rejected request changes
        nothing. Rows are removed from ``train_`` and ``valid_`` (see the class docstring),
        and the attributes of forgotten users are erased from both.

        Returns:
            A :class:`ForgetReport`; ``details`` has at least ``valid_rows_removed``.
        """
        t0 = time.perf_counter()
        self.check_request(request)
        train_removed = request.match_rows(self.train_)
        valid_removed = (np.zeros(0, dtype=bool) if self.valid_ is None
                         else request.match_rows(self.valid_))
        new_train = self.train_.select(~train_removed).without_user_attributes(request.users)
        new_valid = (None if self.valid_ is None else
                     self.valid_.select(~valid_removed).without_user_attributes(request.users))
        retrained, details = self._forget(new_train, new_valid, train_removed, valid_removed)
        users_affected = np.unique(self.train_.users[train_removed])
        self.train_, self.valid_ = new_train, new_valid  # commit
        report = ForgetReport(
            method=self.name, exact=self.exact, request=request.to_json(),
            rows_removed=int(train_removed.sum()),
            users_affected=[int(u) for u in users_affected],
            retrained=list(retrained), seconds=time.perf_counter() - t0,
            rows_remaining=new_train.n_interactions,
            details=jsonable({"valid_rows_removed": int(valid_removed.sum()), **details}))
        self.history_.append({"event": "forget", "time": now_iso(), **report.summary()})
        return report

    def _forget(self, train: Dataset, valid: Dataset | None, train_removed: np.ndarray,
                valid_removed: np.ndarray) -> tuple[list[str], dict[str, Any]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` from the current state."""
        raise NotImplementedError

    def user_shards(self) -> np.ndarray | None:
        """Shard (or group) per user index, for shard fairness; None for unsharded methods.

        Methods that split data into parts served by different sub-models return an int64
        array of length ``n_users`` (``-1`` for a user no part serves); CURE4Rec's shard
        fairness is the variance of NDCG across these parts (0 for an unsharded method).
        """
        return None

    # ------------------------------------------------------------------ persistence hooks
    def persistent_models(self) -> dict[str, EmbeddingRecommender]:
        """The models to save, keyed by their relative directory (e.g. ``"model"``)."""
        raise NotImplementedError

    def persistent_arrays(self) -> dict[str, np.ndarray]:
        """Integer/float arrays of method state to save (e.g. a shard assignment)."""
        return {}

    def restore_state(self, models: dict[str, EmbeddingRecommender],
                      arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`persistent_models` / :meth:`persistent_arrays` (after load)."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The method's config as a JSON-ready dict."""
        return jsonable(dataclasses.asdict(self.config))
