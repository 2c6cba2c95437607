"""One writer at a time: an exclusive, crash-safe lock on a model directory.

The lock is an ``fcntl.flock`` on a lock file *beside* the directory
(``<parent>/.<name>.lock``; the directory itself is swapped by writes, so a lock inside it
would not survive them). The kernel releases a flock when its holder dies, however it
dies (``kill -9`` included), so a crashed writer can never leave the directory locked. The
lock file also records who holds it (pid, host, command, time): a process that finds the
lock free but the record naming a process that is gone reports that it broke a stale lock,
and a process that has to wait says whom it waits for.

Only processes on one machine (or on a file system with working ``flock``, which excludes
some network file systems) are serialised: the deletion service and ``trustrec forget``
run next to the directory they change.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trustrec.errors import TrustrecError
from trustrec.fileio import now_iso


class LockTimeout(TrustrecError):
    """The lock could not be taken within the allowed time."""


def lock_path(directory: str | Path) -> Path:
    """The lock file of a model directory: ``<parent>/.<name>.lock``."""
    d = Path(directory).resolve()
    return d.parent / f".{d.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        holder = {}
    return holder if isinstance(holder, dict) else {}


@contextmanager
def directory_lock(directory: str | Path, *, timeout: float | None = None,
                   purpose: str = "write", log: Callable[[str], None] | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock of a model directory for the enclosed block.

    Args:
        directory: the model directory (it need not exist yet).
        timeout: seconds to wait for a busy lock (None: wait as long as it takes; 0: fail
            at once).
        purpose: what the holder does, recorded for whoever waits (e.g. ``"forget"``).
        log: where messages about waiting and stale locks go (default: stderr).

    Yields:
        Facts about the acquisition: ``waited_seconds`` and ``broke_stale`` (the record
        of a dead holder, or None).

    Raises:
        LockTimeout: the lock stayed busy for ``timeout`` seconds.
    """
    say = log or (lambda m: print(m, file=sys.stderr))
    path = lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    t0 = time.monotonic()
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
            waited = time.monotonic() - t0
            if timeout is not None and waited >= timeout:
                holder = _read_holder(fd)
                raise LockTimeout(f"{directory} is locked by pid {holder.get('pid', '?')} "
                                  f"({holder.get('purpose', '?')} since "
                                  f"{holder.get('since', '?')}); gave up after {waited:.0f} s")
            if not told:
                holder = _read_holder(fd)
                say(f"{directory} is busy: waiting for pid {holder.get('pid', '?')} "
                    f"({holder.get('purpose', '?')} since {holder.get('since', '?')})")
                told = True
            time.sleep(0.05)
        previous = _read_holder(fd)
        stale = None
        if previous.get("held") and previous.get("host") == socket.gethostname() \
                and isinstance(previous.get("pid"), int) and not _alive(previous["pid"]):
            stale = previous
            say(f"broke a stale lock on {directory}: pid {previous['pid']} "
                f"({previous.get('purpose', '?')} since {previous.get('since', '?')}) died "
                "while holding it")
        _write_holder(fd, {"held": True, "pid": os.getpid(), "host": socket.gethostname(),
                           "purpose": purpose, "since": now_iso(),
                           "command": " ".join(sys.argv[:4])})
        try:
            yield {"waited_seconds": time.monotonic() - t0, "broke_stale": stale}
        finally:
            _write_holder(fd, {"held": False, "released": now_iso(), "pid": os.getpid()})
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_holder(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
