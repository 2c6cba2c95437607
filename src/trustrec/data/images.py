"""Image data that ships inside an installed wheel: scikit-learn's ``digits`` (UCI
optical recognition of handwritten digits; 1,797 8×8 images, 10 classes, pixel values
0–16), read from ``sklearn/datasets/data/digits.csv.gz`` after its sha256 is checked.
Nothing is downloaded and nothing is committed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from trustrec.errors import DataFormatError

DIGITS_FILE = "digits.csv.gz"
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def digits_path() -> Path:
    """Where the installed scikit-learn keeps the digits file."""
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "data" / DIGITS_FILE


def load_digits(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: ``(1797, 64)`` float32 pixels scaled to [0, 1] and int64 labels 0–9.

    Raises:
        DataFormatError: the file is missing, its checksum differs, or its shape is wrong.
    """
    from trustrec.data.fetch import file_sha256

    p = Path(path) if path is not None else digits_path()
    if not p.is_file():
        raise DataFormatError(f"scikit-learn's digits file is missing at {p}; reinstall "
                              "scikit-learn")
    got = file_sha256(p)
    if got != DIGITS_SHA256:
        raise DataFormatError(f"{p} has sha256 {got}, expected {DIGITS_SHA256}: not the "
                              "digits file this project was checked against")
    with gzip.open(p, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 65:
        raise DataFormatError(f"{p}: expected 65 columns (64 pixels and a label), got "
                              f"shape {table.shape}")
    return (table[:, :64] / 16.0).astype(np.float32), table[:, 64].astype(np.int64)
