#!/usr/bin/env python3
"""Gas per FLCoordinator call, and gas per participant per round, for N = 4, 16 and 64 participants.

Usage::

    python -m bench.gas                      # embedded chain (py-evm in this process)
    python -m bench.gas --chain anvil        # or ganache: a local chain process
    python -m bench.gas --participants 4,16 --exponents 3,8

For every N and two partition settings, P = 4 and P = N (replication r = 2, quorum q = 2), the
script deploys a coordinator, admits and joins N participants, starts a task and plays rounds:

* ``first``, ``steady``: every node commits its update; the last commit freezes the set; contributor
  0 draws the assignment (``drawAssignment``: the key is the freezing block's hash, readable from
  the next block on, as the nodes do); every assigned aggregator commits all its partitions in one
  ``commitAggregates``; the round finalizes.
* ``single``: the same, but each aggregate is its own ``commitAggregate`` transaction.
* ``deadline``: one node stays offline, so the update phase ends at its deadline through ``advance``.
* ``timeout``: nobody aggregates; ``advance`` fails the round after the fallback deadline.
* ``1e3`` .. ``1e8``: steady rounds whose digests stand for models of 10^3 .. 10^8 parameters.

Gas per participant per round is the gas of every transaction of the round (updates, the draw,
aggregates, ``advance`` calls) divided by N; the target is 100,000. The contract only ever sees 32-byte digests,
so the model-size rounds cost the same: their execution gas (gas used minus the 21,000 base and the
calldata of each transaction) is identical, and gas used differs only by the zero bytes of the
random digests, which cost 4 calldata gas instead of 16. For N = 4 the two settings coincide and
run once.

Prints tables and writes ``bench/results/gas.json``. The defaults play about 3,000 transactions:
about 10 minutes on the embedded chain, a few minutes on anvil.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from fl_chain.chain import (
    BACKENDS,
    Chain,
    ChainClient,
    Coordinator,
    RoundStatus,
    TaskConfig,
    connect,
    dev_accounts,
    load_artifact,
    open_chain,
)
from fl_chain.errors import FLChainError

RESULTS = Path(__file__).resolve().parent / "results" / "gas.json"
#: Gas per participant per round the design aims to stay under.
TARGET = 100_000
REPLICATION = 2
QUORUM = 2
#: Phase durations; rounds move on by completion, or by time travel past these.
UPDATE_DURATION = 3600
AGGREGATION_DURATION = 3600
SAMPLES = 600
#: Intrinsic gas of every transaction, and calldata gas per zero / non-zero byte (EIP-2028).
TX_BASE_GAS = 21_000
CALLDATA_ZERO_GAS = 4
CALLDATA_NONZERO_GAS = 16


def calldata_gas(data: bytes) -> int:
    zeros = data.count(0)
    return CALLDATA_ZERO_GAS * zeros + CALLDATA_NONZERO_GAS * (len(data) - zeros)


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def multiaddr(i: int) -> str:
    """A realistic-length IPFS multiaddr (the peer id has the length of an Ed25519 one)."""
    peer = hashlib.sha256(f"peer {i}".encode()).hexdigest()[:44]
    return f"/ip4/10.0.{i // 256}.{i % 256}/tcp/4001/p2p/12D3KooW{peer}"


@dataclass
class RoundResult:
    """The transactions of one round."""

    label: str
    round: int
    txs: list[tuple[str, int, int]] = field(default_factory=list)  # (call, gas used, calldata gas)
    finalized: bool = False

    @property
    def total(self) -> int:
        return sum(gas for _, gas, _ in self.txs)

    @property
    def execution(self) -> int:
        """Gas minus each transaction's 21,000 base and calldata bytes: what the contract code used."""
        return sum(gas - TX_BASE_GAS - calldata for _, gas, calldata in self.txs)

    def per_participant(self, n: int) -> float:
        return self.total / n

    @property
    def advance_calls(self) -> int:
        return sum(name.startswith("advance") for name, _, _ in self.txs)


