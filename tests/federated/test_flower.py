"""The Flower runtime gives the simulator's model for the same seed (small federation)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tests.federated.conftest import TINY_NCF
from trustrec.errors import ConfigError
from trustrec.federated.clients import ClientData
from trustrec.federated.flower import require_flower, run_flower
from trustrec.federated.methods import make_federated
from trustrec.federated.server import initial_state, run_round

#: Summation order differs between the runtimes (a batch of clients against one message
#: per client, in another order), so parameters agree to float32 rounding, not bitwise.
ATOL = 1e-5


def simulate(method, train, clients, rounds, seed):
    arch, opts = method.architecture(), method.local_options(train.n_items)
    data = ClientData.from_dataset(train, clients)
    state = initial_state(arch, opts, method.server_options(), data.n_clients, data.n_items,
                          seed)
    for _ in range(rounds):
        run_round(arch, opts, data, state, data.members(), method.server_options(), seed)
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("fedrecgel", {**TINY_NCF, "participation": 0.5}),
    ("pfedrec", {"dim": 4, "aggregator": "trimmed_mean", "trim": 0.2, "local_epochs": 2}),
])
def test_flower_and_simulator_give_the_same_model(small_split, name, extra) -> None:
    pytest.importorskip("flwr")
    clients = np.arange(10)
    method = make_federated(name, {**extra, "rounds": 3})
    flower = run_flower(method, small_split.train, seed=4, clients=clients)
    state = simulate(method, small_split.train, clients, 3, seed=4)
    for n, t in state.shared.items():
        torch.testing.assert_close(flower.shared[n], t, atol=ATOL, rtol=1e-4)
    for n in flower.private:
        torch.testing.assert_close(flower.private[n][clients], state.private[n][clients],
                                   atol=ATOL, rtol=1e-4)
        # Training moved them: the comparison is not between two untouched states.
        fresh = initial_state(method.architecture(), method.local_options(1682),
                              method.server_options(), 943, 1682, 4).private[n][clients]
        assert not torch.allclose(fresh, state.private[n][clients])


def test_missing_flower_is_a_clear_error(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("flwr", "ray") else real(name, *a))
    with pytest.raises(ConfigError, match=r"optional extra.*trustrec\[flower\]"):
        require_flower()
