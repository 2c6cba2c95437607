"""Model directories: train once, forget on request with a receipt, evaluate any time.

The ``trustrec train`` / ``forget`` / ``evaluate`` commands are thin shells over this module.
A model directory holds everything needed to serve, forget and evaluate a model::

    trustrec.json        what it is: dataset, model, method, seed, split, history
    unlearner/           the unlearner (trustrec.unlearn.persist): its models, the
                         remaining training and validation rows, the id maps
    model/               the model itself (``model.save``; ``load_model`` reads it) when the
                         method has a single model; otherwise ``trustrec.json`` lists the
                         model directories under ``unlearner/`` (e.g. SISA's shards)
    test.parquet         the held-out test rows (user, item raw ids, timestamp)
    forget_report.json   after a forget: the receipt of the last request

Every write builds a complete new directory next to the target and renames it into place,
so a crash leaves either the old directory or the new one, never a mix. A forget request
also removes the forgotten users', items' and pairs' rows from the validation and test
data (they are data about the forgotten too) and erases the forgotten users' attributes.
A directory written by ``trustrec protect`` (``protect_report.json``) is protected again
after a forget, with the recorded method and settings, before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec import __version__
from trustrec.data.dataset import Dataset
from trustrec.errors import DataFormatError, InvalidRequestError, TrustrecError
from trustrec.fileio import now_iso, to_jsonable

META_JSON = "trustrec.json"
UNLEARNER_DIR = "unlearner"
MODEL_DIR = "model"
TEST_PARQUET = "test.parquet"
REPORT_JSON = "forget_report.json"
FORMAT = "trustrec-model-dir"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- hashing
def data_sha256(ds: Dataset) -> str:
    """sha256 of a dataset's rows in a canonical text form anyone can recompute.

    The text is one line ``<raw user>\\t<raw item>\\t<timestamp>\\n`` per row, rows sorted by
    raw user, raw item, then timestamp (as strings, byte order), encoded as UTF-8. It is
    the same for the same rows whatever their order or the file format they are stored in.
    """
    frame = pd.DataFrame({"user": ds.user_ids[ds.users].astype(str),
                          "item": ds.item_ids[ds.items].astype(str),
                          "timestamp": ds.timestamps.astype(str)})
    frame = frame.sort_values(["user", "item", "timestamp"], kind="stable")
    text = frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def ids_sha256(ids: Sequence[str]) -> str:
    """sha256 of raw ids, sorted, one per line (a commitment to a request's ids).

    Lets the requester check which ids a receipt covers without the receipt naming them.
    """
    text = "".join(f"{x}\n" for x in sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------- files
def _read_rows(path: Path, like: Dataset, name: str) -> Dataset:
    """Rows of a Parquet file of this directory, in ``like``'s id space (no ratings)."""
    from trustrec.unlearn.persist import read_rows

    return read_rows(path, name, like.user_ids, like.item_ids, like.user_attributes,
                     like.item_attributes, ratings=False, where="the model directory")


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n", encoding="utf-8")


def _check_target(target: Path, replace_ok: bool) -> None:
    if target.exists() and not target.is_dir():
        raise TrustrecError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not replace_ok:
        raise TrustrecError(f"{target} exists and is not empty; choose another folder "
                            "(or --overwrite to replace a model directory)")
    if target.is_dir() and any(target.iterdir()) and not (target / META_JSON).is_file():
        raise TrustrecError(f"{target} is a non-empty folder that is not a trustrec model "
                            f"directory (no {META_JSON}); refusing to replace it")


def _write_dir(target: Path, meta: dict[str, Any], unlearner: Any, test: Dataset,
               report: dict[str, Any] | None = None,
               verify: Any = None, extra: Any = None) -> str:
    """Write the next state of a model directory and make it live atomically.

    The state is written into a new version folder (:func:`trustrec.store.versions.
    new_version`), checked, given its manifest last, and swapped in; the caller holds the
    directory lock. ``extra(tmp)``, when given, runs on the complete folder before
    ``verify`` (to add files, e.g. ``trustrec.privacy.protect``'s report; raising aborts
    the write). Returns the new version's name.
    """
    from trustrec.store.manifest import write_manifest
    from trustrec.store.versions import new_version, version_name
    from trustrec.unlearn.persist import save_unlearner, write_rows

    with new_version(target) as tmp:
        save_unlearner(unlearner, tmp / UNLEARNER_DIR)
        models = unlearner.persistent_models()
        model_dirs = [f"{UNLEARNER_DIR}/{rel}" for rel in sorted(models)]
        if len(models) == 1:
            next(iter(models.values())).save(tmp / MODEL_DIR)
            model_dirs.insert(0, MODEL_DIR)
        write_rows(test, tmp / TEST_PARQUET, ratings=False)
        meta = {**meta, "model_dirs": model_dirs, "updated": now_iso()}
        _write_json(tmp / META_JSON, meta)
        if extra is not None:
            extra(tmp)
        if verify is not None:
            report = {**(report or {}), "verification": verify(tmp)}
        if report is not None:
            _write_json(tmp / REPORT_JSON, report)
        write_manifest(tmp)
    return version_name(target)


# ---------------------------------------------------------------------------- reading
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


def read_meta(path: str | Path) -> dict[str, Any]:
    """``trustrec.json`` of a model directory (checked)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model directory")
    f = path / META_JSON
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a trustrec model directory ({META_JSON} "
                                "missing); create one with `trustrec train`")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{f}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(f"{f}: not a trustrec model directory description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{f}: format_version {meta.get('format_version')!r} is not "
                              f"supported (expected {FORMAT_VERSION})")
    return meta


def load_model_dir(path: str | Path) -> ModelDir:
    """Load a model directory written by :func:`train_model_dir` (or updated by forget).

    The live state is checked against its manifest first (a damaged file is an
    :class:`~trustrec.errors.IntegrityError` naming it); a copy a crashed writer left
    behind is removed when no writer holds the directory.

    Raises:
        IntegrityError: a file is missing, truncated or altered.
        FileNotFoundError: not a model directory.
    """
    from trustrec.store.manifest import check_manifest
    from trustrec.store.versions import live_version
    from trustrec.unlearn.persist import load_unlearner

    path = Path(path)
    tidy(path)
    meta = read_meta(path)
    live = live_version(path)
    if live is not None:
        check_manifest(live, required=True)
    unl = load_unlearner(path / UNLEARNER_DIR)
    test = _read_rows(path / TEST_PARQUET, unl.train_, f"{unl.train_.name}:test")
    return ModelDir(path, meta, unl, test)


def tidy(path: str | Path) -> list[str]:
    """Remove what a crashed writer left (old versions, half-written ones) when no writer
    holds the directory; returns what was removed (nothing when it is busy)."""
    from trustrec.store.lock import LockTimeout, directory_lock
    from trustrec.store.versions import collect_garbage

    path = Path(path)
    if not path.is_dir():
        return []
    try:
        with directory_lock(path, timeout=0, purpose="tidy", log=lambda _: None):
            return collect_garbage(path)
    except (LockTimeout, OSError):  # busy, or a read-only place: leave it to a writer
        return []


# ---------------------------------------------------------------------------- train
def train_model_dir(dataset: str, model: str, out: str | Path, *, method: str = "retrain",
                    seed: int = 0, model_config: dict[str, Any] | None = None,
                    method_config: dict[str, Any] | None = None,
                    data_dir: str | Path | None = None,
                    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
                    overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Load and split a dataset, fit an unlearner, and write a model directory.

    Args:
        dataset: a known dataset name or a path.
        model: registered model name.
        out: the model directory to create.
        method: unlearning method that will serve later forget requests (``retrain``
            retrains the model; ``sisa`` keeps shard models and retrains only the affected
            shards).
        seed: root seed (split, training).
        model_config: model config values (unknown keys are an error).
        method_config: method config values.
        data_dir: cache folder for known datasets.
        split_ratios: train / validation / test shares of the per-user random split.
        overwrite: replace an existing model directory at ``out``.
        progress: show progress bars.

    Returns:
        The directory's ``trustrec.json`` content.
    """
    from trustrec.data.loaders import load_dataset
    from trustrec.data.split import random_split
    from trustrec.unlearn.base import make_unlearner

    target = Path(out)
    _check_target(target, overwrite)
    _check_no_deletions(target)
    unl = make_unlearner(method, model, model_config or {}, **(method_config or {}))
    ds = load_dataset(dataset, data_dir, progress=progress)
    split = random_split(ds, tuple(split_ratios), seed=int(seed))
    t0 = time.perf_counter()
    unl.fit(split.train, split.valid, seed=int(seed), progress=progress)
    seconds = time.perf_counter() - t0
    from trustrec.bench.env import versions

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "trustrec_version": __version__,
        "created": now_iso(),
        "dataset": {"name": ds.name, "source": str(dataset), "users": ds.n_users,
                    "items": ds.n_items, "interactions": ds.n_interactions},
        "split": {"kind": "random_split", "ratios": [float(r) for r in split_ratios],
                  "seed": int(seed), "train_rows": split.train.n_interactions,
                  "valid_rows": split.valid.n_interactions,
                  "test_rows": split.test.n_interactions},
        "model": model, "model_config": unl.model_config, "method": method,
        "method_config": unl.config_dict(), "seed": int(seed), "learn_seconds": seconds,
        "training_sha256": data_sha256(unl.train_),
        "versions": versions(),
        "history": [{"event": "train", "time": now_iso(), "seconds": seconds,
                     "rows": split.train.n_interactions}],
    }
    from trustrec.store.lock import directory_lock
    from trustrec.store.versions import collect_garbage

    with directory_lock(target, purpose="train"):
        _check_target(target, overwrite)
        _check_no_deletions(target)
        _write_dir(target, meta, unl, split.test)
        collect_garbage(target)
    return read_meta(target)