class Setting:
    """One coordinator, one task with N participants and P partitions, and the gas it used."""

    def __init__(self, chain: Chain, client: ChainClient, accounts: list[LocalAccount], n: int, partitions: int):
        self.chain = chain
        self.client = client
        self.operator = accounts[0]
        self.nodes = accounts[1 : n + 1]
        self.n = n
        self.partitions = partitions
        self.calls: dict[str, list[int]] = defaultdict(list)
        self.rounds: list[RoundResult] = []
        artifact = load_artifact()
        receipt = client.deploy(self.operator, artifact.abi, artifact.bytecode)
        self._record("deploy", receipt)
        self.co = Coordinator.at(client, receipt["contractAddress"], artifact, deploy_block=int(receipt["blockNumber"]))
        self._record(f"admit ({n} accounts)", self.co.admit(self.operator, [a.address for a in self.nodes]))
        self.config = TaskConfig(
            manifest_digest=sha256(f"task manifest N={n} P={partitions}"),
            partitions=partitions,
            replication=REPLICATION,
            quorum=QUORUM,
            min_contributors=QUORUM,
            update_duration=UPDATE_DURATION,
            aggregation_duration=AGGREGATION_DURATION,
            rounds=1000,
        )
        self.task_id = self.co.create_task(self.operator, self.config)
        (created,) = self.co.find_events("TaskCreated", taskId=self.task_id)
        self._record("createTask", client.w3.eth.get_transaction_receipt(created["transactionHash"]))
        for i, node in enumerate(self.nodes):
            self._record("join", self.co.join(node, self.task_id, [multiaddr(i)]))
        self._record("startTask", self.co.start_task(self.operator, self.task_id))

    # -- bookkeeping ----------------------------------------------------------------------------

    def _record(self, call: str, receipt: dict[str, Any], round_: RoundResult | None = None) -> None:
        gas = int(receipt["gasUsed"])
        self.calls[call].append(gas)
        if round_ is not None:
            data = bytes(self.client.w3.eth.get_transaction(receipt["transactionHash"])["input"])
            round_.txs.append((call, gas, calldata_gas(data)))

    def _emitted(self, event: str, receipt: dict[str, Any]) -> bool:
        return bool(getattr(self.co.contract.events, event)().process_receipt(receipt, errors=DISCARD))

    # -- rounds ---------------------------------------------------------------------------------

    def play_round(
        self,
        label: str,
        *,
        update_digest: Callable[[int, int], bytes] | None = None,
        aggregate_digest: Callable[[int, int], bytes] | None = None,
        single: bool = False,
        offline: int = 0,
        timeout: bool = False,
    ) -> RoundResult:
        """Play the current round; see the module docstring for the kinds of round."""
        update_digest = update_digest or (lambda r, i: sha256(f"update round {r} node {i}"))
        aggregate_digest = aggregate_digest or (lambda r, p: sha256(f"aggregate round {r} partition {p}"))
        current = self.co.get_task(self.task_id)[1].current_round
        result = RoundResult(label, current)
        contributors = self.nodes[: self.n - offline]
        for i, node in enumerate(contributors):
            receipt = self.co.commit_update(node, self.task_id, current, update_digest(current, i), SAMPLES)
            freezes = self._emitted("UpdatePhaseClosed", receipt)
            self._record("commitUpdate + freeze" if freezes else "commitUpdate", receipt, result)
        if offline:
            self.chain.increase_time(UPDATE_DURATION)
            self._record("advance (freeze)", self.co.advance(self.operator, self.task_id), result)
        info = self.co.get_round(self.task_id, current)
        assert info.status == RoundStatus.AGGREGATION, info
        if timeout:
            self.chain.increase_time(2 * AGGREGATION_DURATION)
            self._record("advance (fail round)", self.co.advance(self.operator, self.task_id), result)
            self.rounds.append(result)
            return result
        # The key is the freezing block's hash: no view answers assignments until a later block
        # stores it. Contributor 0 draws it, as the nodes do.
        assert info.assignment_key is None, info
        receipt = self.co.draw_assignment(contributors[0], self.task_id, current)
        assert self._emitted("AssignmentDrawn", receipt)
        self._record("drawAssignment", receipt, result)
        for node in contributors:
            assigned = self.co.get_assigned_partitions(self.task_id, current, node.address)
            if not assigned:
                continue
            if single:
                for p in assigned:
                    receipt = self.co.commit_aggregate(node, self.task_id, current, p, aggregate_digest(current, p))
                    final = self._emitted("RoundFinalized", receipt)
                    self._record("commitAggregate + finalize" if final else "commitAggregate", receipt, result)
            else:
                digests = [aggregate_digest(current, p) for p in assigned]
                receipt = self.co.commit_aggregates(node, self.task_id, current, assigned, digests)
                final = self._emitted("RoundFinalized", receipt)
                self._record("commitAggregates + finalize" if final else "commitAggregates", receipt, result)
        result.finalized = self.co.get_round(self.task_id, current).status == RoundStatus.FINALIZED
        assert result.finalized, f"round {current} ({label}) did not finalize"
        self.rounds.append(result)
        return result


# ------------------------------------------------------------------------------------------------
# Running and reporting
# ------------------------------------------------------------------------------------------------


