"""Run a grid of any experiment kind: one folder per cell, resumable, then results and report.

What the engine does for every kind (the kind itself only says what a cell computes, see
:mod:`trustrec.bench.experiments.base`):

* **Spec**: validated before anything is loaded or trained; written to ``spec.json``.
* **Cells**: one folder each (``<out>/<cell id>``) with ``config.json`` (the resolved
  config and its fingerprint), ``metrics.json`` (flat name → value), the kind's tables
  (e.g. ``per_user.parquet``) and ``run.json`` (versions, host, timings, status). All
  written atomically; ``run.json`` says ``"running"`` first and ``"done"`` last.
* **Fingerprints**: a cell's fingerprint covers its config *and* the source of the code it
  runs (:meth:`~trustrec.bench.experiments.base.Experiment.source`) and a shared
  artefact's the source it was built with: after a code change the affected cells are
  computed again rather than kept. A rerun skips cells whose ``run.json`` says done with
  the current fingerprint; a killed run resumes where it stopped (half-written cells are
  cleared and redone).
* **Execution**: with ``workers = 1`` every cell runs here, in order (its shared artefacts
  computed on first use). Otherwise the kind's stages of shared artefacts run first, then
  the cells, each stage's items in parallel on the spec's engine (local processes or Ray,
  :mod:`trustrec.bench.stages`). What a cell computes does not depend on how it is run.
* **Results**: ``results.csv`` (``kind, cell, <axes>, metric, value``), ``summary.csv``
  (mean and 95 % interval over seeds) and ``report.md`` / ``report.html`` from the kind's
  sections (:mod:`trustrec.bench.render`).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from trustrec.bench.collect import CONFIG_JSON, METRICS_JSON, RUN_JSON, collect, read_json
from trustrec.bench.context import fresh_folder, is_current
from trustrec.bench.engine import default_workers, single_threaded
from trustrec.bench.env import host_info, versions
from trustrec.bench.files import write_atomic, write_json, write_parquet
from trustrec.bench.grid import fingerprint
from trustrec.errors import TrustrecError
from trustrec.fileio import now_iso


# ---------------------------------------------------------------------------- results
@dataclass
class CellResult:
    """Outcome of one cell in this run: ``done`` (ran now), ``skipped`` or ``failed``."""

    cell: Any
    status: str
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BenchResult:
    """What a grid run did and wrote.

    Attributes:
        out: the output folder.
        cells: one result per cell, in run order.
        results: the long results table (also in ``results.csv``).
        paths: ``results``, ``summary``, ``markdown``, ``html``, ``plots``.
    """

    out: Path
    cells: list[CellResult]
    results: pd.DataFrame
    paths: dict[str, Path]

    def count(self, status: str) -> int:
        """Number of cells with the given status."""
        return sum(c.status == status for c in self.cells)

    @property
    def failed(self) -> list[CellResult]:
        """The cells that raised."""
        return [c for c in self.cells if c.status == "failed"]


# ---------------------------------------------------------------------------- one cell
def cell_config(ctx: Any, experiment: Any, cell: Any) -> dict[str, Any]:
    """The cell's full config: the kind's, its kind, and the source it runs."""
    return {**experiment.cell_config(ctx, cell), "kind": experiment.name,
            "source": experiment.source()}


def run_in_folder(folder: Path, cell: Any, config: dict[str, Any],
                  compute: Callable[[], tuple[Callable[[], dict[str, float]], dict[str, Any]]],
                  finished: Callable[[], dict[str, float]]) -> CellResult:
    """The life cycle of every cell, in its own folder.

    A finished cell (``run.json`` done, same config fingerprint) is skipped with
    ``finished()``; anything else in its folder is cleared first. ``config.json`` and a
    running ``run.json`` are written, then ``compute()`` returns ``(save, record)``:
    ``save()`` writes the cell's result files and returns its metrics, and ``record`` is
    added to ``run.json``, which is written last (done, or failed with the error and
    traceback when ``compute`` raises).
    """
    fp = fingerprint(config)
    if is_current(folder, RUN_JSON, fp):
        return CellResult(cell, "skipped", metrics=finished())
    fresh_folder(folder)
    t0 = time.perf_counter()
    run: dict[str, Any] = {"status": "running", "fingerprint": fp, "cell": cell.id,
                           "started": now_iso(), "versions": versions(), "host": host_info(),
                           "pid": os.getpid()}
    write_json(folder / CONFIG_JSON, {**config, "fingerprint": fp})
    write_json(folder / RUN_JSON, run)
    try:
        save, record = compute()
    except Exception as exc:
        seconds = time.perf_counter() - t0
        write_json(folder / RUN_JSON, {**run, "status": "failed", "finished": now_iso(),
                                       "seconds": seconds,
                                       "error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc()})
        return CellResult(cell, "failed", seconds, error=f"{type(exc).__name__}: {exc}")
    metrics = save()
    seconds = time.perf_counter() - t0
    write_json(folder / RUN_JSON, {**run, "status": "done", "finished": now_iso(),
                                   "seconds": seconds, **record})
    return CellResult(cell, "done", seconds, metrics)


def run_cell(ctx: Any, experiment: Any, cell: Any) -> CellResult:
    """Run one cell into ``<out>/<cell.id>`` unless it is already finished."""
    folder = ctx.out / cell.id

    def compute() -> tuple[Callable[[], dict[str, float]], dict[str, Any]]:
        output = experiment.compute_cell(ctx, cell)

        def save() -> dict[str, float]:
            write_json(folder / METRICS_JSON, output.metrics)
            for name, table in output.tables.items():
                if name.endswith(".parquet"):
                    write_parquet(folder / name, table)
                else:
                    write_atomic(folder / name, table.to_csv(
                        index=False, float_format="%.10g").encode())
            return output.metrics
        return save, output.record

    return run_in_folder(folder, cell, cell_config(ctx, experiment, cell), compute,
                         lambda: read_json(folder / METRICS_JSON))


def finished_cells(ctx: Any, experiment: Any, cells: list[Any]) -> list[Any]:
    """The cells whose folder already holds a finished run of their current config."""
    return [c for c in cells if is_current(ctx.out / c.id, RUN_JSON,
                                           fingerprint(cell_config(ctx, experiment, c)))]


def summary_line(res: CellResult, experiment: Any, k: int = 20) -> str:
    """One line per cell: id, the kind's headline figures, and how long it took."""
    if res.status == "failed":
        return f"{res.cell.id}: FAILED ({res.error})"
    tag = " (already done)" if res.status == "skipped" else f" [{res.seconds:.1f} s]"
    return f"{res.cell.id}: {experiment.summary_line(res.metrics, k)}{tag}"


