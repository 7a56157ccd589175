"""``flchain audit``: recompute a task's rounds from the chain and IPFS and say, per round, whether they verify."""

from __future__ import annotations

import argparse

from fl_chain.cli.common import add_contract, add_rpc, open_coordinator
from fl_chain.cli.simulate import CLIENT_HELP
from fl_chain.errors import ConfigError

#: Exit status when some audited round does not verify (bad input exits 2, as every command).
EXIT_NOT_VERIFIED = 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit``."""
    audit = commands.add_parser(
        "audit",
        help="recompute every finalized round from the chain and IPFS; exit 1 if one does not verify",
        description="Each finalized round's global model is fetched by its on-chain digests and recomputed "
        "from the updates committed on chain with the task's own contribution rule (strategy, validation, "
        "norm bound, sample cap, exclusions, secure aggregation): one line per round, equal or not and why. "
        "Exit status 1 when a round does not verify, 2 on bad input.",
    )
    add_rpc(audit)
    add_contract(audit)
    audit.add_argument("--task", type=int, required=True, help="task id on chain")
    audit.add_argument("--round", type=int, help="audit only this round (default: every round)")
    audit.add_argument(
        "--task-file", required=True, help="the task's TOML file: its contribution rule and initial model"
    )
    audit.add_argument("--client", help=CLIENT_HELP)
    audit.add_argument("--data", help="a sample of the sites' data (csv tasks): fixes the initial model's size")
    audit.add_argument("--ipfs-dir", help="IPFS repo for the auditing peer (default: a temporary one)")
    audit.add_argument("--timeout", type=float, default=60.0, help="seconds each fetch may take")
    audit.set_defaults(func=audit_command)


def audit_command(args: argparse.Namespace) -> int:
    """Print one verdict line per round and a summary; 1 if a finalized round does not verify."""
    from fl_chain.chain.coordinator import TaskStatus
    from fl_chain.protocol.task import TaskSpec

    spec = TaskSpec.from_toml(args.task_file)
    coordinator = open_coordinator(args)
    count = coordinator.task_count()
    if not 1 <= args.task <= count:
        raise ConfigError(f"task {args.task} does not exist ({count} task(s) on {coordinator.address})")
    config, state = coordinator.get_task(args.task)
    if state.status == TaskStatus.OPEN:
        raise ConfigError(f"task {args.task} has not started: no round to audit")
    rounds = range(state.current_round + 1)
    if args.round is not None:
        if args.round not in rounds:
            raise ConfigError(f"round {args.round} of task {args.task} does not exist: its rounds are 0..{rounds[-1]}")
        rounds = range(args.round, args.round + 1)

    # Only now the heavier modules: bad options are reported before torch and kubo load.
    from fl_chain.exchange.audit import Verdict, task_verdicts
    from fl_chain.exchange.download import participant_storage
    from fl_chain.federation.operator import initial_vector_for
    from fl_chain.training.node_data import trainer_factory

    initial = initial_vector_for(spec, trainer_factory(args.client), args.data)
    spec.check_matches_chain(config, initial, task_id=args.task)
    counts = dict.fromkeys(Verdict, 0)
    with participant_storage(coordinator, args.task, ipfs_dir=args.ipfs_dir) as storage:
        for verdict in task_verdicts(
            storage, coordinator, args.task, rounds, spec=spec, initial=initial, timeout=args.timeout
        ):
            print(verdict.line(), flush=True)
            counts[verdict.verdict] += 1
    summary = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    bad = counts[Verdict.NOT_EQUAL] + counts[Verdict.UNVERIFIABLE]
    print(f"task {args.task}: {len(rounds)} round(s) audited: {summary}")
    if counts[Verdict.UNVERIFIABLE]:
        print("unverifiable rounds need content no connected peer served: are the participants' nodes running?")
    return EXIT_NOT_VERIFIED if bad else 0
