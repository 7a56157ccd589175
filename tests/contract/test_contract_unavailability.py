"""FLCoordinator contract: reporting unavailable updates in the fallback phase, and their exclusion."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import Chain, ChainClient, Coordinator, FailureReason, RoundStatus
from fl_chain.errors import ContractRevertError
from tests.conftest import CONTRACT_RULES_BACKEND, digest
from tests.helpers.contracts import Task, commit_updates, events, frozen_task, pass_deadline, running_task

pytestmark = pytest.mark.chain_backends(CONTRACT_RULES_BACKEND)


def _fallback_task(
    coordinator: Coordinator,
    chain: Chain,
    client: ChainClient,
    operator: LocalAccount,
    members: list[LocalAccount],
    **overrides: object,
) -> Task:
    """Every member committed in round 0 and the aggregation deadline passed: the fallback phase."""
    settings = {"partitions": 2, "replication": 3, "quorum": 2, "min_contributors": 2, **overrides}
    task = frozen_task(coordinator, operator, members, **settings)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    return task


def _revert_name(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractRevertError) as info:
        call()
    return info.value.name


def test_majority_reports_exclude_the_update(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 4 (q = 2): reports are counted; q = 2 reports (half of the contributors) exclude nothing,
    the third (a strict majority) excludes the update; getExcluded and getRound list it."""
    # Prepare
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    withholder, first, second, third = task.members

    # Execute
    one = coordinator.report_unavailable(first, task.task_id, 0, withholder.address)
    two = coordinator.report_unavailable(second, task.task_id, 0, withholder.address)
    excluded_after_two = coordinator.get_excluded(task.task_id, 0)
    three = coordinator.report_unavailable(third, task.task_id, 0, withholder.address)

    # Assert
    assert events(coordinator, "UnavailabilityReported", one) == [
        {
            "taskId": task.task_id,
            "round": 0,
            "contributor": withholder.address,
            "reporter": first.address,
            "reports": 1,
        }
    ]
    assert [e["reports"] for e in events(coordinator, "UnavailabilityReported", two)] == [2]
    assert events(coordinator, "ContributionExcluded", one) == []
    assert events(coordinator, "ContributionExcluded", two) == []
    assert excluded_after_two == []
    assert events(coordinator, "ContributionExcluded", three) == [
        {"taskId": task.task_id, "round": 0, "contributor": withholder.address}
    ]
    assert coordinator.get_excluded(task.task_id, 0) == [withholder.address]
    info = task.round(0)
    assert (info.status, info.excluded_count, info.contributors) == (RoundStatus.AGGREGATION, 1, 4)


def test_exclusion_below_min_contributors_fails_the_round(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Three contributors, minContributors = 3: excluding one fails the round and starts the next."""
    # Prepare
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:4], min_contributors=3)
    withholder, first, second = task.members
    coordinator.report_unavailable(first, task.task_id, 0, withholder.address)

    # Execute
    receipt = coordinator.report_unavailable(second, task.task_id, 0, withholder.address)

    # Assert
    assert events(coordinator, "RoundFailed", receipt) == [
        {"taskId": task.task_id, "round": 0, "reason": FailureReason.TOO_FEW_CONTRIBUTORS}
    ]
    assert (task.round(0).status, task.round(1).status) == (RoundStatus.FAILED, RoundStatus.UPDATE)


def test_report_before_the_aggregation_deadline_reverts(
    coordinator: Coordinator, operator: LocalAccount, accounts: list[LocalAccount]
):
    """The assigned phase gives a slow peer time: no report before the aggregation deadline."""
    task = frozen_task(coordinator, operator, accounts[1:5], partitions=2, replication=3, quorum=2, min_contributors=2)
    withholder, reporter = task.members[:2]
    name = _revert_name(lambda: coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address))
    assert name == "FLCoordinatorReportTooEarly"


def test_report_after_the_fallback_deadline_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    pass_deadline(chain, client, task.round(0).fallback_deadline)
    withholder, reporter = task.members[:2]
    name = _revert_name(lambda: coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address))
    assert name == "FLCoordinatorRoundExpired"


def test_report_of_self_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    member = task.members[0]
    name = _revert_name(lambda: coordinator.report_unavailable(member, task.task_id, 0, member.address))
    assert name == "FLCoordinatorSelfReport"


def test_report_twice_reverts_and_counts_once(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """One participant alone cannot reach the quorum by repeating its report."""
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    withholder, reporter = task.members[:2]
    coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address)
    name = _revert_name(lambda: coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address))
    assert name == "FLCoordinatorAlreadyReported"
    assert coordinator.get_excluded(task.task_id, 0) == []


def test_report_of_an_excluded_update_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """n = 5: three reports exclude; the fourth contributor's report comes too late."""
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:6])
    withholder, *reporters, late = task.members
    for reporter in reporters:
        coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address)
    name = _revert_name(lambda: coordinator.report_unavailable(late, task.task_id, 0, withholder.address))
    assert name == "FLCoordinatorAlreadyExcluded"
    assert coordinator.get_excluded(task.task_id, 0) == [withholder.address]


