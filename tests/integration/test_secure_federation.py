"""Secure-aggregation tasks run end to end by real nodes: embedded chain, memory storage, real training.

Each test runs an in-process federation of a task created with ``createSecureTask`` and checks the
global model of every finalized round against the plaintext weighted FedAvg of the updates the chain
counted (within the fixed-point quantization bound of docs/privacy.md), that every aggregator
committed the same digest, and that the audit recomputes the same bytes from the chain and IPFS.
Dropouts, too few reveals and hostile setup or reveal blobs end in a finalized round or a cleanly
failed one, and the task goes on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_chain.chain.coordinator import Coordinator, FailureReason, RoundStatus, TaskStatus
from fl_chain.exchange.audit import audit_round
from fl_chain.exchange.gather import fetch_global
from fl_chain.exchange.secure import SecureParams
from fl_chain.exchange.updates import RoundUpdates
from fl_chain.federation.inprocess import InProcessFederation, build_federation
from fl_chain.node.runtime import Node
from fl_chain.privacy.dp import clip_update
from fl_chain.privacy.fixed_point import quantization_bound
from fl_chain.protocol.blob import BlobKind
from fl_chain.protocol.cid import digest_from_cid
from fl_chain.protocol.task import TaskSpec
from fl_chain.protocol.vector import content_cid
from tests.helpers.adversaries import rebuild
from tests.helpers.secure_adversaries import RecordingTrainer, make_hostile, record_training

NODES = 4
#: The member that misbehaves (not node 0, whose trainer built the initial model).
HOSTILE = 2


def secure_spec(*, rounds: int = 3, threshold: int = 2, min_contributors: int = 3) -> TaskSpec:
    return TaskSpec.from_dict(
        {
            "protocol": {
                "rounds": rounds,
                "partitions": 3,
                "replication": 2,
                "quorum": 2,
                "min_contributors": min_contributors,
                "update_duration": 3600,
                "aggregation_duration": 3600,
            },
            "model": {"name": "logreg", "seed": 3},
            "dataset": {"name": "digits", "split": "iid"},
            "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
            "privacy": {"secure_aggregation": True, "secagg_threshold": threshold},
        }
    )


def run(
    spec: TaskSpec,
    tmp_path: Path,
    hostile: dict[int, tuple[str, set[int]]] | None = None,
    *,
    fetch_timeout: float | None = None,
):
    """An in-process federation of ``spec``, with hostile nodes; ``fetch_timeout`` short (0.2 s) where
    waiting for what a hostile member never serves should cost little wall time."""
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)
    recorders = record_training(nodes)
    for node in nodes:
        if fetch_timeout is not None:
            node.options.fetch_timeout = fetch_timeout
    for index, (attack, rounds) in (hostile or {}).items():
        make_hostile(nodes[index], attack, rounds)
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()
    return coordinator, task_id, nodes, recorders, status


def check_round(
    spec: TaskSpec,
    coordinator: Coordinator,
    task_id: int,
    round_: int,
    nodes: list[Node],
    recorders: list[RecordingTrainer],
    counted: set[str],
) -> None:
    """The round's global model is the plaintext weighted FedAvg of ``counted`` within the bound, every
    aggregate commit agrees with the final digest, and the audit recomputes the same bytes."""
    params = SecureParams.of(spec)
    commits = {c.contributor: c for c in coordinator.find_update_commits(task_id, round_)}
    assert counted <= set(commits)
    by_address = {node.address: recorder for node, recorder in zip(nodes, recorders)}
    base = by_address[next(iter(counted))].trained[round_][0].astype(np.float64)
    total = sum(commits[a].samples for a in counted)
    summed = sum(
        commits[a].samples
        * np.clip(by_address[a].trained[round_][1].astype(np.float64) - base, -params.clip, params.clip)
        for a in counted
    )
    expected = base + summed / total
    actual = fetch_global(nodes[0].storage, coordinator, task_id, round_, timeout=5)
    bound = quantization_bound(len(counted), params.frac_bits) / total + np.spacing(np.abs(expected).astype(np.float32))
    assert np.all(np.abs(actual.astype(np.float64) - expected) <= bound)
    # Every aggregator's digest is the final one.
    final = coordinator.get_final_digests(task_id, round_)
    aggregates = coordinator.find_aggregate_commits(task_id, round_)
    assert aggregates and all(c.digest == final[c.partition] for c in aggregates)
    assert all(sum(c.partition == p for c in aggregates) >= 2 for p in range(len(final)))
    audit = audit_round(
        nodes[0].storage,
        coordinator,
        task_id,
        round_,
        initial=nodes[0].trainer.initial_vector(),
        timeout=5,
        secure=params,
    )
    assert audit.ok


def test_three_secure_rounds_equal_the_plaintext_weighted_fedavg_and_every_digest_agrees(tmp_path: Path) -> None:
    # Prepare / Execute
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path)

    # Assert
    assert status == TaskStatus.COMPLETED
    everyone = {node.address for node in nodes}
    for round_ in range(3):
        assert coordinator.get_round(task_id, round_).status == RoundStatus.FINALIZED
        check_round(spec, coordinator, task_id, round_, nodes, recorders, everyone)
    # What the aggregators and anyone else fetched is masked: ring words, not the update.
    commit = coordinator.find_update_commits(task_id, 0)[0]
    masked = RoundUpdates(
        nodes[0].storage,
        task_id=task_id,
        round_=0,
        partitions=3,
        dimension=nodes[0].trainer.initial_vector().size,
        timeout=5,
        blob_kind=BlobKind.MASKED_UPDATE,
    ).submission(commit, 0)
    assert masked.values is not None and masked.values.dtype == np.uint64
    assert np.unique(masked.values).size == masked.values.size  # uniform 64-bit words: no repeats in practice


def test_a_member_that_drops_after_its_setup_is_recovered_from_its_shares(tmp_path: Path) -> None:
    # Prepare / Execute: node HOSTILE commits its setup in round 1, then goes silent for the round.
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: ("drop_after_setup", {1})})

    # Assert
    assert status == TaskStatus.COMPLETED
    info = coordinator.get_round(task_id, 1)
    assert info.status == RoundStatus.FINALIZED and info.setups == NODES and info.contributors == NODES - 1
    survivors = {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    check_round(spec, coordinator, task_id, 1, nodes, recorders, survivors)
    check_round(spec, coordinator, task_id, 2, nodes, recorders, {node.address for node in nodes})


def test_fewer_than_t_reveals_fail_the_round_cleanly_and_the_next_round_runs(tmp_path: Path) -> None:
    # Prepare / Execute: t = 3 of 4; two contributors withhold their reveals in round 1.
    spec = secure_spec(threshold=3)
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)
    recorders = record_training(nodes)
    make_hostile(nodes[1], "withhold_reveal", {1})
    make_hostile(nodes[HOSTILE], "withhold_reveal", {1})
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert
    assert status == TaskStatus.COMPLETED
    failed = coordinator.get_round(task_id, 1)
    assert failed.status == RoundStatus.FAILED and failed.failure == FailureReason.TOO_FEW_REVEALS
    assert failed.reveals == 2
    for round_ in (0, 2, 3):
        assert coordinator.get_round(task_id, round_).status == RoundStatus.FINALIZED
        check_round(spec, coordinator, task_id, round_, nodes, recorders, {node.address for node in nodes})


@pytest.mark.parametrize("attack", ["malformed_setup", "stale_setup", "oversized_setup"])
def test_attack_an_unusable_setup_blob_leaves_its_member_out_alike_on_every_node(tmp_path: Path, attack: str) -> None:
    # Prepare / Execute: in round 1, node HOSTILE commits a setup blob that is not one / of round 0.
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: (attack, {1})})

    # Assert: the round finalizes with the others; nobody masked towards the hostile member.
    assert status == TaskStatus.COMPLETED
    info = coordinator.get_round(task_id, 1)
    assert info.status == RoundStatus.FINALIZED and info.setups == NODES
    others = {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    assert {c.contributor for c in coordinator.find_update_commits(task_id, 1)} == others
    check_round(spec, coordinator, task_id, 1, nodes, recorders, others)


@pytest.mark.parametrize("attack", ["malformed_reveal", "wrong_share", "oversized_reveal"])
def test_attack_a_bad_reveal_is_dropped_and_the_others_shares_unmask_the_round(tmp_path: Path, attack: str) -> None:
    # Prepare / Execute: in round 1, node HOSTILE contributes honestly but reveals garbage / wrong shares.
    spec = secure_spec(threshold=3)
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: (attack, {1})})

    # Assert: its reveal counts on chain but none of its shares is used; its own update is in the sum.
    assert status == TaskStatus.COMPLETED
    info = coordinator.get_round(task_id, 1)
    assert info.status == RoundStatus.FINALIZED and info.reveals == NODES
    check_round(spec, coordinator, task_id, 1, nodes, recorders, {node.address for node in nodes})


@pytest.mark.parametrize("attack", ["inconsistent_shares", "bad_box_for_one"])
def test_attack_one_recipient_without_valid_shares_reports_the_dealer_and_the_round_unmasks(
    tmp_path: Path, attack: str
) -> None:
    # Prepare / Execute: in round 1, node HOSTILE deals one member shares of its secrets from other
    # polynomials than the committed ones (with hash commitments this failed the round), or seals that
    # member's box so that it does not open.
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: (attack, {1})}, fetch_timeout=0.2)

    # Assert: that member's key check reports the dealer (one report of the |U1| - t = 2 needed, or a
    # majority): the dealer stays, the others' verified shares rebuild its committed secrets (t = 2),
    # and round 1 is everyone's FedAvg.
    assert status == TaskStatus.COMPLETED
    reports = coordinator.find_events("SetupReported", taskId=task_id, round=1)
    assert [e["args"]["member"] for e in reports] == [nodes[HOSTILE].address]
    assert coordinator.find_setup_exclusions(task_id, 1) == []
    info = coordinator.get_round(task_id, 1)
    assert info.status == RoundStatus.FINALIZED and info.contributors == NODES and info.reveals == NODES
    check_round(spec, coordinator, task_id, 1, nodes, recorders, {node.address for node in nodes})


def test_attack_an_unmasked_update_is_excluded_in_the_check_window_and_the_round_recovers(tmp_path: Path) -> None:
    # Prepare / Execute: in round 1, node HOSTILE publishes its update in the clear (float32 blobs) and commits it.
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: ("plain_update", {1})})

    # Assert: every other contributor reported it, the chain excluded it before any reveal, and its
    # mask key (not its self seed) was rebuilt: the round is the others' FedAvg.
    assert status == TaskStatus.COMPLETED
    hostile = nodes[HOSTILE].address
    assert coordinator.get_excluded(task_id, 1) == [hostile]
    info = coordinator.get_round(task_id, 1)
    assert info.status == RoundStatus.FINALIZED and info.contributors == NODES and info.reveals == NODES - 1
    others = {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    check_round(spec, coordinator, task_id, 1, nodes, recorders, others)


@pytest.mark.parametrize("attack", ["withhold_setup", "bad_boxes"])
def test_attack_a_setup_nobody_can_use_is_excluded_in_the_key_check_and_the_round_finalizes(
    tmp_path: Path, attack: str
) -> None:
    # Prepare / Execute: in round 1, node HOSTILE commits the digest of a setup it never serves, or
    # serves a setup whose share boxes open for nobody (only each recipient can tell).
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path, {HOSTILE: (attack, {1})}, fetch_timeout=0.2)

    # Assert: the others reported it in the key check window, the chain took it out of the key set,
    # everyone masked towards the rest, and round 1 is the others' FedAvg (it used to fail the round).
    assert status == TaskStatus.COMPLETED
    hostile = nodes[HOSTILE].address
    assert coordinator.find_setup_exclusions(task_id, 1) == [hostile]
    reporters = {e["args"]["reporter"] for e in coordinator.find_events("SetupReported", taskId=task_id, round=1)}
    assert hostile not in reporters and len(reporters) >= 2
    others = {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    assert {c.contributor for c in coordinator.find_update_commits(task_id, 1)} == others
    for round_ in (0, 1, 2):
        counted = others if round_ == 1 else {node.address for node in nodes}
        check_round(spec, coordinator, task_id, round_, nodes, recorders, counted)


def test_attack_a_slice_only_its_aggregators_see_is_excluded_by_every_honest_member(tmp_path: Path) -> None:
    # Prepare / Execute: in round 1, node HOSTILE publishes partition 0 of its masked update one word short.
    spec = secure_spec()
    coordinator, task_id, nodes, recorders, status = run(
        spec, tmp_path, {HOSTILE: ("invalid_slice", {1})}, fetch_timeout=0.2
    )

    # Assert: partition 0's aggregators reported it, the others checked every partition of the reported
    # contributor and reported too, so the strict majority excluded it before reveals (it used to fail
    # the round: two reports of four contributors exclude nobody).
    assert status == TaskStatus.COMPLETED
    hostile = nodes[HOSTILE].address
    assert coordinator.get_excluded(task_id, 1) == [hostile]
    reporters = {
        e["args"]["reporter"] for e in coordinator.find_events("UnavailabilityReported", taskId=task_id, round=1)
    }
    assert reporters == {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    others = {node.address for i, node in enumerate(nodes) if i != HOSTILE}
    assert coordinator.get_round(task_id, 1).status == RoundStatus.FINALIZED
    check_round(spec, coordinator, task_id, 1, nodes, recorders, others)


def test_secure_rounds_with_differential_privacy_add_the_contributors_secret_noise_and_the_audit_agrees(
    tmp_path: Path,
) -> None:
    # Prepare: DP-FedAvg (z = 0.5, C = 1) under secure aggregation; noise shares of variance 1024^2 / 3
    spec = TaskSpec.from_dict(
        {
            **{k: v for k, v in secure_spec().__dict__.items() if k in ("protocol", "model", "dataset", "training")},
            "privacy": {
                "secure_aggregation": True,
                "secagg_threshold": 2,
                "dp_noise_multiplier": 0.5,
                "dp_clip_norm": 1.0,
                "dp_delta": 1e-5,
            },
        }
    )
    params = SecureParams.of(spec)
    assert params.dp is not None and params.noise_shares == 3

    # Execute
    coordinator, task_id, nodes, recorders, status = run(spec, tmp_path)

    # Assert: every round is the unweighted mean of the clipped, quantized changes plus noise of (at
    # least) the accountant's standard deviation; nobody can subtract it, and the audit gets the same bytes.
    assert status == TaskStatus.COMPLETED
    grid = params.dp.grid
    for round_ in range(3):
        actual = fetch_global(nodes[0].storage, coordinator, task_id, round_, timeout=5).astype(np.float64)
        base = recorders[0].trained[round_][0]
        units = [params.dp.quantize(clip_update(r.trained[round_][1], base, params.dp), base) for r in recorders]
        without_noise = base.astype(np.float64) + np.sum(units, axis=0) * grid / NODES
        noise_std = np.sqrt(NODES / params.noise_shares) * 1024 * grid / NODES  # of the released mean
        residual = actual - without_noise
        assert np.max(np.abs(residual)) <= 8 * noise_std
        assert 0.8 * noise_std <= np.std(residual) <= 1.2 * noise_std
        audit = audit_round(
            nodes[0].storage, coordinator, task_id, round_, initial=nodes[0].trainer.initial_vector(), timeout=5,
            secure=params,
        )  # fmt: skip
        assert audit.ok
    assert spec.epsilon_after(3) is not None and spec.epsilon_after(3) < float("inf")


class Crash(Exception):
    """The node process died here."""


def test_a_node_killed_before_committing_its_setup_commits_the_kept_setup_after_a_restart(tmp_path: Path) -> None:
    # Prepare: node 1 makes, keeps and publishes its setup, then dies before commitSetup leaves.
    spec = secure_spec(rounds=1)
    chain, coordinator, task_id, nodes = build_federation(spec, nodes=NODES, state_root=tmp_path)
    victim = nodes[1]
    honest_transact = victim._transact

    def crash_on_setup(name: str, *args: object) -> dict[str, object]:
        if name == "commit_setup":
            raise Crash
        return honest_transact(name, *args)

    victim._transact = crash_on_setup  # type: ignore[method-assign]
    with pytest.raises(Crash):
        victim.step()
    kept = victim.state.load_secagg_round(task_id, 0)
    assert kept is not None

    # Execute: a new node on the same state directory (what a restarted process builds)
    restarted = rebuild(victim, Node)
    nodes[1] = restarted
    status = InProcessFederation(chain, coordinator, task_id, nodes).run()

    # Assert: the setup on chain is the one kept before the crash; the round finalized with everyone
    assert status == TaskStatus.COMPLETED
    committed = {c.member: c.digest for c in coordinator.find_setup_commits(task_id, 0)}
    assert committed[victim.address] == digest_from_cid(content_cid(bytes.fromhex(kept["setup"])))
    assert coordinator.get_round(task_id, 0).contributors == NODES