# ---------------------------------------------------------------------------- the grid
def run_grid(spec: Any, *, quiet: bool = False, stop_on_error: bool = False,
             log: Callable[[str], None] | None = None) -> BenchResult:
    """Run every cell of ``spec`` (skipping finished ones), then collect and report.

    Args:
        spec: a grid spec of any kind (:func:`trustrec.bench.grid.load_grid_spec`);
            validated before anything is loaded or trained.
        quiet: no progress bar and no per-cell log lines.
        stop_on_error: re-raise the first cell error instead of recording it and going on.
        log: where log lines go (default: above the progress bar, on stderr).

    Returns:
        A :class:`BenchResult`; failed cells are listed in it (their ``run.json`` holds
        the traceback) and are retried by the next run.
    """
    from trustrec.bench.experiments import get_experiment

    experiment = get_experiment(spec.kind)
    spec.validate()
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.to_json())
    ctx = experiment.context(spec, progress=False)
    cells = spec.cells()
    workers = spec.workers if spec.workers is not None else default_workers()
    emit = emitter(quiet, log)
    done = finished_cells(ctx, experiment, cells)
    if done:
        emit(f"{len(done)} of {len(cells)} cells already finished in {out}; they are skipped")
    # every dataset a pending cell needs is loaded first: a dataset that cannot be fetched
    # or parsed is an error of the whole run, not of each of its cells
    ctx.progress = not quiet
    for label in dict.fromkeys(c.dataset for c in cells if c not in done):
        experiment.check_dataset(ctx, label)
    ctx.progress = False
    pending = [c for c in cells if c not in set(done)]
    if pending and (workers > 1 or spec.engine != "local"):
        from trustrec.bench.stages import run_parallel

        ran = run_parallel(ctx, experiment, pending, engine=spec.engine, workers=workers,
                           emit=emit, quiet=quiet, stop_on_error=stop_on_error)
        results = [ran.get(c) or CellResult(c, "skipped",
                                            metrics=read_json(out / c.id / METRICS_JSON))
                   for c in cells]
        return finish(ctx, experiment, cells, results)

    def one(cell: Any) -> CellResult:
        with single_threaded():  # as in a worker: results do not depend on the engine
            return run_cell(ctx, experiment, cell)

    results = run_serially(cells, one, out=out, desc=experiment.name, quiet=quiet,
                           stop_on_error=stop_on_error, emit=emit,
                           line=lambda r: summary_line(r, experiment, ctx.k))
    return finish(ctx, experiment, cells, results)


def emitter(quiet: bool, log: Callable[[str], None] | None) -> Callable[[str], None]:
    """Where a grid's one-line messages go: ``log``, else above the progress bar; nothing
    when ``quiet``."""
    def emit(line: str) -> None:
        if quiet:
            return
        if log is not None:
            log(line)
        else:
            tqdm.write(line, file=sys.stderr)
    return emit


def run_serially(cells: list[Any], run_one: Callable[[Any], CellResult], *, out: Path,
                 desc: str, quiet: bool, stop_on_error: bool, emit: Callable[[str], None],
                 line: Callable[[CellResult], str]) -> list[CellResult]:
    """Run ``cells`` one after the other in this process, with a progress bar.

    A summary line is emitted per cell that ran; with ``stop_on_error`` the first failed
    cell raises TrustrecError with its traceback from ``run.json``.
    """
    results: list[CellResult] = []
    bar = tqdm(total=len(cells), desc=desc, unit="cell", disable=quiet, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for cell in cells:
            bar.set_postfix_str(cell.id, refresh=False)
            res = run_one(cell)
            results.append(res)
            if res.status == "failed" and stop_on_error:
                trace = read_json(out / cell.id / RUN_JSON).get("traceback", "")
                raise TrustrecError(f"cell {cell.id} failed: {res.error}\n{trace}")
            if res.status != "skipped":
                emit(line(res))
            bar.update(1)
    finally:
        bar.close()
    return results


def finish(ctx: Any, experiment: Any, cells: list[Any], results: list[CellResult]
           ) -> BenchResult:
    """Collect the finished cells into ``results.csv`` and write the reports."""
    from trustrec.bench.report import write_report

    out = ctx.out
    frame = collect(out, experiment, cells)
    paths = {"results": out / "results.csv"}
    paths.update(write_report(out, frame, ctx.spec, experiment=experiment,
                              data_info=ctx.data_info()))
    return BenchResult(out, results, frame, paths)


#: The name of :func:`run_grid` before experiment kinds existed.
run_bench = run_grid
