"""The coordinator's own view encoding returns exactly what web3's contract layer returns."""

from __future__ import annotations

from typing import Any

import pytest

from fl_chain.chain.coordinator import Coordinator
from fl_chain.errors import ContractRevertError
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.protocol.task import TaskSpec


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Coordinator, int, list[str]]:
    """A coordinator after a 2-round task of 3 nodes (tasks, rounds, votes, participants to read)."""
    spec = TaskSpec.from_dict(
        {
            "protocol": {"rounds": 2, "partitions": 2, "replication": 2, "quorum": 2, "min_contributors": 2,
                         "update_duration": 3600, "aggregation_duration": 3600},
            "model": {"name": "logreg", "seed": 1},
            "dataset": {"name": "digits"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
        }
    )  # fmt: skip
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=3, state_root=tmp_path_factory.mktemp("views"))
    InProcessFederation(chain, coordinator, task_id, nodes).run()
    return coordinator, task_id, [n.address for n in nodes]


def _args(name: str, task_id: int, members: list[str], coordinator: Coordinator) -> list[tuple[Any, ...]]:
    """Representative arguments of each view (several where the answer's shape varies)."""
    digest = coordinator.get_final_digests(task_id, 0)[0]
    return {
        "assignmentPosition": [(b"\x01" * 32, 3, 7)],
        "getAssignedPartitions": [(task_id, r, m) for r in (0, 1) for m in members],
        "getExcluded": [(task_id, 0), (task_id, 1)],
        "getFinalDigests": [(task_id, 0), (task_id, 1)],
        "getParticipants": [(task_id, 0, 200), (task_id, 1, 1)],
        "getRound": [(task_id, 0), (task_id, 1)],
        "getSecureMember": [(task_id, r, m) for r in (0, 1) for m in members],
        "getTask": [(task_id,)],
        "getVotes": [(task_id, 0, 0, digest), (task_id, 0, 1, b"\x00" * 32)],
        "hasJoined": [(task_id, members[0]), (task_id, "0x" + "00" * 19 + "01")],
        "isAdmitted": [(members[0],), ("0x" + "00" * 19 + "01",)],
        "isAssigned": [(task_id, 0, p, m) for p in (0, 1) for m in members],
    }.get(name, [()])


def test_every_view_decodes_as_web3_decodes_it(finished: tuple[Coordinator, int, list[str]]) -> None:
    coordinator, task_id, members = finished
    views = list(coordinator.views)
    assert {"getTask", "getRound", "getParticipants", "getFinalDigests", "isAdmitted"} <= {v.name for v in views}
    for view in views:
        for args in _args(view.name, task_id, members, coordinator):
            ours = _outcome(coordinator._call, view.name, *args)
            web3_function = getattr(coordinator.contract.functions, view.name)(*args)
            theirs = _outcome(lambda f: coordinator.client.call(f, decoder=coordinator.decoder), web3_function)
            assert ours == theirs and repr(ours) == repr(theirs), (view.name, args)


def _outcome(read: Any, *args: Any) -> Any:
    """What ``read(*args)`` returns, or the name of the contract error it reverts with."""
    try:
        return read(*args)
    except ContractRevertError as exc:
        return ("reverted", exc.name)


def test_a_view_that_reverts_raises_the_contracts_error(finished: tuple[Coordinator, int, list[str]]) -> None:
    coordinator, task_id, _ = finished
    with pytest.raises(ContractRevertError) as ours:
        coordinator._call("getRound", task_id + 5, 0)
    with pytest.raises(ContractRevertError) as theirs:
        coordinator.client.call(coordinator.contract.functions.getRound(task_id + 5, 0), decoder=coordinator.decoder)
    assert ours.value.name == theirs.value.name and ours.value.name.startswith("FLCoordinator")


def test_views_are_the_abis_unoverloaded_read_functions(finished: tuple[Coordinator, int, list[str]]) -> None:
    coordinator, _, _ = finished
    reads = [e["name"] for e in coordinator.artifact.abi if e.get("type") == "function"
             and e.get("stateMutability") in ("view", "pure")]  # fmt: skip
    assert sorted(v.name for v in coordinator.views) == sorted(reads)
    assert coordinator.views.get("commitUpdate") is None  # writes go through web3
