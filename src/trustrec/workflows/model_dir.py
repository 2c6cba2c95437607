"""A model directory with its unlearner loaded: what every workflow reads and writes.

The directory format itself (files, versions, manifest, hashes) is
:mod:`trustrec.store.modeldir`; this module fills it with an unlearner
(:mod:`trustrec.unlearn.persist`): ``unlearner/`` holds it, ``model/`` its single model when
it has one (so that :func:`~trustrec.models.base.load_model` serves it directly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustrec.data.dataset import Dataset
from trustrec.store.modeldir import MODEL_DIR, UNLEARNER_DIR, check_live, read_test, write_dir


@dataclass
class ModelDir:
    """A loaded model directory.

    Attributes:
        path: the directory.
        meta: ``trustrec.json``.
        unlearner: the loaded unlearner (scores, forgets).
        test: the held-out test rows, in the unlearner's id space.
    """

    path: Path
    meta: dict[str, Any]
    unlearner: Any
    test: Dataset


def load_model_dir(path: str | Path) -> ModelDir:
    """Load a model directory written by :func:`~trustrec.workflows.train.train_model_dir`
    (or updated by a deletion or protection).

    The live state is checked against its manifest first (a damaged file is an
    :class:`~trustrec.errors.IntegrityError` naming it); a copy a crashed writer left
    behind is removed when no writer holds the directory.

    Raises:
        IntegrityError: a file is missing, truncated or altered.
        FileNotFoundError: not a model directory.
    """
    from trustrec.unlearn.persist import load_unlearner

    path = Path(path)
    meta = check_live(path)
    unl = load_unlearner(path / UNLEARNER_DIR)
    return ModelDir(path, meta, unl, read_test(path, unl.train_))


def unlearner_state(unl: Any) -> Callable[[Path], list[str]]:
    """The ``write_state`` of :func:`~trustrec.store.modeldir.write_dir` for an unlearner:
    it is saved under ``unlearner/``, its single model (if one) also under ``model/``."""
    def write_state(folder: Path) -> list[str]:
        from trustrec.unlearn.persist import save_unlearner

        save_unlearner(unl, folder / UNLEARNER_DIR)
        models = unl.persistent_models()
        dirs = [f"{UNLEARNER_DIR}/{rel}" for rel in sorted(models)]
        if len(models) == 1:
            next(iter(models.values())).save(folder / MODEL_DIR)
            dirs.insert(0, MODEL_DIR)
        return dirs
    return write_state


def save_model_dir(target: Path, meta: dict[str, Any], unl: Any, test: Dataset,
                   report: dict[str, Any] | None = None,
                   verify: Callable[[Path], dict[str, Any]] | None = None,
                   extra: Callable[[Path], None] | None = None) -> str:
    """Write an unlearner's model directory as the next live version (the caller holds
    the directory lock); see :func:`~trustrec.store.modeldir.write_dir`."""
    return write_dir(target, meta, unlearner_state(unl), test, report, verify, extra)
