"""``flchain simulate``: N nodes in one process, by default on the embedded chain with memory storage.

The real contract, the real node runtime and real training; the chain may also be a ganache or
anvil process and storage one embedded kubo IPFS peer per node. Writes a run folder:
``summary.json`` (per round: test accuracy, global model CID, gas, bytes moved), ``metrics.csv``,
``accuracy.png``, ``final-model.npy``, the log tree and each node's state directory. With
``compare`` it also replays the same clients in one process (:mod:`fl_chain.federation.central`) and checks
that every global model is byte-identical, and trains a centralized model on the pooled data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl_chain.chain.coordinator import RoundStatus
from fl_chain.errors import BlobInvalidError, BlobNotFoundError, ConfigError, FederationStalledError
from fl_chain.exchange.gather import fetch_global
from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.inprocess import DevChain, InProcessFederation, StorageFactory, build_federation
from fl_chain.node.logs import RoundLogs
from fl_chain.node.state import NodeState
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage

#: Chains ``flchain simulate`` can run on.
SIM_CHAINS = ("embedded", "ganache", "anvil")
#: Storage backends ``flchain simulate`` can use.
SIM_STORAGES = ("memory", "kubo")


@dataclass(frozen=True)
class _Progress:
    """Where the run loop's round accounting stands: next round, last block counted, bytes so far, its start."""

    round: int
    block: int
    bytes: int
    started: float


@dataclass
class RoundRecord:
    """One round of a simulation."""

    round: int
    status: str
    contributors: int
    test_accuracy: float | None
    test_loss: float | None
    global_model_cid: str | None
    gas_used: int
    bytes_moved: int
    wall_seconds: float


def simulate_spec(args: Any) -> TaskSpec:
    """A task spec from ``flchain simulate`` options (long phases: they end by completion)."""
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": args.rounds,
                "partitions": args.partitions,
                "replication": args.replication,
                "quorum": args.quorum or args.replication // 2 + 1,
                "min_contributors": max(args.quorum or args.replication // 2 + 1, 1),
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {
                "name": args.model,
                "seed": args.seed,
                **({"hidden": args.hidden} if args.model == "mlp" else {}),
            },
            "dataset": {
                "name": args.dataset,
                "split": args.split,
                "alpha": args.alpha,
                "seed": args.seed,
                **_dataset_options(args),
            },
            "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
            "strategy": {"name": args.strategy},
        },
        origin="simulate options",
    )


