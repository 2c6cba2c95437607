"""Seeds: one root seed per run, child seeds derived by name.

Every random choice in trustrec draws from a generator derived from the run's root seed and
a path of names (e.g. ``("split",)``, ``("shard", 3)``, ``("forget", "random")``), so that two
components never share a stream and reordering work never changes results. Global RNG state
(numpy's, torch's) is never touched.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_to_int(key: object) -> int:
    if isinstance(key, (int, np.integer)) and int(key) >= 0:
        return int(key)
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def child_seed(root: int, *path: object) -> int:
    """Return a 32-bit seed derived from ``root`` and a path of names or non-negative ints.

    Args:
        root: the run's root seed.
        *path: names or integers identifying the consumer, e.g. ``("shard", 3)``.

    Returns:
        An integer in ``[0, 2**32)``, the same for the same ``(root, path)`` on every machine.
    """
    seq = np.random.SeedSequence(int(root), spawn_key=tuple(_key_to_int(k) for k in path))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


def rng(root: int, *path: object) -> np.random.Generator:
    """A numpy Generator seeded with :func:`child_seed` of ``(root, *path)``."""
    return np.random.default_rng(child_seed(root, *path))
