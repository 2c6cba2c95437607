"""Where benchmark tasks run: a pool of local processes (default) or a local Ray instance.

An engine maps a top-level task function over keys, ``fn(spec, key) -> outcome``, and
yields the outcomes as they finish. Tasks share nothing in memory: each rebuilds what it
needs from the spec (a JSON dict) and the files earlier tasks wrote, and its result is a
file too; the outcome it returns (a small JSON-ready dict) only feeds the progress log.
What the tasks are, and in which order the stages run, is :mod:`trustrec.bench.stages`.

Choices:

* **local** uses :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
  method. ``fork`` would copy a parent that may already run torch / OpenMP / BLAS thread
  pools, tqdm's monitor thread or a Ray client, and a forked child that touches a pool
  whose threads did not survive the fork can hang (GNU OpenMP is not fork-safe); Python
  3.12+ warns about forking a threaded process for this reason. ``spawn`` starts each worker
  as a clean interpreter, the same on Linux, macOS and Windows. Its cost is paid once per
  worker and run (importing torch and trustrec, about 2-3 s of CPU), since workers are
  reused for every task of every stage. As with any ``spawn`` pool, a script that calls
  :func:`~trustrec.bench.runner.run_bench` must guard its entry point with
  ``if __name__ == "__main__":``.
* **ray** submits the same functions as ``ray.remote`` tasks (one CPU each) to the running
  Ray instance, or to a local one started with ``num_cpus=workers`` and shut down at the
  end. Ray is an optional extra (``pip install trustrec[ray]``), imported only here.
* **Workers die with the parent** (:func:`die_with_parent`): a killed ``trustrec bench``
  leaves no worker behind. Ray's workers belong to its own daemon: a local Ray instance
  started here is shut down when the run ends normally, not when it is killed.
* **One thread per worker**: ``workers`` processes on as many cores must not each start a
  pool of as many threads. Every worker calls :func:`limit_threads` first: the usual
  thread-count variables are set to 1 (for libraries loaded later), the already loaded
  BLAS / OpenMP pools are capped with ``threadpoolctl``, and torch gets
  ``set_num_threads(1)``. Ray workers also get the variables through ``runtime_env``.
  The in-process path (``workers = 1``) runs under :func:`single_threaded` too, so that
  results do not depend on the engine, the number of workers or the machine's cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from trustrec.errors import ConfigError, TrustrecError
from trustrec.registry import Registry

#: Environment of a worker: one thread for every numeric library.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1"}

TaskFn = Callable[[dict[str, Any], Any], dict[str, Any]]


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started it ends, however it ends.

    On Linux the kernel is asked to send SIGKILL when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``); a daemon thread also polls the parent pid every half
    second, for kernels or platforms without it. So killing ``trustrec bench`` (any signal,
    ``kill -9`` included) never leaves workers running on, writing into the output folder.
    """
    import ctypes
    import signal
    import threading
    import time

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover  (not Linux)
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="trustrec-parent-watch", daemon=True).start()


def worker_init(parent_pid: int) -> None:
    """Initialiser of every local worker: die with the parent, one thread for numerics."""
    die_with_parent(parent_pid)
    limit_threads()


def limit_threads() -> None:
    """Make this process use one thread for numeric work (run first in every worker)."""
    os.environ.update(THREAD_ENV)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover  (a dependency of scikit-learn)
        pass
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the enclosed code with one thread for torch and BLAS / OpenMP, then restore.

    The in-process path (``workers = 1``) computes its cells inside this, so that a
    cell's floating-point results are those of a worker (one thread): multi-threaded
    matrix products may sum in another order and move scores in the last bits, which
    moves score-based metrics (percentiles, AUCs) by about 1e-6.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover  (a dependency of scikit-learn)
            yield
        else:
            with threadpool_limits(limits=1):
                yield
    finally:
        torch.set_num_threads(before)


def default_workers() -> int:
    """The default number of workers: the CPUs this process may use (else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (not Linux)
        return max(1, os.cpu_count() or 1)


class Engine(Protocol):
    """Runs tasks ``fn(spec, key)`` in parallel and yields ``(index, outcome)`` pairs."""

    workers: int

    def map(self, fn: TaskFn, spec: dict[str, Any], keys: Sequence[Any]
            ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run ``fn(spec, keys[i])`` for every ``i``; yield ``(i, outcome)`` as they finish.

        Raises:
            TrustrecError: a worker died (killed, out of memory) or the engine broke.
        """
        ...

    def close(self) -> None:
        """Stop the workers (running tasks finish, queued ones are dropped)."""
        ...


ENGINES: Registry[Callable[[int], Engine]] = Registry("engine")


@ENGINES.register("local")
class LocalEngine:
    """A pool of ``workers`` spawned local processes (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=worker_init,
                                         initargs=(os.getpid(),))

    def map(self, fn: TaskFn, spec: dict[str, Any], keys: Sequence[Any]
            ) -> Iterator[tuple[int, dict[str, Any]]]:
        """See :meth:`Engine.map`."""
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        futures = {self._pool.submit(fn, spec, key): i for i, key in enumerate(keys)}
        try:
            for fut in as_completed(futures):
                try:
                    outcome = fut.result()
                except BrokenProcessPool as exc:
                    raise TrustrecError(
                        f"a worker process died ({exc}); killed or out of memory? Finished "
                        "work is kept: run again to resume, with fewer workers if memory "
                        "is short") from None
                yield futures[fut], outcome
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        """See :meth:`Engine.close`."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def import_ray() -> Any:
    """Import Ray, or say how to install it.

    Raises:
        ConfigError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("engine 'ray' needs Ray, an optional extra: pip install "
                          "'trustrec[ray]' (or use the default engine 'local')") from None
    return ray


@ENGINES.register("ray")
class RayEngine:
    """Ray tasks (one CPU each) on the running Ray instance or a local one it starts."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ray = import_ray()
        self._started = not self._ray.is_initialized()
        if self._started:
            self._ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                           configure_logging=False,
                           runtime_env={"env_vars": dict(THREAD_ENV)})

    def map(self, fn: TaskFn, spec: dict[str, Any], keys: Sequence[Any]
            ) -> Iterator[tuple[int, dict[str, Any]]]:
        """See :meth:`Engine.map`."""
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=0)(_in_ray_worker)
        refs = {remote.remote(fn, spec, key): i for i, key in enumerate(keys)}
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                try:
                    outcome = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    raise TrustrecError(f"a Ray task failed outside the benchmark code: "
                                        f"{type(exc).__name__}: {exc}") from None
                yield refs[done[0]], outcome
        finally:
            for ref in waiting:
                ray.cancel(ref)

    def close(self) -> None:
        """See :meth:`Engine.close`; shuts Ray down only if this engine started it."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def _in_ray_worker(fn: TaskFn, spec: dict[str, Any], key: Any) -> dict[str, Any]:
    limit_threads()
    return fn(spec, key)


def open_engine(name: str, workers: int) -> Engine:
    """Start the engine registered as ``name`` with ``workers`` parallel tasks.

    Raises:
        UnknownNameError: no such engine.
        ConfigError: ``workers`` below 1, or Ray missing for ``"ray"``.
    """
    factory = ENGINES.get(name)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    return factory(workers)
