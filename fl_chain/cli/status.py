"""``flchain status``: tasks, rounds, participants, commits and final digests."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fl_chain.cli.common import add_rpc, open_coordinator
from fl_chain.errors import ConfigError

if TYPE_CHECKING:
    from fl_chain.chain.coordinator import Coordinator, TaskState


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    status = commands.add_parser("status", help="show tasks, rounds, participants, commits and final digests")
    add_rpc(status)
    status.add_argument("--deployment", default="deployment.json")
    status.add_argument("--task", type=int, help="show only this task, in detail")
    status.add_argument(
        "--task-file",
        help="with --task: the task's TOML, to show its differential privacy (epsilon after the finalized rounds)",
    )
    status.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
    """One line per task (and its latest rounds); every round of ``--task`` in detail."""
    coordinator = open_coordinator(args)
    count = coordinator.task_count()
    pending = coordinator.pending_operator()
    offered = f" (offered to {pending})" if pending else ""
    print(f"FLCoordinator {coordinator.address}: operator {coordinator.operator()}{offered}, {count} task(s)")
    if args.task is not None and not 1 <= args.task <= count:
        raise ConfigError(f"task {args.task} does not exist ({count} task(s))")
    if args.task_file is not None and args.task is None:
        raise ConfigError("--task-file needs --task: the task that file describes")
    task_ids = [args.task] if args.task is not None else list(range(1, count + 1))
    for task_id in task_ids:
        config, state = coordinator.get_task(task_id)
        print(
            f"task {task_id}: {state.status.name.lower()}, {state.participant_count} participants, "
            f"round {state.current_round}, {state.finalized_rounds}/{config.rounds} finalized, "
            f"P={config.partitions} r={config.replication} q={config.quorum}"
        )
        if state.status.name in ("RUNNING", "COMPLETED", "CANCELLED"):
            info = coordinator.get_round(task_id, state.current_round)
            print(f"  current round {info.round}: {info.status.name.lower()}, {info.contributors} contributors")
        if state.latest_finalized_round is not None:
            digests = coordinator.get_final_digests(task_id, state.latest_finalized_round)
            print(
                f"  round {state.latest_finalized_round} final digests: " + " ".join(d.hex()[:12] for d in digests if d)
            )
        if args.task_file is not None:
            released = len(coordinator.released_rounds(task_id))
            print("  " + _privacy_line(args.task_file, config.rounds, state, released))
        if args.task is not None:
            _print_rounds(coordinator, task_id, state.current_round)
    return 0


def _privacy_line(task_file: str, chain_rounds: int, state: TaskState, released: int) -> str:
    """``privacy: eps=... at delta=... after N released rounds`` (rounds that published a final partition,
    finalized or not; and ``stopped: privacy budget reached``)."""
    from fl_chain.protocol.task import TaskSpec

    spec = TaskSpec.from_toml(task_file)
    if not spec.differential_privacy:
        return f"privacy: no differential privacy in {task_file}"
    if spec.chain_rounds != chain_rounds:
        raise ConfigError(
            f"{task_file} gives the task {spec.chain_rounds} rounds, the chain {chain_rounds}: pass the task's own file"
        )
    eps = spec.epsilon_after(released)
    line = (
        f"privacy: eps={eps:.4g} at delta={spec.dp_delta:g} after {released} released rounds "
        f"(DP-FedAvg, noise multiplier {spec.privacy['dp_noise_multiplier']:g}, clip norm "
        f"{spec.privacy['dp_clip_norm']:g}"
    )
    budget = spec.dp_epsilon_budget
    line += f", budget eps={budget:g})" if budget is not None else ")"
    capped = chain_rounds < spec.protocol["rounds"]
    affordable = spec.affordable_rounds()
    if capped and state.status.name == "COMPLETED" and state.finalized_rounds >= chain_rounds:
        line += f"; stopped: privacy budget reached (eps={eps:.4g})"
    elif state.status.name == "RUNNING" and affordable is not None and released >= affordable:
        line += f"; privacy budget spent (eps={eps:.4g}): nodes contribute no more, cancel the task"
    return line


def _print_rounds(coordinator: Coordinator, task_id: int, current_round: int) -> None:
    """Participants, then every round up to ``current_round``: commits, exclusions, disputes, dissent."""
    print("  participants:")
    for p in coordinator.get_participants(task_id):
        print(
            f"    {p.account}  last update round {p.update_round - 1 if p.update_round else '-'}  "
            f"{' '.join(p.multiaddrs)}"
        )
    for round_ in range(current_round + 1):
        info = coordinator.get_round(task_id, round_)
        commits = coordinator.find_update_commits(task_id, round_)
        aggregates = coordinator.find_aggregate_commits(task_id, round_)
        failure = f" ({info.failure.name.lower()})" if info.failure.value else ""
        print(
            f"  round {round_}: {info.status.name.lower()}{failure}, {len(commits)} updates "
            f"({info.total_samples} samples), {len(aggregates)} aggregate commits, "
            f"{info.finalized_partitions} partitions final"
        )
        for excluded in coordinator.get_excluded(task_id, round_):
            print(f"    excluded as unavailable by a contributor majority: {excluded}")
        if info.disputes:
            print(f"    disputes of its global model: {info.disputes} of {info.contributors} contributors")
        dissent = coordinator.find_dissenting_aggregators(task_id, round_)
        for d in dissent:
            print(f"    dissent: {d.aggregator} committed {d.digest.hex()[:12]} for partition {d.partition}")
