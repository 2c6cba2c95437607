"""The Flower runtime of the federated core (optional extra ``trustrec[flower]``).

The same client code as the in-process simulator
(:func:`~trustrec.federated.local.local_update`, one client per message) and the same
server pieces (:func:`~trustrec.federated.server.sample_clients`,
:class:`~trustrec.federated.server.Collector`, the server optimiser), run as a Flower
``ServerApp`` and ``ClientApp`` on Flower's simulation engine. One supernode per client;
a client's private parameters and optimiser state live in its node's ``context.state``
and never travel, except in the final gather that hands the trained model back for
central evaluation. The server first asks every node which client (partition) it holds,
so it can sample clients exactly as the simulator does.

For the same seed the two runtimes give the same model up to float summation order
(``tests/federated/test_flower.py``). Flower's costs are per message (tens of ms each on
two CPUs), so the simulator is the tool for paper-scale runs; this runtime is the path to
a real deployment (``flwr run`` with a real SuperLink) and the check that the simulator
does not cheat.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from trustrec.config import to_dict
from trustrec.data.dataset import Dataset
from trustrec.errors import ConfigError
from trustrec.federated.clients import ClientData, build_work
from trustrec.federated.keyed import stream_key
from trustrec.federated.local import LocalResult, local_update
from trustrec.federated.methods import FedMethod
from trustrec.federated.model import FederatedRecommender
from trustrec.federated.server import (
    Collector,
    FederationState,
    apply_round,
    initial_private,
    initial_state,
    sample_clients,
)

INSTALL_HINT = "pip install 'trustrec[flower]' (flwr[simulation] with Ray)"


def require_flower() -> None:
    """Raise a clear error unless Flower and its simulation engine (Ray) are installed."""
    missing = [m for m in ("flwr", "ray") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the Flower runtime needs the optional extra that is not installed "
            f"(missing: {', '.join(missing)}): {INSTALL_HINT}")


def _record(tensors: dict[str, torch.Tensor]) -> Any:
    from flwr.app import ArrayRecord
    return ArrayRecord(torch_state_dict=OrderedDict(
        (n, t.detach().contiguous()) for n, t in tensors.items()))


def _tensors(record: Any) -> dict[str, torch.Tensor]:
    return dict(record.to_torch_state_dict())


def make_apps(method: FedMethod, data: ClientData, members: np.ndarray, *, seed: int,
              rounds: int, result: dict[str, Any]) -> tuple[Any, Any]:
    """The ``(ServerApp, ClientApp)`` pair of a federation of ``members``.

    Supernode ``i`` (Flower's ``partition-id``) holds client ``members[i]``. After
    ``rounds`` rounds the server gathers the private state and stores the final
    :class:`FederationState` in ``result["state"]``.
    """
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    arch = method.architecture()
    opts = method.local_options(data.n_items)
    server_opts = method.server_options()
    neg_key = stream_key(seed, "federated", "negatives")
    client_app = ClientApp()
    server_app = ServerApp()

    def own_client(context: Any) -> int:
        return int(members[int(context.node_config["partition-id"])])

    def private_of(context: Any, client: int) -> dict[str, torch.Tensor]:
        if "private" in context.state:
            return {n: t[None] for n, t in _tensors(context.state["private"]).items()}
        return initial_private(arch, opts, np.array([client]), seed)

    @client_app.query()
    def query(msg: Any, context: Any) -> Any:
        client = own_client(context)
        content = RecordDict({"meta": ConfigRecord({"client": client})})
        if msg.content["config"]["what"] == "private":
            content["private"] = _record({n: t[0] for n, t in
                                          private_of(context, client).items()})
        return Message(content=content, reply_to=msg)

    @client_app.train()
    def train(msg: Any, context: Any) -> Any:
        client = own_client(context)
        round_ = int(msg.content["config"]["round"])
        shared = _tensors(msg.content["shared"])
        work = build_work(data, np.array([client]), neg_key, round_, server_opts.n_neg)
        out = local_update(arch, opts, shared, private_of(context, client), work)
        context.state["private"] = _record({n: t[0] for n, t in out.private.items()})
        upload = {f"item.{n}": t[0] for n, t in out.item_uploads.items()}
        upload |= {f"dense.{n}": t[0] for n, t in out.dense_uploads.items()}
        upload |= {"items": work.items[0], "item_mask": work.item_mask[0].to(torch.uint8),
                   "n_rows": work.n_rows}
        content = RecordDict({"upload": _record(upload), "meta": ConfigRecord(
            {"client": client, "loss": float(out.loss[0])})})
        return Message(content=content, reply_to=msg)

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        state = initial_state(arch, opts, server_opts, data.n_clients, data.n_items, seed)
        nodes = _wait_for_nodes(grid, len(members))
        node_of: dict[int, int] = {}
        for reply in _ask(grid, nodes, MessageType.QUERY, {"what": "client"}):
            node_of[int(reply.content["meta"]["client"])] = reply.metadata.src_node_id
        for _ in range(rounds):
            chosen = sample_clients(members, server_opts.participation, seed, state.round)
            config = {"round": state.round}
            msgs = [Message(content=RecordDict({"shared": _record(state.shared),
                                                "config": ConfigRecord(config)}),
                            dst_node_id=node_of[int(c)], message_type=MessageType.TRAIN)
                    for c in chosen]
            replies = sorted(_checked(grid.send_and_receive(msgs)),
                             key=lambda r: int(r.content["meta"]["client"]))
            collector = Collector(state.shared, tuple(arch.item_tables), server_opts)
            for reply in replies:
                up = _tensors(reply.content["upload"])
                local = LocalResult(
                    item_uploads={n: up[f"item.{n}"][None] for n in arch.item_tables},
                    dense_uploads={n: up[f"dense.{n}"][None] for n in state.shared
                                   if n not in arch.item_tables},
                    private={}, loss=torch.zeros(1))
                collector.add_uploads(torch.tensor([int(reply.content["meta"]["client"])]),
                                      up["items"][None], up["item_mask"][None].bool(),
                                      up["n_rows"], local)
            apply_round(state, collector.result())
        for reply in _ask(grid, nodes, MessageType.QUERY, {"what": "private"}):
            client = int(reply.content["meta"]["client"])
            for n, t in _tensors(reply.content["private"]).items():
                state.private[n][client] = t
        result["state"] = state

    return server_app, client_app


def _wait_for_nodes(grid: Any, n: int, timeout: float = 600.0) -> list[int]:
    start = time.monotonic()
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= n:
            return nodes
        if time.monotonic() - start > timeout:
            raise ConfigError(f"only {len(nodes)} of {n} Flower nodes connected in {timeout} s")
        time.sleep(0.5)


def _ask(grid: Any, nodes: list[int], kind: str, config: dict[str, Any]) -> list[Any]:
    from flwr.app import ConfigRecord, Message, RecordDict
    msgs = [Message(content=RecordDict({"config": ConfigRecord(config)}), dst_node_id=node,
                    message_type=kind) for node in nodes]
    return _checked(grid.send_and_receive(msgs))


def _checked(replies: Any) -> list[Any]:
    out = list(replies)
    for r in out:
        if r.has_error():
            raise ConfigError(f"a Flower client failed: {r.error.reason}")
    return out


def simulate(server_app: Any, client_app: Any, n_nodes: int, cpus_per_client: float = 1.0,
             verbose: bool = False) -> None:
    """Run the apps on Flower's simulation engine, one supernode per client."""
    from flwr.simulation import run_simulation

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=n_nodes,
                   backend_config={"client_resources": {"num_cpus": cpus_per_client},
                                   "init_args": {"include_dashboard": False,
                                                 "log_to_driver": verbose}},
                   verbose_logging=verbose)


