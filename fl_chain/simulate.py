"""``flchain simulate``: N nodes in one process on the embedded chain with memory storage.

The real contract, the real node runtime and real training; only the chain and IPFS are in-process.
Writes a run folder: ``summary.json`` (per round: test accuracy, global model CID, gas, bytes moved),
``metrics.csv``, ``accuracy.png``, ``final-model.npy``, the log tree and each node's state directory.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fl_chain.chain.coordinator import RoundStatus
from fl_chain.inprocess import InProcessFederation, build_federation
from fl_chain.node.logs import RoundLogs
from fl_chain.storage.memory import MemoryStorage
from fl_chain.task import TaskSpec


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
            "model": {"name": args.model, "seed": args.seed, **({"hidden": args.hidden} if args.model == "mlp" else {})},
            "dataset": {"name": args.dataset, "split": args.split, "alpha": args.alpha, "seed": args.seed},
            "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
            "strategy": {"name": args.strategy},
        },
        origin="simulate options",
    )


def run_simulation(spec: TaskSpec, *, nodes: int, out: Path, report=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run the federation to completion and write the run folder; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    logs = RoundLogs(out / "logs")
    chain, coordinator, task_id, members = build_federation(spec, nodes=nodes, state_root=out / "nodes")
    for member in members:
        member.logs = logs
    records: list[RoundRecord] = []
    # Setup (deploy, admit, create, join, start) is not part of any round's gas.
    seen = {"round": 0, "block": chain.w3.eth.block_number, "bytes": 0, "t": time.monotonic()}

    def on_sweep() -> None:
        _, task = coordinator.get_task(task_id)
        while seen["round"] < task.current_round or (
            task.current_round == seen["round"]
            and coordinator.get_round(task_id, seen["round"]).status in (RoundStatus.FINALIZED, RoundStatus.FAILED)
        ):
            round_ = seen["round"]
            info = coordinator.get_round(task_id, round_)
            if info.status not in (RoundStatus.FINALIZED, RoundStatus.FAILED):
                break
            latest = chain.w3.eth.block_number
            gas = sum(int(chain.w3.eth.get_block(b)["gasUsed"]) for b in range(seen["block"] + 1, latest + 1))
            moved = sum(m.storage.bytes_received for m in members if isinstance(m.storage, MemoryStorage))
            metrics = members[0].trainer.evaluate(_global_after(members[0], round_)) if info.status == RoundStatus.FINALIZED else {}
            record = RoundRecord(
                round=round_,
                status=info.status.name.lower(),
                contributors=info.contributors,
                test_accuracy=metrics.get("test_accuracy"),
                test_loss=metrics.get("test_loss"),
                global_model_cid=members[0].global_cid(round_) if info.status == RoundStatus.FINALIZED else None,
                gas_used=gas,
                bytes_moved=moved - seen["bytes"],
                wall_seconds=time.monotonic() - seen["t"],
            )
            records.append(record)
            shown = f"accuracy {record.test_accuracy:.4f}" if record.test_accuracy is not None else "retried"
            report(
                f"round {round_:>3}: {record.status:<9} {record.contributors:>3} contributors  {shown}  "
                f"gas {gas:,}  moved {record.bytes_moved / 1e6:.1f} MB  {record.wall_seconds:.1f} s"
            )
            seen.update(round=round_ + 1, block=latest, bytes=moved, t=time.monotonic())

    try:
        InProcessFederation(chain, coordinator, task_id, members).run(on_sweep=on_sweep)
        on_sweep()
    finally:
        logs.close()
    final = members[0].state.load_vector(task_id, "final-model")
    import numpy as np

    np.save(out / "final-model.npy", final)
    finalized = [r for r in records if r.status == "finalized"]
    summary = {
        "nodes": nodes,
        "task": {"protocol": spec.protocol, "model": spec.model, "dataset": spec.dataset,
                 "training": spec.training, "strategy": spec.strategy},
        "rounds": [asdict(r) for r in records],
        "final_accuracy": finalized[-1].test_accuracy if finalized else None,
        "wall_seconds": time.monotonic() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if finalized:
        plot_accuracy(finalized, out / "accuracy.png", title=f"{nodes} nodes, {spec.dataset['name']}/{spec.model['name']}")
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(records[0]).keys()) if records else ["round"])
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))
    return summary


def plot_accuracy(records: list[RoundRecord], path: Path, *, title: str) -> None:
    """Test accuracy per finalized round, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    axis.plot([r.round for r in records], [r.test_accuracy for r in records], marker="o")
    axis.set_xlabel("round")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_ylabel("test accuracy")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _global_after(node, round_: int):  # type: ignore[no-untyped-def]
    vector = node.state.load_vector(node.task_id, "global")
    if node.state.global_round(node.task_id) == round_ and vector is not None:
        return vector
    fetched = node._fetch_global(round_)
    return fetched if fetched is not None else vector