@dataclass
class SimulationOptions:
    """How to run a simulation besides the task itself."""

    nodes: int
    out: Path
    chain: str = "embedded"
    storage: str = "memory"
    compare: bool = False
    trainer_factory: Callable[..., object] | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option."""
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {self.nodes}")
        if self.chain not in SIM_CHAINS:
            raise ConfigError(f"unknown --chain {self.chain!r}; use one of {', '.join(SIM_CHAINS)}")
        if self.storage not in SIM_STORAGES:
            raise ConfigError(f"unknown --storage {self.storage!r}; use one of {', '.join(SIM_STORAGES)}")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"run folder {self.out} already exists and is not empty; choose another --out")


def _dataset_options(args: Any) -> dict[str, Any]:
    """The [dataset] options the simulate flags set (only those given: other datasets refuse them)."""
    options: dict[str, Any] = {}
    if getattr(args, "data", None):
        options["path"] = str(Path(args.data).resolve())
    if getattr(args, "label", None):
        options["label"] = args.label
    if getattr(args, "num_classes", None):
        options["num_classes"] = args.num_classes
    if getattr(args, "standardize", False):
        options["standardize"] = True
    return options


def run_simulation(
    spec: TaskSpec, options: SimulationOptions, display: SimulationDisplay | None = None
) -> dict[str, Any]:
    """Run the federation to completion and write the run folder; returns the summary."""
    options.validate()
    display = display or SimulationDisplay(quiet=True)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as cleanup:
        cleanup.callback(display.stop)
        chain = _open_chain(options, cleanup)
        display.start(
            f"simulating {options.nodes} nodes, {spec.protocol['rounds']} rounds of {spec.model['name']} on "
            f"{spec.dataset['name']} ({spec.dataset.get('split', 'iid')}), P={spec.protocol['partitions']} "
            f"r={spec.protocol['replication']} q={spec.protocol['quorum']}, {spec.strategy['name']}; "
            f"chain {options.chain}, storage {options.storage}",
            spec.protocol["rounds"],
        )
        display.phase("deploying, admitting, joining")
        logs = RoundLogs(out / "logs")
        cleanup.callback(logs.close)
        chain, coordinator, task_id, members = build_federation(
            spec,
            nodes=options.nodes,
            state_root=out / "nodes",
            chain=chain,
            storage_factory=_storage_factory(options, cleanup),
            trainer_factory=options.trainer_factory,
        )
        for member in members:
            member.logs = logs
        records: list[RoundRecord] = []
        global_hashes: dict[int, str] = {}
        # Setup (deploy, admit, create, join, start) is not part of any round's gas.
        seen = _Progress(round=0, block=chain.w3.eth.block_number, bytes=0, started=time.monotonic())

        def on_sweep() -> None:
            nonlocal seen
            _, task = coordinator.get_task(task_id)
            while seen.round <= task.current_round:
                round_ = seen.round
                info = coordinator.get_round(task_id, round_)
                if info.status not in (RoundStatus.FINALIZED, RoundStatus.FAILED):
                    display.phase(_phase_text(info, options.nodes, spec.protocol["partitions"]))
                    break
                latest = chain.w3.eth.block_number
                gas = sum(int(chain.w3.eth.get_block(b)["gasUsed"]) for b in range(seen.block + 1, latest + 1))
                moved = sum(int(getattr(m.storage, "bytes_received", 0)) for m in members)
                metrics: dict[str, float] = {}
                cid = None
                if info.status == RoundStatus.FINALIZED:
                    vector = _global_after(members[0], round_)
                    global_hashes[round_] = hashlib.sha256(vector.tobytes()).hexdigest()
                    metrics = members[0].trainer.evaluate(vector)
                    cid = members[0].global_cid(round_)
                record = RoundRecord(
                    round=round_,
                    status=info.status.name.lower(),
                    contributors=info.contributors,
                    test_accuracy=metrics.get("test_accuracy"),
                    test_loss=metrics.get("test_loss"),
                    global_model_cid=cid,
                    gas_used=gas,
                    bytes_moved=moved - seen.bytes,
                    wall_seconds=time.monotonic() - seen.started,
                )
                records.append(record)
                display.round_done(record, sum(r.status == "finalized" for r in records))
                seen = _Progress(round=round_ + 1, block=latest, bytes=moved, started=time.monotonic())

        InProcessFederation(chain, coordinator, task_id, members).run(on_sweep=on_sweep)
        on_sweep()
        final = members[0].state.load_vector(task_id, "final-model")
        if final is None:
            raise FederationStalledError(f"task {task_id} ended without a final model; see the logs in {out}")
        participants = [m.address for m in members]
    display.stop()
    np.save(out / "final-model.npy", final)
    finalized = [r for r in records if r.status == "finalized"]
    summary: dict[str, Any] = {
        "nodes": options.nodes,
        "chain": options.chain,
        "storage": options.storage,
        "task_id": task_id,
        "participants": participants,
        "task": {
            "protocol": spec.protocol,
            "model": spec.model,
            "dataset": spec.dataset,
            "training": spec.training,
            "strategy": spec.strategy,
        },
        "rounds": [asdict(r) for r in records],
        "final_accuracy": finalized[-1].test_accuracy if finalized else None,
        "final_model_sha256": hashlib.sha256(final.tobytes()).hexdigest() if final is not None else None,
        "total_gas": sum(r.gas_used for r in records),
        "total_bytes_moved": sum(r.bytes_moved for r in records),
        "wall_seconds": time.monotonic() - started,
    }
    if options.compare:
        summary["reference"] = _compare_with_central(spec, summary, records, global_hashes, options, display)
        epochs = len(finalized) * int(spec.training["epochs"])
        display.message(f"training a centralized model on the pooled data ({epochs} epochs)")
        from fl_chain.federation.central import train_pooled

        pooled = train_pooled(spec, nodes=options.nodes, epochs=max(epochs, 1))
        summary["pooled"] = {"epochs": max(epochs, 1), **pooled}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if finalized:
        plot_accuracy(
            finalized,
            out / "accuracy.png",
            title=f"{options.nodes} nodes, {spec.dataset['name']}/{spec.model['name']}",
            baselines={"pooled (centralized)": summary["pooled"]["test_accuracy"]} if "pooled" in summary else None,
        )
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(RoundRecord.__dataclass_fields__))
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))
    display.finish(summary, str(out))
    return summary


def _open_chain(options: SimulationOptions, cleanup: ExitStack) -> DevChain | None:
    """The chain to simulate on (None: build_federation's embedded chain)."""
    if options.chain == "embedded":
        return None
    from fl_chain.chain.backends import open_chain

    chain = open_chain(options.chain, accounts=options.nodes + 1, log_dir=options.out / "chain-logs")
    cleanup.callback(chain.close)
    return chain  # type: ignore[return-value]


def _storage_factory(options: SimulationOptions, cleanup: ExitStack) -> StorageFactory | None:
    """One embedded kubo peer per node, closed at the end (None: a shared memory network)."""
    if options.storage == "memory":
        return None
    from fl_chain.storage.kubo import KuboStorage

    def open_kubo(i: int, state: NodeState) -> Storage:
        storage = KuboStorage(state.ipfs_repo, port=0, log_dir=options.out / "logs" / "kubo")
        cleanup.callback(storage.close)
        return storage

    return open_kubo


def _phase_text(info: Any, nodes: int, partitions: int) -> str:
    if info.status == RoundStatus.UPDATE:
        return f"round {info.round}: training, {info.contributors}/{nodes} updates committed"
    if info.status == RoundStatus.AGGREGATION:
        return f"round {info.round}: aggregating, {info.finalized_partitions}/{partitions} partitions final"
    return f"round {info.round}: {info.status.name.lower()}"


def _compare_with_central(
    spec: TaskSpec,
    summary: dict[str, Any],
    records: list[RoundRecord],
    global_hashes: dict[int, str],
    options: SimulationOptions,
    display: SimulationDisplay,
) -> dict[str, Any]:
    """Replay the same clients in one process with plain FedAvg and compare every global model."""
    from fl_chain.federation.central import central_fedavg

    finalized = [r for r in records if r.status == "finalized"]
    if spec.strategy["name"] != "fedavg":
        return {"comparable": False, "reason": "the reference is plain FedAvg; run with --strategy fedavg"}
    if any(r.contributors != options.nodes for r in finalized):
        return {"comparable": False, "reason": "a round finalized without every node's update"}
    display.message(f"replaying the same {options.nodes} clients with central FedAvg for comparison")
    central = central_fedavg(
        spec,
        accounts=summary["participants"],
        task_id=summary["task_id"],
        rounds=[r.round for r in finalized],
        trainer_factory=options.trainer_factory,  # type: ignore[arg-type]
    )
    identical = [hashlib.sha256(c.global_vector.tobytes()).hexdigest() == global_hashes.get(c.round) for c in central]
    final = central[-1].global_vector if central else None
    return {
        "comparable": True,
        "rounds_compared": len(central),
        "rounds_identical": sum(identical),
        "final_identical": bool(identical and identical[-1]),
        "final_accuracy": central[-1].metrics.get("test_accuracy") if central else None,
        "final_model_sha256": hashlib.sha256(final.tobytes()).hexdigest() if final is not None else None,
    }


def plot_accuracy(
    records: list[RoundRecord], path: Path, *, title: str, baselines: dict[str, float] | None = None
) -> None:
    """Test accuracy per finalized round, as a PNG, with optional horizontal baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    accuracy = [math.nan if r.test_accuracy is None else r.test_accuracy for r in records]  # a failed round: a gap
    axis.plot([r.round for r in records], accuracy, marker="o", label="fl-chain global model")
    for label, value in (baselines or {}).items():
        axis.axhline(value, linestyle="--", color="gray", label=f"{label} {value:.3f}")
    if baselines:
        axis.legend(loc="lower right")
    axis.set_xlabel("round")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _global_after(node, round_: int):
    vector = node.state.load_vector(node.task_id, "global")
    if node.state.global_round(node.task_id) == round_ and vector is not None:
        return vector
    try:
        return fetch_global(
            node.storage,
            node.coordinator,
            node.task_id,
            round_,
            timeout=node.options.fetch_timeout,
            dimension=None if vector is None else vector.size,
        )
    except (BlobNotFoundError, BlobInvalidError):
        return vector
