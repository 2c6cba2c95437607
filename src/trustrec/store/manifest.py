"""Integrity of a stored state: a manifest of every file's sha256, checked on every load.

``MANIFEST.json`` lists, for every file of a version folder (itself excluded), its size and
sha256, and for every ``model.safetensors`` the names and shapes of its tensors. It is
written last, when the folder is complete; :func:`check_manifest` runs before a state is
read and turns any damage (a missing or extra file, a truncated or edited one, a tensor
removed or reshaped) into an :class:`~trustrec.errors.IntegrityError` naming the file, so a
damaged directory never yields a traceback or, worse, silently wrong metrics.

It detects accidents and tampering by anyone who does not also rewrite the manifest; it is
not a signature.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from trustrec.errors import IntegrityError
from trustrec.fileio import write_atomic

MANIFEST = "MANIFEST.json"
FORMAT = "trustrec-manifest"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Names and shapes of a safetensors file's tensors, from its header alone.

    Raises:
        IntegrityError: the header is truncated or not valid JSON.
    """
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n).decode("utf-8"))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise IntegrityError(f"{path}: not a readable safetensors file ({exc})") from None
    return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not p.is_symlink())


def build_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete folder (nothing is written)."""
    folder = Path(folder)
    files, tensors = {}, {}
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        files[rel] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        if p.suffix == ".safetensors":
            tensors[rel] = tensor_shapes(p)
    return {"format": FORMAT, "files": files, "tensors": tensors}


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """Write ``MANIFEST.json`` into a complete folder and return it."""
    manifest = build_manifest(folder)
    write_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def check_manifest(folder: str | Path, *, required: bool = False) -> bool:
    """Check a folder against its manifest.

    Args:
        folder: a version folder (or any folder with a ``MANIFEST.json``).
        required: a missing manifest is an error (else: nothing to check, False).

    Returns:
        True when a manifest was found and everything matches.

    Raises:
        IntegrityError: one line naming the first file that does not match.
    """
    folder = Path(folder)
    mf = folder / MANIFEST
    if not mf.is_file():
        if required:
            raise IntegrityError(f"{mf}: missing; the directory cannot be checked")
        return False
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        files, tensors = manifest["files"], manifest["tensors"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{mf}: not a valid manifest ({exc})") from None
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for rel, want in files.items():
        p = present.get(rel)
        if p is None:
            raise IntegrityError(f"{folder / rel}: missing (listed in {MANIFEST})")
        size = p.stat().st_size
        if size != want.get("bytes"):
            raise IntegrityError(f"{p}: {size} bytes, {MANIFEST} says {want.get('bytes')} "
                                 "(truncated or replaced)")
        if file_sha256(p) != want.get("sha256"):
            raise IntegrityError(f"{p}: content differs from {MANIFEST} (sha256 mismatch)")
    extra = sorted(set(present) - set(files))
    if extra:
        raise IntegrityError(f"{folder / extra[0]}: not listed in {MANIFEST} (a file was "
                             "added after the directory was written)")
    for rel, shapes in tensors.items():
        if tensor_shapes(folder / rel) != shapes:
            raise IntegrityError(f"{folder / rel}: tensors differ from {MANIFEST}")
    return True
