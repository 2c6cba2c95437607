"""The request ledger: every deletion request, from receipt to applied, durably, without ids.

One row per request: when it was received, its idempotency key, how many ids of each kind
it named, a *keyed* digest of those ids, its status (``received`` → ``applying`` →
``applied``, or ``rejected``), the model version that applied it and its receipt. The raw
ids of a pending request are kept apart, in ``pending/<request_id>.json`` of the model
directory, only until the request is applied or rejected: the ledger itself never holds an
id, so listing it (or reading the database file) reveals no one.

Backends: an embedded SQLite database, ``<model dir>/ledger.sqlite`` in WAL mode with
``secure_delete`` (the default), or PostgreSQL through a URL (``postgresql://...``; needs
``pip install 'trustrec[postgres]'``). Both use the same schema and SQL.

Digests: with a secret key (``TRUSTREC_RECEIPT_KEY``, kept outside the directory) the
digest is ``HMAC-SHA256(key, ids)``; without one, a fresh random salt per request is
returned to the requester (and stored nowhere) and the digest is ``sha256(salt || ids)``.
Either way the requester can prove which ids a receipt covers, and nobody holding only the
directory can test a guess: an unsalted hash over a small id space would be reversed in a
second.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustrec.errors import ConfigError, TrustrecError
from trustrec.fileio import now_iso, to_jsonable, write_atomic

LEDGER_FILE = "ledger.sqlite"
PENDING_DIR = "pending"
RECEIPTS_DIR = "receipts"
KEY_ENV = "TRUSTREC_RECEIPT_KEY"
STATUSES = ("received", "applying", "applied", "rejected")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    n_users INTEGER NOT NULL,
    n_pairs INTEGER NOT NULL,
    n_items INTEGER NOT NULL,
    ids_digest TEXT NOT NULL,
    digest_kind TEXT NOT NULL,
    batch_id TEXT,
    applied_at TEXT,
    model_version TEXT,
    receipt TEXT,
    error TEXT
)
"""
COLUMNS = ("request_id", "idempotency_key", "received_at", "status", "n_users", "n_pairs",
           "n_items", "ids_digest", "digest_kind", "batch_id", "applied_at", "model_version",
           "receipt", "error")


def canonical_ids(users: Sequence[str], pairs: Sequence[tuple[str, str]],
                  items: Sequence[str]) -> bytes:
    """The bytes a digest covers: sorted ``u:<id>``, ``p:<user>\\t<item>``, ``i:<id>``
    lines (anyone can recompute them from the request)."""
    lines = sorted([f"u:{u}" for u in users] + [f"p:{u}\t{i}" for u, i in pairs]
                   + [f"i:{i}" for i in items])
    return "".join(f"{x}\n" for x in lines).encode("utf-8")


def ids_digest(data: bytes, key: bytes | None) -> tuple[str, str, str | None]:
    """``(digest, kind, salt)``: HMAC with ``key``, else a salted sha256 with a new salt
    (returned hex-encoded: the requester keeps it; the directory never stores it)."""
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest(), "hmac-sha256", None
    salt = secrets.token_bytes(16)
    return hashlib.sha256(salt + data).hexdigest(), "salted-sha256", salt.hex()


def receipt_key() -> bytes | None:
    """The HMAC key from ``TRUSTREC_RECEIPT_KEY`` (None when unset or empty)."""
    value = os.environ.get(KEY_ENV, "")
    return value.encode("utf-8") if value else None


@dataclass
class Pending:
    """A request waiting to be applied: its ledger row and its raw ids."""

    request_id: str
    users: list[str]
    pairs: list[tuple[str, str]]
    items: list[str]
    received_at: str


