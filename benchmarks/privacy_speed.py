"""Seconds of PoT-AU (both losses) and LEGO on a MovieLens-1M-sized user table.

The data is :func:`trustrec.data.synthetic.ml1m_shaped` (6,040 users, 3,706 items, 1M
interactions, ML-1M's gender / age marginals): **timing only** — it has no preference
structure, so no privacy or utility figure is read from it. A BPR-MF (dim 64) is trained
on it for ``--epochs`` epochs without validation; that training is the first peer, timed
in the same run. Then, each with its default config:

* ``pot-au-d2d`` (gender; MMD on at most 1,024 users per class per step), and on
  21-class occupation,
* ``pot-au-u2u`` (gender, and occupation),
* ``lego`` on occupation,
* ``lego`` (gender) and ``lego`` (gender + age, ``workers`` 1 and 2: the two
  calibrations in parallel threads),

and the second peer, the PoT-AU companion code's setting: 500 full-batch Adam steps with
the *dense* MMD over every user (``sample=0``), timed over ``--dense-steps`` steps and
extrapolated to 500 (its kernel matrices are 6,040² per kernel).

Torch runs with its default threads (the machine's cores) unless ``--threads`` is given;
the number is in the output. On a machine shared with other busy processes, two OpenMP
threads per process can be many times slower than one (threads wait for a core), so
compare ``--threads 1`` and ``--threads 2`` there. Absolute seconds are indicative only;
read the ratios to the peers, measured in the same run.

Usage: ``python benchmarks/privacy_speed.py [--out privacy_speed.json] [--epochs 20]
[--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch

from trustrec.data.synthetic import ml1m_shaped
from trustrec.models import make_model
from trustrec.privacy.base import labels_for, make_protector


def timed(fn: Any) -> tuple[float, Any]:
    """``(seconds, result)`` of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    """Run the timings, print a table and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="privacy_speed.json")
    ap.add_argument("--epochs", type=int, default=20, help="BPR epochs (peer 1)")
    ap.add_argument("--dense-steps", type=int, default=5,
                    help="steps of the dense-MMD peer to time (extrapolated to 500)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for this process (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    ds = ml1m_shaped(0)
    labels = labels_for(ds, ["gender", "age", "occupation"])
    bpr_s, model = timed(lambda: make_model("bpr", dim=64, epochs=args.epochs).fit(ds, seed=0))
    rows: dict[str, dict[str, Any]] = {
        "bpr_training": {"seconds": bpr_s, "what": f"BPR-MF dim 64, {args.epochs} epochs "
                                                  "(peer: one retraining)"}}

    def run(name: str, method: str, attrs: list[str], **cfg: Any) -> None:
        sub = {a: labels[a] for a in attrs}
        sec, out = timed(lambda: make_protector(method, **cfg).protect(model, ds, sub,
                                                                       seed=0))
        rows[name] = {"seconds": sec, "method": method, "attributes": attrs, "config": cfg,
                      "record_seconds": out.fit_info_["protection"]["seconds"]}

    run("pot-au-d2d", "pot-au-d2d", ["gender"])
    run("pot-au-u2u", "pot-au-u2u", ["gender"])
    run("pot-au-d2d occupation", "pot-au-d2d", ["occupation"])
    run("pot-au-u2u occupation", "pot-au-u2u", ["occupation"])
    run("lego", "lego", ["gender"])
    run("lego occupation", "lego", ["occupation"])
    run("lego gender+age workers=1", "lego", ["gender", "age"], workers=1)
    run("lego gender+age workers=2", "lego", ["gender", "age"], workers=2)
    steps = max(1, args.dense_steps)
    sec, _ = timed(lambda: make_protector("pot-au-d2d", sample=0, steps=steps).protect(
        model, ds, {"gender": labels["gender"]}, seed=0))
    rows["dense-mmd peer"] = {"seconds": sec * 500 / steps, "measured_seconds": sec,
                              "measured_steps": steps, "extrapolated_to_steps": 500,
                              "what": "companion-code setting: 500 full-batch steps, dense "
                                      "MMD over all users"}
    result = {"data": {"users": ds.n_users, "items": ds.n_items,
                       "interactions": ds.n_interactions, "name": ds.name},
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "platform": platform.platform(), "torch": torch.__version__,
              "timings": rows}
    width = max(len(k) for k in rows)
    for name, row in rows.items():
        ratio = row["seconds"] / bpr_s
        print(f"{name:<{width}}  {row['seconds']:8.1f} s   {ratio:6.2f} x BPR training")
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