def run_flower(method: FedMethod, train: Dataset, *, seed: int = 0, rounds: int | None = None,
               clients: np.ndarray | None = None, cpus_per_client: float = 1.0,
               verbose: bool = False) -> FederatedRecommender:
    """Run ``method`` for ``rounds`` rounds (default: its config's) on Flower's simulation
    engine, one supernode per client, and return the final federation as a model.

    Unlike :func:`~trustrec.federated.fit.fit_federation` there is no validation-based
    round choice: the last round's model is returned.

    Raises:
        ConfigError: Flower is not installed, a client is empty, or a client failed.
    """
    require_flower()
    data = ClientData.from_dataset(train, clients)
    members = data.members()
    n_rounds = int(rounds if rounds is not None else method.config.rounds)
    result: dict[str, Any] = {}
    server_app, client_app = make_apps(method, data, members, seed=seed, rounds=n_rounds,
                                       result=result)
    t0 = time.perf_counter()
    simulate(server_app, client_app, len(members), cpus_per_client, verbose)
    if "state" not in result:
        raise ConfigError("the Flower federation ended without a result (see Flower's log)")
    state: FederationState = result["state"]
    return FederatedRecommender(method.name, to_dict(method.config), state.shared,
                                state.private, {"rounds_run": state.round, "seed": seed,
                                                "runtime": "flower",
                                                "seconds": time.perf_counter() - t0})