class Ledger:
    """The durable request ledger of one model directory (see the module docstring).

    Args:
        directory: the model directory (its ``pending/`` and ``receipts/`` live there, and
            the SQLite file by default).
        url: ``None`` or ``sqlite:///path`` for SQLite, ``postgresql://...`` for PostgreSQL.
    """

    def __init__(self, directory: str | Path, url: str | None = None) -> None:
        self.directory = Path(directory)
        self.url = url
        if url is None or url.startswith("sqlite:///"):
            path = self.directory / LEDGER_FILE if url is None else Path(url[10:])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=60, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._mark = "?"
            self.backend = "sqlite"
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as exc:
                raise ConfigError("a PostgreSQL ledger needs psycopg: pip install "
                                  "'trustrec[postgres]'") from exc
            self._conn = psycopg.connect(url, autocommit=True)
            self._mark = "%s"
            self.backend = "postgresql"
        else:
            raise ConfigError(f"ledger URL must start with sqlite:/// or postgresql://, "
                              f"got {url!r}")
        self._sql(SCHEMA)

    # ------------------------------------------------------------------ plumbing
    def _sql(self, query: str, args: Sequence[Any] = ()) -> list[tuple]:
        cur = self._conn.cursor()
        try:
            cur.execute(query.replace("?", self._mark), tuple(args))
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _row(values: tuple) -> dict[str, Any]:
        row = dict(zip(COLUMNS, values, strict=True))
        if row["receipt"]:
            row["receipt"] = json.loads(row["receipt"])
        return row

    def _select(self, where: str, args: Sequence[Any] = (), tail: str = "") -> list[dict]:
        rows = self._sql(f"SELECT {', '.join(COLUMNS)} FROM requests {where} {tail}", args)
        return [self._row(r) for r in rows]

    # ------------------------------------------------------------------ writing
    def receive(self, users: Sequence[str], pairs: Sequence[tuple[str, str]],
                items: Sequence[str], *, idempotency_key: str | None = None
                ) -> tuple[dict[str, Any], bool, str | None]:
        """Record a new request durably (its ids in ``pending/`` first, then the row).

        Returns:
            ``(row, created, salt)``: the ledger row; False when a request with the same
            idempotency key exists (that request's row is returned and nothing is
            recorded); the salt of a salted digest (give it to the requester).
        """
        if idempotency_key is not None:
            found = self.by_key(idempotency_key)
            if found is not None:
                return found, False, None
        request_id = secrets.token_hex(12)
        digest, kind, salt = ids_digest(canonical_ids(users, pairs, items), receipt_key())
        when = now_iso()
        pending = {"request_id": request_id, "users": list(users),
                   "pairs": [list(p) for p in pairs], "items": list(items),
                   "received_at": when}
        path = self.directory / PENDING_DIR / f"{request_id}.json"
        write_atomic(path, json.dumps(pending))
        try:
            self._sql("INSERT INTO requests (request_id, idempotency_key, received_at, "
                      "status, n_users, n_pairs, n_items, ids_digest, digest_kind) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (request_id, idempotency_key, when, "received", len(users), len(pairs),
                       len(items), digest, kind))
        except Exception:
            path.unlink(missing_ok=True)
            if idempotency_key is not None:  # lost a race for the same key
                found = self.by_key(idempotency_key)
                if found is not None:
                    return found, False, None
            raise
        return self.get(request_id), True, salt

    def mark_applying(self, request_ids: Sequence[str], batch_id: str) -> None:
        """Mark requests as being applied in one batch."""
        for rid in request_ids:
            self._sql("UPDATE requests SET status = 'applying', batch_id = ? "
                      "WHERE request_id = ?", (batch_id, rid))

    def mark_applied(self, request_id: str, model_version: str,
                     receipt: dict[str, Any]) -> None:
        """Mark a request applied; keep its receipt (file and row, never overwritten) and
        erase its pending ids."""
        text = json.dumps(to_jsonable(receipt, finite=True), indent=2)
        path = self.directory / RECEIPTS_DIR / f"{request_id}.json"
        if not path.exists():
            write_atomic(path, text)
        self._sql("UPDATE requests SET status = 'applied', applied_at = ?, model_version = ?, "
                  "receipt = ?, error = NULL WHERE request_id = ? AND status <> 'applied'",
                  (now_iso(), model_version, text, request_id))
        self._drop_pending(request_id)

    def mark_rejected(self, request_id: str, error: str) -> None:
        """Mark a request rejected (bad ids, nothing changed) and erase its pending ids.

        ``error`` must not name raw ids (it is stored); pass counts or kinds only.
        """
        self._sql("UPDATE requests SET status = 'rejected', error = ? WHERE request_id = ?",
                  (error, request_id))
        self._drop_pending(request_id)

    def _drop_pending(self, request_id: str) -> None:
        (self.directory / PENDING_DIR / f"{request_id}.json").unlink(missing_ok=True)
        if self.backend == "sqlite":  # no old page with the row's earlier state stays
            self._sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------ reading
    def get(self, request_id: str) -> dict[str, Any] | None:
        """The ledger row of a request (None when unknown)."""
        rows = self._select("WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        """The request recorded with an idempotency key (None when there is none)."""
        rows = self._select("WHERE idempotency_key = ?", (idempotency_key,))
        return rows[0] if rows else None

    def rows(self, limit: int = 100, offset: int = 0,
             status: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows, oldest first (no raw ids: the ledger has none)."""
        if status is not None and status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        return self._select(where, (*args, int(limit), int(offset)),
                            "ORDER BY received_at, request_id LIMIT ? OFFSET ?")

    def pending(self) -> list[Pending]:
        """Requests received or interrupted while applying, oldest first, with their ids.

        Raises:
            TrustrecError: a pending request's ids file is missing or unreadable.
        """
        out = []
        for row in self._select("WHERE status IN ('received', 'applying')", (),
                                "ORDER BY received_at, request_id"):
            path = self.directory / PENDING_DIR / f"{row['request_id']}.json"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise TrustrecError(f"{path}: the ids of pending request "
                                    f"{row['request_id']} cannot be read ({exc})") from None
            out.append(Pending(row["request_id"], data["users"],
                               [tuple(p) for p in data["pairs"]], data["items"],
                               row["received_at"]))
        return out

    def counts(self) -> dict[str, int]:
        """Number of requests per status."""
        return {s: int(n) for s, n in self._sql(
            "SELECT status, COUNT(*) FROM requests GROUP BY status")}
