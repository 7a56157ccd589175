#!/usr/bin/env python3
"""One p2pfl 0.4.4 node of ``bench/p2pfl_compare.py``; run by the p2pfl venv's python, never the project's.

Usage (``bench/p2pfl_compare.py`` starts N of these; there is no reason to run one by hand)::

    /tmp/p2pfl-venv/bin/python bench/_p2pfl_node.py --workdir DIR --index I --ports P0,P1,... --rounds R

It imports nothing from ``fl_chain`` or ``bench`` (the p2pfl venv has neither): the job comes from
``DIR/job.npz`` and ``DIR/node-I.npz``, written by the parent from fl-chain's own loader:

* ``job.npz``: the initial model in torch layout (``w0`` [hidden, 64], ``b0``, ``w1`` [10, hidden],
  ``b1``), the test split, ``lr``, ``batch_size``, ``epochs``;
* ``node-I.npz``: node I's IID shard and ``orders`` [rounds, epochs, n], the batch order fl-chain's
  node I draws in each round (``torch.randperm`` with the node's training seed for that round).

The node is a ``p2pfl.node.Node`` with the gRPC transport on ``127.0.0.1:P_I``, FedAvg, a
``FlaxModel`` holding a flax ``Dense(hidden) -> relu -> Dense(10)`` and a learner of this module:
p2pfl 0.4.4's own ``FlaxLearner`` raises ``NotImplementedError`` in its constructor and its flax data
export imports torch. The learner trains with the very SGD fl-chain's ``TorchAdapter`` does (mean
cross-entropy, batch order as exported, ``p -= lr * grad``) in float32 numpy. Ray is disabled
(``Settings.general.DISABLE_RAY``) before anything of p2pfl that would start it is imported, and
p2pfl's web logger stays off (no ``P2PFL_WEB_LOGGER_*`` in the environment).

Counted: every ``RootMessage`` this node sends through ``GrpcClient.send`` (after the call; its
serialized protobuf size, ``ByteSize()``) and every one its server's ``send`` handler receives
(before p2pfl drops duplicate gossip), each with the message's ``cmd`` and ``round`` (-1 when p2pfl
sets none); gRPC/HTTP2 framing, TCP and the small ``ResponseMessage`` replies are not counted.
Written to ``DIR/result-I.json`` with the times (``time.time()``) at which this node finished each
round (``NodeState.increase_round``), the size of its train set in that round (p2pfl drops
neighbours whose sends time out, and a node may then run a round alone) and its test accuracy at the
start of each round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds between looks at the neighbours and the other nodes' files.
POLL = 0.05
#: Seconds p2pfl's ``Node.stop()`` gets before this process exits anyway.
STOP_TIMEOUT = 5.0


def _softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy and d(mean loss)/d(logits)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = -np.log(np.maximum(probs[rows, labels], np.float32(1e-30)))
    grad = probs
    grad[rows, labels] -= 1.0
    return loss, (grad / np.float32(len(labels))).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ports", required=True, help="comma-separated 127.0.0.1 ports of all nodes, by index")
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds after which this node gives up")
    parser.add_argument("--grpc-timeout", type=float, help="p2pfl's Settings.general.GRPC_TIMEOUT (default: p2pfl's)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    # Stopped by the parent: leave at once (p2pfl's threads would keep a SystemExit waiting).
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(128 + signum))
    ports = [int(p) for p in args.ports.split(",")]
    nodes = len(ports)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    me = addresses[args.index]
    workdir: Path = args.workdir

    # Settings first: the logger module starts Ray on import unless DISABLE_RAY is set.
    from p2pfl.settings import Settings

    Settings.general.DISABLE_RAY = True
    Settings.general.LOG_DIR = str(workdir / "logs")
    Settings.general.LOG_LEVEL = "INFO"
    if args.grpc_timeout is not None:
        Settings.general.GRPC_TIMEOUT = args.grpc_timeout
    Settings.ssl.USE_SSL = False  # the wheel ships no certificates, so it would be plain gRPC anyway

    import datasets
    from flax import linen as nn
    from p2pfl.communication.protocols.protobuff.grpc.client import GrpcClient
    from p2pfl.communication.protocols.protobuff.server import ProtobuffServer
    from p2pfl.learning.dataset.p2pfl_dataset import P2PFLDataset
    from p2pfl.learning.frameworks import Framework
    from p2pfl.learning.frameworks.flax.flax_model import FlaxModel
    from p2pfl.learning.frameworks.learner import Learner
    from p2pfl.node import Node
    from p2pfl.node_state import NodeState

    # -- counting -------------------------------------------------------------------------------
    events: list[tuple[float, str, str, int, int]] = []  # (time, sent|received, cmd, bytes, round)
    lock = threading.Lock()

    def message_round(msg: Any) -> int:
        return int(msg.round) if msg.HasField("round") else -1

    original_send = GrpcClient.send

    def counted_send(self: Any, msg: Any, *a: Any, **k: Any) -> Any:
        out = original_send(self, msg, *a, **k)
        with lock:
            events.append((time.time(), "sent", msg.cmd, msg.ByteSize(), message_round(msg)))
        return out

    original_handler = ProtobuffServer.send

    def counted_handler(self: Any, request: Any, context: Any) -> Any:
        with lock:
            events.append((time.time(), "received", request.cmd, request.ByteSize(), message_round(request)))
        return original_handler(self, request, context)

    GrpcClient.send = counted_send  # type: ignore[method-assign]
    ProtobuffServer.send = counted_handler  # type: ignore[method-assign]

    round_ends: list[float] = []
    train_set_sizes: list[int] = []
    original_increase = NodeState.increase_round

    def timed_increase(self: Any) -> None:
        train_set_sizes.append(len(self.train_set))
        original_increase(self)
        round_ends.append(time.time())

    NodeState.increase_round = timed_increase  # type: ignore[method-assign]

    # -- the job --------------------------------------------------------------------------------
    job = np.load(workdir / "job.npz")
    shard = np.load(workdir / f"node-{args.index}.npz")
    train_x = shard["features"].astype(np.float32)
    train_y = shard["labels"].astype(np.int64)
    orders = shard["orders"]
    test_x = job["test_features"].astype(np.float32)
    test_y = job["test_labels"].astype(np.int64)
    lr = np.float32(job["lr"])
    batch_size = int(job["batch_size"])
    hidden = int(job["w0"].shape[0])
    classes = int(job["w1"].shape[0])
    accuracy: list[float] = []

    class MLP(nn.Module):  # the flax twin of fl-chain's torch MLP (Dense kernels are [in, out])
        hidden: int
        classes: int

        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))

    initial = {
        "Dense_0": {"kernel": np.ascontiguousarray(job["w0"].T), "bias": job["b0"].copy()},
        "Dense_1": {"kernel": np.ascontiguousarray(job["w1"].T), "bias": job["b1"].copy()},
    }

    class SGDLearner(Learner):
        """fl-chain's local training (TorchAdapter.train, PlainSGD without momentum) in float32 numpy."""

        fits = 0

        def fit(self) -> Any:
            model = self.get_model()
            k0, b0, k1, b1 = (np.array(p, dtype=np.float32) for p in model.get_parameters())
            for epoch in range(self.epochs):
                order = orders[min(self.fits, len(orders) - 1)][epoch % orders.shape[1]]
                for start in range(0, len(order), batch_size):
                    batch = order[start : start + batch_size]
                    x, y = train_x[batch], train_y[batch]
                    pre = x @ k0 + b0
                    act = np.maximum(pre, 0)
                    _, g = _softmax_xent(act @ k1 + b1, y)
                    g_act = g @ k1.T
                    g_act[pre <= 0] = 0
                    grads = (x.T @ g_act, g_act.sum(axis=0), act.T @ g, g.sum(axis=0))
                    for param, grad in zip((k0, b0, k1, b1), grads, strict=True):
                        param -= lr * grad
            model.set_parameters([k0, b0, k1, b1])
            model.set_contribution([self.addr], len(train_y))
            self.fits += 1
            return model

        def evaluate(self) -> dict[str, float]:
            k0, b0, k1, b1 = (np.asarray(p, dtype=np.float32) for p in self.get_model().get_parameters())
            logits = np.maximum(test_x @ k0 + b0, 0) @ k1 + b1
            loss, _ = _softmax_xent(logits, test_y)
            acc = float((logits.argmax(axis=1) == test_y).mean())
            accuracy.append(acc)
            return {"test_accuracy": acc, "test_loss": float(loss.mean())}

        def interrupt_fit(self) -> None:
            pass

        def get_framework(self) -> str:
            return str(Framework.FLAX.value)

    data = P2PFLDataset(
        datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict({"image": train_x, "label": train_y}),
                "test": datasets.Dataset.from_dict({"image": test_x, "label": test_y}),
            }
        ),
        batch_size=batch_size,
        dataset_name="digits",
    )
    model = FlaxModel(MLP(hidden=hidden, classes=classes), initial)
    node = Node(model, data, addr=me, learner=SGDLearner())

    status = "ok"
    try:
        node.start()
        # Full connectivity: connect to every higher-indexed node (the handshake adds both ways).
        pending = set(addresses[args.index + 1 :])
        while len(node.get_neighbors(only_direct=True)) < nodes - 1:
            for address in sorted(pending):
                with contextlib.suppress(Exception):  # the peer's server is not up yet: try again
                    if node.connect(address):
                        pending.discard(address)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(node.get_neighbors(only_direct=True))} of {nodes - 1} neighbours")
            time.sleep(POLL)
        (workdir / f"ready-{args.index}").write_text(me)
        if args.index == 0:
            while not all((workdir / f"ready-{i}").exists() for i in range(nodes)):
                if time.monotonic() > deadline:
                    raise TimeoutError("not every node connected")
                time.sleep(POLL)
            time.sleep(Settings.heartbeat.PERIOD)  # heartbeats spread the neighbour lists
            (workdir / "started").write_text(str(time.time()))
            node.set_start_learning(rounds=args.rounds, epochs=int(job["epochs"]), trainset_size=nodes)
        while len(round_ends) < args.rounds or node.state.round is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(round_ends)} of {args.rounds} rounds after {args.timeout:.0f} s")
            time.sleep(POLL)
    except Exception as exc:  # noqa: BLE001 - recorded for the parent
        status = f"{type(exc).__name__}: {exc}"
    # Keep serving and counting until every node is done (a slower peer may still want our model).
    (workdir / f"done-{args.index}").write_text(status)
    while not all((workdir / f"done-{i}").exists() for i in range(nodes)) and time.monotonic() < deadline:
        time.sleep(POLL)
    with lock:
        counted = list(events)
    result = {
        "index": args.index,
        "address": me,
        "status": status,
        "round_ends": round_ends,
        "train_set_sizes": train_set_sizes,
        "accuracy": accuracy,
        "events": counted,
        "pid": os.getpid(),
    }
    (workdir / f"result-{args.index}.json").write_text(json.dumps(result))
    # p2pfl's Node.stop() sometimes never returns (its gossiper or logger threads): give it a few
    # seconds, then leave without waiting for p2pfl's threads.
    stopper = threading.Thread(target=node.stop, daemon=True)
    stopper.start()
    stopper.join(STOP_TIMEOUT)
    sys.stdout.flush()
    os._exit(0 if status == "ok" else 1)


if __name__ == "__main__":
    sys.exit(main())
