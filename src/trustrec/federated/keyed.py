"""Counter-based random numbers: each draw is a pure function of a key and a position.

A federation must draw the same negatives and the same initial embeddings for a client
whether the client is trained alone (one Flower node) or batched with hundreds of others
(the in-process simulator), and in any order. A stateful generator cannot promise that; a
hash of ``(seed, name, round, client, position)`` can. The hash is SplitMix64's finaliser
(Steele et al., OOPSLA 2014), applied with numpy's wrapping uint64 arithmetic, so every
draw is vectorised over positions.
"""

from __future__ import annotations

import numpy as np

from trustrec.seeding import child_seed

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (a bijection that scrambles every bit)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> _S30)) * _M1
        x = (x ^ (x >> _S27)) * _M2
        return x ^ (x >> _S31)


def keyed_bits(key: int, *streams: np.ndarray | int) -> np.ndarray:
    """64 random bits per element, a pure function of ``key`` and the ``streams`` values.

    Args:
        key: a 64-bit key (e.g. :func:`stream_key` of the run's seed and a name).
        *streams: integer arrays (or scalars), broadcast together: the position of each
            draw, e.g. ``(client, row)``.

    Returns:
        uint64 array of the broadcast shape.
    """
    with np.errstate(over="ignore"):
        h = _mix(np.full((), key, dtype=np.uint64))
        for s in streams:
            h = _mix(h ^ np.asarray(s).astype(np.uint64))
    return np.asarray(h)


def keyed_uniform(key: int, *streams: np.ndarray | int) -> np.ndarray:
    """Uniform floats in ``[0, 1)`` (53 bits), one per broadcast element of ``streams``."""
    return (keyed_bits(key, *streams) >> _S11).astype(np.float64) * (1.0 / (1 << 53))


def keyed_normal(key: int, *streams: np.ndarray | int) -> np.ndarray:
    """Standard normal draws (Box–Muller on two keyed uniforms)."""
    u1 = keyed_uniform(key, *streams, 0)
    u2 = keyed_uniform(key, *streams, 1)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def stream_key(seed: int, *path: object) -> int:
    """A 64-bit key for the stream named ``path`` under the run's root ``seed``."""
    hi = child_seed(seed, *path, "hi")
    lo = child_seed(seed, *path, "lo")
    return (hi << 32) | lo
