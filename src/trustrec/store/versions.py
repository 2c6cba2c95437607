"""The versioned layout of a model directory: atomic swaps, and no stale copy left behind.

A model directory keeps every state it serves in a version folder and points at the live
one with a symbolic link that is replaced atomically::

    DIR/
      current -> versions/v000003      the live state (one rename swaps it)
      versions/v000003/                trustrec.json, unlearner/, model/, test.parquet,
                                       MANIFEST.json, ... (written once, never edited)
      trustrec.json -> current/trustrec.json      stable paths into the live state
      unlearner -> current/unlearner              (and model, test.parquet, ...)
      ledger.sqlite, receipts/                     what survives every swap

A new state is written completely into ``versions/.tmp-*``, renamed to the next version
and then ``current`` is replaced: a crash at any moment leaves either the old or the new
state live. Every other version is *garbage*: the state before a forget still holds the
forgotten rows, so :func:`collect_garbage` deletes every version but the live one (and
any half-written one); writers call it under the directory lock before and after each
write, so a copy left by a crash is gone by the end of the next command.

A directory written before versions existed (``trustrec.json`` a plain file) is *legacy*:
it is read as it is and converted by the first write.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trustrec.errors import TrustrecError

CURRENT = "current"
VERSIONS = "versions"
#: Entries of a version that are reachable at the directory's top level by a link.
LINKED = ("trustrec.json", "unlearner", "model", "test.parquet", "MANIFEST.json",
          "forget_report.json", "protect_report.json", "protection", "attack_receipt.json",
          "attack_report.json")
_VERSION = re.compile(r"v(\d{6})")


def is_versioned(directory: str | Path) -> bool:
    """Whether ``directory`` uses the versioned layout (its ``current`` is a link)."""
    return (Path(directory) / CURRENT).is_symlink()


def live_version(directory: str | Path) -> Path | None:
    """The folder of the live state (None for a legacy or missing directory)."""
    d = Path(directory)
    if not is_versioned(d):
        return None
    return d / VERSIONS / os.readlink(d / CURRENT).split("/")[-1]


def version_name(directory: str | Path) -> str:
    """The live version's name (e.g. ``"v000003"``; ``"legacy"`` before the first swap)."""
    live = live_version(directory)
    return live.name if live is not None else "legacy"


def _next_name(directory: Path) -> str:
    nums = [int(m.group(1)) for p in (directory / VERSIONS).glob("v*")
            if (m := _VERSION.fullmatch(p.name))]
    return f"v{max(nums, default=0) + 1:06d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _convert_legacy(directory: Path) -> None:
    """Move a legacy directory's state into ``versions/v000001`` and link it."""
    first = directory / VERSIONS / "v000001"
    first.mkdir(parents=True)
    for entry in list(directory.iterdir()):
        if entry.name in LINKED:
            os.replace(entry, first / entry.name)
    _point(directory, first.name)


def _point(directory: Path, name: str) -> None:
    """Make ``current`` point at ``versions/<name>`` atomically, and the top-level links."""
    tmp = directory / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS}/{name}", tmp)
    os.replace(tmp, directory / CURRENT)
    live = directory / VERSIONS / name
    for entry in LINKED:
        link = directory / entry
        if link.exists() and not link.is_symlink():  # not ours to replace
            raise TrustrecError(f"{link} is in the way of the versioned layout")
        if (live / entry).exists() and not link.is_symlink():
            os.symlink(f"{CURRENT}/{entry}", link)
        elif not (live / entry).exists() and link.is_symlink():
            link.unlink()
    _fsync_dir(directory)


@contextmanager
def new_version(directory: str | Path) -> Iterator[Path]:
    """Write the next state of ``directory``: yields an empty folder to fill; on a clean
    exit it becomes the live version (atomically), on an exception it is deleted.

    Call it under :func:`trustrec.store.lock.directory_lock`. A missing directory is
    created; a legacy one is converted first.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "trustrec.json").exists() and not is_versioned(d):
        _convert_legacy(d)
    (d / VERSIONS).mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=d / VERSIONS, prefix=".tmp-"))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0o700 would hide the state from its group
    try:
        yield tmp
        _fsync_tree(tmp)
        name = _next_name(d)
        os.replace(tmp, d / VERSIONS / name)
        _point(d, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def collect_garbage(directory: str | Path) -> list[str]:
    """Delete every version but the live one, any half-written version, and copies that
    swaps of earlier trustrec versions left beside the directory (``.<name>.old-*``).

    Call it under the directory lock. Returns the names of what was deleted.
    """
    d = Path(directory)
    folder = d / VERSIONS
    live = live_version(d)
    gone = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        if live is not None and entry.name == live.name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        gone.append(entry.name)
    for stray in d.glob(f".{CURRENT}.*.tmp"):
        stray.unlink(missing_ok=True)
        gone.append(stray.name)
    # copies left beside the directory by the swaps of earlier trustrec versions
    for stray in [*d.parent.glob(f".{d.name}.old-*"), *d.parent.glob(f".{d.name}.tmp-*")]:
        shutil.rmtree(stray, ignore_errors=True)
        gone.append(stray.name)
    return sorted(gone)