def test_excluded_contributor_can_neither_report_nor_aggregate(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An excluded update takes its contributor's vote with it: reports and aggregates revert."""
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    withholder, first, second, third = task.members
    for reporter in (first, second, third):
        coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address)
    with pytest.raises(ContractRevertError) as report:
        coordinator.report_unavailable(withholder, task.task_id, 0, first.address)
    with pytest.raises(ContractRevertError) as aggregate:
        coordinator.commit_aggregate(withholder, task.task_id, 0, 0, digest("aggregate"))
    assert (report.value.name, report.value.arguments) == (
        "FLCoordinatorNotAContributor",
        {"taskId": task.task_id, "round": 0, "account": withholder.address},
    )
    assert (aggregate.value.name, aggregate.value.arguments) == (
        "FLCoordinatorNotAContributor",
        {"taskId": task.task_id, "round": 0, "account": withholder.address},
    )
    assert coordinator.get_votes(task.task_id, 0, 0, digest("aggregate")) == (0, 0)
    assert [e["args"]["reporter"] for e in coordinator.find_events("UnavailabilityReported", taskId=task.task_id)] == [
        first.address,
        second.address,
        third.address,
    ]


def test_report_of_a_participant_without_an_update_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """Only a contributor of the round can be reported; a joined member that did not commit cannot."""
    task = running_task(coordinator, operator, accounts[1:5], partitions=2, replication=3, quorum=2, min_contributors=2)
    commit_updates(task, 0, task.members[:3])
    pass_deadline(chain, client, task.round(0).update_deadline)
    coordinator.advance(operator, task.task_id)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    idle, reporter = task.members[3], task.members[0]
    name = _revert_name(lambda: coordinator.report_unavailable(reporter, task.task_id, 0, idle.address))
    assert name == "FLCoordinatorNotAContributor"


def test_report_by_a_joined_non_contributor_reverts_with_not_a_contributor(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """A joined, admitted member that committed no update has no say in the round: its report,
    which would be the second of three contributors' (a majority), is refused and counts nothing."""
    task = running_task(coordinator, operator, accounts[1:5], partitions=2, replication=3, quorum=2, min_contributors=2)
    commit_updates(task, 0, task.members[:3])
    pass_deadline(chain, client, task.round(0).update_deadline)
    coordinator.advance(operator, task.task_id)
    pass_deadline(chain, client, task.round(0).aggregation_deadline)
    withholder, reporter, idle = task.members[0], task.members[1], task.members[3]
    coordinator.report_unavailable(reporter, task.task_id, 0, withholder.address)
    with pytest.raises(ContractRevertError) as exc:
        coordinator.report_unavailable(idle, task.task_id, 0, withholder.address)
    assert exc.value.name == "FLCoordinatorNotAContributor"
    assert exc.value.arguments == {"taskId": task.task_id, "round": 0, "account": idle.address}
    assert coordinator.get_excluded(task.task_id, 0) == []
    assert len(coordinator.find_events("UnavailabilityReported", taskId=task.task_id)) == 1


def test_report_by_an_outsider_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    """An account that is not admitted (and not joined) cannot report: it would be a free vote."""
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    outsider = accounts[6]
    name = _revert_name(lambda: coordinator.report_unavailable(outsider, task.task_id, 0, task.members[0].address))
    assert name == "FLCoordinatorNotAdmitted"


def test_report_for_another_round_reverts(
    coordinator: Coordinator, chain: Chain, client: ChainClient, operator: LocalAccount, accounts: list[LocalAccount]
):
    task = _fallback_task(coordinator, chain, client, operator, accounts[1:5])
    withholder, reporter = task.members[:2]
    name = _revert_name(lambda: coordinator.report_unavailable(reporter, task.task_id, 1, withholder.address))
    assert name == "FLCoordinatorRoundNotCurrent"
