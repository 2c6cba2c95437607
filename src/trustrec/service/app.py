"""The deletion service: an HTTP API that takes deletion requests and applies them in batches.

``trustrec serve --model-dir DIR`` runs :func:`create_app` under uvicorn. Every request goes
through the same path as ``trustrec forget`` (:mod:`trustrec.workflows.forget`): it is
checked, recorded durably in the directory's ledger, and answered ``202 Accepted`` at once;
a background worker applies what is pending in one batch (one retrain for the batch, the
efficient way for shard methods) ``batch_delay`` seconds after the first request of a
batch arrived, or sooner when the oldest has waited ``max_wait`` seconds. A crash loses
nothing: the ledger keeps every accepted request, and the next writer (the restarted
service, or ``trustrec forget``) applies it.

Endpoints (JSON; all but ``/v1/health`` need ``Authorization: Bearer <token>``):

* ``POST /v1/requests`` — body ``{"users": [...], "pairs": [[user, item], ...], "items":
  [...], "idempotency_key": "..."}`` (raw ids; at least one list non-empty) → ``202``
  with ``request_id``, ``status``, ``created`` (false when the idempotency key was seen
  before: nothing new is recorded) and, for a salted digest, the ``salt`` (returned once,
  stored nowhere).
* ``GET /v1/requests/{request_id}`` — its ledger row: status, model version, receipt.
* ``GET /v1/ledger?limit=&offset=&status=`` — ledger rows (counts and digests, no ids).
* ``GET /v1/health`` — liveness, live model version, pending count.

Errors: a missing or wrong token is ``401`` and changes nothing; a malformed body is
``422`` naming the field; unknown or duplicate ids are ``422`` naming them.
"""

import hmac
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from trustrec.errors import InvalidRequestError, TrustrecError

log = logging.getLogger("trustrec.service")


class DeletionRequest(BaseModel):
    """A deletion request in raw ids (at least one list non-empty)."""

    model_config = ConfigDict(extra="forbid")
    users: list[str] = Field(default_factory=list, max_length=100_000)
    pairs: list[tuple[str, str]] = Field(default_factory=list, max_length=100_000)
    items: list[str] = Field(default_factory=list, max_length=100_000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class BatchWorker:
    """Applies pending requests in batches, in a background thread of the service.

    Args:
        model_dir: the model directory.
        ledger_url: its ledger (default: SQLite in the directory).
        batch_delay: seconds to wait after a request arrives for more to join its batch.
        max_wait: the most seconds the oldest pending request waits before its batch runs.
        on_applied: called after each batch (e.g. to refresh a cache).
    """

    def __init__(self, model_dir: str | Path, *, ledger_url: str | None = None,
                 batch_delay: float = 1.0, max_wait: float = 10.0,
                 on_applied: Callable[[], None] | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.ledger_url = ledger_url
        self.batch_delay = float(batch_delay)
        self.max_wait = float(max_wait)
        self.on_applied = on_applied
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._first_seen: float | None = None
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the worker thread (it first applies whatever is already pending)."""
        self._thread = threading.Thread(target=self._run, name="trustrec-batches",
                                        daemon=True)
        self._first_seen = time.monotonic()
        self._wake.set()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress (if any)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """A request was recorded: make sure a batch will run."""
        if self._first_seen is None:
            self._first_seen = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        from trustrec.workflows.forget import apply_pending

        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            first = self._first_seen or time.monotonic()
            deadline = min(time.monotonic() + self.batch_delay, first + self.max_wait)
            while not self._stop.is_set() and time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
            self._first_seen = None
            try:
                settled = apply_pending(self.model_dir, ledger_url=self.ledger_url,
                                        log=log.info)
                self.last_error = None
                if settled:
                    self.batches += 1
                    if self.on_applied is not None:
                        self.on_applied()
            except Exception as exc:  # keep the requests pending and try again later
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("batch failed (requests stay pending): %s", self.last_error)
                if not self._stop.wait(2.0):
                    self.notify()


def create_app(model_dir: str | Path, *, token: str, ledger_url: str | None = None,
               batch_delay: float = 1.0, max_wait: float = 10.0, worker: bool = True
               ) -> FastAPI:
    """The FastAPI application of the deletion service (see the module docstring).

    Args:
        model_dir: the model directory it serves.
        token: the bearer token clients must send (compared in constant time).
        ledger_url: the ledger (default: SQLite in the directory).
        batch_delay: see :class:`BatchWorker`.
        max_wait: see :class:`BatchWorker`.
        worker: run the batch worker (tests may drive batches themselves).

    Raises:
        TrustrecError: an empty token, or not a model directory.
    """
    from trustrec.store.ledger import STATUSES, Ledger
    from trustrec.store.modeldir import read_meta
    from trustrec.store.versions import version_name
    from trustrec.workflows.forget import submit
    from trustrec.workflows.model_dir import load_model_dir

    if not token:
        raise TrustrecError("the service needs a non-empty token")
    directory = Path(model_dir)
    read_meta(directory)
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def live() -> Any:
        """The live model directory, loaded once per version (ids are checked on it)."""
        name = version_name(directory)
        with lock:
            if cache.get("version") != name:
                cache["md"], cache["version"] = load_model_dir(directory), name
            return cache["md"]

    batches = BatchWorker(directory, ledger_url=ledger_url, batch_delay=batch_delay,
                          max_wait=max_wait, on_applied=lambda: None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # noqa: ANN202
        if worker:
            batches.start()
        try:
            yield
        finally:
            if worker:
                batches.stop()

    app = FastAPI(title="trustrec deletion service", lifespan=lifespan,
                  description="Submit deletion requests (raw ids) for one model directory; "
                              "follow them through the ledger to their receipts.")
    app.state.worker = batches

    def authorised(request: Request) -> None:
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(),
                                                                  token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(InvalidRequestError)
    async def invalid(_request: Request, exc: InvalidRequestError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.post("/v1/requests", status_code=202, dependencies=[Depends(authorised)])
    def post_request(body: DeletionRequest) -> dict[str, Any]:
        sub = submit(directory, body.users, body.pairs, body.items,
                     idempotency_key=body.idempotency_key, ledger_url=ledger_url,
                     known=live())
        if sub.created:
            batches.notify()
        return {"request_id": sub.row["request_id"], "status": sub.row["status"],
                "created": sub.created, "salt": sub.salt}

    @app.get("/v1/requests/{request_id}", dependencies=[Depends(authorised)])
    def get_request(request_id: str) -> dict[str, Any]:
        with Ledger(directory, ledger_url) as ledger:
            row = ledger.get(request_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no request {request_id!r}")
        return row

    @app.get("/v1/ledger", dependencies=[Depends(authorised)])
    def get_ledger(limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0),
                   status: str | None = Query(None, pattern="^(" + "|".join(STATUSES) + ")$")
                   ) -> dict[str, Any]:
        with Ledger(directory, ledger_url) as ledger:
            return {"rows": ledger.rows(limit, offset, status), "counts": ledger.counts()}

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        with Ledger(directory, ledger_url) as ledger:
            counts = ledger.counts()
        return {"status": "ok", "model_version": version_name(directory),
                "pending": counts.get("received", 0) + counts.get("applying", 0),
                "batches_applied": batches.batches, "last_error": batches.last_error}

    return app
