"""Honour deletion requests on a model directory: received, applied, receipted, provably.

The one path every deletion takes (``trustrec forget`` and the deletion service):

1. **Submit** (:func:`submit`): the request's raw ids are checked (non-empty, no blank or
   duplicate id, every id known to the live model) and the request is recorded in the
   directory's ledger before anything else happens (:mod:`trustrec.store.ledger`). From
   then on it cannot be lost: if the process dies, the next writer applies it.
2. **Apply** (:func:`apply_pending`): under the directory's exclusive lock
   (:mod:`trustrec.store.lock`), every pending request, this one and any left by others
   or by a crash, is applied in one batch: the unlearner forgets the rows the batch names
   in the training and validation data (one retrain for the batch), the rows in the test
   data are dropped, the raw ids of forgotten users and items are replaced in every id map
   by random tombstones and their attributes erased, a protected directory is protected
   again, and the new state is written as a new version, reloaded and checked
   (:func:`_verify`) before it goes live in one atomic swap. Each request then gets its
   receipt (ledger row and ``receipts/<request_id>.json``, never overwritten), and every
   other version, which may still hold forgotten data, is deleted.

What a finished directory no longer holds about a forgotten user or item: its rows
(training, validation, test), its raw id (the id maps hold a tombstone in its place), its
attributes, the ids of its request (the ledger stores a keyed digest, see
:mod:`trustrec.store.ledger`). What it still shows: that some index lost its rows and how
many rows each request removed; and, for exact methods, nothing of the data in the
models. Approximate methods (``scif``, ``ifru``, ...) change the model without retraining
and the receipt says ``exact: false``.

A request is rejected, changing nothing, when an id is unknown (never in the model's
data, or already forgotten: after a deletion the two cannot be told apart, by design),
a pair is not an interaction of the model's data, or the request is empty or repeats an
id. Errors name the raw ids the requester gave; the ledger records only counts.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustrec.data.dataset import Dataset
from trustrec.errors import InvalidRequestError, TrustrecError
from trustrec.fileio import now_iso
from trustrec.store.ledger import Ledger, Pending

#: Phases a test can stop a forget at (see ``hooks`` of :func:`apply_pending`).
PHASES = ("locked", "marked", "forgotten", "written", "receipted")


@dataclass
class Submitted:
    """What :func:`submit` recorded: the ledger row, whether it is new, and the salt of
    its digest (hand it to the requester; the directory keeps none)."""

    row: dict[str, Any]
    created: bool
    salt: str | None = None


@dataclass
class Resolved:
    """A request's raw ids resolved to indices of the live model's id space."""

    users: np.ndarray
    pairs: np.ndarray
    items: np.ndarray
    problems: list[str] = field(default_factory=list)


def normalise(users: Sequence[Any] | None, pairs: Sequence[Sequence[Any]] | None,
              items: Sequence[Any] | None) -> tuple[list[str], list[tuple[str, str]],
                                                    list[str]]:
    """Raw ids as stripped strings; the request must name something and repeat nothing.

    Raises:
        InvalidRequestError: empty request, a blank id, a malformed pair or a duplicate
            (naming the raw ids).
    """
    us = [str(u).strip() for u in (users or [])]
    its = [str(i).strip() for i in (items or [])]
    ps = []
    for p in pairs or []:
        if isinstance(p, (str, bytes)) or len(p) != 2:
            raise InvalidRequestError(f"a pair must be (user, item), got {p!r}")
        ps.append((str(p[0]).strip(), str(p[1]).strip()))
    if not (us or its or ps):
        raise InvalidRequestError("empty forget request: give users, pairs or items")
    for what, ids in (("user", us), ("item", its)):
        if any(not x for x in ids):
            raise InvalidRequestError(f"a blank {what} id in the request")
        dup = sorted({x for x in ids if ids.count(x) > 1})
        if dup:
            raise InvalidRequestError(f"duplicate {what} id(s) in the request: {dup[:5]}")
    if any(not u or not i for u, i in ps):
        raise InvalidRequestError("a pair with a blank user or item id in the request")
    dup_p = sorted({p for p in ps if ps.count(p) > 1})
    if dup_p:
        raise InvalidRequestError(f"duplicate pair(s) in the request: {dup_p[:5]}")
    return us, ps, its


def resolve(train: Dataset, valid: Dataset | None, test: Dataset, users: Sequence[str],
            pairs: Sequence[tuple[str, str]], items: Sequence[str]) -> Resolved:
    """Raw ids to indices of the live id space; what is unknown goes to ``problems``.

    A user or item is known when its raw id is in the id map (forgotten ones are
    tombstoned, so they are unknown); a pair when it is a row of the training, validation
    or test data.
    """
    u_index = {str(r): k for k, r in enumerate(train.user_ids)}
    i_index = {str(r): k for k, r in enumerate(train.item_ids)}
    problems = []
    for what, ids, index in (("user", users, u_index), ("item", items, i_index)):
        bad = [x for x in ids if x not in index]
        if bad:
            problems.append(f"unknown {what} id(s) {bad[:5]} (never in this model's data, or "
                            "already forgotten)")
    bad_p = [p for p in pairs if p[0] not in u_index or p[1] not in i_index]
    known = [p for p in pairs if p[0] in u_index and p[1] in i_index]
    pr = np.array([[u_index[u], i_index[i]] for u, i in known], dtype=np.int64).reshape(-1, 2)
    if len(pr):
        keys = pr[:, 0] * train.n_items + pr[:, 1]
        held = np.concatenate([d.pair_keys() for d in (train, valid, test) if d is not None])
        absent = ~np.isin(keys, held)
        bad_p += [known[k] for k in np.flatnonzero(absent)]
    if bad_p:
        problems.append(f"pair(s) {bad_p[:5]} not in this model's data (unknown ids, or no "
                        "such interaction)")
    return Resolved(np.array([u_index[x] for x in users if x in u_index], dtype=np.int64),
                    pr, np.array([i_index[x] for x in items if x in i_index], dtype=np.int64),
                    problems)


# ---------------------------------------------------------------------------- submit
def submit(model_dir: str | Path, users: Sequence[Any] | None = None,
           pairs: Sequence[Sequence[Any]] | None = None, items: Sequence[Any] | None = None,
           *, idempotency_key: str | None = None, ledger_url: str | None = None,
           check: bool = True, known: Any = None) -> Submitted:
    """Record a deletion request in the ledger (it will be applied by the next writer).

    Args:
        model_dir: the model directory.
        users: raw user ids to forget entirely.
        pairs: raw (user, item) interactions to forget.
        items: raw item ids to forget entirely.
        idempotency_key: the same key again returns the first request, recording nothing.
        ledger_url: a PostgreSQL ledger (default: SQLite in the directory).
        check: check the ids against the live model before recording (a request naming an
            unknown id is refused here, with the raw ids named).
        known: the live model directory, already loaded (:class:`~trustrec.workflows.model_dir.
            ModelDir`), to check against instead of loading it (the service caches it).

    Raises:
        InvalidRequestError: an empty or malformed request, or (``check``) unknown ids.
    """
    from trustrec.store.modeldir import read_meta
    from trustrec.workflows.model_dir import load_model_dir

    us, ps, its = normalise(users, pairs, items)
    read_meta(model_dir)  # a model directory, or a clear error (nothing is created)
    if idempotency_key is not None and _has_ledger(model_dir, ledger_url):
        with Ledger(model_dir, ledger_url) as ledger:
            row = ledger.by_key(idempotency_key)
        if row is not None:
            return Submitted(row, False)
    if check:
        from trustrec.workflows.protect import recorded_protection

        md = known if known is not None else load_model_dir(model_dir)
        recorded_protection(model_dir)  # an unreadable protection record fails here
        found = resolve(md.unlearner.train_, md.unlearner.valid_, md.test, us, ps, its)
        if found.problems:
            raise InvalidRequestError("; ".join(found.problems) + "; nothing was recorded")
    with Ledger(model_dir, ledger_url) as ledger:
        row, created, salt = ledger.receive(us, ps, its, idempotency_key=idempotency_key)
    return Submitted(row, created, salt)


def _has_ledger(model_dir: str | Path, url: str | None) -> bool:
    from trustrec.store.ledger import LEDGER_FILE

    return url is not None or (Path(model_dir) / LEDGER_FILE).is_file()


# ---------------------------------------------------------------------------- apply
def apply_pending(model_dir: str | Path, *, ledger_url: str | None = None,
                  lock_timeout: float | None = None, log: Callable[[str], None] | None = None,
                  hooks: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Apply every pending request of a model directory in one batch (module docstring).

    Args:
        model_dir: the model directory.
        ledger_url: the ledger's URL (default: SQLite in the directory).
        lock_timeout: seconds to wait for another writer (None: as long as it takes).
        log: where messages about the lock go (default: stderr).
        hooks: called with each phase name of :data:`PHASES` as it is reached (tests stop
            a forget there).

    Returns:
        The final ledger row of every request this call settled (applied or rejected),
        by request id; empty when nothing was pending.
    """
    from trustrec.store.lock import directory_lock
    from trustrec.store.versions import collect_garbage

    phase = hooks or (lambda _p: None)
    with directory_lock(model_dir, timeout=lock_timeout, purpose="forget", log=log), \
            Ledger(model_dir, ledger_url) as ledger:
        collect_garbage(model_dir)
        phase("locked")
        settled = _reconcile(model_dir, ledger)
        pending = ledger.pending()
        if pending:
            settled.update(_apply_batch(Path(model_dir), ledger, pending, phase))
        collect_garbage(model_dir)
        return settled


