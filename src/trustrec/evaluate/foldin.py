"""Fold-in: re-derive a user's vector from the released item table and the user's items.

An attacker who holds a model's *item* table and knows some items of a user can rebuild a
user vector without the model's user table, the way implicit-feedback ALS solves a user
step (Hu, Koren & Volinsky, ICDM 2008): every item is a cell of the user's row, observed
cells have preference 1 and confidence ``1 + alpha``, the others preference 0 and
confidence 1, and

    x_u = argmin_x Σ_i c_ui (p_ui − x·q_i)² + λ‖x‖²
        = (QᵀQ + alpha Σ_{i∈C_u} q_i q_iᵀ + λI)⁻¹ (1 + alpha) Σ_{i∈C_u} q_i .

This is the threat both audits need:

* **Completeness** (:mod:`trustrec.evaluate.suite`): a method that only hides the forgotten
  user's own row (zeroing it, or resetting it to a prior) leaves the item table that was
  trained on the user's data; folding the user back in from its candidate items reveals
  which of them it was trained on.
* **Attribute privacy** (:mod:`trustrec.privacy.attack`): a post-training method that edits
  only the released user table leaves the item table as it was; folding users back in from
  their histories rebuilds user vectors that may carry the attribute again.

Choices: ``λ = reg · tr(QᵀQ) / d`` (relative to the mean eigenvalue of the unobserved part,
so one default fits item tables of any scale); ``alpha = 3`` (trustrec's WMF default); the
solve runs in float64, all users at once in chunks (no Python loop over rows). A user with
no known item gets the zero vector.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from trustrec.errors import ConfigError

# Users per batched solve: bounds the (users × d × d) Gram tensor.
_CHUNK_USERS = 4096
# Elements of the rows' outer products formed at once (64 MiB of float64).
_OUTER_ELEMENTS = 1 << 23


def fold_in(item_table: np.ndarray, users: np.ndarray, items: np.ndarray, n_users: int, *,
            alpha: float = 3.0, reg: float = 0.01) -> np.ndarray:
    """User vectors re-derived from an item table and known (user, item) rows.

    Args:
        item_table: ``(n_items, d)`` released item representations (the model's
            ``item_embeddings()``; scores are ``x_u · q_i``).
        users: user index per known row.
        items: item index per known row (duplicates count once per occurrence).
        n_users: size of the user id space (rows of the result).
        alpha: extra confidence of a known item (``c = 1 + alpha``).
        reg: ridge weight relative to ``tr(QᵀQ) / d``.

    Returns:
        float64 ``(n_users, d)``: the fold-in vector of every user with at least one known
        row, zeros for the others.

    Raises:
        ConfigError: negative ``alpha`` or non-positive ``reg``.
        ValueError: rows out of range or of different lengths.
    """
    if not alpha >= 0:
        raise ConfigError(f"fold_in: alpha must be >= 0, got {alpha}")
    if not reg > 0:
        raise ConfigError(f"fold_in: reg must be > 0, got {reg}")
    q = torch.as_tensor(np.asarray(item_table, dtype=np.float64))
    u = np.asarray(users, dtype=np.int64).ravel()
    i = np.asarray(items, dtype=np.int64).ravel()
    if len(u) != len(i):
        raise ValueError(f"users ({len(u)}) and items ({len(i)}) differ in length")
    if len(u) and (u.min() < 0 or u.max() >= n_users):
        raise ValueError(f"user index out of range [0, {n_users})")
    if len(i) and (i.min() < 0 or i.max() >= q.shape[0]):
        raise ValueError(f"item index out of range [0, {q.shape[0]})")
    d = q.shape[1]
    out = np.zeros((n_users, d))
    if not len(u) or d == 0:
        return out
    gram = q.T @ q
    lam = reg * float(torch.trace(gram)) / d
    base = (gram + lam * torch.eye(d, dtype=torch.float64)).numpy()
    qn = q.numpy()
    present, local = np.unique(u, return_inverse=True)
    # per user, Σ_{i∈C_u} q_i q_iᵀ = Qᵀ diag(c_u) Q: a sparse (users × items) count matrix
    # times the items' flattened outer products, a few columns of them at a time
    counts = sp.csr_matrix((np.ones(len(u)), (local, i)), shape=(len(present), len(qn)))
    ra, rb = np.triu_indices(d)  # the Gram is symmetric: its upper triangle suffices
    grams = np.empty((len(present), d, d))
    step = max(1, _OUTER_ELEMENTS // max(len(qn), 1))
    for c0 in range(0, len(ra), step):
        a_, b_ = ra[c0:c0 + step], rb[c0:c0 + step]
        block = counts @ (qn[:, a_] * qn[:, b_])
        grams[:, a_, b_] = block
        grams[:, b_, a_] = block
    b = counts @ qn
    for start in range(0, len(present), _CHUNK_USERS):
        sl = slice(start, start + _CHUNK_USERS)
        a = base + alpha * grams[sl]
        out[present[sl]] = np.linalg.solve(a, (1.0 + alpha) * b[sl][:, :, None])[:, :, 0]
    return out
