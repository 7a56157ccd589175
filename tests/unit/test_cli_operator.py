"""The operator's commands on a real chain (anvil): `task cancel`, `operator transfer` / `operator accept`, `revoke`.

Each runs through the CLI in this process (tests/helpers/cli_runner.py) against a fresh deployment;
what the contract refuses comes back as one line naming its custom error and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from fl_chain.chain import ChainClient, dev_account
from fl_chain.chain.backends import ProcessChain
from fl_chain.chain.coordinator import Coordinator, RoundStatus, TaskStatus
from fl_chain.chain.deployment import Deployment, open_deployment
from tests.helpers.cli_runner import InProcessCli, assert_one_line_error
from tests.helpers.contracts import open_task, running_task

pytestmark = pytest.mark.process_chain

ZERO_ADDRESS = "0x" + "00" * 20


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> InProcessCli:
    return InProcessCli(capsys, monkeypatch)


@pytest.fixture()
def site(anvil: ProcessChain, tmp_path: Path, run_cli: InProcessCli) -> tuple[Coordinator, tuple[str, ...]]:
    """A fresh deployment by account 0 in ``tmp_path`` (deployment.json), key files key-0 ... key-3,
    and the ``--rpc`` arguments."""
    for i in range(4):
        (tmp_path / f"key-{i}").write_text(dev_account(i).key.hex())
    deployed = run_cli(
        "deploy", "--rpc", str(anvil.rpc_url), "--key", "key-0", "--out", "deployment.json", cwd=tmp_path
    )
    assert deployed.returncode == 0, deployed.stderr
    coordinator = open_deployment(ChainClient(anvil.w3), Deployment.read(tmp_path / "deployment.json"))
    return coordinator, ("--rpc", str(anvil.rpc_url))


def members(*indices: int) -> list[LocalAccount]:
    return [dev_account(i) for i in indices]


def test_task_cancel_cancels_a_running_task_and_fails_its_current_round(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    # Prepare
    coordinator, rpc = site
    task = running_task(coordinator, dev_account(0), members(4, 5, 6))

    # Execute
    result = run_cli("task", "cancel", *rpc, "--key", "key-0", "--task", str(task.task_id), cwd=tmp_path)

    # Assert
    assert result.returncode == 0, result.stderr
    assert f"cancelled task {task.task_id} (0 round(s) finalized stay on chain)" in result.stdout
    assert coordinator.get_task(task.task_id)[1].status == TaskStatus.CANCELLED
    assert coordinator.get_round(task.task_id, 0).status == RoundStatus.FAILED
    status = run_cli("status", *rpc, "--task", str(task.task_id), cwd=tmp_path)
    assert "task 1: cancelled" in status.stdout and "round 0: failed (task_cancelled)" in status.stdout


def test_task_cancel_of_a_cancelled_or_unknown_task_is_one_line(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    # Prepare
    coordinator, rpc = site
    task = open_task(coordinator, dev_account(0), [])
    cancel = ("task", "cancel", *rpc, "--key", "key-0", "--task")
    assert run_cli(*cancel, str(task.task_id), cwd=tmp_path).returncode == 0

    # Execute
    again = run_cli(*cancel, str(task.task_id), cwd=tmp_path)
    unknown = run_cli(*cancel, "9", cwd=tmp_path)

    # Assert
    assert_one_line_error(
        again, "FLCoordinatorWrongTaskStatus", "task 1 is cancelled: only an open or running task can be cancelled"
    )
    assert_one_line_error(unknown, "FLCoordinatorUnknownTask", "task 9 does not exist")


def test_attack_task_cancel_by_a_non_operator_is_refused_and_the_task_runs_on(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """A participant of the task (not the operator) tries to cancel it."""
    # Prepare
    coordinator, rpc = site
    task = running_task(coordinator, dev_account(0), members(1, 2, 3))

    # Execute
    result = run_cli("task", "cancel", *rpc, "--key", "key-1", "--task", str(task.task_id), cwd=tmp_path)

    # Assert
    assert_one_line_error(
        result,
        "FLCoordinatorUnauthorizedOperator",
        f"{dev_account(1).address} is not the operator ({dev_account(0).address})",
        "--key",
    )
    assert coordinator.get_task(task.task_id)[1].status == TaskStatus.RUNNING
    assert coordinator.get_round(task.task_id, 0).status == RoundStatus.UPDATE


def test_operator_transfer_then_accept_moves_the_role_in_two_steps(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    # Prepare
    coordinator, rpc = site
    old, new = dev_account(0), dev_account(1)

    # Execute: the offer
    offered = run_cli("operator", "transfer", *rpc, "--key", "key-0", "--to", new.address.lower(), cwd=tmp_path)

    # Assert: offered, not yet moved
    assert offered.returncode == 0, offered.stderr
    assert f"offered the operator role of {coordinator.address} to {new.address}" in offered.stdout
    assert coordinator.operator() == old.address and coordinator.pending_operator() == new.address
    status = run_cli("status", *rpc, cwd=tmp_path)
    assert f"operator {old.address} (offered to {new.address})" in status.stdout

    # Execute: the acceptance
    accepted = run_cli("operator", "accept", *rpc, "--key", "key-1", cwd=tmp_path)

    # Assert: the new operator operates, the old one no longer does
    assert accepted.returncode == 0, accepted.stderr
    assert f"{new.address} is now the operator of {coordinator.address} (was {old.address})" in accepted.stdout
    assert coordinator.operator() == new.address and coordinator.pending_operator() is None
    task = open_task(coordinator, new, [])
    refused = run_cli("task", "cancel", *rpc, "--key", "key-0", "--task", str(task.task_id), cwd=tmp_path)
    assert_one_line_error(refused, "FLCoordinatorUnauthorizedOperator", f"is not the operator ({new.address})")
    cancelled = run_cli("task", "cancel", *rpc, "--key", "key-1", "--task", str(task.task_id), cwd=tmp_path)
    assert cancelled.returncode == 0, cancelled.stderr


def test_attack_accepting_an_operator_role_not_offered_to_you_is_refused(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Account 2 tries to take the role: first when nothing is offered, then when it is offered to account 1."""
    # Prepare
    coordinator, rpc = site
    accept = ("operator", "accept", *rpc, "--key", "key-2")

    # Execute
    nothing_offered = run_cli(*accept, cwd=tmp_path)
    assert run_cli("operator", "transfer", *rpc, "--key", "key-0", "--to", dev_account(1).address, cwd=tmp_path)
    offered_to_another = run_cli(*accept, cwd=tmp_path)

    # Assert
    assert_one_line_error(
        nothing_offered,
        "FLCoordinatorNotPendingOperator",
        f"the operator role was not offered to {dev_account(2).address} (offered to: nobody)",
    )
    assert_one_line_error(
        offered_to_another, "FLCoordinatorNotPendingOperator", f"(offered to: {dev_account(1).address})"
    )
    assert coordinator.operator() == dev_account(0).address
    assert coordinator.pending_operator() == dev_account(1).address


