"""``flchain simulate``: N nodes in one process, by default on the embedded chain with memory storage.

The real contract, the real node runtime and real training; the chain may also be a ganache or
anvil process and storage one embedded kubo IPFS peer per node. Writes a run folder:
``summary.json`` (per round: test accuracy, global model CID, gas, bytes moved), ``metrics.csv``,
``accuracy.png``, ``final-model.npy``, the log tree and each node's state directory. With
``compare`` it also replays the same clients in one process and trains a centralized model on the
pooled data (:mod:`fl_chain.federation.comparison`).

The run loop is here; the round accounting is :mod:`fl_chain.federation.records`, the files
:mod:`fl_chain.federation.run_folder`, the terminal display :mod:`fl_chain.federation.display`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import ConfigError, FederationStalledError
from fl_chain.federation.comparison import compare_with_baselines
from fl_chain.federation.display import SimulationDisplay
from fl_chain.federation.inprocess import DevChain, InProcessFederation, StorageFactory, build_federation
from fl_chain.federation.records import RoundRecord, RoundRecorder
from fl_chain.federation.run_folder import save_final_model, write_run_folder
from fl_chain.node.logs import RoundLogs
from fl_chain.node.runtime import Node
from fl_chain.node.state import FINAL_MODEL, NodeState
from fl_chain.protocol.task import TaskSpec
from fl_chain.storage.base import Storage
from fl_chain.training.trainer import Trainer

#: Chains ``flchain simulate`` can run on.
SIM_CHAINS = ("auto", "embedded", "ganache", "anvil")
#: Storage backends ``flchain simulate`` can use.
SIM_STORAGES = ("memory", "kubo")


def simulate_spec(args: Any) -> TaskSpec:
    """A task spec from ``flchain simulate`` options (long phases: they end by completion)."""
    quorum = args.quorum or args.replication // 2 + 1
    privacy = _privacy_options(args)
    min_contributors = max(quorum, 1)
    if privacy.get("secure_aggregation"):  # t <= min_contributors, and t >= 2
        min_contributors = max(min_contributors, privacy["secagg_threshold"])
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": args.rounds,
                "partitions": args.partitions,
                "replication": args.replication,
                "quorum": quorum,
                "min_contributors": min_contributors,
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
            "training": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                **({"momentum": args.momentum} if args.momentum else {}),
            },
            "strategy": {"name": args.strategy},
            **({"privacy": privacy} if privacy else {}),
        },
        origin="simulate options",
    )


def _privacy_options(args: Any) -> dict[str, Any]:
    """The [privacy] section the --dp-* flags set (any of them switches DP on; delta defaults to 1e-5)."""
    given = {
        key: value
        for key in ("dp_noise_multiplier", "dp_clip_norm", "dp_delta", "dp_epsilon_budget")
        if (value := getattr(args, key, None)) is not None
    }
    if given:
        given.setdefault("dp_delta", 1e-5)
    if getattr(args, "secure_aggregation", False):
        given["secure_aggregation"] = True
        quorum = args.quorum or args.replication // 2 + 1
        given["secagg_threshold"] = args.secagg_threshold or max(2, quorum)
    elif getattr(args, "secagg_threshold", None) is not None:
        given["secagg_threshold"] = args.secagg_threshold  # refused with its one-line reason
    return given


@dataclass
class SimulationOptions:
    """How to run a simulation besides the task itself."""

    nodes: int
    out: Path
    chain: str = "embedded"
    storage: str = "memory"
    compare: bool = False
    trainer_factory: Callable[..., Trainer] | None = None
    #: Called once the federation is set up, with the chain, the coordinator, the task id and the nodes
    #: (``flchain simulate --dashboard`` starts its dashboard here).
    on_started: Callable[[Any, Coordinator, int, list[Node]], None] | None = None
    #: Called with the summary after the run folder is written, while the chain and the nodes' storage
    #: are still open (a live dashboard keeps serving here until the user stops it).
    on_finished: Callable[[dict[str, Any]], None] | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad option; resolve ``chain="auto"``."""
        if self.chain == "auto":
            self.chain = default_chain()
        if self.nodes < 1:
            raise ConfigError(f"--nodes must be at least 1, got {self.nodes}")
        if self.chain not in SIM_CHAINS:
            raise ConfigError(f"unknown --chain {self.chain!r}; use one of {', '.join(SIM_CHAINS)}")
        if self.storage not in SIM_STORAGES:
            raise ConfigError(f"unknown --storage {self.storage!r}; use one of {', '.join(SIM_STORAGES)}")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"run folder {self.out} already exists and is not empty; choose another --out")


def default_chain() -> str:
    """The chain of ``--chain auto``: anvil when its binary is installed (``scripts/install.sh``), else
    the embedded py-evm chain. Both give the same models and CIDs; anvil executes and signs-checks
    transactions natively, so rounds are faster (bench/round_breakdown.py, backend anvil-memory)."""
    from fl_chain.chain.anvil import ANVIL_BINARY

    return "anvil" if ANVIL_BINARY.is_file() else "embedded"


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


def _secure_note(spec: TaskSpec) -> str:
    """`` with secure aggregation (t=2, clip 1)`` for a secure task, else nothing."""
    secure = spec.secure_aggregation
    if secure is None:
        return ""
    if spec.differential_privacy:
        return f" with secure aggregation (t={secure.threshold}, DP noise added by the contributors)"
    return (
        f" with secure aggregation (t={secure.threshold}, clip {spec.secagg_clip:g}, "
        f"{spec.secagg_frac_bits} fraction bits)"
    )


