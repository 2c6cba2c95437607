"""The recommender a federation ends with: shared parameters plus every client's private ones.

Scoring a user needs that user's private parameters, which in a real deployment never
leave the device; the simulator holds them all in one place, so the model can be
evaluated centrally exactly as each client would score itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from trustrec.errors import DataFormatError
from trustrec.fileio import write_atomic

MODEL_TENSORS = "federated.safetensors"
MODEL_JSON = "federated.json"


def split_prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` named ``prefix + name``, keyed by ``name``."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class FederatedRecommender:
    """A trained federation as a recommender (``score(users)``, embeddings, save/load).

    Attributes:
        method: the federated method's registered name.
        config: its config as a dict.
        shared: the server's shared parameters.
        private: per-client private parameters ``(n_users, ...)`` (no optimiser state).
        info: what the fit recorded (rounds, the chosen round, seconds).
    """

    def __init__(self, method: str, config: dict[str, Any], shared: dict[str, torch.Tensor],
                 private: dict[str, torch.Tensor], info: dict[str, Any] | None = None) -> None:
        from trustrec.federated.methods import make_federated
        self.method = method
        self.config = config
        self.arch = make_federated(method, config).architecture()
        self.shared = shared
        self.private = {n: private[n] for n in self.arch.private_shapes}
        self.info = dict(info or {})

    @property
    def n_users(self) -> int:  # noqa: D102
        return int(next(iter(self.private.values())).shape[0])

    @property
    def n_items(self) -> int:  # noqa: D102
        name = next(iter(self.arch.item_tables))
        return int(self.shared[name].shape[0])

    def score(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), n_items)`` scores (logits) of every item."""
        idx = torch.as_tensor(np.asarray(users, dtype=np.int64))
        with torch.no_grad():
            out = self.arch.score(self.shared, {n: t[idx] for n, t in self.private.items()})
        return out.numpy()

    def user_embeddings(self) -> np.ndarray:
        """The private parameters of every user, concatenated (``n_users × width``)."""
        return torch.cat([t.flatten(1) for t in self.private.values()], 1).numpy()

    def item_embeddings(self) -> np.ndarray:
        """The shared item tables, concatenated (``n_items × width``)."""
        return torch.cat([self.shared[n] for n in self.arch.item_tables], 1).numpy()

    def save(self, path: str | Path) -> None:
        """Write ``federated.safetensors`` + ``federated.json`` into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"shared.{n}": t.contiguous() for n, t in self.shared.items()}
        tensors |= {f"private.{n}": t.contiguous() for n, t in self.private.items()}
        write_atomic(path / MODEL_TENSORS, save_tensors(tensors))
        meta = {"method": self.method, "config": self.config, "info": self.info}
        write_atomic(path / MODEL_JSON, json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, path: str | Path) -> FederatedRecommender:
        """Load a directory written by :meth:`save` (no code executed)."""
        path = Path(path)
        try:
            meta = json.loads((path / MODEL_JSON).read_text())
            tensors = load_tensors((path / MODEL_TENSORS).read_bytes())
            return cls(meta["method"], meta["config"], split_prefixed(tensors, "shared."),
                       split_prefixed(tensors, "private."), meta.get("info"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path} is not a federated model directory: {exc}") from exc
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{path}: not a trustrec federated model ({exc})") from exc