def _check_no_deletions(target: Path) -> None:
    """Refuse to train into a directory whose ledger has applied deletions: a model
    trained anew from the source data would bring the forgotten data back."""
    from trustrec.store.ledger import LEDGER_FILE, Ledger

    if not (target / LEDGER_FILE).is_file():
        return
    with Ledger(target) as ledger:
        applied = ledger.counts().get("applied", 0)
    if applied:
        raise TrustrecError(f"{target} has {applied} applied deletion request(s); training "
                            "anew from the source data would bring the forgotten data back. "
                            "Train into a new directory.")


# ---------------------------------------------------------------------------- copy
def copy_model_dir(src: str | Path, out: str | Path) -> None:
    """Copy the live state of a model directory into a new directory ``out``.

    The copy has its own versions, lock and (empty) ledger; ``out`` must not exist or be
    empty.
    """
    from trustrec.store.lock import directory_lock
    from trustrec.store.manifest import write_manifest
    from trustrec.store.versions import new_version

    src, out = Path(src), Path(out)
    _check_target(out, replace_ok=False)
    md = load_model_dir(src)
    with directory_lock(src, purpose="copy"), directory_lock(out, purpose="copy"), \
            new_version(out) as tmp:
        for entry in ("trustrec.json", "unlearner", "model", "test.parquet",
                      "protect_report.json", "protection"):
            p = src / entry
            if p.is_dir():
                shutil.copytree(p, tmp / entry)
            elif p.is_file():
                shutil.copy2(p, tmp / entry)
        write_manifest(tmp)
    del md


