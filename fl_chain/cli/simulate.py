"""``flchain simulate``: a federation in one process."""

from __future__ import annotations

import argparse
import time

from fl_chain.errors import ConfigError

#: Help of ``--client`` (simulate, task create, node).
CLIENT_HELP = "a Flower-style NumPyClient factory module:callable(spec, train, test) instead of the task's torch model"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate``."""
    sim = commands.add_parser(
        "simulate", help="simulate a federation in one process (a local anvil or the embedded chain, memory storage)"
    )
    sim.add_argument("--nodes", type=int, default=4)
    sim.add_argument("--rounds", type=int, default=5)
    sim.add_argument("--dataset", default="digits", help="digits, breast_cancer, fashion_mnist or csv (with --data)")
    sim.add_argument("--data", help="csv: the file the simulated nodes share; fashion_mnist: its directory")
    sim.add_argument("--label", help="csv: the label column (default: label)")
    sim.add_argument("--num-classes", type=int, help="csv: number of classes (default: from the labels)")
    sim.add_argument("--standardize", action="store_true", help="csv: standardize features with train statistics")
    sim.add_argument("--client", help=CLIENT_HELP)
    sim.add_argument("--model", default="mlp", help="logreg, mlp or cnn")
    sim.add_argument("--hidden", type=int, default=32, help="hidden units of the mlp")
    sim.add_argument("--partitions", type=int, default=4)
    sim.add_argument("--replication", type=int, default=2)
    sim.add_argument("--quorum", type=int, help="default: replication // 2 + 1")
    sim.add_argument("--strategy", default="fedavg", help="fedavg, median or trimmed_mean")
    sim.add_argument("--split", default="iid", help="iid, dirichlet or quantity")
    sim.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration for skewed splits")
    # Defaults: 0.93-0.96 test accuracy on digits after 5 rounds of 4 nodes (seeds 0-3; bench/accuracy.py).
    sim.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    sim.add_argument("--batch-size", type=int, default=16)
    sim.add_argument("--lr", type=float, default=0.05)
    sim.add_argument(
        "--momentum", type=float, default=0.9, help="SGD momentum of local training (0 for plain SGD; per round)"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--chain",
        default="auto",
        help="auto (anvil when installed, else embedded), embedded (in-process py-evm), ganache or anvil",
    )
    sim.add_argument(
        "--storage", default="memory", help="memory (in-process) or kubo (one embedded IPFS peer per node)"
    )
    sim.add_argument(
        "--compare",
        action="store_true",
        help="also replay the same clients with central FedAvg (parity check) and train on the pooled data",
    )
    sim.add_argument("--dp-noise-multiplier", type=float, help="differential privacy: noise multiplier z (>= 0)")
    sim.add_argument("--dp-clip-norm", type=float, help="differential privacy: clip norm C of each update (> 0)")
    sim.add_argument("--dp-delta", type=float, help="differential privacy: delta epsilon is reported at (default 1e-5)")
    sim.add_argument(
        "--dp-epsilon-budget", type=float, help="differential privacy: stop when the next round exceeds it"
    )
    sim.add_argument(
        "--secure-aggregation",
        action="store_true",
        help="secure aggregation: aggregators see only masked updates (FedAvg only; docs/privacy.md)",
    )
    sim.add_argument(
        "--secagg-threshold",
        type=int,
        help="secure aggregation: Shamir threshold t (default: the quorum, at least 2; rounds need t revealers)",
    )
    sim.add_argument(
        "--dashboard",
        action="store_true",
        help="watch it live in a web dashboard on 127.0.0.1 (needs --chain anvil or ganache); "
        "it stays up after the run until Ctrl-C",
    )
    sim.add_argument("--dashboard-port", type=int, default=8080, help="port of --dashboard (default 8080)")
    sim.add_argument("--quiet", action="store_true", help="no progress display or table")
    sim.add_argument("--out", help="run folder (default: runs/sim-<time>)")
    sim.set_defaults(func=simulate_command)


def simulate_command(args: argparse.Namespace) -> int:
    """Check the options, then run the simulation with its progress display."""
    from pathlib import Path

    from fl_chain.federation.display import SimulationDisplay
    from fl_chain.federation.simulate import SimulationOptions, run_simulation, simulate_spec
    from fl_chain.training.node_data import trainer_factory

    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    if args.partitions < 1:
        raise ConfigError("--partitions must be at least 1")
    spec = simulate_spec(args)
    needed = spec.protocol["min_contributors"]
    if needed > args.nodes:
        raise ConfigError(
            f"--nodes {args.nodes} is fewer than the {needed} contributors a round needs (quorum "
            f"{spec.protocol['quorum']} of --replication {spec.protocol['replication']}); "
            "raise --nodes or lower --replication/--quorum"
        )
    options = SimulationOptions(
        nodes=args.nodes,
        out=Path(args.out or f"runs/sim-{time.strftime('%Y%m%d-%H%M%S')}"),
        chain=args.chain,
        storage=args.storage,
        compare=args.compare,
        trainer_factory=trainer_factory(args.client) if args.client else None,
    )
    options.validate()
    if not args.dashboard:
        run_simulation(spec, options, SimulationDisplay(quiet=args.quiet))
        return 0
    from fl_chain.cli.dashboard import SimulationDashboard
    from fl_chain.webserver import check_bindable

    if options.chain == "embedded":
        raise ConfigError(
            "--dashboard reads the chain over JSON-RPC: use --chain anvil or ganache (the embedded chain has no URL)"
        )
    check_bindable("127.0.0.1", args.dashboard_port)
    dashboard = SimulationDashboard(args.dashboard_port, options.out, storage=options.storage)
    options.on_started, options.on_finished = dashboard.started, dashboard.finished
    try:
        run_simulation(spec, options, SimulationDisplay(quiet=args.quiet))
    finally:
        dashboard.close()
    return 0
