"""The Flower runtime of federated classification (optional extra ``trustrec[flower]``).

The same :class:`~trustrec.federated.classify.RoundProtocol` as the in-process
:func:`~trustrec.federated.classify.fit_federated_classifier`, run as a Flower
``ServerApp`` and ``ClientApp`` on Flower's simulation engine, one supernode per client
(partition ``k`` is client ``k``). Per round the server asks every node for its upload
(``client_stats``, when the protocol has one), computes the broadcast, and sends the
model and the broadcast to the sampled clients, which train (``client_task`` then
:func:`~trustrec.federated.classify.local_train`) and send back their weights and row
count. A client's persistent state lives in its node's ``context.state`` and never
travels. The server aggregates the replies in client order by
:func:`~trustrec.federated.classify.fedavg_step`, so for the same seed both runtimes give
the same model (``tests/federated/test_flower_classify.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from trustrec.errors import ConfigError
from trustrec.federated.aggregate import ServerOptimizer
from trustrec.federated.classify import (
    ClassifierConfig,
    Params,
    RoundProtocol,
    check_finite,
    fedavg_step,
    local_train,
    start_params,
)
from trustrec.federated.flower import (
    _ask,
    _checked,
    _wait_for_nodes,
    require_flower,
    simulate,
)
from trustrec.federated.server import sample_clients

#: A placeholder array: Flower's records may not be empty.
_EMPTY = "__empty__"


def _record(arrays: dict[str, Any]) -> Any:
    from flwr.app import ArrayRecord

    items = OrderedDict((n, torch.as_tensor(np.asarray(a)).contiguous())
                        for n, a in arrays.items())
    return ArrayRecord(torch_state_dict=items or OrderedDict({_EMPTY: torch.zeros(1)}))


def _arrays(record: Any) -> dict[str, np.ndarray]:
    return {n: t.numpy() for n, t in record.to_torch_state_dict().items() if n != _EMPTY}


def _params(record: Any) -> Params:
    return {n: t for n, t in record.to_torch_state_dict().items() if n != _EMPTY}


def make_classifier_apps(protocol: RoundProtocol, params: Params, cfg: ClassifierConfig,
                         seed: int, rounds: range, result: dict[str, Any]) -> tuple[Any, Any]:
    """The ``(ServerApp, ClientApp)`` pair training ``params`` through ``rounds``; the final
    weights land in ``result["params"]``."""
    from flwr.app import ConfigRecord, Message, MessageType, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    client_app = ClientApp()
    server_app = ServerApp()

    def state_of(context: Any) -> dict[str, np.ndarray]:
        return _arrays(context.state["clf"]) if "clf" in context.state else {}

    @client_app.query()
    def query(msg: Any, context: Any) -> Any:
        client = int(context.node_config["partition-id"])
        content = RecordDict({"meta": ConfigRecord({"client": client})})
        if msg.content["config"]["what"] == "stats":
            state = state_of(context)
            stats = protocol.client_stats(client, int(msg.content["config"]["round"]),
                                          _params(msg.content["params"]), state)
            context.state["clf"] = _record(state)
            content["stats"] = _record(stats)
        return Message(content=content, reply_to=msg)

    @client_app.train()
    def train(msg: Any, context: Any) -> Any:
        client = int(context.node_config["partition-id"])
        round_ = int(msg.content["config"]["round"])
        global_params = _params(msg.content["params"])
        state = state_of(context)
        task = protocol.client_task(client, round_, global_params,
                                    _arrays(msg.content["shared"]), state)
        context.state["clf"] = _record(state)
        new = local_train(global_params, protocol.x[client], task, cfg, seed, round_,
                          protocol.ids[client])
        content = RecordDict({"params": _record(new), "meta": ConfigRecord(
            {"client": client, "rows": len(protocol.x[client])})})
        return Message(content=content, reply_to=msg)

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        state = {k: v.clone() for k, v in params.items()}
        server = ServerOptimizer(cfg.server_optimizer, cfg.server_lr)
        members = np.arange(protocol.n_clients)
        nodes = _wait_for_nodes(grid, len(members))
        node_of = {int(r.content["meta"]["client"]): r.metadata.src_node_id
                   for r in _ask(grid, nodes, MessageType.QUERY, {"what": "client"})}
        for r in rounds:
            stats = []
            if protocol.uses_stats:
                msgs = [Message(content=RecordDict({
                    "params": _record(state),
                    "config": ConfigRecord({"what": "stats", "round": r})}),
                    dst_node_id=node_of[int(k)], message_type=MessageType.QUERY)
                    for k in members]
                replies = sorted(_checked(grid.send_and_receive(msgs)),
                                 key=lambda m: int(m.content["meta"]["client"]))
                stats = [_arrays(m.content["stats"]) for m in replies]
            shared = protocol.broadcast(r, state, stats)
            msgs = [Message(content=RecordDict({
                "params": _record(state), "shared": _record(shared),
                "config": ConfigRecord({"round": r})}),
                dst_node_id=node_of[int(k)], message_type=MessageType.TRAIN)
                for k in sample_clients(members, cfg.participation, seed, r)]
            replies = sorted(_checked(grid.send_and_receive(msgs)),
                             key=lambda m: int(m.content["meta"]["client"]))
            fedavg_step(state, [(int(m.content["meta"]["rows"]), _params(m.content["params"]))
                                for m in replies], server)
            check_finite(state, r)
        result["params"] = state

    return server_app, client_app


def run_flower_classifier(protocol: RoundProtocol, n_out: int, cfg: ClassifierConfig,
                          seed: int, *, init: Params | None = None, rounds: int | None = None,
                          first_round: int = 0, cpus_per_client: float = 1.0,
                          verbose: bool = False) -> Params:
    """:func:`~trustrec.federated.classify.fit_federated_classifier` on Flower's
    simulation engine (same arguments, no per-round callback).

    Raises:
        ConfigError: Flower is not installed, or a client failed.
    """
    require_flower()
    params = start_params(protocol, n_out, cfg, seed, init)
    span = range(first_round, first_round + (cfg.rounds if rounds is None else rounds))
    result: dict[str, Any] = {}
    server_app, client_app = make_classifier_apps(protocol, params, cfg, seed, span, result)
    simulate(server_app, client_app, protocol.n_clients, cpus_per_client, verbose)
    if "params" not in result:
        raise ConfigError("the Flower federation ended without a result (see Flower's log)")
    return result["params"]