# ---------------------------------------------------------------------------- forget
def text_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a byte sequence that is not UTF-8 (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    out = []
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            out.append((n, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}, line {n}: not UTF-8 text (byte "
                                  f"{raw[exc.start:exc.start + 1]!r} at column "
                                  f"{exc.start + 1})") from None
    return out


def read_id_file(path: str | Path) -> list[str]:
    """Raw ids, one per line; blank lines and lines starting with ``#`` are skipped."""
    out = []
    for _, line in text_lines(path):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s)
    if not out:
        raise InvalidRequestError(f"{path}: no ids in the file")
    return out


def read_pairs_file(path: str | Path) -> list[tuple[str, str]]:
    """(user, item) raw-id pairs from a CSV or TSV file: two fields per line.

    A first line ``user,item`` (or ``user_id``/``item_id``, any case) is a header and is
    skipped; blank lines and lines starting with ``#`` too. The separator is a tab when the
    line has one, else a comma.

    Raises:
        DataFormatError: a line without exactly two non-empty fields (names file and line).
    """
    path = Path(path)
    pairs = []
    for n, line in text_lines(path):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = [f.strip() for f in s.split("\t" if "\t" in s else ",")]
        if len(fields) != 2 or not all(fields):
            raise DataFormatError(f"{path}, line {n}: expected two fields 'user,item', "
                                  f"got {line!r}")
        if not pairs and fields[0].lower() in ("user", "user_id", "userid") \
                and fields[1].lower() in ("item", "item_id", "itemid"):
            continue
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise InvalidRequestError(f"{path}: no (user, item) pairs in the file")
    return pairs


def _remaining(ds: Dataset | None, request: Any) -> int:
    """How many rows of ``ds`` the request still names (0 after a correct forget)."""
    if ds is None or ds.n_interactions == 0:
        return 0
    return int(request.match_rows(ds).sum())


def _attributes_left(ds: Dataset, users: np.ndarray) -> int:
    """Number of attribute values still stored for ``users`` (indices)."""
    table = ds.user_attributes
    rows = table.index.intersection(np.asarray(users, dtype=np.int64))
    return int(table.loc[rows].notna().to_numpy().sum()) if len(rows) else 0


def forget_in_model_dir(model_dir: str | Path, *, users: Sequence[str] | None = None,
                        pairs: Sequence[tuple[str, str]] | None = None,
                        items: Sequence[str] | None = None, out: str | Path | None = None
                        ) -> dict[str, Any]:
    """Forget users, interactions and/or items (raw ids) and write the updated directory.

    The request is validated against the model's remaining training data before anything
    runs: an unknown raw id, a user or item with no remaining rows, a pair that is not a
    training interaction, or duplicates are an :class:`InvalidRequestError` and nothing is
    written. Then the unlearner forgets, the held-out rows of the forgotten are dropped,
    the new directory is written next to the target, reloaded and checked (none of the
    requested rows may remain in the training, validation or test data, nor any attribute
    of a forgotten user), and only then renamed into place with its receipt,
    ``forget_report.json``. A protected directory (``protect_report.json``) gets its
    protection applied again to the updated model first
    (:func:`trustrec.privacy.protect.reprotect`); the receipt's
    ``protection_reapplied`` records it.

    Args:
        model_dir: the model directory.
        users: raw user ids to forget entirely.
        pairs: raw (user, item) interactions to forget.
        items: raw item ids to forget entirely.
        out: write the updated directory here instead of updating ``model_dir`` in place
            (must not exist or be empty).

    Returns:
        The receipt (also written to ``forget_report.json``).
    """
    from trustrec.data.request import ForgetRequest
    from trustrec.privacy.protect import recorded_protection, reprotect
    from trustrec.unlearn.persist import load_unlearner

    src = Path(model_dir)
    target = Path(out) if out is not None else src
    if target.resolve() != src.resolve():
        _check_target(target, replace_ok=False)
    md = load_model_dir(src)
    recorded = recorded_protection(src)
    unl = md.unlearner
    users, items, pairs = list(users or []), list(items or []), list(pairs or [])
    if not (users or items or pairs):
        raise InvalidRequestError("empty forget request: give users, pairs or items")
    request = ForgetRequest.from_raw(unl.train_, users=users or None, pairs=pairs or None,
                                     items=items or None)
    train = unl.train_
    for what, idx, table, col in (("user", request.users, train.user_ids, train.users),
                                  ("item", request.items, train.item_ids, train.items)):
        gone = idx[np.bincount(col, minlength=len(table))[idx] == 0] if len(idx) else idx
        if len(gone):
            raise InvalidRequestError(
                f"{what} id(s) {[str(x) for x in table[gone][:5]]} have no training rows "
                f"left in {src} (already forgotten, or never had any interaction)")
    unl.check_request(request)
    before_rows, before_sha = unl.train_.n_interactions, data_sha256(unl.train_)
    report = unl.forget(request)
    test_mask = (request.match_rows(md.test) if md.test.n_interactions
                 else np.zeros(0, dtype=bool))
    test = md.test.select(~test_mask)
    after_sha = data_sha256(unl.train_)
    protection, extra = (reprotect(recorded, unl, target) if recorded is not None
                         else (None, None))

    def verify(tmp: Path) -> dict[str, Any]:
        saved = load_unlearner(tmp / UNLEARNER_DIR)
        saved_test = _read_rows(tmp / TEST_PARQUET, saved.train_, "test")
        left = {"training_rows_remaining": _remaining(saved.train_, request),
                "validation_rows_remaining": _remaining(saved.valid_, request),
                "test_rows_remaining": _remaining(saved_test, request),
                "user_attributes_remaining": _attributes_left(saved.train_, request.users)}
        sha_ok = data_sha256(saved.train_) == after_sha
        passed = sha_ok and not any(left.values())
        if not passed:
            raise TrustrecError(f"verification of the saved model directory failed: "
                                f"{left}, training data hash matches: {sha_ok}; nothing "
                                "was written")
        return {"checked": "the written directory, reloaded from disk", **left,
                "saved_training_sha256_matches": sha_ok, "passed": True}

    summary = report.summary()
    receipt = {
        "format": "trustrec-forget-report", "time": now_iso(), "model_dir": str(target),
        "model": md.meta.get("model"), "method": report.method, "exact": report.exact,
        "request": {"n_users": len(users), "n_pairs": len(pairs), "n_items": len(items),
                    "users_sha256": ids_sha256(users) if users else None,
                    "items_sha256": ids_sha256(items) if items else None,
                    "pairs_sha256": (ids_sha256([f"{u}\t{i}" for u, i in pairs])
                                     if pairs else None),
                    "note": "ids are not stored; each sha256 is over the sorted raw ids, "
                            "one per line (pairs as 'user<TAB>item')"},
        "removed": {"training_rows": report.rows_removed,
                    "validation_rows": int(report.details.get("valid_rows_removed", 0)),
                    "test_rows": int(test_mask.sum()),
                    "users_affected": len(report.users_affected)},
        "retrained": list(report.retrained),
        "seconds": report.seconds,
        "training_data": {"rows_before": before_rows, "rows_after": report.rows_remaining,
                          "sha256_before": before_sha, "sha256_after": after_sha,
                          "sha256_of": "see trustrec.modeldir.data_sha256: sorted "
                                       "'user<TAB>item<TAB>timestamp' lines of raw ids"},
    }
    meta = dict(md.meta)
    meta["training_sha256"] = after_sha
    meta["history"] = [*meta.get("history", []),
                       {"event": "forget", "time": receipt["time"], **summary,
                        "test_rows_removed": int(test_mask.sum())}]
    if protection is not None:
        receipt["protection_reapplied"] = {
            k: protection[k] for k in ("method", "attributes", "seed", "seconds",
                                       "released_sha256")}
        meta["history"].append({"event": "protect", "time": protection["time"],
                                "method": protection["method"],
                                "attributes": protection["attributes"],
                                "seconds": protection["seconds"],
                                "reapplied_after": "forget"})
    _write_dir(target, meta, unl, test, receipt, verify, extra=extra)
    return json.loads((target / REPORT_JSON).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- evaluate
def evaluate_model_dir(model_dir: str | Path, ks: Sequence[int] = (10, 20),
                       fairness_metric: str = "ndcg@20") -> dict[str, Any]:
    """Utility on the stored test split and A-IGF, for the directory's current model.

    Every test user with remaining training rows is ranked (forgotten users have none and
    their test rows were dropped by forget); A-IGF uses activity groups of the remaining
    training data.

    Returns:
        JSON-ready: ``model_dir``, ``model``, ``method``, ``n_users`` evaluated, ``metrics``
        (mean of every ``{metric}@{k}``), ``a_igf`` and ``fairness_metric``.
    """
    from trustrec.evaluate.fairness import a_igf
    from trustrec.evaluate.ranking import evaluate_ranking, summarize

    md = load_model_dir(model_dir)
    unl = md.unlearner
    train = unl.train_
    users = np.intersect1d(np.unique(md.test.users), np.flatnonzero(train.user_counts() > 0))
    per_user = evaluate_ranking(unl, train, md.test, ks, users=users)
    metric = fairness_metric if fairness_metric in per_user.columns else \
        f"ndcg@{max(int(k) for k in ks)}"
    return {"model_dir": str(md.path), "model": md.meta.get("model"),
            "method": md.meta.get("method"), "dataset": md.meta.get("dataset", {}).get("name"),
            "n_users": int(len(per_user)), "test_rows": md.test.n_interactions,
            "metrics": summarize(per_user), "a_igf": a_igf(per_user, train, metric=metric),
            "fairness_metric": metric, "time": now_iso()}


def to_json_text(obj: Any) -> str:
    """Indented JSON text of a JSON-ready object (non-finite floats become null)."""
    buf = io.StringIO()
    json.dump(to_jsonable(obj, finite=True), buf, indent=2)
    return buf.getvalue() + "\n"