def _reconcile(model_dir: str | Path, ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Requests a crash interrupted after the swap: the live state lists them as applied,
    so they only need their ledger row and receipt."""
    from trustrec.store.modeldir import read_meta
    from trustrec.store.versions import live_version, version_name

    live = live_version(model_dir)
    if live is None:
        return {}
    receipts = read_meta(model_dir).get("receipts", {})
    batch = json.loads((live / "forget_report.json").read_text(encoding="utf-8")) \
        if (live / "forget_report.json").is_file() else {}
    out = {}
    for row in ledger.rows(limit=1_000_000, status="applying"):
        receipt = receipts.get(row["request_id"])
        if receipt is not None:
            receipt = {**receipt, "verification": batch.get("verification")}
            ledger.mark_applied(row["request_id"], version_name(model_dir), receipt)
            out[row["request_id"]] = ledger.get(row["request_id"])
    return out


def _apply_batch(directory: Path, ledger: Ledger, pending: list[Pending],
                 phase: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    from trustrec.workflows.model_dir import load_model_dir

    md = load_model_dir(directory)
    unl = md.unlearner
    settled: dict[str, dict[str, Any]] = {}
    accepted: list[tuple[Pending, Resolved]] = []
    for p in pending:
        found = resolve(unl.train_, unl.valid_, md.test, p.users, p.pairs, p.items)
        if found.problems:  # stored without ids: counts of what was wrong only
            ledger.mark_rejected(p.request_id, _redact(found.problems))
            settled[p.request_id] = ledger.get(p.request_id)
        else:
            accepted.append((p, found))
    if not accepted:
        return settled
    batch_id = secrets.token_hex(8)
    ledger.mark_applying([p.request_id for p, _ in accepted], batch_id)
    phase("marked")
    users = np.unique(np.concatenate([r.users for _, r in accepted]))
    items = np.unique(np.concatenate([r.items for _, r in accepted]))
    pairs = np.unique(np.concatenate([r.pairs for _, r in accepted]), axis=0)
    digests = {p.request_id: ledger.get(p.request_id) for p, _ in accepted}
    receipts = _forget_and_write(md, accepted, batch_id, users, pairs, items, phase, digests)
    phase("written")
    from trustrec.store.versions import version_name

    version = version_name(directory)
    for p, _ in accepted:
        ledger.mark_applied(p.request_id, version, receipts[p.request_id])
        settled[p.request_id] = ledger.get(p.request_id)
    phase("receipted")
    return settled


def _redact(problems: list[str]) -> str:
    """A rejection reason without raw ids (what the ledger may keep)."""
    kinds = [p.split(" id(s)")[0].split(" (")[0] if "id(s)" in p else "pair(s) not in data"
             for p in problems]
    return "rejected, nothing changed: " + "; ".join(kinds)


def _forget_and_write(md: Any, accepted: list[tuple[Pending, Resolved]], batch_id: str,
                      users: np.ndarray, pairs: np.ndarray, items: np.ndarray,
                      phase: Callable[[str], None],
                      digests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Forget the batch in the unlearner, erase ids, write and verify the new version."""
    from trustrec.data.request import ForgetRequest
    from trustrec.store.modeldir import data_sha256
    from trustrec.workflows.model_dir import save_model_dir
    from trustrec.workflows.protect import recorded_protection, reprotect

    unl = md.unlearner
    t0 = time.perf_counter()
    whole = ForgetRequest(users=users if len(users) else None,
                          pairs=pairs if len(pairs) else None,
                          items=items if len(items) else None)
    train, valid = unl.train_, unl.valid_
    old_user_ids, old_item_ids = train.user_ids, train.item_ids
    before_rows, before_sha = train.n_interactions, data_sha256(train)
    in_train = whole.match_rows(train)
    in_valid = whole.match_rows(valid) if valid is not None else np.zeros(0, bool)
    report = None
    part = _trainable_part(whole, train, valid)
    if part is not None:
        report = unl.forget(part)
    # rows that only a pair names in the validation data and no trainable request covers
    if unl.valid_ is not None:
        left = whole.match_rows(unl.valid_)
        if left.any():
            unl.valid_ = unl.valid_.select(~left)
    test_mask = whole.match_rows(md.test) if md.test.n_interactions else np.zeros(0, bool)
    test = md.test.select(~test_mask)
    unl.train_, unl.valid_, test = _erase_ids(unl.train_, unl.valid_, test, users, items)
    phase("forgotten")
    recorded = recorded_protection(md.path)
    protection, extra = (reprotect(recorded, unl, md.path) if recorded is not None
                         else (None, None))
    after_sha = data_sha256(unl.train_)
    seconds = time.perf_counter() - t0
    common = {
        "format": "trustrec-forget-receipt", "batch_id": batch_id,
        "batch_requests": len(accepted), "model": md.meta.get("model"),
        "method": md.meta.get("method"), "exact": bool(getattr(unl, "exact", False)),
        "removed": {"training_rows": int(in_train.sum()),
                    "validation_rows": int(in_valid.sum()),
                    "test_rows": int(test_mask.sum()),
                    "users_affected": int(len(np.unique(train.users[in_train]))),
                    "note": "rows removed by the whole batch"},
        "retrained": list(report.retrained) if report is not None else [],
        "seconds": seconds,
        "training_data": {"rows_before": before_rows,
                          "rows_after": unl.train_.n_interactions,
                          "sha256_before": before_sha, "sha256_after": after_sha,
                          "sha256_of": "trustrec.store.modeldir.data_sha256: sorted "
                                       "'user<TAB>item<TAB>timestamp' lines of raw ids"},
    }
    if protection is not None:
        common["protection_reapplied"] = {k: protection[k] for k in (
            "method", "attributes", "seed", "seconds", "released_sha256")}
    receipts = {}
    for p, _ in accepted:
        row = digests.get(p.request_id, {})
        receipts[p.request_id] = {
            **common, "request_id": p.request_id, "received_at": p.received_at,
            "applied_at": now_iso(),
            "request": {"n_users": len(p.users), "n_pairs": len(p.pairs),
                        "n_items": len(p.items), "ids_digest": row.get("ids_digest"),
                        "digest_kind": row.get("digest_kind")}}
    meta = dict(md.meta)
    meta["training_sha256"] = after_sha
    meta["receipts"] = {**meta.get("receipts", {}), **receipts}
    meta["history"] = [*meta.get("history", []),
                       {"event": "forget", "time": now_iso(), "batch_id": batch_id,
                        "requests": [p.request_id for p, _ in accepted],
                        **({} if report is None else report.summary()),
                        "test_rows_removed": int(test_mask.sum())}]
    if protection is not None:
        meta["history"].append({"event": "protect", "time": protection["time"],
                                "method": protection["method"],
                                "attributes": protection["attributes"],
                                "seconds": protection["seconds"],
                                "reapplied_after": "forget"})

    checked: dict[str, Any] = {}

    def verify(tmp: Path) -> dict[str, Any]:
        checked.update(_verify(tmp, whole, users, items, old_user_ids, old_item_ids,
                               after_sha))
        return checked

    batch_receipt = {**common, "requests": sorted(receipts),
                     "request": {"n_users": int(len(users)), "n_pairs": int(len(pairs)),
                                 "n_items": int(len(items)),
                                 "note": "ids of the whole batch; none is stored"}}
    save_model_dir(md.path, meta, unl, test, batch_receipt, verify, extra=extra)
    return {rid: {**r, "verification": checked} for rid, r in receipts.items()}


def _trainable_part(whole: Any, train: Dataset, valid: Dataset | None) -> Any:
    """The part of a request the unlearner takes (None when nothing): users and items with
    training or validation rows, pairs that are training rows. The rest (test rows, a pair
    that is only a validation row) is dropped from the data directly: it trained nothing.
    (A validation row may have chosen an early-stopping epoch; a pair naming only such a
    row does not retrain for it.)"""
    from trustrec.data.request import ForgetRequest

    held_u = np.bincount(train.users, minlength=train.n_users)
    held_i = np.bincount(train.items, minlength=train.n_items)
    if valid is not None:
        held_u = held_u + np.bincount(valid.users, minlength=train.n_users)
        held_i = held_i + np.bincount(valid.items, minlength=train.n_items)
    users = whole.users[held_u[whole.users] > 0]
    items = whole.items[held_i[whole.items] > 0]
    pairs = whole.pairs
    if len(pairs):
        keys = pairs[:, 0] * train.n_items + pairs[:, 1]
        pairs = pairs[np.isin(keys, train.pair_keys())]
        # a pair whose user or item goes entirely is covered by that user or item
        pairs = pairs[~np.isin(pairs[:, 0], users) & ~np.isin(pairs[:, 1], items)]
    if not (len(users) or len(items) or len(pairs)):
        return None
    return ForgetRequest(users=users if len(users) else None,
                         pairs=pairs if len(pairs) else None,
                         items=items if len(items) else None)


def _erase_ids(train: Dataset, valid: Dataset | None, test: Dataset, users: np.ndarray,
               items: np.ndarray) -> tuple[Dataset, Dataset | None, Dataset]:
    """Tombstone the raw ids of the forgotten users and items in the shared id maps and
    erase their attributes, in every copy of the id space."""
    if not len(users) and not len(items):
        return train, valid, test
    uid = train.user_ids.astype(object).copy()
    iid = train.item_ids.astype(object).copy()
    for table, idx in ((uid, users), (iid, items)):
        for k in idx:
            table[k] = f"forgotten:{secrets.token_hex(12)}"

    def erase(ds: Dataset) -> Dataset:
        return (ds.with_ids(uid, iid).without_user_attributes(users)
                .without_item_attributes(items))

    return erase(train), None if valid is None else erase(valid), erase(test)


def _verify(tmp: Path, whole: Any, users: np.ndarray, items: np.ndarray,
            old_user_ids: np.ndarray, old_item_ids: np.ndarray,
            after_sha: str) -> dict[str, Any]:
    """Reload the written state and check that nothing of the batch is left in it."""
    from trustrec.store.modeldir import UNLEARNER_DIR, data_sha256, read_test
    from trustrec.unlearn.persist import load_unlearner

    saved = load_unlearner(tmp / UNLEARNER_DIR)
    test = read_test(tmp, saved.train_)
    gone_u = set(np.asarray(old_user_ids)[users].astype(str))
    gone_i = set(np.asarray(old_item_ids)[items].astype(str))
    left = {
        "training_rows_remaining": int(whole.match_rows(saved.train_).sum()),
        "validation_rows_remaining": (0 if saved.valid_ is None
                                      else int(whole.match_rows(saved.valid_).sum())),
        "test_rows_remaining": int(whole.match_rows(test).sum()) if test.n_interactions else 0,
        "raw_ids_remaining": len(gone_u & set(saved.train_.user_ids.astype(str)))
        + len(gone_i & set(saved.train_.item_ids.astype(str))),
        "user_attributes_remaining": _values_left(saved.train_.user_attributes, users),
        "item_attributes_remaining": _values_left(saved.train_.item_attributes, items),
    }
    sha_ok = data_sha256(saved.train_) == after_sha
    if not sha_ok or any(left.values()):
        raise TrustrecError(f"verification of the written state failed: {left}, training "
                            f"data hash matches: {sha_ok}; nothing was changed")
    return {"checked": "the written state, reloaded from disk", **left,
            "saved_training_sha256_matches": sha_ok, "passed": True}


def _values_left(table: Any, idx: np.ndarray) -> int:
    rows = table.index.intersection(np.asarray(idx, dtype=np.int64))
    return int(table.loc[rows].notna().to_numpy().sum()) if len(rows) else 0


# ---------------------------------------------------------------------------- one call
def forget(model_dir: str | Path, users: Sequence[Any] | None = None,
           pairs: Sequence[Sequence[Any]] | None = None, items: Sequence[Any] | None = None,
           *, idempotency_key: str | None = None, ledger_url: str | None = None,
           lock_timeout: float | None = None, log: Callable[[str], None] | None = None
           ) -> dict[str, Any]:
    """Submit one request and apply everything pending; return its ledger row (with the
    receipt) and the salt of its digest.

    Raises:
        InvalidRequestError: the request is refused (nothing recorded or changed).
        TrustrecError: the request was recorded but rejected when applied (another
            request forgot the same ids first); the ledger says so.
    """
    sub = submit(model_dir, users, pairs, items, idempotency_key=idempotency_key,
                 ledger_url=ledger_url)
    rid = sub.row["request_id"]
    if sub.row["status"] not in ("applied", "rejected"):
        apply_pending(model_dir, ledger_url=ledger_url, lock_timeout=lock_timeout, log=log)
    with Ledger(model_dir, ledger_url) as ledger:
        row = ledger.get(rid)
    if row["status"] == "rejected":
        raise TrustrecError(f"request {rid} was rejected when applied: {row['error']}")
    return {**row, "salt": sub.salt, "created": sub.created}
