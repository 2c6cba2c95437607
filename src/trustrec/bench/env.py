"""Where and with what a result was produced: library versions and host facts."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from functools import cache
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import pandas
    import scipy
    import torch

    import trustrec

    return {"python": platform.python_version(), "trustrec": trustrec.__version__,
            "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__}


@cache
def git_commit() -> str:
    """The git commit of the trustrec source tree that runs (``-dirty`` when it has
    uncommitted changes), or ``"unknown"`` outside a git checkout."""
    import subprocess

    import trustrec

    root = Path(trustrec.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def host_info() -> dict[str, Any]:
    """The machine a result was measured on."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (not Linux)
        affinity = os.cpu_count()
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "cpus_usable": affinity,
            "torch_threads": torch.get_num_threads()}


@cache
def source_fingerprint(*packages: str) -> str:
    """Short sha256 over the Python source of ``trustrec`` subpackages (e.g. ``"privacy"``)
    and single modules (e.g. ``"bench/context.py"``), paths relative to the package.

    Part of a cell's and a shared artefact's fingerprint, so a rerun after the code of a
    method changed computes what it produced again instead of keeping results the current
    code would not give. Files are taken in sorted order; their paths count too.
    """
    import trustrec

    root = Path(trustrec.__file__).parent
    digest = hashlib.sha256()
    for package in sorted(set(packages)):
        path = root / package
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        if not files:
            raise ValueError(f"source_fingerprint: no Python source at trustrec/{package}")
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
