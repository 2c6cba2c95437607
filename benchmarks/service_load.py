"""Load test of the deletion service on loopback: throughput, latency, exactly-once.

Starts ``trustrec serve`` on a free loopback port for a model directory, sends
``--requests`` deletion requests (one distinct user each) from ``--threads`` client threads
at once, and re-sends a share of them with the same idempotency key. It waits until every
request is applied, then checks that each distinct request was recorded and applied exactly
once and that none of the users is left in the model. Printed: submission throughput,
p50/p99 latency of the POST (accept) and of the time until applied, and the batches used.

The named peer, measured in the same run: applying requests one at a time (one retrain
each, what a ``trustrec forget`` per request does); the ratio is how many more requests per
second batching applies.

Usage::

    python benchmarks/service_load.py [--model-dir DIR | --data PATH] [--requests 300]
        [--threads 16] [--duplicates 0.5] [--batch-delay 1.0] [--peer-requests 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def run_load(model_dir: str | Path, *, n_requests: int = 300, threads: int = 16,
             duplicate_share: float = 0.5, batch_delay: float = 1.0,
             timeout: float = 900) -> dict[str, Any]:
    """Serve ``model_dir`` on loopback and load it (see the module docstring).

    Returns:
        ``distinct_requests``, ``applied``, ``rejected``, ``ledger_rows``, ``users_left``,
        ``batches``, ``seconds_submit``, ``seconds_total``, ``throughput_per_s`` (applied
        requests per second, submission to last applied), ``latency_ms`` (POST) and
        ``applied_after_ms`` (p50 / p99 / max).
    """
    import httpx

    from trustrec.store.ledger import Ledger
    from trustrec.workflows.model_dir import load_model_dir

    model_dir = Path(model_dir)
    users = [str(u) for u in load_model_dir(model_dir).unlearner.train_.user_ids
             if not str(u).startswith("forgotten:")][:n_requests]
    if len(users) < n_requests:
        raise ValueError(f"{model_dir} has only {len(users)} users to forget")
    token, port = secrets.token_hex(16), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trustrec.cli", "serve", "--model-dir", str(model_dir),
         "--port", str(port), "--batch-delay", str(batch_delay), "--max-wait",
         str(max(10.0, 4 * batch_delay))],
        env={**os.environ, "TRUSTREC_SERVICE_TOKEN": token}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=False)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"the service did not start: {server.stderr.read()}")
            time.sleep(0.2)
        sends = [(u, f"k-{u}") for u in users]
        n_dup = int(round(duplicate_share * n_requests))
        sends += [(u, f"k-{u}") for u in users[:n_dup]]  # re-sent: must not count twice
        client = httpx.Client(base_url=base, headers=auth, timeout=60)

        def post(item: tuple[str, str]) -> tuple[str, float, float]:
            user, key = item
            t = time.monotonic()
            res = client.post("/v1/requests", json={"users": [user], "idempotency_key": key})
            res.raise_for_status()
            return res.json()["request_id"], (time.monotonic() - t) * 1000, time.monotonic()

        t_submit = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            posted = list(pool.map(post, sends))
        seconds_submit = time.monotonic() - t_submit
        ids = sorted({rid for rid, _, _ in posted})
        accepted_at = {}
        for rid, _, when in posted:
            accepted_at.setdefault(rid, when)
        applied_at: dict[str, float] = {}
        while len(applied_at) < len(ids):
            if time.monotonic() - t_submit > timeout:
                raise TimeoutError(f"{len(ids) - len(applied_at)} requests not applied in "
                                   f"{timeout} s")
            for rid in ids:
                if rid not in applied_at and client.get(
                        f"/v1/requests/{rid}").json()["status"] in ("applied", "rejected"):
                    applied_at[rid] = time.monotonic()
            time.sleep(0.2)
        seconds_total = time.monotonic() - t_submit
        batches = client.get("/v1/health").json()["batches_applied"]
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    with Ledger(model_dir) as ledger:
        counts = ledger.counts()
        rows = ledger.rows(limit=10 * n_requests)
    left = set(users) & set(load_model_dir(model_dir).unlearner.train_.user_ids.astype(str))
    return {"distinct_requests": len(ids), "sent": len(sends),
            "applied": counts.get("applied", 0), "rejected": counts.get("rejected", 0),
            "ledger_rows": len(rows), "users_left": len(left), "batches": batches,
            "seconds_submit": seconds_submit, "seconds_total": seconds_total,
            "throughput_per_s": len(ids) / seconds_total,
            "latency_ms": _percentiles([ms for _, ms, _ in posted]),
            "applied_after_ms": _percentiles([(applied_at[r] - accepted_at[r]) * 1000
                                              for r in ids])}


def one_at_a_time(model_dir: str | Path, n: int) -> float:
    """The peer: ``n`` requests applied one by one (one retrain each); requests/second."""
    from trustrec.workflows.forget import forget
    from trustrec.workflows.model_dir import load_model_dir

    users = [str(u) for u in load_model_dir(model_dir).unlearner.train_.user_ids
             if not str(u).startswith("forgotten:")][-n:]
    t0 = time.monotonic()
    for u in users:
        forget(model_dir, users=[u])
    return n / (time.monotonic() - t0)


def main() -> None:
    """Train a small model directory if none is given, then load the service."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=None,
                   help="a model directory to load (a copy is used; default: train a small "
                        "BPR-MF on --data)")
    p.add_argument("--data", default="ml-100k", help="dataset for the default model")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--duplicates", type=float, default=0.5,
                   help="share of requests re-sent with the same idempotency key")
    p.add_argument("--batch-delay", type=float, default=1.0)
    p.add_argument("--peer-requests", type=int, default=5)
    a = p.parse_args()
    from trustrec.workflows.train import train_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        if a.model_dir is not None:
            shutil.copytree(a.model_dir, work, symlinks=True)
        else:
            train_model_dir(a.data, "bpr", work, model_config={"epochs": 20, "dim": 32})
        peer_dir = Path(tmp) / "peer"
        shutil.copytree(work, peer_dir, symlinks=True)
        r = run_load(work, n_requests=a.requests, threads=a.threads,
                     duplicate_share=a.duplicates, batch_delay=a.batch_delay)
        peer = one_at_a_time(peer_dir, a.peer_requests)
    print(f"requests: {r['distinct_requests']} distinct ({r['sent']} sent, re-sends with the "
          f"same idempotency key included), {r['threads'] if 'threads' in r else a.threads} "
          "client threads")
    print(f"exactly once: applied {r['applied']}, rejected {r['rejected']}, ledger rows "
          f"{r['ledger_rows']}, users left in the model {r['users_left']}, batches "
          f"{r['batches']}")
    print(f"submission: {r['seconds_submit']:.2f} s; all applied after "
          f"{r['seconds_total']:.2f} s; throughput {r['throughput_per_s']:.1f} requests/s")
    lat, done = r["latency_ms"], r["applied_after_ms"]
    print(f"POST latency: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max "
          f"{lat['max']:.1f} ms")
    print(f"accepted -> applied: p50 {done['p50'] / 1000:.2f} s, p99 {done['p99'] / 1000:.2f} s")
    print(f"peer (one request, one retrain, one at a time): {peer:.2f} requests/s; "
          f"batched service: {r['throughput_per_s'] / peer:.1f}x")


if __name__ == "__main__":
    main()