def run_simulation(
    spec: TaskSpec, options: SimulationOptions, display: SimulationDisplay | None = None
) -> dict[str, Any]:
    """Run the federation to completion and write the run folder; returns the summary."""
    with ExitStack() as resources:
        summary = _run_simulation(spec, options, display, resources)
        if options.on_finished is not None:
            options.on_finished(summary)
        return summary


def _run_simulation(
    spec: TaskSpec, options: SimulationOptions, display: SimulationDisplay | None, resources: ExitStack
) -> dict[str, Any]:
    """:func:`run_simulation`; the chain and storage close with ``resources`` when ``on_finished`` is set."""
    options.validate()
    display = display or SimulationDisplay(quiet=True)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as cleanup:
        cleanup.callback(display.stop)
        # With on_finished, the chain and the storages outlive the run (closed by the caller's stack).
        keep = resources if options.on_finished is not None else cleanup
        chain = _open_chain(options, keep)
        display.start(
            f"simulating {options.nodes} nodes, {spec.protocol['rounds']} rounds of {spec.model['name']} on "
            f"{spec.dataset['name']} ({spec.dataset.get('split', 'iid')}), P={spec.protocol['partitions']} "
            f"r={spec.protocol['replication']} q={spec.protocol['quorum']}, {spec.strategy['name']}"
            f"{_secure_note(spec)}; chain {options.chain}, storage {options.storage}",
            spec.chain_rounds,
        )
        if (note := spec.rounds_cap_note()) is not None:
            display.message(note)
        display.phase("deploying, admitting, joining")
        logs = RoundLogs(out / "logs")
        cleanup.callback(logs.close)
        chain, coordinator, task_id, members = build_federation(
            spec,
            nodes=options.nodes,
            state_root=out / "nodes",
            chain=chain,
            storage_factory=_storage_factory(options, keep),
            trainer_factory=options.trainer_factory,
        )
        for member in members:
            member.logs = logs
        if options.on_started is not None:
            options.on_started(chain, coordinator, task_id, members)
        # The simulation's chain is its own: every block comes from its nodes' transactions and
        # the runner's time jumps, so views can be kept between them.
        coordinator.client.assume_sole_writer()
        # Created after setup (deploy, admit, create, join, start): that gas is no round's.
        recorder = RoundRecorder(
            chain, coordinator, task_id, members, display, partitions=spec.protocol["partitions"], spec=spec
        )
        InProcessFederation(chain, coordinator, task_id, members).run(on_sweep=recorder.sweep)
        recorder.sweep()
        final = members[0].state.load_vector(task_id, FINAL_MODEL)
        if final is None:
            raise FederationStalledError(f"task {task_id} ended without a final model; see the logs in {out}")
        participants = [m.address for m in members]
    display.stop()
    save_final_model(out, final)
    records, finalized = recorder.records, recorder.finalized
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
            **({"privacy": spec.privacy} if spec.privacy else {}),
        },
        "rounds": [asdict(r) for r in records],
        "final_accuracy": finalized[-1].test_accuracy if finalized else None,
        "final_model_sha256": hashlib.sha256(final.tobytes()).hexdigest(),
        "total_gas": sum(r.gas_used for r in records),
        "total_bytes_moved": sum(r.bytes_moved for r in records),
        "wall_seconds": time.monotonic() - started,
    }
    if spec.differential_privacy:
        released = len(coordinator.released_rounds(task_id))
        summary["privacy"] = privacy_summary(spec, len(finalized), released)
    if options.compare:
        summary.update(
            compare_with_baselines(
                spec,
                summary,
                records,
                recorder.global_hashes,
                nodes=options.nodes,
                trainer_factory=options.trainer_factory,
                display=display,
            )
        )
    write_run_folder(
        out,
        summary=summary,
        records=records,
        title=f"{options.nodes} nodes, {spec.dataset['name']}/{spec.model['name']}",
        baselines={"pooled (centralized)": summary["pooled"]["test_accuracy"]} if "pooled" in summary else None,
    )
    display.finish(summary, str(out))
    return summary


def privacy_summary(spec: TaskSpec, finalized_rounds: int, released_rounds: int) -> dict[str, Any]:
    """Epsilon after the released rounds (finalized ones, and failed ones that published some final
    partition), the budget, and whether the budget ended the task."""
    epsilon = spec.epsilon_after(released_rounds)
    budget = spec.dp_epsilon_budget
    capped = budget is not None and spec.chain_rounds < spec.protocol["rounds"]
    return {
        "mechanism": "DP-FedAvg, user level, Gaussian (discrete, deterministic per round seed)",
        "noise_multiplier": spec.privacy["dp_noise_multiplier"],
        "clip_norm": spec.privacy["dp_clip_norm"],
        "delta": spec.dp_delta,
        "epsilon": epsilon,
        "finalized_rounds": finalized_rounds,
        "released_rounds": released_rounds,
        "epsilon_budget": budget,
        "rounds_requested": spec.protocol["rounds"],
        "rounds_affordable": spec.chain_rounds,
        "stopped": (
            f"privacy budget reached (eps={epsilon:.4g})" if capped and finalized_rounds >= spec.chain_rounds else None
        ),
    }


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


__all__ = [
    "SIM_CHAINS",
    "SIM_STORAGES",
    "RoundRecord",
    "SimulationOptions",
    "privacy_summary",
    "run_simulation",
    "simulate_spec",
]
