"""The model-directory format: write, check, hash, load. Nothing here knows a method.

A model directory holds everything needed to serve, forget and evaluate a model::

    trustrec.json        what it is: dataset, model, method, seed, split, history
    unlearner/           the fitted state (written by the caller's ``write_state``; for
                         trustrec's workflows a saved unlearner, :mod:`trustrec.unlearn.persist`)
    model/               the model itself when there is a single one (``load_model``
                         reads it); ``trustrec.json`` lists every model directory
    test.parquet         the held-out test rows (user, item raw ids, timestamp)
    forget_report.json   after a deletion: the receipt of the last batch
    MANIFEST.json        sha256 and size of every file (:mod:`trustrec.store.manifest`)

Every write builds a complete new version (:mod:`trustrec.store.versions`), checks it,
gives it its manifest last and swaps it in atomically; the caller holds the directory
lock (:mod:`trustrec.store.lock`). Loading checks the live version against its manifest.
What the state *is* (an unlearner, a protected model) is the workflows' business
(:mod:`trustrec.workflows`): this module imports no unlearning or privacy code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from trustrec.data.dataset import Dataset
from trustrec.data.rows import read_rows, write_rows
from trustrec.errors import DataFormatError, TrustrecError
from trustrec.fileio import now_iso, to_json_text

META_JSON = "trustrec.json"
UNLEARNER_DIR = "unlearner"
MODEL_DIR = "model"
TEST_PARQUET = "test.parquet"
REPORT_JSON = "forget_report.json"
FORMAT = "trustrec-model-dir"
FORMAT_VERSION = 1
#: A protected directory's record, and its protection state (written by the protect
#: workflow, :mod:`trustrec.workflows.protect`).
PROTECT_REPORT, PROTECTION_DIR = "protect_report.json", "protection"
#: What ``trustrec attack`` adds: the receipt of every change and the attack's report.
ATTACK_RECEIPT, ATTACK_REPORT = "attack_receipt.json", "attack_report.json"
#: What a copy of a model directory carries (its versions, lock and ledger stay behind).
CONTENT = (META_JSON, UNLEARNER_DIR, MODEL_DIR, TEST_PARQUET, PROTECT_REPORT, PROTECTION_DIR,
           ATTACK_RECEIPT, ATTACK_REPORT)


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


# ---------------------------------------------------------------------------- writing
def check_target(target: Path, replace_ok: bool) -> None:
    """Refuse to write over a file, a non-empty folder (unless ``replace_ok``), or a
    non-empty folder that is not a model directory.

    Raises:
        TrustrecError: naming the folder and what to do instead.
    """
    if target.exists() and not target.is_dir():
        raise TrustrecError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not replace_ok:
        raise TrustrecError(f"{target} exists and is not empty; choose another folder "
                            "(or --overwrite to replace a model directory)")
    if target.is_dir() and any(target.iterdir()) and not (target / META_JSON).is_file():
        raise TrustrecError(f"{target} is a non-empty folder that is not a trustrec model "
                            f"directory (no {META_JSON}); refusing to replace it")


def write_json(path: Path, obj: Any) -> None:
    """Indented JSON of a JSON-ready object (into a version being written); a non-finite
    number is written as null, never as the invalid token ``NaN``."""
    path.write_text(to_json_text(obj), encoding="utf-8")


def write_dir(target: Path, meta: dict[str, Any], write_state: Callable[[Path], list[str]],
              test: Dataset, report: dict[str, Any] | None = None,
              verify: Callable[[Path], dict[str, Any]] | None = None,
              extra: Callable[[Path], None] | None = None) -> str:
    """Write the next state of a model directory and make it live atomically.

    Into a new version folder (:func:`trustrec.store.versions.new_version`):
    ``write_state(folder)`` writes the fitted state and returns its model directories
    (relative paths, listed in ``trustrec.json`` as ``model_dirs``); then the test rows,
    ``trustrec.json``, ``extra(folder)`` (more files, e.g. a protection report; raising
    aborts the write), ``verify(folder)`` (its result goes into the report as
    ``verification``; raising aborts), the report, and the manifest last. The caller holds
    the directory lock.

    Returns:
        The new version's name.
    """
    from trustrec.store.manifest import write_manifest
    from trustrec.store.versions import new_version, version_name

    with new_version(target) as tmp:
        model_dirs = write_state(tmp)
        write_rows(test, tmp / TEST_PARQUET, ratings=False)
        write_json(tmp / META_JSON, {**meta, "model_dirs": model_dirs, "updated": now_iso()})
        if extra is not None:
            extra(tmp)
        if verify is not None:
            report = {**(report or {}), "verification": verify(tmp)}
        if report is not None:
            write_json(tmp / REPORT_JSON, report)
        write_manifest(tmp)
    return version_name(target)


# ---------------------------------------------------------------------------- reading
def read_meta(path: str | Path) -> dict[str, Any]:
    """``trustrec.json`` of a model directory (checked).

    Raises:
        FileNotFoundError: not a model directory.
        DataFormatError: a description that is not JSON, not a model directory's, or of an
            unsupported format version.
    """
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


def check_live(path: str | Path) -> dict[str, Any]:
    """Tidy what a crashed writer left (when no writer holds the directory), check the
    live version against its manifest, and return ``trustrec.json``.

    Raises:
        IntegrityError: a file is missing, truncated or altered (naming it).
        FileNotFoundError: not a model directory.
    """
    from trustrec.store.manifest import check_manifest
    from trustrec.store.versions import live_version

    path = Path(path)
    tidy(path)
    meta = read_meta(path)
    live = live_version(path)
    if live is not None:
        check_manifest(live, required=True)
    return meta


def read_test(path: str | Path, like: Dataset) -> Dataset:
    """The directory's test rows in ``like``'s id space (its training data's)."""
    return read_rows(Path(path) / TEST_PARQUET, f"{like.name}:test", like.user_ids,
                     like.item_ids, like.user_attributes, like.item_attributes,
                     ratings=False, where="the model directory")


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


# ---------------------------------------------------------------------------- copy
def copy_model_dir(src: str | Path, out: str | Path) -> None:
    """Copy the live state of a model directory (checked first) into a new directory.

    The copy has its own versions, lock and (empty) ledger; ``out`` must not exist or be
    empty.
    """
    from trustrec.store.lock import directory_lock
    from trustrec.store.manifest import write_manifest
    from trustrec.store.versions import new_version

    src, out = Path(src), Path(out)
    check_target(out, replace_ok=False)
    with directory_lock(src, purpose="copy"):
        check_live(src)  # under the lock: no writer swaps versions between check and copy
        with directory_lock(out, purpose="copy"), new_version(out) as tmp:
            for entry in CONTENT:
                p = src / entry
                if p.is_dir():
                    shutil.copytree(p, tmp / entry)
                elif p.is_file():
                    shutil.copy2(p, tmp / entry)
            write_manifest(tmp)
