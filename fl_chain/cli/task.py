"""``flchain task create``, ``task start`` and ``task cancel``: the operator's tasks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fl_chain.cli.common import START_HINTS, add_key, add_rpc, explained_reverts, load_account, open_coordinator
from fl_chain.cli.simulate import CLIENT_HELP
from fl_chain.errors import ConfigError

if TYPE_CHECKING:
    from fl_chain.protocol.task import TaskSpec


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``task create``, ``task start`` and ``task cancel``."""
    task = commands.add_parser("task", help="operator: create, start and cancel tasks")
    task_commands = task.add_subparsers(dest="task_command", required=True)
    create = task_commands.add_parser("create", help="create a task from a TOML file")
    add_rpc(create)
    add_key(create)
    create.add_argument("--deployment", default="deployment.json")
    create.add_argument("task_file", help="task TOML (protocol, model, dataset, training, strategy)")
    create.add_argument(
        "--accept-risk",
        action="store_true",
        help="create the task even if [security] max_colluders could decide a partition with probability > 1e-6",
    )
    create.add_argument("--client", help=CLIENT_HELP)
    create.add_argument(
        "--data", help="a sample of the sites' data (csv datasets): fixes the initial model's input size"
    )
    create.set_defaults(func=task_create_command)

    start = task_commands.add_parser("start", help="start a task once enough participants joined")
    add_rpc(start)
    add_key(start)
    start.add_argument("--deployment", default="deployment.json")
    start.add_argument("--task", type=int, required=True)
    start.set_defaults(func=task_start_command)

    cancel = task_commands.add_parser(
        "cancel", help="cancel an open or running task (its current round fails; finalized rounds stay)"
    )
    add_rpc(cancel)
    add_key(cancel)
    cancel.add_argument("--deployment", default="deployment.json")
    cancel.add_argument("--task", type=int, required=True)
    cancel.set_defaults(func=task_cancel_command)


def task_create_command(args: argparse.Namespace) -> int:
    """Check the task file (capture bound, model size), then create the task on chain."""
    from fl_chain.protocol.task import TaskSpec

    account = load_account(args)
    # Only now the heavier modules: a bad key is reported before they load.
    from fl_chain.federation.operator import create_task, initial_vector_for
    from fl_chain.training.node_data import trainer_factory

    spec = TaskSpec.from_toml(args.task_file)
    if (note := spec.rounds_cap_note()) is not None:  # or a one-line error if the budget affords no round
        print(note)
    check_capture_bound(spec, args.task_file, accept_risk=args.accept_risk)
    initial = initial_vector_for(spec, trainer_factory(args.client), args.data)
    if spec.protocol["partitions"] > initial.size:
        # Nodes refuse such a task when they start; refuse it before it reaches the chain.
        raise ConfigError(
            f"{args.task_file}: protocol.partitions must be between 1 and the model dimension {initial.size}, "
            f"got {spec.protocol['partitions']}"
        )
    coordinator = open_coordinator(args)
    task_id, digest = create_task(coordinator, account, spec, initial=initial)
    print(f"created task {task_id} (manifest digest {digest.hex()})")
    return 0


def task_start_command(args: argparse.Namespace) -> int:
    """Start ``--task``."""
    account = load_account(args)
    coordinator = open_coordinator(args)
    with explained_reverts(coordinator, START_HINTS):
        coordinator.start_task(account, args.task)
    print(f"started task {args.task}")
    return 0


def task_cancel_command(args: argparse.Namespace) -> int:
    """Cancel ``--task``."""
    account = load_account(args)
    coordinator = open_coordinator(args)
    with explained_reverts(coordinator):
        coordinator.cancel_task(account, args.task)
    _, state = coordinator.get_task(args.task)
    print(f"cancelled task {args.task} ({state.finalized_rounds} round(s) finalized stay on chain)")
    return 0


def check_capture_bound(spec: TaskSpec, task_file: str, *, accept_risk: bool) -> None:
    """Print the chance that ``[security] max_colluders`` decide a partition; refuse above the limit.

    Raises
    ------
    ConfigError
        If the chance exceeds :data:`~fl_chain.protocol.capture.CAPTURE_LIMIT` and ``accept_risk`` is false.
    """
    from fl_chain.protocol.capture import CAPTURE_LIMIT

    bound = spec.capture_bound()
    p = spec.protocol
    print(
        f"capture bound: {bound.colluders} colluding contributor(s) decide some partition of a round with "
        f"probability <= {bound.probability:.3g} (worst at {bound.contributors} contributors; P={p['partitions']}, "
        f"r={p['replication']}, q={p['quorum']}, {p['min_contributors']}..{p['max_participants']} contributors)"
    )
    if bound.acceptable or accept_risk:
        return
    hint = (
        "raise protocol.min_contributors to at least 2 * security.max_colluders (a majority decides the fallback)"
        if 2 * bound.colluders > bound.contributors
        else "raise protocol.replication and protocol.quorum (see the README's table of safe r, q)"
    )
    raise ConfigError(
        f"{task_file}: a coalition of security.max_colluders = {bound.colluders} decides a partition with probability "
        f"{bound.probability:.3g} > {CAPTURE_LIMIT:g}; {hint}, or pass --accept-risk"
    )
