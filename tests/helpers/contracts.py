"""Shared multi-step setup for the FLCoordinator contract tests.

Every helper drives the contract through :class:`fl_chain.chain.Coordinator`, so the tests run
unchanged on the embedded chain, ganache and anvil. Digests are derived from readable labels so a
failing assertion shows which update or aggregate was meant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.logs import DISCARD

from fl_chain.chain import Chain, ChainClient, Coordinator, RoundInfo, RoundStatus, TaskConfig
from tests.conftest import digest, multiaddr, task_config

ZERO_DIGEST = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


# -- digests and sample counts ----------------------------------------------------------------------


def update_digest(round_: int, member: int) -> bytes:
    """The update manifest digest member ``member`` commits in ``round_``."""
    return digest(f"update/{round_}/{member}")


def update_samples(member: int) -> int:
    """The sample count member ``member`` reports (distinct per member, so sums are checkable)."""
    return 100 + 10 * member


def honest_digest(round_: int, partition: int) -> bytes:
    """The aggregate digest every honest aggregator computes for ``partition``."""
    return digest(f"aggregate/{round_}/{partition}")


def forged_digest(round_: int, partition: int) -> bytes:
    """A dissenting aggregate digest for ``partition``."""
    return digest(f"forged/{round_}/{partition}")


# -- events ---------------------------------------------------------------------------------------


def events(coordinator: Coordinator, name: str, receipt: dict[str, Any]) -> list[dict[str, Any]]:
    """The arguments of every ``name`` event in ``receipt``, in log order."""
    event = getattr(coordinator.contract.events, name)()
    return [dict(log["args"]) for log in event.process_receipt(receipt, errors=DISCARD)]


def block_timestamp(client: ChainClient, receipt: dict[str, Any]) -> int:
    """Timestamp of the block that mined ``receipt``."""
    return int(client.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def parent_hash(client: ChainClient, receipt: dict[str, Any]) -> bytes:
    """``blockhash(block.number - 1)`` as seen by the transaction of ``receipt``."""
    return bytes(client.w3.eth.get_block(receipt["blockNumber"] - 1)["hash"])


def expected_seed(
    client: ChainClient, coordinator: Coordinator, receipt: dict[str, Any], task_id: int, round_: int
) -> bytes:
    """The round seed the contract documents: keccak(blockhash(n-1), chainid, this, taskId, round)."""
    return keccak(
        encode(
            ["bytes32", "uint256", "address", "uint256", "uint256"],
            [parent_hash(client, receipt), client.chain_id, coordinator.address, task_id, round_],
        )
    )


def expected_key(client: ChainClient, freeze_receipt: dict[str, Any], seed: bytes) -> bytes:
    """The assignment key the contract documents: keccak(seed, hash of the block that froze the set).

    ``freeze_receipt`` is the receipt of the transaction that froze the contributor set (the last
    update commit, or ``advance``); its block's hash is what no transaction of that block can know.
    """
    freezing_block = bytes(client.w3.eth.get_block(freeze_receipt["blockNumber"])["hash"])
    return keccak(encode(["bytes32", "bytes32"], [seed, freezing_block]))


def contract_position(coordinator: Coordinator, key: bytes, index: int, contributors: int) -> int:
    """``assignmentPosition(key, index, n)`` as the contract computes it."""
    return int(coordinator.client.call(coordinator.contract.functions.assignmentPosition(key, index, contributors)))


# -- time -----------------------------------------------------------------------------------------


def pass_deadline(chain: Chain, client: ChainClient, deadline: int) -> None:
    """Move chain time so the latest block, and so every later transaction, is at or after ``deadline``."""
    gap = max(deadline - client.block_timestamp(), 0)
    # One spare second: the embedded chain mines `increase_time(s)` one second short of `s`.
    chain.increase_time(gap + 2)
    assert client.block_timestamp() >= deadline


# -- tasks ----------------------------------------------------------------------------------------


@dataclass
class Task:
    """A task on a test coordinator with the accounts that joined it, in join order."""

    coordinator: Coordinator
    operator: LocalAccount
    task_id: int
    config: TaskConfig
    members: list[LocalAccount]

    def member_index(self, account: LocalAccount) -> int:
        """Position of ``account`` in join order (also its label in digests and sample counts)."""
        return [m.address for m in self.members].index(account.address)

    def round(self, round_: int) -> RoundInfo:
        """The round's on-chain view."""
        return self.coordinator.get_round(self.task_id, round_)

    def assigned(self, round_: int, account: LocalAccount) -> list[int]:
        """Partitions the contract assigns to ``account`` in ``round_``."""
        return self.coordinator.get_assigned_partitions(self.task_id, round_, account.address)

    def aggregators(self, round_: int, partition: int) -> list[LocalAccount]:
        """Members the contract assigns to ``partition`` in ``round_``, in join order."""
        return [m for m in self.members if self.coordinator.is_assigned(self.task_id, round_, partition, m.address)]

    def unassigned(self, round_: int, partition: int) -> list[LocalAccount]:
        """Members not assigned to ``partition`` in ``round_``, in join order."""
        assigned = {m.address for m in self.aggregators(round_, partition)}
        return [m for m in self.members if m.address not in assigned]