def run_setting(
    chain: Chain, client: ChainClient, accounts: list[LocalAccount], n: int, partitions: int, exponents: list[int]
) -> dict[str, Any]:
    started = time.perf_counter()
    s = Setting(chain, client, accounts, n, partitions)
    s.play_round("first")
    steady = s.play_round("steady")
    s.play_round("single", single=True)
    s.play_round("deadline", offline=1)
    s.play_round("timeout", timeout=True)
    model_sizes: dict[str, dict[str, float]] = {}
    for e in exponents:
        params = 10**e
        result = s.play_round(
            f"1e{e}",
            update_digest=lambda r, i, params=params: sha256(
                f"update manifest: model of {params} parameters, round {r}, node {i}"
            ),
            aggregate_digest=lambda r, p, params=params: sha256(
                f"aggregate: model of {params} parameters, round {r}, partition {p} of {partitions}"
            ),
        )
        model_sizes[str(params)] = {
            "gas_per_participant": result.per_participant(n),
            "execution_gas_per_participant": result.execution / n,
        }
    per_participant = steady.per_participant(n)
    update_part = sum(gas for name, gas, _ in steady.txs if name.startswith("commitUpdate")) / n
    batch_rounds = [r for r in s.rounds if r.label in ("first", "steady") or r.label.startswith("1e")]
    worst = max(r.per_participant(n) for r in batch_rounds)
    return {
        "participants": n,
        "partitions": partitions,
        "replication": REPLICATION,
        "quorum": QUORUM,
        "aggregator_commits_per_round": partitions * min(REPLICATION, n),
        "calls": {
            name: {
                "count": len(values),
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
            for name, values in s.calls.items()
        },
        "rounds": {
            r.label: {
                "round": r.round,
                "transactions": len(r.txs),
                "advance_calls": r.advance_calls,
                "total_gas": r.total,
                "execution_gas": r.execution,
                "gas_per_participant": r.per_participant(n),
                "finalized": r.finalized,
            }
            for r in s.rounds
        },
        "model_sizes": model_sizes,
        "gas_per_participant_per_round": per_participant,
        "steady_round_split_per_participant": {"updates": update_part, "aggregates": per_participant - update_part},
        "worst_batch_round_gas_per_participant": worst,
        "under_target": worst < TARGET,
        "seconds": time.perf_counter() - started,
    }


CALL_ORDER = [
    "deploy",
    "admit",
    "createTask",
    "join",
    "startTask",
    "commitUpdate",
    "commitUpdate + freeze",
    "drawAssignment",
    "commitAggregate",
    "commitAggregate + finalize",
    "commitAggregates",
    "commitAggregates + finalize",
    "advance (freeze)",
    "advance (fail round)",
]


def _call_key(name: str) -> int:
    for i, prefix in enumerate(CALL_ORDER):
        if name == prefix or (prefix == "admit" and name.startswith("admit")):
            return i
    return len(CALL_ORDER)


def print_report(chain_name: str, client_version: str, settings: list[dict[str, Any]], exponents: list[int]) -> None:
    print(
        f"FLCoordinator gas on {chain_name} ({client_version}); r={REPLICATION}, q={QUORUM}, target {TARGET:,} "
        "gas per participant per round\n"
    )

    # Gas per call type, one column per setting.
    heads = [f"N={s['participants']} P={s['partitions']}" for s in settings]
    names = sorted({name for s in settings for name in s["calls"]}, key=lambda k: (_call_key(k), k))
    width = max(len(n) for n in names) + 2
    print("Gas per call (median; [min-max] when calls differ)")
    print(f"{'call':<{width}}" + "".join(f"{h:>28}" for h in heads))
    for name in names:
        cells = []
        for s in settings:
            c = s["calls"].get(name)
            if c is None:
                cells.append("-")
            elif c["min"] == c["max"]:
                cells.append(f"{c['median']:,.0f}")
            else:
                cells.append(f"{c['median']:,.0f} [{c['min']:,}-{c['max']:,}]")
        print(f"{name:<{width}}" + "".join(f"{cell:>28}" for cell in cells))
    print("  commitAggregates commits every partition the node is assigned in one transaction;")
    print("  '+ freeze' / '+ finalize' are the commits that close the update phase / finalize the round;")
    print("  drawAssignment stores the round's assignment key (the freezing block's hash), once per round.\n")

    # Gas per participant per round.
    labels = ["first", "steady", "single", "deadline", "timeout"]
    print("Gas per participant per round (all transactions of the round, including advance, / N)")
    print(
        f"{'N':>4} {'P':>4} {'aggs':>5}"
        + "".join(f"{label:>11}" for label in labels)
        + f"{'worst batch':>13}  < {TARGET // 1000}k?   steady = updates + aggregates"
    )
    for s in settings:
        cells = "".join(f"{s['rounds'][label]['gas_per_participant']:>11,.0f}" for label in labels)
        flag = "yes" if s["under_target"] else "NO "
        split = s["steady_round_split_per_participant"]
        print(
            f"{s['participants']:>4} {s['partitions']:>4} {s['aggregator_commits_per_round']:>5}{cells}"
            f"{s['worst_batch_round_gas_per_participant']:>13,.0f}  {flag}      "
            f"{split['updates']:>7,.0f} + {split['aggregates']:,.0f}"
        )
    print("  aggs: aggregate commits per round (P x r).")
    print("  first/steady: batch commits, the update phase closes when everyone committed (no advance),")
    print("  one drawAssignment;")
    print("  single: one commitAggregate per partition; deadline: one node offline, advance freezes the set;")
    print("  timeout: nobody aggregates, advance fails the round (updates + advance only).\n")

    # Model size independence.
    if exponents:
        print("Gas per participant per round vs model size (digests stand for models of 10^k parameters)")
        print(f"{'N':>4} {'P':>4}  {'':<10}" + "".join(f"{f'10^{e}':>10}" for e in exponents) + f"{'spread':>9}")
        for s in settings:
            for key, label in (("gas_per_participant", "gas used"), ("execution_gas_per_participant", "execution")):
                values = [v[key] for v in s["model_sizes"].values()]
                print(
                    f"{s['participants']:>4} {s['partitions']:>4}  {label:<10}"
                    + "".join(f"{v:>10,.1f}" for v in values)
                    + f"{max(values) - min(values):>9,.1f}"
                )
        print("  The contract stores and checks only 32-byte digests: the model size never reaches the chain.")
        print("  'execution' leaves out each transaction's 21,000 base gas and calldata gas; the small spread in")
        print("  'gas used' comes only from zero bytes in the random digests (4 calldata gas instead of 16).\n")

    under = all(s["under_target"] for s in settings)
    print(
        f"Gas per participant per round under {TARGET:,} in every batch round of every setting: "
        f"{'YES' if under else 'NO'}"
    )


#: Sizes of ``measure(quick=True)``: one N, the smallest and largest model size.
QUICK_PARTICIPANTS = [4]
QUICK_EXPONENTS = [3, 8]


def measure(
    *,
    chain: str = "embedded",
    participants: list[int] | None = None,
    exponents: list[int] | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Play every setting (N, P = 4 and P = N) and return the figures ``main`` prints and saves.

    The model-size rounds commit digests that stand for models of 10^k parameters: no weights are
    made (the contract only ever sees 32-byte digests); ``bench/round_breakdown.py`` records the gas
    of rounds with real models of 1e4..1e7 parameters for comparison.
    """
    ns = participants or (QUICK_PARTICIPANTS if quick else [4, 16, 64])
    exps = exponents if exponents is not None else (QUICK_EXPONENTS if quick else [3, 4, 5, 6, 7, 8])
    started = time.perf_counter()
    opened = open_chain(chain, accounts=max(ns) + 1)
    try:
        client = connect(opened)
        accounts = dev_accounts(max(ns) + 1)
        client_version = str(opened.w3.client_version)
        settings = []
        for n in ns:
            for partitions in dict.fromkeys([4, n]):  # P = 4 and P = N (once when N = 4)
                if progress:
                    progress(f"gas: N={n} P={partitions}")
                settings.append(run_setting(opened, client, accounts, n, partitions, exps))
    finally:
        opened.close()
    return {
        "benchmark": "gas",
        "chain": chain,
        "client_version": client_version,
        "replication": REPLICATION,
        "quorum": QUORUM,
        "target_gas_per_participant_per_round": TARGET,
        "exponents": exps,
        "model_sizes_note": "digests stand for models of 10^k parameters; no weights are materialized",
        "seconds": time.perf_counter() - started,
        "settings": settings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", default="embedded", choices=BACKENDS, help="chain backend (default embedded)")
    parser.add_argument("--participants", default="4,16,64", help="participant counts N, comma-separated")
    parser.add_argument(
        "--exponents", default="3,4,5,6,7,8", help="model sizes 10^k parameters for the size rounds ('' for none)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = parser.parse_args(argv)
    ns = [int(v) for v in args.participants.split(",") if v]
    exponents = [int(v) for v in args.exponents.split(",") if v]
    if not ns or min(ns) < QUORUM:
        parser.error(f"participant counts must be at least {QUORUM}")

    try:
        result = measure(
            chain=args.chain,
            participants=ns,
            exponents=exponents,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except FLChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    client_version, settings = result["client_version"], result["settings"]
    print_report(args.chain, client_version, settings, exponents)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
