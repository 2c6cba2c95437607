"""Wall time of the full MovieLens-100K grid against the issue's 15-minute budget.

Runs the documented command::

    trustrec bench --spec benchmarks/specs/cure4rec-ml100k.toml --out <fresh folder>

(all methods, bpr and wmf, core/edge/random users, p = 5 %, seeds 0-2) with the default
engine (local processes, one per CPU) into a fresh output folder, so that nothing is
skipped, and prints the wall time against the budget (15 minutes on 2 cores). With
``--serial`` it also runs the same grid with ``--workers 1`` (in-process, cell by cell) into
another fresh folder and prints the parallel speed-up, serial time over parallel time,
measured in the same session. Each run is a separate ``trustrec`` process, timed from start
to exit (loading data, workers starting, numba warm-up and the report included).

Usage::

    python benchmarks/grid_time.py [--spec FILE] [--workers N] [--engine local|ray]
        [--serial] [--budget-minutes 15] [--keep] [--out timing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = HERE / "specs" / "cure4rec-ml100k.toml"


def run_grid(spec: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run ``trustrec bench`` once into ``out`` (emptied first); return its wall time."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "trustrec.cli", "bench", "--spec", str(spec), "--out",
           str(out), *extra]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    seconds = time.perf_counter() - t0
    return {"command": cmd, "seconds": seconds, "exit_code": proc.returncode}


def main() -> None:
    """Parse the options, run the grid (and the serial baseline if asked), print times."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="grid spec file")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel workers (default: the engine's default, one per CPU)")
    p.add_argument("--engine", default=None, help="local (default) or ray")
    p.add_argument("--serial", action="store_true",
                   help="also run with --workers 1 and print serial / parallel")
    p.add_argument("--budget-minutes", type=float, default=15.0,
                   help="the budget to compare against (issue: 15 minutes on 2 cores)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder for the runs' outputs (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the runs' outputs")
    p.add_argument("--out", type=Path, default=None, help="also write the timings as JSON")
    a = p.parse_args()
    if not a.spec.is_file():
        sys.exit(f"error: {a.spec}: spec file not found")

    root = a.root or Path(tempfile.mkdtemp(prefix="trustrec-grid-time-"))
    extra = ["--quiet"]
    if a.engine is not None:
        extra += ["--engine", a.engine]
    parallel_extra = extra + (["--workers", str(a.workers)] if a.workers else [])
    result: dict[str, Any] = {"spec": str(a.spec), "cpu_count": os.cpu_count(),
                              "budget_seconds": 60 * a.budget_minutes}
    try:
        result["parallel"] = run_grid(a.spec, root / "parallel", parallel_extra)
        if a.serial:
            result["serial"] = run_grid(a.spec, root / "serial", extra + ["--workers", "1"])
    finally:
        if not a.keep and a.root is None:
            shutil.rmtree(root, ignore_errors=True)

    par = result["parallel"]["seconds"]
    budget = result["budget_seconds"]
    verdict = "within" if par <= budget else "OVER"
    print(f"grid wall time: {par / 60:.1f} min on {os.cpu_count()} CPU(s) "
          f"({verdict} the {a.budget_minutes:g}-minute budget)")
    if "serial" in result:
        ser = result["serial"]["seconds"]
        result["speedup"] = ser / par
        print(f"serial (--workers 1): {ser / 60:.1f} min; parallel speed-up "
              f"{ser / par:.2f}x")
    failed = [k for k in ("parallel", "serial")
              if k in result and result[k]["exit_code"] != 0]
    if failed:
        print(f"warning: run(s) {', '.join(failed)} exited with an error (failed cells?)")
    if a.out is not None:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