def open_task(
    coordinator: Coordinator, operator: LocalAccount, members: Sequence[LocalAccount], **overrides: Any
) -> Task:
    """Create a task (``task_config(**overrides)``), admit ``members`` unless it is open, and join them."""
    config = task_config(**overrides)
    task_id = coordinator.create_task(operator, config)
    if not config.open_admission and members:
        coordinator.admit(operator, [m.address for m in members])
    for i, member in enumerate(members):
        coordinator.join(member, task_id, [multiaddr(i)])
    return Task(coordinator, operator, task_id, config, list(members))


def running_task(
    coordinator: Coordinator, operator: LocalAccount, members: Sequence[LocalAccount], **overrides: Any
) -> Task:
    """:func:`open_task`, then start it: round 0 is in its update phase."""
    task = open_task(coordinator, operator, members, **overrides)
    coordinator.start_task(operator, task.task_id)
    return task


def commit_updates(task: Task, round_: int, contributors: Sequence[LocalAccount]) -> list[dict[str, Any]]:
    """Each of ``contributors`` commits its update for ``round_``, in order; returns the receipts."""
    return [
        task.coordinator.commit_update(
            c, task.task_id, round_, update_digest(round_, task.member_index(c)), update_samples(task.member_index(c))
        )
        for c in contributors
    ]


def draw_assignment(task: Task, round_: int) -> dict[str, Any]:
    """The operator (anyone may) stores the assignment key of frozen ``round_``; returns the receipt.

    The key is the freezing block's hash, so views answer assignments only from the next block on:
    this transaction mines that block (every backend mines one block per transaction here).
    """
    receipt = task.coordinator.draw_assignment(task.operator, task.task_id, round_)
    assert task.round(round_).assignment_key is not None
    return receipt


def frozen_task(
    coordinator: Coordinator, operator: LocalAccount, members: Sequence[LocalAccount], **overrides: Any
) -> Task:
    """:func:`running_task` where every member committed in round 0, so its contributor set is frozen,
    and the round's assignment key is drawn (the contract's views then answer who aggregates what)."""
    task = running_task(coordinator, operator, members, **overrides)
    commit_updates(task, 0, task.members)
    assert task.round(0).frozen
    draw_assignment(task, 0)
    return task


def commit_assigned(
    task: Task,
    round_: int,
    aggregators: Sequence[LocalAccount],
    digest_of: Callable[[int], bytes] | None = None,
) -> list[dict[str, Any]]:
    """Each of ``aggregators`` commits all its assigned partitions of ``round_`` in one batch.

    ``digest_of(partition)`` gives the committed digest; the honest one by default.
    """
    make = digest_of or (lambda p: honest_digest(round_, p))
    receipts = []
    for aggregator in aggregators:
        partitions = task.assigned(round_, aggregator)
        assert partitions, f"{aggregator.address} has no assigned partition in round {round_}"
        receipts.append(
            task.coordinator.commit_aggregates(
                aggregator, task.task_id, round_, partitions, [make(p) for p in partitions]
            )
        )
    return receipts


def commit_until_final(task: Task, round_: int, aggregators: Sequence[LocalAccount]) -> list[dict[str, Any]]:
    """:func:`commit_assigned` (honest digests) for those of ``aggregators`` that are assigned a
    partition, in order, stopping once the round left its aggregation phase; returns the receipts."""
    receipts = []
    for aggregator in aggregators:
        if task.round(round_).status != RoundStatus.AGGREGATION:
            break
        if task.assigned(round_, aggregator):
            receipts += commit_assigned(task, round_, [aggregator])
    return receipts


def finalize_round(task: Task, round_: int) -> list[dict[str, Any]]:
    """Every member commits its update, the assignment is drawn, then members commit their assigned
    aggregates honestly, in join order, until the round is final; returns the aggregate receipts."""
    commit_updates(task, round_, task.members)
    draw_assignment(task, round_)
    receipts = commit_until_final(task, round_, task.members)
    assert task.round(round_).status == RoundStatus.FINALIZED
    return receipts
