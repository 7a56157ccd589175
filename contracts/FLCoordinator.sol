// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title FLCoordinator
/// @notice Coordinates aggregator-free federated learning rounds. The contract never holds model
/// weights: participants commit 32-byte digests of update manifests stored in IPFS, assigned
/// aggregators commit digests of averaged partitions, and a partition is final once `quorum`
/// assigned aggregators committed the same digest.
/// @dev Gas per participant per round is O(1). Update digests and sample counts are emitted in
/// `UpdateCommitted` events (the contributor set of a round is exactly the events of that round);
/// storage keeps only what the contract needs to enforce its rules and the final digests.
///
/// Round lifecycle (all times are `block.timestamp`):
///   Update      [start, updateDeadline)       joined participants commit updates; ends early when
///                                             every joined participant committed.
///   freeze      the contributor set is frozen; if fewer than `minContributors` committed the round
///               fails and the next round starts (retry). The assignment key is the hash of the
///               freezing block, read lazily from a later block: nobody knows it when the set freezes.
///   Aggregation [freeze, aggregationDeadline) only assigned aggregators commit; `quorum` equal
///                                             digests finalize a partition.
///   Fallback    [aggregationDeadline, fallbackDeadline) every non-excluded contributor may commit
///               for a partition without quorum; a digest committed by a strict majority of the
///               round's contributors finalizes it. Contributors report updates they cannot fetch;
///               a strict majority of the round's contributors excludes that update.
///   after fallbackDeadline an unfinished round fails on `advance` and the next round starts.
/// A round number is never reused: a retry is a new round started from the last final model.
///
/// Secure aggregation (tasks created with `createSecureTask`: SecAgg+, Bell et al. 2020, fitted to
/// partitions) adds two phases and changes who may commit an update:
///   Shares      [start, sharesDeadline)       joined members commit the digest of their setup blob
///                                             (per-round mask public key and encrypted Shamir shares,
///                                             threshold t); ends early when every joined member did.
///               The members that did form the key set U1; fewer than `minContributors` fail the round.
///   Update      [U1 freeze, +unmaskDuration)  key check window: U1 members report setups they cannot
///                                             use (`reportSetup`); a strict U1 majority, or |U1| - t
///                                             reports, takes the member out of U1;
///               [.., updateDeadline)          only U1 members commit (masked) updates; ends early
///                                             when every U1 member still joined did. The set U2 freezes.
///   Unmask      [U2 freeze, +unmaskDuration)  check window: contributors report updates they cannot
///                                             fetch (a strict contributor majority excludes one, which
///                                             is then treated as dropped);
///               [.., unmaskDeadline)          reveal window: non-excluded contributors commit the
///                                             digest of their reveal blob; ends early when all did.
///               The revealers form U3; fewer than t fail the round (`TooFewReveals`).
///   Aggregation and Fallback as above, with no exclusion any more: the unmasking shares are public.
///
/// Trust model. Admitted members may collude. In a round with n contributors of whom f collude:
///  - a partition finalizes in the assigned phase only with q of its r assigned aggregators, drawn
///    by a keyed pseudo-random permutation of the contributors whose key nobody knows at freeze;
///    the chance that f colluders hold q slots of some partition is what `flchain task create`
///    reports (and refuses above 1e-6);
///  - in the fallback phase a digest, and an exclusion, needs a strict majority of the n
///    contributors; members who did not contribute have no vote, so f < n/2 can neither forge a
///    fallback digest nor exclude an honest update;
///  - a strict majority of a finalized round's contributors that cannot fetch or validate its
///    global model (and did not contribute since) undoes it (`disputeRound`): the round fails and
///    the task goes on from the previous global model.
contract FLCoordinator {
    // ---------------------------------------------------------------------------------------------
    // Types
    // ---------------------------------------------------------------------------------------------

    /// @notice Task parameters fixed at creation.
    struct TaskConfig {
        bytes32 manifestDigest; // sha2-256 digest of the task manifest CID in IPFS
        uint16 partitions; // P: contiguous partitions of the model vector
        uint16 replication; // r: aggregators assigned per partition (<= 64)
        uint16 quorum; // q: identical aggregate digests that make a partition final (q > r/2)
        uint32 minContributors; // fewer contributors than this -> round retried (>= q)
        uint32 updateDuration; // seconds for the update phase
        uint32 aggregationDuration; // seconds for the assigned and again for the fallback phase
        uint32 rounds; // finalized rounds after which the task is complete
        uint32 maxParticipants; // joins beyond this are refused (>= minContributors, <= MAX_PARTICIPANTS)
        uint64 maxSamples; // largest sample count an update may claim (its FedAvg weight)
        bool openAdmission; // anyone may join, not only accounts admitted by the operator
    }

    /// @notice Secure-aggregation parameters of a task created with `createSecureTask`.
    struct SecureAggregationConfig {
        uint32 threshold; // t: Shamir threshold; a round needs t revealers (2 <= t <= minContributors)
        uint32 sharesDuration; // seconds for the shares (setup) phase
        uint32 unmaskDuration; // seconds for the check window and again for the reveal window
    }

    /// @dev `TaskConfig` as stored: everything an update or aggregate commit reads in one slot.
    struct StoredConfig {
        bytes32 manifestDigest;
        uint16 partitions;
        uint16 replication;
        uint16 quorum;
        uint32 minContributors;
        uint32 updateDuration;
        uint32 aggregationDuration;
        uint64 maxSamples;
        bool openAdmission;
        uint32 rounds;
        bool secureAggregation; // last byte of the update phase's slot: read at no extra cost
        uint32 maxParticipants;
        uint32 secaggThreshold; // 0 without secure aggregation
        uint32 sharesDuration;
        uint32 unmaskDuration;
    }

    enum TaskStatus {
        None,
        Open,
        Running,
        Completed,
        Cancelled
    }

    enum RoundStatus {
        None,
        Update,
        Aggregation,
        Finalized,
        Failed,
        Shares, // secure aggregation: setups before the update phase
        Unmask // secure aggregation: check and reveal windows after the update phase
    }

    enum FailureReason {
        None,
        TooFewContributors,
        AggregationTimedOut,
        TaskCancelled,
        Disputed,
        TooFewSetups, // secure aggregation: fewer than minContributors committed a setup
        TooFewReveals // secure aggregation: fewer than t contributors committed a reveal
    }

    struct TaskState {
        TaskStatus status;
        uint32 participantCount;
        uint32 currentRound;
        uint32 finalizedRounds;
        uint32 latestFinalizedRound; // valid when finalizedRounds > 0
        address creator;
    }

    struct Task {
        StoredConfig config;
        TaskState state;
        address[] participants;
    }

    struct Participant {
        bool joined;
        uint32 index; // contributor index in the round `updateRound - 1`
        uint32 updateRound; // round + 1 of the last update commit, 0 if none
        uint32 position; // index in `Task.participants` while joined
        uint64 samples; // sample count of the last update commit
        uint32 setupRound; // secure aggregation: round + 1 of the last setup commit (U1 membership), 0 if none
        uint32 revealRound; // secure aggregation: round + 1 of the last reveal commit (U3 membership), 0 if none
        string[] multiaddrs;
        bytes publicKey;
        bytes32 setupDigest; // digest of the setup blob of round `setupRound - 1`
        bytes32 revealDigest; // digest of the reveal blob of round `revealRound - 1`
    }

    /// @dev Vote state of one partition in the current round (one word), kept per task and partition
    /// and rewritten round after round (rewriting a used slot costs a quarter of filling a fresh one).
    /// `round` tags the round it belongs to: a state tagged with any other round is an earlier
    /// round's and reads as empty (no committed slot, no vote, not final). The candidate digest is
    /// `Round.digests`; the vote history is in `AggregateCommitted` events.
    struct PartitionVotes {
        uint32 round; // round + 1 of the state (0: never used)
        uint64 committedSlots; // bit j set once assigned slot j committed
        uint32 candidateAssigned; // assigned commits that matched `candidate`
        uint32 candidateVotes; // all commits (assigned and fallback) that matched `candidate`
        bool isFinal;
    }

    /// @dev Packed into two slots (plus seed and key): the first holds everything the update phase
    /// reads and writes, so an update commit touches one round slot. Times and block numbers fit
    /// uint48; the sample total fits uint96 (at most 2^32 contributors of at most 2^64 samples).
    struct Round {
        // slot 0: the update phase
        RoundStatus status;
        FailureReason failure;
        uint32 contributors;
        uint32 departed; // contributors removed from the task after committing in this round
        uint48 updateDeadline; // the start time is updateDeadline - updateDuration
        uint96 totalSamples;
        uint32 excludedCount; // length of `excluded`, here so that voters skip the exclusion lookup while it is 0
        // slot 1: aggregation and after
        uint48 aggregationDeadline; // set when the contributor set freezes
        uint48 freezeBlock; // block whose hash keys the assignment (re-anchored if it got too old)
        uint48 finalizedAt; // timestamp of finalization (0 unless finalized)
        uint32 finalizedPartitions;
        uint32 disputes;
        uint32 previousFinal; // latest finalized round + 1 when this round finalized (0: initial model)
        bytes32 seed;
        bytes32 assignmentKey; // zero until drawn
        // The first digest committed for the partition (the candidate) until final, then the final
        // digest. A later round that reuses the partition's vote state deletes a candidate that never
        // became final, so once the state is reused the digest is non-zero exactly when final.
        mapping(uint256 partition => bytes32) digests;
        // Votes for digests other than the partition's candidate: assigned << 128 | all.
        mapping(uint256 partition => mapping(bytes32 digest => uint256 packed)) otherVotes;
        mapping(uint256 partition => mapping(address aggregator => bool)) fallbackCommitted;
        // Contributions reported unavailable in the fallback phase; a contributor majority excludes one.
        address[] excluded;
        mapping(address contributor => bool) isExcluded;
        mapping(address contributor => uint256 reports) unavailableReports;
        mapping(address contributor => mapping(address reporter => bool)) hasReported;
        mapping(address contributor => bool) hasDisputed;
        // Secure aggregation only (one slot, zero otherwise).
        uint48 sharesDeadline; // the start time is sharesDeadline - sharesDuration
        uint48 unmaskDeadline; // set when U2 freezes; the reveal window opens unmaskDuration before it
        uint32 setups; // |U1|
        uint32 setupDeparted; // U1 members removed from the task, or excluded from the key set, in this round
        uint32 reveals; // |U3|
        uint32 setupsExcluded; // U1 members a key-set majority reported in the key check window
        mapping(address member => uint256 reports) setupReports;
        mapping(address member => mapping(address reporter => bool)) hasReportedSetup;
    }

    /// @notice Everything a node needs about one round, returned by one call.
    struct RoundView {
        uint32 round;
        RoundStatus status;
        FailureReason failure;
        uint64 startTime;
        uint64 updateDeadline;
        uint64 aggregationDeadline;
        uint64 fallbackDeadline;
        uint32 contributors;
        uint32 finalizedPartitions;
        uint32 excludedCount;
        uint32 disputes;
        uint128 totalSamples;
        bytes32 seed;
        bytes32 assignmentKey; // zero while not drawn yet (call `drawAssignment`)
        // Secure aggregation only (zero otherwise).
        uint64 sharesDeadline;
        uint64 revealStart; // check window ends, reveal window opens (zero until U2 freezes)
        uint64 unmaskDeadline; // zero until U2 freezes
        uint32 setups; // |U1|
        uint32 reveals; // |U3|
    }

    /// @notice One member's secure-aggregation state in one round, returned by `getSecureMember`.
    struct SecureMemberView {
        bool inKeySet; // in U1: committed a setup in this round
        bool contributed; // in U2: committed an update in this round
        bool excluded; // its update was excluded (treated as dropped: its key shares are revealed)
        bool revealed; // in U3: committed a reveal in this round
        bytes32 setupDigest; // zero unless inKeySet
        bytes32 revealDigest; // zero unless revealed
    }

    /// @notice A participant's registration, returned by `getParticipants`.
    struct ParticipantView {
        address account;
        uint32 updateRound;
        uint32 index;
        uint64 samples;
        string[] multiaddrs;
        bytes publicKey;
    }

    // ---------------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------------

    /// @dev `account` is not the operator.
    /// @param account The caller.
    error FLCoordinatorUnauthorizedOperator(address account);
    /// @dev The new operator is the zero address.
    /// @param operator The rejected address.
    error FLCoordinatorInvalidOperator(address operator);
    /// @dev `account` is not the pending operator, so it cannot accept the role.
    /// @param account The caller.
    error FLCoordinatorNotPendingOperator(address account);
    /// @dev `account` is not admitted and the task is not open to everyone.
    /// @param taskId The task.
    /// @param account The caller.
    error FLCoordinatorNotAdmitted(uint256 taskId, address account);
    /// @dev The partition count must be at least 1.
    /// @param partitions The rejected value.
    error FLCoordinatorInvalidPartitions(uint256 partitions);
    /// @dev Replication must be in [1, MAX_REPLICATION].
    /// @param replication The rejected value.
    error FLCoordinatorInvalidReplication(uint256 replication);
    /// @dev Quorum must satisfy replication / 2 < quorum <= replication.
    /// @param quorum The rejected value.
    /// @param replication The task's replication.
    error FLCoordinatorInvalidQuorum(uint256 quorum, uint256 replication);
    /// @dev The minimum number of contributors must be at least the quorum.
    /// @param minContributors The rejected value.
    /// @param quorum The task's quorum.
    error FLCoordinatorInvalidMinContributors(uint256 minContributors, uint256 quorum);
    /// @dev maxParticipants must be in [minContributors, MAX_PARTICIPANTS].
    /// @param maxParticipants The rejected value.
    /// @param minContributors The task's minimum contributors.
    error FLCoordinatorInvalidMaxParticipants(uint256 maxParticipants, uint256 minContributors);
    /// @dev maxSamples must be at least 1.
    error FLCoordinatorInvalidMaxSamples();
    /// @dev Phase durations must be at least one second.
    /// @param updateDuration The update phase's seconds.
    /// @param aggregationDuration The aggregation phase's seconds.
    error FLCoordinatorInvalidDuration(uint256 updateDuration, uint256 aggregationDuration);
    /// @dev A task needs at least one round.
    /// @param rounds The rejected value.
    error FLCoordinatorInvalidRounds(uint256 rounds);
    /// @dev No task with this id.
    /// @param taskId The unknown id.
    error FLCoordinatorUnknownTask(uint256 taskId);
    /// @dev The task is not in the status this call needs.
    /// @param taskId The task.
    /// @param status Its status.
    error FLCoordinatorWrongTaskStatus(uint256 taskId, TaskStatus status);
    /// @dev `account` already joined the task.
    /// @param taskId The task.
    /// @param account The caller.
    error FLCoordinatorAlreadyJoined(uint256 taskId, address account);
    /// @dev `account` has not joined the task.
    /// @param taskId The task.
    /// @param account The account.
    error FLCoordinatorNotJoined(uint256 taskId, address account);
    /// @dev The task has `maxParticipants` participants already.
    /// @param taskId The task.
    /// @param maxParticipants Its limit.
    error FLCoordinatorTaskFull(uint256 taskId, uint256 maxParticipants);
    /// @dev A participant registers 1 to MAX_MULTIADDRS IPFS multiaddrs.
    /// @param count The number given.
    error FLCoordinatorInvalidMultiaddrs(uint256 count);
    /// @dev A multiaddr is longer than MAX_MULTIADDR_LENGTH bytes.
    /// @param index Its position in the list.
    /// @param length Its length.
    error FLCoordinatorMultiaddrTooLong(uint256 index, uint256 length);
    /// @dev A public key is longer than MAX_PUBLIC_KEY_LENGTH bytes.
    /// @param length Its length.
    error FLCoordinatorPublicKeyTooLong(uint256 length);
    /// @dev Starting needs at least `required` joined participants.
    /// @param taskId The task.
    /// @param joined Participants joined.
    /// @param required The task's minimum contributors.
    error FLCoordinatorNotEnoughParticipants(uint256 taskId, uint256 joined, uint256 required);
    /// @dev Only the operator removes a participant that is still admitted (or any, in open tasks).
    /// @param taskId The task.
    /// @param account The participant.
    error FLCoordinatorStillAdmitted(uint256 taskId, address account);
    /// @dev The call names `round` but the task is at `currentRound`.
    /// @param taskId The task.
    /// @param round The round named.
    /// @param currentRound The current round.
    error FLCoordinatorRoundNotCurrent(uint256 taskId, uint256 round, uint256 currentRound);
    /// @dev The update phase of the round has ended (deadline passed or set frozen).
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorUpdatePhaseClosed(uint256 taskId, uint256 round);
    /// @dev `account` already committed an update in this round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The caller.
    error FLCoordinatorUpdateAlreadyCommitted(uint256 taskId, uint256 round, address account);
    /// @dev Digests must be non-zero.
    error FLCoordinatorZeroDigest();
    /// @dev An update must report at least one sample.
    error FLCoordinatorZeroSamples();
    /// @dev An update claims more samples than the task's `maxSamples`.
    /// @param samples The claimed count.
    /// @param maxSamples The task's cap.
    error FLCoordinatorTooManySamples(uint256 samples, uint256 maxSamples);
    /// @dev Aggregates are accepted only once the contributor set is frozen.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorAggregationNotOpen(uint256 taskId, uint256 round);
    /// @dev The assignment key cannot be read yet (the freezing block is the current one) or was re-anchored.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorAssignmentNotDrawn(uint256 taskId, uint256 round);
    /// @dev The round passed its fallback deadline; call `advance` to retry it.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorRoundExpired(uint256 taskId, uint256 round);
    /// @dev `partition` is not below the task's partition count.
    /// @param partition The partition named.
    /// @param partitions The task's partition count.
    error FLCoordinatorPartitionOutOfRange(uint256 partition, uint256 partitions);
    /// @dev Before the aggregation deadline only assigned aggregators commit.
    /// @param taskId The task.
    /// @param round The round.
    /// @param partition The partition.
    /// @param account The caller.
    error FLCoordinatorNotAssigned(uint256 taskId, uint256 round, uint256 partition, address account);
    /// @dev `account` already committed an aggregate for this partition.
    /// @param taskId The task.
    /// @param round The round.
    /// @param partition The partition.
    /// @param account The caller.
    error FLCoordinatorAggregateAlreadyCommitted(
        uint256 taskId, uint256 round, uint256 partition, address account
    );
    /// @dev A later round reused the vote state of `partition`: the votes of `round` are in its events.
    /// @param taskId The task.
    /// @param round The round asked about.
    /// @param partition The partition.
    error FLCoordinatorVotesReused(uint256 taskId, uint256 round, uint256 partition);
    /// @dev Batch arrays differ in length.
    /// @param partitions Partition indices given.
    /// @param digests Digests given.
    error FLCoordinatorLengthMismatch(uint256 partitions, uint256 digests);
    /// @dev No deadline has passed that `advance` could act on.
    /// @param taskId The task.
    /// @param round The current round.
    error FLCoordinatorNothingToAdvance(uint256 taskId, uint256 round);
    /// @dev Unavailability is reported only in the fallback phase, after the aggregation deadline.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorReportTooEarly(uint256 taskId, uint256 round);
    /// @dev `account` is not a (non-excluded) contributor of `round`: it has no say in it.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The account.
    error FLCoordinatorNotAContributor(uint256 taskId, uint256 round, address account);
    /// @dev A participant cannot report its own update.
    /// @param taskId The task.
    /// @param account The caller.
    error FLCoordinatorSelfReport(uint256 taskId, address account);
    /// @dev `reporter` already reported `contributor` in this round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param contributor The reported contributor.
    /// @param reporter The caller.
    error FLCoordinatorAlreadyReported(uint256 taskId, uint256 round, address contributor, address reporter);
    /// @dev `contributor`'s update is already excluded from this round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param contributor The contributor.
    error FLCoordinatorAlreadyExcluded(uint256 taskId, uint256 round, address contributor);
    /// @dev Only the latest finalized round can be disputed, while the task runs or within
    /// `updateDuration` after it completed.
    /// @param taskId The task.
    /// @param round The round named.
    error FLCoordinatorNotDisputable(uint256 taskId, uint256 round);
    /// @dev `account` already disputed `round`.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The caller.
    error FLCoordinatorAlreadyDisputed(uint256 taskId, uint256 round, address account);
    /// @dev The secure-aggregation threshold must satisfy 2 <= threshold <= minContributors.
    /// @param threshold The rejected value.
    /// @param minContributors The task's minimum contributors.
    error FLCoordinatorInvalidThreshold(uint256 threshold, uint256 minContributors);
    /// @dev The shares and unmask phases must last at least one second each.
    /// @param sharesDuration The shares phase's seconds.
    /// @param unmaskDuration The unmask phase's seconds (per window).
    error FLCoordinatorInvalidSecureDurations(uint256 sharesDuration, uint256 unmaskDuration);
    /// @dev A secure-aggregation task needs a 32-byte X25519 public key, not all zero.
    /// @param length The given key's length.
    error FLCoordinatorInvalidPublicKey(uint256 length);
    /// @dev The call is only for tasks created with `createSecureTask`.
    /// @param taskId The task.
    error FLCoordinatorNotSecureTask(uint256 taskId);
    /// @dev Setups are accepted only in the shares phase, before its deadline.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorSharesPhaseClosed(uint256 taskId, uint256 round);
    /// @dev `account` already committed a setup in this round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The caller.
    error FLCoordinatorSetupAlreadyCommitted(uint256 taskId, uint256 round, address account);
    /// @dev `account` committed no setup in this round (it is not in the key set U1), so it cannot
    /// commit a masked update.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The caller.
    error FLCoordinatorNotInKeySet(uint256 taskId, uint256 round, address account);
    /// @dev Reveals are accepted only in the reveal window of the unmask phase.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorRevealWindowClosed(uint256 taskId, uint256 round);
    /// @dev `account` already committed a reveal in this round.
    /// @param taskId The task.
    /// @param round The round.
    /// @param account The caller.
    error FLCoordinatorRevealAlreadyCommitted(uint256 taskId, uint256 round, address account);
    /// @dev With secure aggregation, unavailability is reported only in the check window of the unmask
    /// phase: once reveals open, an exclusion would reveal both shares of one member.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorReportWindowClosed(uint256 taskId, uint256 round);
    /// @dev With secure aggregation, updates are accepted only once the key check window (the first
    /// `unmaskDuration` seconds of the update phase) is over and the key set is final.
    /// @param taskId The task.
    /// @param round The round.
    error FLCoordinatorKeySetNotFinal(uint256 taskId, uint256 round);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

    /// @notice `newOperator` may take the operator role with `acceptOperator`.
    event OperatorTransferStarted(address indexed previousOperator, address indexed newOperator);
    /// @notice The operator role moved from `previousOperator` to `newOperator`.
    event OperatorTransferred(address indexed previousOperator, address indexed newOperator);
    /// @notice The operator admitted `account` to the consortium.
    event ParticipantAdmitted(address indexed account);
    /// @notice The operator revoked `account`; it can no longer join or commit in admission tasks.
    event ParticipantRevoked(address indexed account);
    /// @notice A task was created.
    event TaskCreated(uint256 indexed taskId, address indexed creator, TaskConfig config);
    /// @notice `account` joined `taskId` with its IPFS peer addresses.
    event ParticipantJoined(uint256 indexed taskId, address indexed account, string[] multiaddrs);
    /// @notice `account` was removed from `taskId` (revoked, or by the operator).
    event ParticipantRemoved(uint256 indexed taskId, address indexed account);
    /// @notice `account` replaced its IPFS peer addresses for `taskId`.
    event PeerUpdated(uint256 indexed taskId, address indexed account, string[] multiaddrs);
    /// @notice The task was created with secure aggregation (emitted right after its `TaskCreated`).
    event SecureAggregationConfigured(
        uint256 indexed taskId, uint32 threshold, uint32 sharesDuration, uint32 unmaskDuration
    );
    /// @notice The task started its first round.
    event TaskStarted(uint256 indexed taskId);
    /// @notice A round began; updates are accepted until `updateDeadline` (with secure aggregation:
    /// setups are accepted until this deadline, the shares deadline).
    event RoundStarted(uint256 indexed taskId, uint256 indexed round, bytes32 seed, uint64 updateDeadline);
    /// @notice `contributor` committed the update manifest `digest` trained on `samples` samples.
    event UpdateCommitted(
        uint256 indexed taskId,
        uint256 indexed round,
        address indexed contributor,
        uint32 index,
        bytes32 digest,
        uint64 samples
    );
    /// @notice The contributor set froze; aggregation is open until `aggregationDeadline`.
    event UpdatePhaseClosed(
        uint256 indexed taskId,
        uint256 indexed round,
        uint32 contributors,
        uint128 totalSamples,
        uint64 aggregationDeadline
    );
    /// @notice Secure aggregation: `member` committed the digest of its setup blob; it is the
    /// `index`-th member of the round's key set U1.
    event SetupCommitted(
        uint256 indexed taskId, uint256 indexed round, address indexed member, uint32 index, bytes32 digest
    );
    /// @notice Secure aggregation: the key set U1 froze with `setups` members; updates are accepted
    /// from them until `updateDeadline`.
    event SharesPhaseClosed(uint256 indexed taskId, uint256 indexed round, uint32 setups, uint64 updateDeadline);
    /// @notice Secure aggregation: `reporter`, a key-set member, cannot use `member`'s setup (not
    /// served, not valid, or its share box for the reporter does not open); `reports` so far.
    event SetupReported(
        uint256 indexed taskId, uint256 indexed round, address indexed member, address reporter, uint256 reports
    );
    /// @notice Secure aggregation: a majority of the key set, or `|U1| - t` of its members, reported
    /// `member`'s setup: it leaves the key set U1 (nobody masks towards it, it commits no update, no share of it is revealed).
    event SetupExcluded(uint256 indexed taskId, uint256 indexed round, address indexed member);
    /// @notice Secure aggregation: the contributor set U2 froze. Unavailable updates are reported
    /// until `revealStart`, reveals are accepted from then until `unmaskDeadline`.
    event UnmaskPhaseStarted(
        uint256 indexed taskId,
        uint256 indexed round,
        uint32 contributors,
        uint128 totalSamples,
        uint64 revealStart,
        uint64 unmaskDeadline
    );
    /// @notice Secure aggregation: `member`, a non-excluded contributor, committed the digest of its
    /// reveal blob; `reveals` contributors have revealed so far.
    event RevealCommitted(
        uint256 indexed taskId, uint256 indexed round, address indexed member, bytes32 digest, uint32 reveals
    );
    /// @notice Secure aggregation: the reveal set U3 froze with `reveals` members (at least t);
    /// aggregation is open until `aggregationDeadline`.
    event UnmaskPhaseClosed(uint256 indexed taskId, uint256 indexed round, uint32 reveals, uint64 aggregationDeadline);
    /// @notice The assignment of `round` is keyed by `key` (the freezing block's hash with the seed).
    event AssignmentDrawn(uint256 indexed taskId, uint256 indexed round, bytes32 key);
    /// @notice `aggregator` committed `digest` for `partition`; `isFallback` if it was not assigned.
    event AggregateCommitted(
        uint256 indexed taskId,
        uint256 indexed round,
        uint256 indexed partition,
        address aggregator,
        bytes32 digest,
        bool isFallback
    );
    /// @notice `aggregator` committed `digest` for a partition already final with `finalDigest`.
    event AggregateDisputed(
        uint256 indexed taskId,
        uint256 indexed round,
        uint256 indexed partition,
        address aggregator,
        bytes32 digest,
        bytes32 finalDigest
    );
    /// @notice `partition` is final with `digest` (a quorum of assigned aggregators, or in the
    /// fallback phase a majority of the round's contributors, committed it).
    event PartitionFinalized(uint256 indexed taskId, uint256 indexed round, uint256 indexed partition, bytes32 digest);
    /// @notice Every partition of the round is final: the round's global model is fixed.
    event RoundFinalized(uint256 indexed taskId, uint256 indexed round);
    /// @notice `reporter` could not fetch the update `contributor` committed in `round`.
    event UnavailabilityReported(
        uint256 indexed taskId, uint256 indexed round, address indexed contributor, address reporter, uint256 reports
    );
    /// @notice A majority of the round's contributors reported `contributor`'s update unavailable:
    /// aggregates of the partitions not yet final leave it out.
    event ContributionExcluded(uint256 indexed taskId, uint256 indexed round, address indexed contributor);
    /// @notice `account`, a contributor of `round`, cannot fetch or validate its global model.
    event RoundDisputeFiled(uint256 indexed taskId, uint256 indexed round, address indexed account, uint256 disputes);
    /// @notice The round ended without a global model; the next round retries from the last one.
    event RoundFailed(uint256 indexed taskId, uint256 indexed round, FailureReason reason);
    /// @notice The task reached its number of finalized rounds.
    event TaskCompleted(uint256 indexed taskId);
    /// @notice The operator cancelled the task.
    event TaskCancelled(uint256 indexed taskId);

    // ---------------------------------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------------------------------

    uint256 public constant MAX_REPLICATION = 64;
    uint256 public constant MAX_PARTICIPANTS = 100_000;
    uint256 public constant MAX_MULTIADDRS = 4;
    uint256 public constant MAX_MULTIADDR_LENGTH = 256;
    uint256 public constant MAX_PUBLIC_KEY_LENGTH = 64;
    /// @notice Length of a member's public key in a secure-aggregation task (raw X25519).
    uint256 public constant X25519_KEY_LENGTH = 32;

    address private _operator;
    address private _pendingOperator;
    uint256 private _taskCount;
    mapping(address account => bool) private _admitted;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address account => Participant)) private _participants;
    mapping(uint256 taskId => mapping(uint256 round => Round)) private _rounds;
    mapping(uint256 taskId => mapping(uint256 partition => PartitionVotes)) private _partitionVotes;

    // ---------------------------------------------------------------------------------------------
    // Constructor and modifiers
    // ---------------------------------------------------------------------------------------------

    constructor() {
        _operator = msg.sender;
        emit OperatorTransferred(address(0), msg.sender);
    }

    modifier onlyOperator() {
        if (msg.sender != _operator) revert FLCoordinatorUnauthorizedOperator(msg.sender);
        _;
    }

    // ---------------------------------------------------------------------------------------------
    // Operator
    // ---------------------------------------------------------------------------------------------

    /// @notice Offers the operator role to `newOperator`, who takes it with `acceptOperator`.
    /// @param newOperator The account that will admit participants and create tasks.
    function transferOperator(address newOperator) external onlyOperator {
        if (newOperator == address(0)) revert FLCoordinatorInvalidOperator(newOperator);
        _pendingOperator = newOperator;
        emit OperatorTransferStarted(_operator, newOperator);
    }

    /// @notice Takes the operator role offered by `transferOperator`.
    function acceptOperator() external {
        if (msg.sender != _pendingOperator) revert FLCoordinatorNotPendingOperator(msg.sender);
        address previous = _operator;
        _operator = msg.sender;
        _pendingOperator = address(0);
        emit OperatorTransferred(previous, msg.sender);
    }

    /// @notice Admits `accounts` to the consortium: they may join tasks without open admission.
    /// @param accounts Accounts to admit; already admitted ones are skipped.
    function admit(address[] calldata accounts) external onlyOperator {
        for (uint256 i = 0; i < accounts.length; ++i) {
            if (!_admitted[accounts[i]]) {
                _admitted[accounts[i]] = true;
                emit ParticipantAdmitted(accounts[i]);
            }
        }
    }

    /// @notice Revokes `account`: it can no longer join or commit in tasks without open admission.
    /// @dev Its task memberships end with `removeParticipant`, which anyone may call for a revoked account.
    /// @param account The account to revoke.
    function revoke(address account) external onlyOperator {
        if (_admitted[account]) {
            _admitted[account] = false;
            emit ParticipantRevoked(account);
        }
    }

    /// @notice Creates a task; participants join it, then the operator starts it.
    /// @param config The task parameters; see `TaskConfig`.
    /// @return taskId The new task's id (ids start at 1).
    function createTask(TaskConfig calldata config) external onlyOperator returns (uint256 taskId) {
        _validateConfig(config);
        taskId = _storeTask(config, SecureAggregationConfig(0, 0, 0));
    }

    /// @notice Creates a task with secure aggregation: each round runs a shares phase before the update
    /// phase and an unmask phase after it (see the contract's NatSpec), and members join with a
    /// 32-byte X25519 public key (the long-term key that encrypts their share boxes).
    /// @dev Choose `threshold` above the number of colluding members the task must resist (a
    /// coalition of `threshold` members can rebuild any member's mask key) and at most
    /// `minContributors` (a round needs `threshold` revealers); docs/protocol.md has the rules.
    /// @param config The task parameters; see `TaskConfig`.
    /// @param secure The threshold and the durations of the two added phases.
    /// @return taskId The new task's id.
    function createSecureTask(TaskConfig calldata config, SecureAggregationConfig calldata secure)
        external
        onlyOperator
        returns (uint256 taskId)
    {
        _validateConfig(config);
        if (secure.threshold < 2 || secure.threshold > config.minContributors) {
            revert FLCoordinatorInvalidThreshold(secure.threshold, config.minContributors);
        }
        if (secure.sharesDuration == 0 || secure.unmaskDuration == 0) {
            revert FLCoordinatorInvalidSecureDurations(secure.sharesDuration, secure.unmaskDuration);
        }
        taskId = _storeTask(config, secure);
        emit SecureAggregationConfigured(taskId, secure.threshold, secure.sharesDuration, secure.unmaskDuration);
    }

    /// @notice Starts the first round of `taskId` once enough participants joined.
    /// @param taskId The task to start.
    function startTask(uint256 taskId) external onlyOperator {
        Task storage task = _task(taskId);
        if (task.state.status != TaskStatus.Open) revert FLCoordinatorWrongTaskStatus(taskId, task.state.status);
        if (task.state.participantCount < task.config.minContributors) {
            revert FLCoordinatorNotEnoughParticipants(
                taskId, task.state.participantCount, task.config.minContributors
            );
        }
        task.state.status = TaskStatus.Running;
        emit TaskStarted(taskId);
        _startRound(taskId, task, 0);
    }

    /// @notice Cancels `taskId`; a running round fails and no further round starts.
    /// @param taskId The task to cancel.
    function cancelTask(uint256 taskId) external onlyOperator {
        Task storage task = _task(taskId);
        TaskStatus status = task.state.status;
        if (status != TaskStatus.Open && status != TaskStatus.Running) {
            revert FLCoordinatorWrongTaskStatus(taskId, status);
        }
        task.state.status = TaskStatus.Cancelled;
        if (status == TaskStatus.Running) {
            uint32 current = task.state.currentRound;
            Round storage round = _rounds[taskId][current];
            if (_inProgress(round.status)) {
                round.status = RoundStatus.Failed;
                round.failure = FailureReason.TaskCancelled;
                emit RoundFailed(taskId, current, FailureReason.TaskCancelled);
            }
        }
        emit TaskCancelled(taskId);
    }

    // ---------------------------------------------------------------------------------------------
    // Participants
    // ---------------------------------------------------------------------------------------------

    /// @notice Joins `taskId` and registers this node's IPFS peer addresses.
    /// @param taskId The task to join (open or running).
    /// @param multiaddrs The node's IPFS multiaddrs (1 to MAX_MULTIADDRS, each at most MAX_MULTIADDR_LENGTH bytes).
    /// @param publicKey Optional public key for key agreement (at most MAX_PUBLIC_KEY_LENGTH bytes); in a
    /// secure-aggregation task required: the member's 32-byte X25519 public key (not all zero).
    function join(uint256 taskId, string[] calldata multiaddrs, bytes calldata publicKey) external {
        Task storage task = _task(taskId);
        TaskStatus status = task.state.status;
        if (status != TaskStatus.Open && status != TaskStatus.Running) {
            revert FLCoordinatorWrongTaskStatus(taskId, status);
        }
        _requireAdmitted(taskId, task);
        Participant storage participant = _participants[taskId][msg.sender];
        if (participant.joined) revert FLCoordinatorAlreadyJoined(taskId, msg.sender);
        if (task.participants.length >= task.config.maxParticipants) {
            revert FLCoordinatorTaskFull(taskId, task.config.maxParticipants);
        }
        _checkMultiaddrs(multiaddrs);
        if (publicKey.length > MAX_PUBLIC_KEY_LENGTH) revert FLCoordinatorPublicKeyTooLong(publicKey.length);
        if (task.config.secureAggregation && (publicKey.length != X25519_KEY_LENGTH || bytes32(publicKey) == 0)) {
            revert FLCoordinatorInvalidPublicKey(publicKey.length);
        }
        participant.joined = true;
        participant.position = uint32(task.participants.length);
        participant.multiaddrs = multiaddrs;
        participant.publicKey = publicKey;
        task.participants.push(msg.sender);
        task.state.participantCount += 1;
        emit ParticipantJoined(taskId, msg.sender, multiaddrs);
    }

    /// @notice Replaces this node's registered IPFS peer addresses (after a restart on a new port).
    /// @param taskId The task joined earlier.
    /// @param multiaddrs The new multiaddrs (bounded as in `join`).
    function updatePeer(uint256 taskId, string[] calldata multiaddrs) external {
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        _checkMultiaddrs(multiaddrs);
        participant.multiaddrs = multiaddrs;
        emit PeerUpdated(taskId, msg.sender, multiaddrs);
    }

    /// @notice Removes `account` from `taskId`: its slot is freed and rounds no longer wait for it.
    /// @dev The operator may remove anyone; anyone may remove an account that is no longer admitted
    /// from a task without open admission. An update it already committed this round stays.
    /// @param taskId The task.
    /// @param account The participant to remove.
    function removeParticipant(uint256 taskId, address account) external {
        Task storage task = _task(taskId);
        Participant storage participant = _joinedParticipant(taskId, account);
        if (msg.sender != _operator && (task.config.openAdmission || _admitted[account])) {
            revert FLCoordinatorStillAdmitted(taskId, account);
        }
        // Swap-and-pop keeps `participants` dense so pages stay cheap.
        uint32 position = participant.position;
        address last = task.participants[task.participants.length - 1];
        task.participants[position] = last;
        _participants[taskId][last].position = position;
        task.participants.pop();
        participant.joined = false;
        delete participant.multiaddrs;
        delete participant.publicKey;
        task.state.participantCount -= 1;
        emit ParticipantRemoved(taskId, account);

        if (task.state.status != TaskStatus.Running) return;
        uint32 current = task.state.currentRound;
        Round storage r = _rounds[taskId][current];
        bool inKeySet = participant.setupRound == current + 1;
        if (r.status == RoundStatus.Shares) {
            // Its setup (if any) stays: it is in the key set, and dropped if it never contributes.
            if (inKeySet) r.setupDeparted += 1;
            if (r.setups > 0 && _everyoneSetUp(task, r)) _closeShares(taskId, task, current, r);
            return;
        }
        if (r.status != RoundStatus.Update) return;
        // Its update (if any) stays in the round; the phase no longer waits for it otherwise.
        if (participant.updateRound == current + 1) r.departed += 1;
        if (inKeySet) r.setupDeparted += 1;
        if (r.contributors > 0 && _everyoneCommitted(task, r)) _freeze(taskId, task, current, r);
    }

    // ---------------------------------------------------------------------------------------------
    // Rounds
    // ---------------------------------------------------------------------------------------------

    /// @notice Commits this node's update for `round`: the digest of its update manifest.
    /// @param taskId The running task.
    /// @param round Must be the current round (guards against a commit landing in a later round).
    /// @param digest sha2-256 digest of the update manifest CID.
    /// @param samples Number of local training samples (the FedAvg weight), at most the task's `maxSamples`.
    /// @dev With secure aggregation only members of the round's key set U1 (a setup committed in its
    /// shares phase) commit, and the digest is that of the masked update's manifest.
    function commitUpdate(uint256 taskId, uint256 round, bytes32 digest, uint64 samples) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Update || block.timestamp >= r.updateDeadline) {
            revert FLCoordinatorUpdatePhaseClosed(taskId, round);
        }
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        _requireAdmitted(taskId, task);
        if (participant.updateRound == round + 1) revert FLCoordinatorUpdateAlreadyCommitted(taskId, round, msg.sender);
        if (task.config.secureAggregation) {
            if (participant.setupRound != round + 1) revert FLCoordinatorNotInKeySet(taskId, round, msg.sender);
            if (block.timestamp < r.updateDeadline - task.config.updateDuration) {
                revert FLCoordinatorKeySetNotFinal(taskId, round);
            }
        }
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();
        if (samples == 0) revert FLCoordinatorZeroSamples();
        if (samples > task.config.maxSamples) revert FLCoordinatorTooManySamples(samples, task.config.maxSamples);

        uint32 index = r.contributors;
        participant.updateRound = uint32(round + 1);
        participant.index = index;
        participant.samples = samples;
        r.contributors = index + 1;
        r.totalSamples += samples;
        emit UpdateCommitted(taskId, round, msg.sender, index, digest, samples);

        // Completion: every joined participant committed, so the phase ends before its deadline.
        if (_everyoneCommitted(task, r)) _freeze(taskId, task, round, r);
    }

    /// @notice Secure aggregation: commits the digest of this member's setup blob for `round` (its
    /// fresh mask public key and one share box per other member, in IPFS). Members that commit before
    /// the shares deadline form the round's key set U1; only they may commit an update.
    /// @dev The shares phase ends early once every joined member committed a setup.
    /// @param taskId The running secure-aggregation task.
    /// @param round The current round, in its shares phase.
    /// @param digest sha2-256 digest of the setup blob CID.
    function commitSetup(uint256 taskId, uint256 round, bytes32 digest) external {
        Task storage task = _runningTask(taskId);
        if (!task.config.secureAggregation) revert FLCoordinatorNotSecureTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Shares || block.timestamp >= r.sharesDeadline) {
            revert FLCoordinatorSharesPhaseClosed(taskId, round);
        }
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        _requireAdmitted(taskId, task);
        if (participant.setupRound == round + 1) revert FLCoordinatorSetupAlreadyCommitted(taskId, round, msg.sender);
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();

        uint32 index = r.setups;
        participant.setupRound = uint32(round + 1);
        participant.setupDigest = digest;
        r.setups = index + 1;
        emit SetupCommitted(taskId, round, msg.sender, index, digest);

        if (_everyoneSetUp(task, r)) _closeShares(taskId, task, round, r);
    }

    /// @notice Secure aggregation: reports that the caller cannot use `member`'s setup of `round`: its
    /// blob is not served, does not verify, or the share box it addressed to the caller does not open
    /// (only the recipient can tell). Once a strict majority of the key set U1 reported it, or so many
    /// that fewer than t others hold usable shares of it (`reports >= |U1| - t`), `member` leaves the key set: honest members mask towards the remaining key set only, and `member` cannot
    /// commit an update. Fewer than `minContributors` left fails the round (`TooFewSetups`).
    /// @dev Only in the key check window, the first `unmaskDuration` seconds of the update phase,
    /// before any update can be committed; only by key-set members, about another key-set member.
    /// @param taskId The running secure-aggregation task.
    /// @param round The current round, in its key check window.
    /// @param member A key-set member of `round` other than the caller.
    function reportSetup(uint256 taskId, uint256 round, address member) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Update || block.timestamp >= r.updateDeadline - task.config.updateDuration) {
            revert FLCoordinatorReportWindowClosed(taskId, round);
        }
        _requireAdmitted(taskId, task);
        if (_joinedParticipant(taskId, msg.sender).setupRound != round + 1) {
            revert FLCoordinatorNotInKeySet(taskId, round, msg.sender);
        }
        if (member == msg.sender) revert FLCoordinatorSelfReport(taskId, msg.sender);
        Participant storage target = _participants[taskId][member];
        if (target.setupRound != round + 1) revert FLCoordinatorNotInKeySet(taskId, round, member);
        if (r.hasReportedSetup[member][msg.sender]) revert FLCoordinatorAlreadyReported(taskId, round, member, msg.sender);
        r.hasReportedSetup[member][msg.sender] = true;
        uint256 reports = r.setupReports[member] + 1;
        r.setupReports[member] = reports;
        emit SetupReported(taskId, round, member, msg.sender, reports);
        // Excluded by a strict majority, or once the members left to hold its shares are fewer than t
        // (|U1| - 1 - reports < t): its secrets could not be rebuilt, so nobody may mask towards it.
        uint256 setups = r.setups;
        if (!_isMajority(reports, setups) && reports + task.config.secaggThreshold < setups) return;

        target.setupRound = 0;
        // A member removed from the task was counted as departed already.
        if (target.joined) r.setupDeparted += 1;
        uint32 excluded = r.setupsExcluded + 1;
        r.setupsExcluded = excluded;
        emit SetupExcluded(taskId, round, member);
        if (setups - excluded < task.config.minContributors) {
            _failRound(taskId, task, round, r, FailureReason.TooFewSetups);
        }
    }

    /// @notice Secure aggregation: commits the digest of this contributor's reveal blob for `round`:
    /// its shares of the self-mask seed of every non-excluded contributor and of the mask private
    /// key of every other key-set member (dropped or excluded), never both for one member.
    /// @dev Only in the reveal window (after the check window, so the excluded set is final) and only
    /// by non-excluded contributors. The unmask phase ends early once all of them revealed.
    /// @param taskId The running secure-aggregation task.
    /// @param round The current round, in its reveal window.
    /// @param digest sha2-256 digest of the reveal blob CID.
    function commitReveal(uint256 taskId, uint256 round, bytes32 digest) external {
        Task storage task = _runningTask(taskId);
        if (!task.config.secureAggregation) revert FLCoordinatorNotSecureTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        uint256 deadline = r.unmaskDeadline;
        if (
            r.status != RoundStatus.Unmask || block.timestamp < deadline - task.config.unmaskDuration
                || block.timestamp >= deadline
        ) revert FLCoordinatorRevealWindowClosed(taskId, round);
        Participant storage participant = _requireVoter(taskId, task, round, r);
        if (participant.revealRound == round + 1) {
            revert FLCoordinatorRevealAlreadyCommitted(taskId, round, msg.sender);
        }
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();

        uint32 reveals = r.reveals + 1;
        participant.revealRound = uint32(round + 1);
        participant.revealDigest = digest;
        r.reveals = reveals;
        emit RevealCommitted(taskId, round, msg.sender, digest, reveals);

        if (reveals + r.excludedCount >= r.contributors) _closeUnmask(taskId, task, round, r);
    }

    /// @notice Stores the assignment key of `round` once the freezing block's hash is readable.
    /// @dev Anyone may call it; it does nothing when the key is already stored. Nodes call it when
    /// `getRound` shows no key (on a chain that mines only on transactions, no later block exists
    /// until someone sends one). If the freezing block is older than 256 blocks its hash is gone;
    /// the key is then re-anchored to the current block, whose hash is read by a later call.
    /// @param taskId The running task.
    /// With secure aggregation it is drawn in the unmask phase already (aggregators fetch their
    /// masked slices in its check window).
    /// @param round The current round, whose contributor set is frozen.
    function drawAssignment(uint256 taskId, uint256 round) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Aggregation && r.status != RoundStatus.Unmask) {
            revert FLCoordinatorAggregationNotOpen(taskId, round);
        }
        _drawAssignment(taskId, round, r);
    }

    /// @notice Commits this node's aggregate digest for one partition of `round`.
    /// @param taskId The running task.
    /// @param round The current round, whose contributor set is frozen.
    /// @param partition The partition index.
    /// @param digest sha2-256 digest of the aggregated partition blob CID.
    function commitAggregate(uint256 taskId, uint256 round, uint256 partition, bytes32 digest) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _aggregationRound(taskId, task, round);
        bytes32 key = _requireKey(taskId, round, r);
        _checkAggregate(task, partition, digest);
        uint256 position = _voterPosition(taskId, task, round, r, key);
        _commitAggregate(taskId, task, round, r, position, partition, digest);
    }

    /// @notice Commits several aggregate digests of `round` in one transaction.
    /// @param taskId The running task.
    /// @param round The current round, whose contributor set is frozen.
    /// @param partitionIndices Partition indices, one per digest.
    /// @param digests sha2-256 digests of the aggregated partition blob CIDs.
    function commitAggregates(
        uint256 taskId,
        uint256 round,
        uint256[] calldata partitionIndices,
        bytes32[] calldata digests
    ) external {
        if (partitionIndices.length != digests.length) {
            revert FLCoordinatorLengthMismatch(partitionIndices.length, digests.length);
        }
        Task storage task = _runningTask(taskId);
        Round storage r = _aggregationRound(taskId, task, round);
        bytes32 key = _requireKey(taskId, round, r);
        uint256 position;
        for (uint256 i = 0; i < digests.length; ++i) {
            _checkAggregate(task, partitionIndices[i], digests[i]);
            // The caller's ring position is the same for every entry: checked and computed once.
            if (i == 0) position = _voterPosition(taskId, task, round, r, key);
            _commitAggregate(taskId, task, round, r, position, partitionIndices[i], digests[i]);
            // The last commit may have finalized the round; later entries would be stale.
            if (r.status != RoundStatus.Aggregation) break;
        }
    }

    /// @notice Reports that `contributor`'s committed update of `round` could not be fetched.
    /// Once a strict majority of the round's contributors reported it, the update is excluded: every
    /// aggregate of a partition not yet final leaves it out (partitions already final keep it). If
    /// the remaining contributors are fewer than `minContributors`, the round fails.
    /// @dev Only in the fallback phase (the assigned phase gives a slow peer time to serve its update),
    /// and only by non-excluded contributors of the round: fewer than half of them cannot exclude anyone.
    /// With secure aggregation only in the check window of the unmask phase instead: an excluded
    /// contributor is treated as dropped (its key shares are revealed), which must be decided before
    /// any self-mask share of it is revealed.
    /// @param taskId The running task.
    /// @param round The current round, in its fallback phase (secure aggregation: its check window).
    /// @param contributor A contributor of `round` other than the caller.
    function reportUnavailable(uint256 taskId, uint256 round, address contributor) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status == RoundStatus.Unmask) {
            if (block.timestamp >= r.unmaskDeadline - task.config.unmaskDuration) {
                revert FLCoordinatorReportWindowClosed(taskId, round);
            }
        } else {
            if (r.status != RoundStatus.Aggregation) revert FLCoordinatorAggregationNotOpen(taskId, round);
            if (block.timestamp >= _fallbackDeadline(task, r)) revert FLCoordinatorRoundExpired(taskId, round);
            if (task.config.secureAggregation) revert FLCoordinatorReportWindowClosed(taskId, round);
            if (block.timestamp < r.aggregationDeadline) revert FLCoordinatorReportTooEarly(taskId, round);
        }
        _requireVoter(taskId, task, round, r);
        if (contributor == msg.sender) revert FLCoordinatorSelfReport(taskId, msg.sender);
        if (_participants[taskId][contributor].updateRound != round + 1) {
            revert FLCoordinatorNotAContributor(taskId, round, contributor);
        }
        if (r.isExcluded[contributor]) revert FLCoordinatorAlreadyExcluded(taskId, round, contributor);
        if (r.hasReported[contributor][msg.sender]) {
            revert FLCoordinatorAlreadyReported(taskId, round, contributor, msg.sender);
        }
        r.hasReported[contributor][msg.sender] = true;
        uint256 reports = r.unavailableReports[contributor] + 1;
        r.unavailableReports[contributor] = reports;
        emit UnavailabilityReported(taskId, round, contributor, msg.sender, reports);
        if (!_isMajority(reports, r.contributors)) return;

        r.isExcluded[contributor] = true;
        r.excluded.push(contributor);
        r.excludedCount += 1;
        emit ContributionExcluded(taskId, round, contributor);
        if (r.contributors - r.excludedCount < task.config.minContributors) {
            _failRound(taskId, task, round, r, FailureReason.TooFewContributors);
        }
    }

    /// @notice Disputes `round`, the latest finalized round, whose global model the caller cannot
    /// fetch or validate. Once a strict majority of the round's contributors disputed it, the round
    /// fails (`Disputed`), the task goes back to the previous global model, and the current round
    /// (built on the disputed model) fails too; the next round starts from the previous model.
    /// @dev Only non-excluded contributors of `round` that committed no update since may dispute, while
    /// the task runs or within `updateDuration` after it completed (a completed task then runs again).
    /// @param taskId The task.
    /// @param round The latest finalized round.
    function disputeRound(uint256 taskId, uint256 round) external {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        TaskState storage state = task.state;
        bool completed = state.status == TaskStatus.Completed;
        if (
            state.finalizedRounds == 0 || state.latestFinalizedRound != round || r.status != RoundStatus.Finalized
                || !(state.status == TaskStatus.Running
                    || (completed && block.timestamp < r.finalizedAt + task.config.updateDuration))
        ) revert FLCoordinatorNotDisputable(taskId, round);
        _requireVoter(taskId, task, round, r);
        if (r.hasDisputed[msg.sender]) revert FLCoordinatorAlreadyDisputed(taskId, round, msg.sender);
        r.hasDisputed[msg.sender] = true;
        uint32 disputes = r.disputes + 1;
        r.disputes = disputes;
        emit RoundDisputeFiled(taskId, round, msg.sender, disputes);
        if (!_isMajority(disputes, r.contributors)) return;

        r.status = RoundStatus.Failed;
        r.failure = FailureReason.Disputed;
        emit RoundFailed(taskId, round, FailureReason.Disputed);
        state.finalizedRounds -= 1;
        state.latestFinalizedRound = r.previousFinal == 0 ? 0 : r.previousFinal - 1;
        if (completed) {
            state.status = TaskStatus.Running;
            _startRound(taskId, task, uint32(round + 1));
            return;
        }
        uint32 current = state.currentRound;
        Round storage now_ = _rounds[taskId][current];
        if (_inProgress(now_.status)) {
            _failRound(taskId, task, current, now_, FailureReason.Disputed);
        }
    }

    /// @notice Moves the current round past a deadline: freezes the contributor set after the
    /// update deadline, or fails an unfinished round after the fallback deadline and starts the
    /// next one; with secure aggregation also freezes the key set after the shares deadline and the
    /// reveal set after the unmask deadline (failing the round below the threshold). Anyone may call it.
    /// @param taskId The running task.
    function advance(uint256 taskId) external {
        Task storage task = _runningTask(taskId);
        uint32 current = task.state.currentRound;
        Round storage r = _rounds[taskId][current];
        if (r.status == RoundStatus.Update && block.timestamp >= r.updateDeadline) {
            _freeze(taskId, task, current, r);
        } else if (r.status == RoundStatus.Aggregation && block.timestamp >= _fallbackDeadline(task, r)) {
            _failRound(taskId, task, current, r, FailureReason.AggregationTimedOut);
        } else if (r.status == RoundStatus.Shares && block.timestamp >= r.sharesDeadline) {
            _closeShares(taskId, task, current, r);
        } else if (r.status == RoundStatus.Unmask && block.timestamp >= r.unmaskDeadline) {
            _closeUnmask(taskId, task, current, r);
        } else {
            revert FLCoordinatorNothingToAdvance(taskId, current);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @notice The operator account.
    function operator() external view returns (address) {
        return _operator;
    }

    /// @notice The account offered the operator role, or zero.
    function pendingOperator() external view returns (address) {
        return _pendingOperator;
    }

    /// @notice Number of tasks created; ids run from 1 to this.
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice Whether `account` is admitted to the consortium.
    function isAdmitted(address account) external view returns (bool) {
        return _admitted[account];
    }

    /// @notice A task's configuration and state, and its secure-aggregation parameters (all zero
    /// without secure aggregation).
    function getTask(uint256 taskId)
        external
        view
        returns (TaskConfig memory config, TaskState memory state, SecureAggregationConfig memory secure)
    {
        Task storage task = _task(taskId);
        StoredConfig storage c = task.config;
        config = TaskConfig({
            manifestDigest: c.manifestDigest,
            partitions: c.partitions,
            replication: c.replication,
            quorum: c.quorum,
            minContributors: c.minContributors,
            updateDuration: c.updateDuration,
            aggregationDuration: c.aggregationDuration,
            rounds: c.rounds,
            maxParticipants: c.maxParticipants,
            maxSamples: c.maxSamples,
            openAdmission: c.openAdmission
        });
        state = task.state;
        secure = SecureAggregationConfig(c.secaggThreshold, c.sharesDuration, c.unmaskDuration);
    }

    /// @notice Up to `count` participants of `taskId` from position `start`, with their peer addresses.
    /// @dev Pages keep the call cheap however many joined; `getTask` gives the participant count.
    /// Removing a participant moves the last one into its position.
    function getParticipants(uint256 taskId, uint256 start, uint256 count)
        external
        view
        returns (ParticipantView[] memory views)
    {
        Task storage task = _task(taskId);
        uint256 total = task.participants.length;
        uint256 end = start >= total ? start : (count > total - start ? total : start + count);
        views = new ParticipantView[](end - start);
        for (uint256 i = start; i < end; ++i) {
            address account = task.participants[i];
            Participant storage p = _participants[taskId][account];
            views[i - start] = ParticipantView(account, p.updateRound, p.index, p.samples, p.multiaddrs, p.publicKey);
        }
    }

    /// @notice Whether `account` joined `taskId`.
    function hasJoined(uint256 taskId, address account) external view returns (bool) {
        return _participants[taskId][account].joined;
    }

    /// @notice One round's state, deadlines, seed and assignment key (read lazily when not stored yet).
    function getRound(uint256 taskId, uint256 round) external view returns (RoundView memory) {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        uint64 startTime = task.config.secureAggregation
            ? (r.sharesDeadline == 0 ? 0 : r.sharesDeadline - task.config.sharesDuration)
            : (r.updateDeadline == 0 ? 0 : r.updateDeadline - task.config.updateDuration);
        return RoundView({
            round: uint32(round),
            status: r.status,
            failure: r.failure,
            startTime: startTime,
            updateDeadline: r.updateDeadline,
            aggregationDeadline: r.aggregationDeadline,
            fallbackDeadline: _fallbackDeadline(task, r),
            contributors: r.contributors,
            finalizedPartitions: r.finalizedPartitions,
            excludedCount: r.excludedCount,
            disputes: r.disputes,
            totalSamples: r.totalSamples,
            seed: r.seed,
            assignmentKey: _readKey(r),
            sharesDeadline: r.sharesDeadline,
            revealStart: r.unmaskDeadline == 0 ? 0 : r.unmaskDeadline - task.config.unmaskDuration,
            unmaskDeadline: r.unmaskDeadline,
            setups: r.setups,
            reveals: r.reveals
        });
    }

    /// @notice `account`'s secure-aggregation state in `round`: key set (U1), contributor (U2),
    /// excluded, revealer (U3), and its setup and reveal digests.
    /// @dev Answers for the account's latest round only (a later setup, update or reveal overwrites
    /// it, as for `isAssigned`); earlier rounds are in the `SetupCommitted`, `UpdateCommitted`,
    /// `ContributionExcluded` and `RevealCommitted` events.
    function getSecureMember(uint256 taskId, uint256 round, address account)
        external
        view
        returns (SecureMemberView memory member)
    {
        _task(taskId);
        Participant storage p = _participants[taskId][account];
        uint256 tag = round + 1;
        member.inKeySet = p.setupRound == tag;
        member.contributed = p.updateRound == tag;
        member.excluded = member.contributed && _rounds[taskId][round].isExcluded[account];
        member.revealed = p.revealRound == tag;
        if (member.inKeySet) member.setupDigest = p.setupDigest;
        if (member.revealed) member.revealDigest = p.revealDigest;
    }

    /// @notice The final digest of every partition of `round` (zero where not final yet).
    function getFinalDigests(uint256 taskId, uint256 round) external view returns (bytes32[] memory digests) {
        Task storage task = _task(taskId);
        uint256 partitions = task.config.partitions;
        digests = new bytes32[](partitions);
        Round storage r = _rounds[taskId][round];
        for (uint256 p = 0; p < partitions; ++p) {
            bytes32 d = r.digests[p];
            if (d == bytes32(0)) continue;
            // This round's own state says whether it is final; a reused state left only final digests.
            PartitionVotes storage part = _partitionVotes[taskId][p];
            if (part.round != round + 1 || part.isFinal) digests[p] = d;
        }
    }

    /// @notice The contributors of `round` whose updates are excluded as unavailable, in order of exclusion.
    function getExcluded(uint256 taskId, uint256 round) external view returns (address[] memory) {
        _task(taskId);
        return _rounds[taskId][round].excluded;
    }

    /// @notice How many aggregators committed `digest` for `partition` of `round`: assigned ones and all.
    /// @dev Reverts with `FLCoordinatorVotesReused` once a later round committed an aggregate for
    /// `partition` (its vote state is reused round after round): count that round's
    /// `AggregateCommitted` events instead (`isFallback` false: assigned), as `Coordinator.get_votes` does.
    function getVotes(uint256 taskId, uint256 round, uint256 partition, bytes32 digest)
        external
        view
        returns (uint256 assigned, uint256 total)
    {
        Round storage r = _rounds[taskId][round];
        PartitionVotes storage part = _partitionVotes[taskId][partition];
        uint256 tag = part.round;
        if (tag > round + 1) revert FLCoordinatorVotesReused(taskId, round, partition);
        if (tag == round + 1 && digest != bytes32(0) && digest == r.digests[partition]) {
            return (part.candidateAssigned, part.candidateVotes);
        }
        uint256 packed = r.otherVotes[partition][digest];
        return (packed >> 128, packed & type(uint128).max);
    }

    /// @notice Whether `account` is an assigned aggregator of `partition` in `round`.
    /// @dev Answers for the account's latest committed round only (its index is overwritten by its next
    /// commit); for earlier rounds use the `UpdateCommitted` index with the round's assignment key.
    function isAssigned(uint256 taskId, uint256 round, uint256 partition, address account)
        external
        view
        returns (bool)
    {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        Participant storage participant = _participants[taskId][account];
        bytes32 key = _readKey(r);
        if (key == bytes32(0) || participant.updateRound != round + 1) return false;
        if (partition >= task.config.partitions) return false;
        uint256 position = assignmentPosition(key, participant.index, r.contributors);
        (bool assigned,) = _slot(task, r.contributors, partition, position);
        return assigned;
    }

    /// @notice The partitions `account` must aggregate in `round` (empty before the assignment is drawn).
    /// @dev Answers for the account's latest committed round only, like `isAssigned`.
    function getAssignedPartitions(uint256 taskId, uint256 round, address account)
        external
        view
        returns (uint256[] memory assigned)
    {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        Participant storage participant = _participants[taskId][account];
        bytes32 key = _readKey(r);
        if (key == bytes32(0) || participant.updateRound != round + 1) return new uint256[](0);
        uint256 position = assignmentPosition(key, participant.index, r.contributors);
        uint256 partitions = task.config.partitions;
        uint256[] memory buffer = new uint256[](partitions);
        uint256 count = 0;
        for (uint256 p = 0; p < partitions; ++p) {
            (bool ok,) = _slot(task, r.contributors, p, position);
            if (ok) buffer[count++] = p;
        }
        assigned = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            assigned[i] = buffer[i];
        }
    }

    /// @notice The ring position of contributor `index` among `n`: a keyed pseudo-random permutation.
    /// @dev An 8-round Feistel network over the smallest even power of two >= n, with cycle walking
    /// (expected fewer than 4 passes). Mirrored exactly by `fl_chain.assignment.assignment_position`.
    function assignmentPosition(bytes32 key, uint256 index, uint256 n) public pure returns (uint256 x) {
        uint256 half = 1;
        while ((uint256(1) << (2 * half)) < n) ++half;
        uint256 mask = (uint256(1) << half) - 1;
        x = index;
        do {
            uint256 left = x >> half;
            uint256 right = x & mask;
            for (uint256 i = 0; i < 8; ++i) {
                // keccak256(abi.encode(key, i, right)), hashed in scratch memory past the free pointer
                uint256 f;
                assembly ("memory-safe") {
                    let ptr := mload(0x40)
                    mstore(ptr, key)
                    mstore(add(ptr, 0x20), i)
                    mstore(add(ptr, 0x40), right)
                    f := and(keccak256(ptr, 0x60), mask)
                }
                (left, right) = (right, left ^ f);
            }
            x = (left << half) | right;
        } while (x >= n);
    }

    // ---------------------------------------------------------------------------------------------
    // Internal logic
    // ---------------------------------------------------------------------------------------------

    function _validateConfig(TaskConfig calldata c) private pure {
        if (c.manifestDigest == bytes32(0)) revert FLCoordinatorZeroDigest();
        if (c.partitions == 0) revert FLCoordinatorInvalidPartitions(c.partitions);
        if (c.replication == 0 || c.replication > MAX_REPLICATION) revert FLCoordinatorInvalidReplication(c.replication);
        // q > r/2 makes two different digests unable to both reach quorum among assigned aggregators.
        if (c.quorum == 0 || c.quorum > c.replication || 2 * uint256(c.quorum) <= c.replication) {
            revert FLCoordinatorInvalidQuorum(c.quorum, c.replication);
        }
        // With at least q contributors there are always q distinct assigned aggregators.
        if (c.minContributors < c.quorum) revert FLCoordinatorInvalidMinContributors(c.minContributors, c.quorum);
        if (c.maxParticipants < c.minContributors || c.maxParticipants > MAX_PARTICIPANTS) {
            revert FLCoordinatorInvalidMaxParticipants(c.maxParticipants, c.minContributors);
        }
        if (c.maxSamples == 0) revert FLCoordinatorInvalidMaxSamples();
        if (c.updateDuration == 0 || c.aggregationDuration == 0) {
            revert FLCoordinatorInvalidDuration(c.updateDuration, c.aggregationDuration);
        }
        if (c.rounds == 0) revert FLCoordinatorInvalidRounds(c.rounds);
    }

    /// @dev Stores a validated task (secure aggregation on when `secure.threshold` is non-zero).
    function _storeTask(TaskConfig calldata config, SecureAggregationConfig memory secure)
        private
        returns (uint256 taskId)
    {
        taskId = ++_taskCount;
        Task storage task = _tasks[taskId];
        task.config = StoredConfig({
            manifestDigest: config.manifestDigest,
            partitions: config.partitions,
            replication: config.replication,
            quorum: config.quorum,
            minContributors: config.minContributors,
            updateDuration: config.updateDuration,
            aggregationDuration: config.aggregationDuration,
            maxSamples: config.maxSamples,
            openAdmission: config.openAdmission,
            rounds: config.rounds,
            secureAggregation: secure.threshold != 0,
            maxParticipants: config.maxParticipants,
            secaggThreshold: secure.threshold,
            sharesDuration: secure.sharesDuration,
            unmaskDuration: secure.unmaskDuration
        });
        task.state.status = TaskStatus.Open;
        task.state.creator = msg.sender;
        emit TaskCreated(taskId, msg.sender, config);
    }

    function _checkMultiaddrs(string[] calldata multiaddrs) private pure {
        if (multiaddrs.length == 0 || multiaddrs.length > MAX_MULTIADDRS) {
            revert FLCoordinatorInvalidMultiaddrs(multiaddrs.length);
        }
        for (uint256 i = 0; i < multiaddrs.length; ++i) {
            uint256 length = bytes(multiaddrs[i]).length;
            if (length > MAX_MULTIADDR_LENGTH) revert FLCoordinatorMultiaddrTooLong(i, length);
        }
    }

    function _task(uint256 taskId) private view returns (Task storage task) {
        task = _tasks[taskId];
        if (task.state.status == TaskStatus.None) revert FLCoordinatorUnknownTask(taskId);
    }

    function _runningTask(uint256 taskId) private view returns (Task storage task) {
        task = _task(taskId);
        if (task.state.status != TaskStatus.Running) revert FLCoordinatorWrongTaskStatus(taskId, task.state.status);
    }

    function _currentRound(uint256 taskId, Task storage task, uint256 round) private view returns (Round storage) {
        uint32 current = task.state.currentRound;
        if (round != current) revert FLCoordinatorRoundNotCurrent(taskId, round, current);
        return _rounds[taskId][round];
    }

    function _aggregationRound(uint256 taskId, Task storage task, uint256 round)
        private
        view
        returns (Round storage r)
    {
        r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Aggregation) revert FLCoordinatorAggregationNotOpen(taskId, round);
        if (block.timestamp >= _fallbackDeadline(task, r)) revert FLCoordinatorRoundExpired(taskId, round);
    }

    function _joinedParticipant(uint256 taskId, address account) private view returns (Participant storage p) {
        p = _participants[taskId][account];
        if (!p.joined) revert FLCoordinatorNotJoined(taskId, account);
    }

    function _requireAdmitted(uint256 taskId, Task storage task) private view {
        if (!task.config.openAdmission && !_admitted[msg.sender]) revert FLCoordinatorNotAdmitted(taskId, msg.sender);
    }

    /// @dev The caller must be an admitted, non-excluded contributor of `round`: only they have a vote in it.
    function _requireVoter(uint256 taskId, Task storage task, uint256 round, Round storage r)
        private
        view
        returns (Participant storage participant)
    {
        _requireAdmitted(taskId, task);
        participant = _joinedParticipant(taskId, msg.sender);
        if (participant.updateRound != round + 1 || (r.excludedCount != 0 && r.isExcluded[msg.sender])) {
            revert FLCoordinatorNotAContributor(taskId, round, msg.sender);
        }
    }

    /// @dev A strict majority of the round's `contributors` (excluded ones included, so excluding
    /// colluders cannot lower the bar for the votes they cast before).
    function _isMajority(uint256 votes, uint256 contributors) private pure returns (bool) {
        return 2 * votes > contributors;
    }

    /// @dev Every participant still joined committed an update to `r` (with secure aggregation:
    /// every key-set member still joined).
    function _everyoneCommitted(Task storage task, Round storage r) private view returns (bool) {
        if (task.config.secureAggregation) return r.contributors - r.departed >= r.setups - r.setupDeparted;
        return r.contributors - r.departed >= task.state.participantCount;
    }

    /// @dev Every participant still joined committed a setup to `r`.
    function _everyoneSetUp(Task storage task, Round storage r) private view returns (bool) {
        return r.setups - r.setupDeparted >= task.state.participantCount;
    }

    /// @dev A round that has not ended (finalized or failed) yet.
    function _inProgress(RoundStatus status) private pure returns (bool) {
        return status == RoundStatus.Update || status == RoundStatus.Aggregation || status == RoundStatus.Shares
            || status == RoundStatus.Unmask;
    }

    function _fallbackDeadline(Task storage task, Round storage r) private view returns (uint48) {
        if (r.aggregationDeadline == 0) return 0;
        return r.aggregationDeadline + task.config.aggregationDuration;
    }

    /// @dev The stored key, or the one the freezing block's hash gives when it is readable (zero otherwise).
    function _readKey(Round storage r) private view returns (bytes32) {
        bytes32 key = r.assignmentKey;
        if (key != bytes32(0) || r.aggregationDeadline == 0 || block.number <= r.freezeBlock) return key;
        bytes32 anchor = blockhash(r.freezeBlock);
        if (anchor == bytes32(0)) return bytes32(0);
        return keccak256(abi.encode(r.seed, anchor));
    }

    /// @dev Stores the key if readable; re-anchors it to this block if the freezing block is too old.
    function _drawAssignment(uint256 taskId, uint256 round, Round storage r) private returns (bytes32 key) {
        key = r.assignmentKey;
        if (key != bytes32(0) || block.number <= r.freezeBlock) return key;
        key = _readKey(r);
        if (key == bytes32(0)) {
            r.freezeBlock = uint48(block.number);
            return key;
        }
        r.assignmentKey = key;
        emit AssignmentDrawn(taskId, round, key);
    }

    function _requireKey(uint256 taskId, uint256 round, Round storage r) private returns (bytes32 key) {
        key = _drawAssignment(taskId, round, r);
        if (key == bytes32(0)) revert FLCoordinatorAssignmentNotDrawn(taskId, round);
    }

    /// @dev Partition p takes the r ring positions starting at p*r (mod n); contributors sit on the
    /// ring at `assignmentPosition`. Returns whether ring `position` is assigned to `partition` and its
    /// slot j in [0, r).
    function _slot(Task storage task, uint256 n, uint256 partition, uint256 position)
        private
        view
        returns (bool assigned, uint256 slot)
    {
        uint256 replication = task.config.replication;
        uint256 effective = replication > n ? n : replication;
        slot = (position + n - (partition * replication) % n) % n;
        assigned = slot < effective;
    }

    function _startRound(uint256 taskId, Task storage task, uint32 round) private {
        task.state.currentRound = round;
        Round storage r = _rounds[taskId][round];
        bytes32 seed = keccak256(abi.encode(blockhash(block.number - 1), block.chainid, address(this), taskId, round));
        if (task.config.secureAggregation) {
            uint48 sharesDeadline = uint48(block.timestamp) + task.config.sharesDuration;
            r.status = RoundStatus.Shares;
            r.sharesDeadline = sharesDeadline;
            r.seed = seed;
            emit RoundStarted(taskId, round, seed, sharesDeadline);
            return;
        }
        uint48 deadline = uint48(block.timestamp) + task.config.updateDuration;
        r.status = RoundStatus.Update;
        r.updateDeadline = deadline;
        r.seed = seed;
        emit RoundStarted(taskId, round, seed, deadline);
    }

    function _freeze(uint256 taskId, Task storage task, uint256 round, Round storage r) private {
        uint32 n = r.contributors;
        if (n < task.config.minContributors) {
            _failRound(taskId, task, round, r, FailureReason.TooFewContributors);
            return;
        }
        if (task.config.secureAggregation) {
            _startUnmask(taskId, task, round, r, n);
            return;
        }
        // The assignment key is this block's hash, which no transaction in this block can read: it
        // is known only once the block is sealed, after the contributor set is fixed.
        uint48 aggregationDeadline = uint48(block.timestamp) + task.config.aggregationDuration;
        r.status = RoundStatus.Aggregation;
        r.freezeBlock = uint48(block.number);
        r.aggregationDeadline = aggregationDeadline;
        emit UpdatePhaseClosed(taskId, round, n, r.totalSamples, aggregationDeadline);
    }

    /// @dev Secure aggregation: the key set U1 is final; the update phase opens for its members.
    function _closeShares(uint256 taskId, Task storage task, uint256 round, Round storage r) private {
        uint32 setups = r.setups;
        // Contributors come from U1 only, so fewer setups than minContributors cannot give a round.
        if (setups < task.config.minContributors) {
            _failRound(taskId, task, round, r, FailureReason.TooFewSetups);
            return;
        }
        // The key check window (unmaskDuration) comes first: updates are accepted after it.
        uint48 updateDeadline = uint48(block.timestamp) + task.config.unmaskDuration + task.config.updateDuration;
        r.status = RoundStatus.Update;
        r.updateDeadline = updateDeadline;
        emit SharesPhaseClosed(taskId, round, setups, updateDeadline);
    }

    /// @dev Secure aggregation: the contributor set U2 (`n` members) is frozen; the unmask phase opens.
    /// The assignment key is the freezing block's hash, as without secure aggregation. The
    /// aggregation deadline is set to the latest it can be (so the round reads as frozen);
    /// `_closeUnmask` moves it to the end of the unmask phase plus `aggregationDuration`.
    function _startUnmask(uint256 taskId, Task storage task, uint256 round, Round storage r, uint32 n) private {
        uint32 window = task.config.unmaskDuration;
        uint48 revealStart = uint48(block.timestamp) + window;
        uint48 unmaskDeadline = revealStart + window;
        r.status = RoundStatus.Unmask;
        r.freezeBlock = uint48(block.number);
        r.unmaskDeadline = unmaskDeadline;
        r.aggregationDeadline = unmaskDeadline + task.config.aggregationDuration;
        emit UnmaskPhaseStarted(taskId, round, n, r.totalSamples, revealStart, unmaskDeadline);
    }

    /// @dev Secure aggregation: the reveal set U3 is final. Fewer than t revealers cannot rebuild the
    /// masks: the round fails and the next starts; otherwise aggregation opens.
    function _closeUnmask(uint256 taskId, Task storage task, uint256 round, Round storage r) private {
        uint32 reveals = r.reveals;
        if (reveals < task.config.secaggThreshold) {
            _failRound(taskId, task, round, r, FailureReason.TooFewReveals);
            return;
        }
        uint48 aggregationDeadline = uint48(block.timestamp) + task.config.aggregationDuration;
        r.status = RoundStatus.Aggregation;
        r.aggregationDeadline = aggregationDeadline;
        emit UnmaskPhaseClosed(taskId, round, reveals, aggregationDeadline);
    }

    function _failRound(uint256 taskId, Task storage task, uint256 round, Round storage r, FailureReason reason)
        private
    {
        r.status = RoundStatus.Failed;
        r.failure = reason;
        emit RoundFailed(taskId, round, reason);
        _startRound(taskId, task, uint32(round + 1));
    }

    /// @dev Writes a partition's vote state of round `tag - 1` (one storage word).
    function _storeVotes(
        PartitionVotes storage part,
        uint32 tag,
        uint64 committedSlots,
        uint256 candidateAssigned,
        uint256 candidateVotes,
        bool isFinal
    ) private {
        part.round = tag;
        part.committedSlots = committedSlots;
        part.candidateAssigned = uint32(candidateAssigned);
        part.candidateVotes = uint32(candidateVotes);
        part.isFinal = isFinal;
    }

    function _checkAggregate(Task storage task, uint256 partition, bytes32 digest) private view {
        uint256 partitions = task.config.partitions;
        if (partition >= partitions) revert FLCoordinatorPartitionOutOfRange(partition, partitions);
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();
    }

    /// @dev Only the round's non-excluded contributors aggregate: members who did not contribute have
    /// no vote. Returns the caller's ring position under `key`.
    function _voterPosition(uint256 taskId, Task storage task, uint256 round, Round storage r, bytes32 key)
        private
        view
        returns (uint256)
    {
        Participant storage participant = _requireVoter(taskId, task, round, r);
        return assignmentPosition(key, participant.index, r.contributors);
    }

    /// @dev `partition` and `digest` passed `_checkAggregate`; the caller passed `_voterPosition`,
    /// which gave `position`.
    function _commitAggregate(
        uint256 taskId,
        Task storage task,
        uint256 round,
        Round storage r,
        uint256 position,
        uint256 partition,
        bytes32 digest
    ) private {
        uint256 partitions = task.config.partitions;
        PartitionVotes storage part = _partitionVotes[taskId][partition];
        // The stored state counts only if it is this round's; an earlier round's reads as empty, so
        // no stale candidate, vote, committed slot or finality ever carries into this round.
        uint32 tag = uint32(round + 1);
        uint32 stateRound = part.round;
        bool current = stateRound == tag;
        if (!current && stateRound != 0 && !part.isFinal) {
            // An earlier round left a candidate that never became final: delete it, so that the
            // earlier round's digest reads non-zero only where final once its state is gone.
            delete _rounds[taskId][stateRound - 1].digests[partition];
        }
        bytes32 candidate = current ? r.digests[partition] : bytes32(0);
        uint64 committedSlots = current ? part.committedSlots : 0;
        uint256 candidateAssigned = current ? part.candidateAssigned : 0;
        uint256 candidateVotes = current ? part.candidateVotes : 0;
        bool isFinal = current && part.isFinal;

        (bool assigned, uint256 slot) = _slot(task, r.contributors, partition, position);
        if (assigned) {
            if (committedSlots & (uint64(1) << slot) != 0) {
                revert FLCoordinatorAggregateAlreadyCommitted(taskId, round, partition, msg.sender);
            }
            committedSlots |= uint64(1) << slot;
        } else {
            if (block.timestamp < r.aggregationDeadline) {
                revert FLCoordinatorNotAssigned(taskId, round, partition, msg.sender);
            }
            if (r.fallbackCommitted[partition][msg.sender]) {
                revert FLCoordinatorAggregateAlreadyCommitted(taskId, round, partition, msg.sender);
            }
            r.fallbackCommitted[partition][msg.sender] = true;
        }
        emit AggregateCommitted(taskId, round, partition, msg.sender, digest, !assigned);

        // The first digest is stored as the candidate and counted in the partition's own state, so the
        // common case (every aggregator agrees) writes no vote mapping at all.
        bytes32 stored = candidate;
        uint256 assignedVotes;
        uint256 votes;
        uint256 addAssigned = assigned ? 1 : 0;
        if (candidate == bytes32(0) || digest == candidate) {
            if (candidate == bytes32(0)) {
                r.digests[partition] = digest;
                stored = digest;
            }
            assignedVotes = candidateAssigned + addAssigned;
            votes = candidateVotes + 1;
            candidateAssigned = assignedVotes;
            candidateVotes = votes;
        } else {
            uint256 packed = r.otherVotes[partition][digest];
            assignedVotes = (packed >> 128) + addAssigned;
            votes = (packed & type(uint128).max) + 1;
            r.otherVotes[partition][digest] = (assignedVotes << 128) | votes;
        }
        if (isFinal) {
            // Late commit for a final partition: counted, and recorded when it contradicts the result.
            _storeVotes(part, tag, committedSlots, candidateAssigned, candidateVotes, true);
            if (digest != stored) emit AggregateDisputed(taskId, round, partition, msg.sender, digest, stored);
            return;
        }
        bool quorum = assignedVotes >= task.config.quorum;
        bool majority = block.timestamp >= r.aggregationDeadline && _isMajority(votes, r.contributors);
        if (!quorum && !majority) {
            _storeVotes(part, tag, committedSlots, candidateAssigned, candidateVotes, false);
            return;
        }

        if (digest != candidate && candidate != bytes32(0)) {
            // keep getVotes exact: the old candidate moves to the map, the final digest takes its place
            r.otherVotes[partition][candidate] = (candidateAssigned << 128) | candidateVotes;
            delete r.otherVotes[partition][digest];
            r.digests[partition] = digest;
            candidateAssigned = assignedVotes;
            candidateVotes = votes;
        }
        _storeVotes(part, tag, committedSlots, candidateAssigned, candidateVotes, true);
        uint32 finalized = r.finalizedPartitions + 1;
        r.finalizedPartitions = finalized;
        emit PartitionFinalized(taskId, round, partition, digest);
        if (finalized < partitions) return;

        TaskState storage state = task.state;
        r.status = RoundStatus.Finalized;
        r.finalizedAt = uint48(block.timestamp);
        r.previousFinal = state.finalizedRounds == 0 ? 0 : state.latestFinalizedRound + 1;
        state.finalizedRounds += 1;
        state.latestFinalizedRound = uint32(round);
        emit RoundFinalized(taskId, round);
        if (state.finalizedRounds == task.config.rounds) {
            state.status = TaskStatus.Completed;
            emit TaskCompleted(taskId);
        } else {
            _startRound(taskId, task, uint32(round + 1));
        }
    }
}