def test_attack_operator_transfer_by_a_non_operator_is_refused(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """Account 1 offers the role to itself."""
    coordinator, rpc = site

    result = run_cli("operator", "transfer", *rpc, "--key", "key-1", "--to", dev_account(1).address, cwd=tmp_path)

    assert_one_line_error(result, "FLCoordinatorUnauthorizedOperator", f"{dev_account(1).address} is not the operator")
    assert coordinator.pending_operator() is None


def test_operator_transfer_to_a_bad_or_zero_address_is_one_line(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    _, rpc = site
    transfer = ("operator", "transfer", *rpc, "--key", "key-0", "--to")

    assert_one_line_error(run_cli(*transfer, "0x1234", cwd=tmp_path), "--to '0x1234' is not an Ethereum address")
    assert_one_line_error(
        run_cli(*transfer, ZERO_ADDRESS, cwd=tmp_path),
        "FLCoordinatorInvalidOperator",
        "cannot go to the zero address",
    )


def test_attack_revoke_and_admit_by_a_non_operator_are_one_line(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    """A member tries to revoke another member, then to admit an outsider."""
    coordinator, rpc = site
    coordinator.admit(dev_account(0), [dev_account(2).address])

    revoke = run_cli("revoke", *rpc, "--key", "key-1", dev_account(2).address, cwd=tmp_path)
    admit = run_cli("admit", *rpc, "--key", "key-1", dev_account(3).address, cwd=tmp_path)

    assert_one_line_error(revoke, "FLCoordinatorUnauthorizedOperator", "is not the operator", "--key")
    assert_one_line_error(admit, "FLCoordinatorUnauthorizedOperator", "is not the operator", "--key")
    assert coordinator.is_admitted(dev_account(2).address) and not coordinator.is_admitted(dev_account(3).address)


def test_operator_commands_on_an_unreachable_chain_or_missing_deployment_are_one_line(
    anvil: ProcessChain, tmp_path: Path, run_cli: InProcessCli
) -> None:
    from fl_chain.ports import free_port

    (tmp_path / "key").write_text(dev_account(0).key.hex())
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "deployment.json").write_text(
        json.dumps(
            {
                "chain_id": 31337,
                "address": dev_account(5).address,
                "block": 1,
                "artifact_sha256": "0" * 64,
                "deployer": dev_account(0).address,
                "transaction": "0x" + "00" * 32,
            }
        )
    )
    for command in (
        ("task", "cancel", "--task", "1"),
        ("operator", "accept"),
        ("operator", "transfer", "--to", ZERO_ADDRESS),
    ):
        result = run_cli(*command, "--rpc", url, "--key", "key", cwd=tmp_path)
        assert_one_line_error(result, "no Ethereum JSON-RPC answer", url)
    missing = run_cli(
        "task", "cancel", "--rpc", str(anvil.rpc_url), "--key", "key", "--task", "1", "--deployment", "none.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(missing, "none.json", "deploy_contract.py")


def test_task_start_with_too_few_participants_or_twice_is_one_line(
    site: tuple[Coordinator, tuple[str, ...]], tmp_path: Path, run_cli: InProcessCli
) -> None:
    coordinator, rpc = site
    few = open_task(coordinator, dev_account(0), members(4))
    running = running_task(coordinator, dev_account(0), members(5, 6, 7))
    start = ("task", "start", *rpc, "--key", "key-0", "--task")

    too_few = run_cli(*start, str(few.task_id), cwd=tmp_path)
    twice = run_cli(*start, str(running.task_id), cwd=tmp_path)

    assert_one_line_error(too_few, "FLCoordinatorNotEnoughParticipants", f"task {few.task_id} has 1 participant(s)")
    assert_one_line_error(twice, f"task {running.task_id} is running: only an open task can be started")
