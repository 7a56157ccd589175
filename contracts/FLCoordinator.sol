// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title FLCoordinator
/// @notice Coordinates aggregator-free federated learning rounds. The contract never holds model
/// weights: participants commit 32-byte digests of update manifests stored in IPFS, assigned
/// aggregators commit digests of averaged partitions, and a partition is final once `quorum`
/// aggregators committed the same digest.
/// @dev Gas per participant per round is O(1). Update digests and sample counts are emitted in
/// `UpdateCommitted` events (the contributor set of a round is exactly the events of that round);
/// storage keeps only what the contract needs to enforce its rules and the final digests.
///
/// Round lifecycle (all times are `block.timestamp`):
///   Update      [start, updateDeadline)       contributors commit updates; ends early when every
///                                             joined participant committed.
///   freeze      contributor set is frozen; if fewer than `minContributors` committed the round
///               fails and the next round starts (retry).
///   Aggregation [freeze, aggregationDeadline) only assigned aggregators commit.
///   Fallback    [aggregationDeadline, fallbackDeadline) any joined participant may commit for a
///               partition without quorum, and report a contributor whose committed update it
///               cannot fetch; `quorum` such reports exclude that update from the round (so one
///               participant that commits digests of content nobody has cannot stall a task).
///   after fallbackDeadline an unfinished round fails on `advance` and the next round starts.
/// A round number is never reused: a retry is a new round started from the last final model.
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
        bool openAdmission; // anyone may join, not only accounts admitted by the operator
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
        Failed
    }

    enum FailureReason {
        None,
        TooFewContributors,
        AggregationTimedOut,
        TaskCancelled
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
        TaskConfig config;
        TaskState state;
        address[] participants;
    }

    struct Participant {
        bool joined;
        uint32 index; // contributor index in the round `updateRound - 1`
        uint32 updateRound; // round + 1 of the last update commit, 0 if none
        uint64 samples; // sample count of the last update commit
        string[] multiaddrs;
        bytes publicKey;
    }

    struct Partition {
        bytes32 digest; // the first digest committed (the candidate) until final, then the final digest
        uint64 committedSlots; // bit j set once assigned slot j committed
        uint16 candidateVotes; // commits that matched `digest`
        bool isFinal;
    }

    struct Round {
        RoundStatus status;
        uint64 startTime;
        uint64 updateDeadline;
        uint64 aggregationDeadline; // set when the contributor set freezes
        uint32 contributors;
        uint32 assignmentOffset; // set when the contributor set freezes
        uint32 finalizedPartitions;
        FailureReason failure;
        uint128 totalSamples;
        bytes32 seed;
        mapping(uint256 partition => Partition) partitions;
        // Votes for digests other than the partition's candidate (only used when aggregators disagree).
        mapping(uint256 partition => mapping(bytes32 digest => uint256 count)) otherVotes;
        mapping(uint256 partition => mapping(address aggregator => bool)) fallbackCommitted;
        // Contributions reported unavailable in the fallback phase; `quorum` reports exclude one.
        address[] excluded;
        mapping(address contributor => uint256 reports) unavailableReports;
        mapping(address contributor => mapping(address reporter => bool)) hasReported;
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
        uint32 assignmentOffset;
        uint32 finalizedPartitions;
        uint128 totalSamples;
        bytes32 seed;
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
    error FLCoordinatorUnauthorizedOperator(address account);
    /// @dev The new operator is the zero address.
    error FLCoordinatorInvalidOperator(address operator);
    /// @dev `account` is not admitted and the task is not open to everyone.
    error FLCoordinatorNotAdmitted(uint256 taskId, address account);
    /// @dev The partition count must be at least 1.
    error FLCoordinatorInvalidPartitions(uint256 partitions);
    /// @dev Replication must be in [1, MAX_REPLICATION].
    error FLCoordinatorInvalidReplication(uint256 replication);
    /// @dev Quorum must satisfy replication / 2 < quorum <= replication.
    error FLCoordinatorInvalidQuorum(uint256 quorum, uint256 replication);
    /// @dev The minimum number of contributors must be at least the quorum.
    error FLCoordinatorInvalidMinContributors(uint256 minContributors, uint256 quorum);
    /// @dev Phase durations must be at least one second.
    error FLCoordinatorInvalidDuration(uint256 updateDuration, uint256 aggregationDuration);
    /// @dev A task needs at least one round.
    error FLCoordinatorInvalidRounds(uint256 rounds);
    /// @dev No task with this id.
    error FLCoordinatorUnknownTask(uint256 taskId);
    /// @dev The task is not in the status this call needs.
    error FLCoordinatorWrongTaskStatus(uint256 taskId, TaskStatus status);
    /// @dev `account` already joined the task.
    error FLCoordinatorAlreadyJoined(uint256 taskId, address account);
    /// @dev `account` has not joined the task.
    error FLCoordinatorNotJoined(uint256 taskId, address account);
    /// @dev A participant must register at least one IPFS multiaddr.
    error FLCoordinatorNoMultiaddrs();
    /// @dev Starting needs at least `required` joined participants.
    error FLCoordinatorNotEnoughParticipants(uint256 taskId, uint256 joined, uint256 required);
    /// @dev The call names `round` but the task is at `currentRound`.
    error FLCoordinatorRoundNotCurrent(uint256 taskId, uint256 round, uint256 currentRound);
    /// @dev The update phase of the round has ended (deadline passed or set frozen).
    error FLCoordinatorUpdatePhaseClosed(uint256 taskId, uint256 round);
    /// @dev `account` already committed an update in this round.
    error FLCoordinatorUpdateAlreadyCommitted(uint256 taskId, uint256 round, address account);
    /// @dev Digests must be non-zero.
    error FLCoordinatorZeroDigest();
    /// @dev An update must report at least one sample.
    error FLCoordinatorZeroSamples();
    /// @dev Aggregates are accepted only once the contributor set is frozen.
    error FLCoordinatorAggregationNotOpen(uint256 taskId, uint256 round);
    /// @dev The round passed its fallback deadline; call `advance` to retry it.
    error FLCoordinatorRoundExpired(uint256 taskId, uint256 round);
    /// @dev `partition` is not below the task's partition count.
    error FLCoordinatorPartitionOutOfRange(uint256 partition, uint256 partitions);
    /// @dev Before the aggregation deadline only assigned aggregators commit.
    error FLCoordinatorNotAssigned(uint256 taskId, uint256 round, uint256 partition, address account);
    /// @dev `account` already committed an aggregate for this partition.
    error FLCoordinatorAggregateAlreadyCommitted(
        uint256 taskId, uint256 round, uint256 partition, address account
    );
    /// @dev Batch arrays differ in length.
    error FLCoordinatorLengthMismatch(uint256 partitions, uint256 digests);
    /// @dev No deadline has passed that `advance` could act on.
    error FLCoordinatorNothingToAdvance(uint256 taskId, uint256 round);
    /// @dev Unavailability is reported only in the fallback phase, after the aggregation deadline.
    error FLCoordinatorReportTooEarly(uint256 taskId, uint256 round);
    /// @dev `account` committed no update in `round`, so there is nothing of it to report.
    error FLCoordinatorNotAContributor(uint256 taskId, uint256 round, address account);
    /// @dev A participant cannot report its own update.
    error FLCoordinatorSelfReport(uint256 taskId, address account);
    /// @dev `reporter` already reported `contributor` in this round.
    error FLCoordinatorAlreadyReported(uint256 taskId, uint256 round, address contributor, address reporter);
    /// @dev `contributor`'s update is already excluded from this round.
    error FLCoordinatorAlreadyExcluded(uint256 taskId, uint256 round, address contributor);

    // ---------------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------------

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
    /// @notice `account` replaced its IPFS peer addresses for `taskId`.
    event PeerUpdated(uint256 indexed taskId, address indexed account, string[] multiaddrs);
    /// @notice The task started its first round.
    event TaskStarted(uint256 indexed taskId);
    /// @notice A round began; updates are accepted until `updateDeadline`.
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
        uint32 assignmentOffset,
        uint64 aggregationDeadline
    );
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
    /// @notice `quorum` aggregators agreed on `digest` for `partition`.
    event PartitionFinalized(uint256 indexed taskId, uint256 indexed round, uint256 indexed partition, bytes32 digest);
    /// @notice Every partition of the round is final: the round's global model is fixed.
    event RoundFinalized(uint256 indexed taskId, uint256 indexed round);
    /// @notice `reporter` could not fetch the update `contributor` committed in `round`.
    event UnavailabilityReported(
        uint256 indexed taskId, uint256 indexed round, address indexed contributor, address reporter, uint256 reports
    );
    /// @notice `quorum` participants reported `contributor`'s update unavailable: aggregates of the
    /// partitions not yet final leave it out.
    event ContributionExcluded(uint256 indexed taskId, uint256 indexed round, address indexed contributor);
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

    address private _operator;
    uint256 private _taskCount;
    mapping(address account => bool) private _admitted;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address account => Participant)) private _participants;
    mapping(uint256 taskId => mapping(uint256 round => Round)) private _rounds;

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

    /// @notice Hands the operator role to `newOperator`.
    /// @param newOperator The account that will admit participants and create tasks.
    function transferOperator(address newOperator) external onlyOperator {
        if (newOperator == address(0)) revert FLCoordinatorInvalidOperator(newOperator);
        address previous = _operator;
        _operator = newOperator;
        emit OperatorTransferred(previous, newOperator);
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
        taskId = ++_taskCount;
        Task storage task = _tasks[taskId];
        task.config = config;
        task.state.status = TaskStatus.Open;
        task.state.creator = msg.sender;
        emit TaskCreated(taskId, msg.sender, config);
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
            if (round.status == RoundStatus.Update || round.status == RoundStatus.Aggregation) {
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
    /// @param multiaddrs The node's IPFS multiaddrs, including its /p2p/ peer id.
    /// @param publicKey Optional public key for later key agreement (may be empty).
    function join(uint256 taskId, string[] calldata multiaddrs, bytes calldata publicKey) external {
        Task storage task = _task(taskId);
        TaskStatus status = task.state.status;
        if (status != TaskStatus.Open && status != TaskStatus.Running) {
            revert FLCoordinatorWrongTaskStatus(taskId, status);
        }
        if (!task.config.openAdmission && !_admitted[msg.sender]) revert FLCoordinatorNotAdmitted(taskId, msg.sender);
        Participant storage participant = _participants[taskId][msg.sender];
        if (participant.joined) revert FLCoordinatorAlreadyJoined(taskId, msg.sender);
        if (multiaddrs.length == 0) revert FLCoordinatorNoMultiaddrs();
        participant.joined = true;
        participant.multiaddrs = multiaddrs;
        participant.publicKey = publicKey;
        task.participants.push(msg.sender);
        task.state.participantCount += 1;
        emit ParticipantJoined(taskId, msg.sender, multiaddrs);
    }

    /// @notice Replaces this node's registered IPFS peer addresses (after a restart on a new port).
    /// @param taskId The task joined earlier.
    /// @param multiaddrs The new multiaddrs.
    function updatePeer(uint256 taskId, string[] calldata multiaddrs) external {
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        if (multiaddrs.length == 0) revert FLCoordinatorNoMultiaddrs();
        participant.multiaddrs = multiaddrs;
        emit PeerUpdated(taskId, msg.sender, multiaddrs);
    }

    // ---------------------------------------------------------------------------------------------
    // Rounds
    // ---------------------------------------------------------------------------------------------

    /// @notice Commits this node's update for `round`: the digest of its update manifest.
    /// @param taskId The running task.
    /// @param round Must be the current round (guards against a commit landing in a later round).
    /// @param digest sha2-256 digest of the update manifest CID.
    /// @param samples Number of local training samples (the FedAvg weight).
    function commitUpdate(uint256 taskId, uint256 round, bytes32 digest, uint64 samples) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _currentRound(taskId, task, round);
        if (r.status != RoundStatus.Update || block.timestamp >= r.updateDeadline) {
            revert FLCoordinatorUpdatePhaseClosed(taskId, round);
        }
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        _requireAdmitted(taskId, task);
        if (participant.updateRound == round + 1) revert FLCoordinatorUpdateAlreadyCommitted(taskId, round, msg.sender);
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();
        if (samples == 0) revert FLCoordinatorZeroSamples();

        uint32 index = r.contributors;
        participant.updateRound = uint32(round + 1);
        participant.index = index;
        participant.samples = samples;
        r.contributors = index + 1;
        r.totalSamples += samples;
        emit UpdateCommitted(taskId, round, msg.sender, index, digest, samples);

        // Completion: every joined participant committed, so the phase ends before its deadline.
        if (index + 1 == task.state.participantCount) _freeze(taskId, task, round, r);
    }

    /// @notice Commits this node's aggregate digest for one partition of `round`.
    /// @param taskId The running task.
    /// @param round The current round, whose contributor set is frozen.
    /// @param partition The partition index.
    /// @param digest sha2-256 digest of the aggregated partition blob CID.
    function commitAggregate(uint256 taskId, uint256 round, uint256 partition, bytes32 digest) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _aggregationRound(taskId, task, round);
        _commitAggregate(taskId, task, round, r, partition, digest);
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
        for (uint256 i = 0; i < digests.length; ++i) {
            _commitAggregate(taskId, task, round, r, partitionIndices[i], digests[i]);
            // The last commit may have finalized the round; later entries would be stale.
            if (r.status != RoundStatus.Aggregation) break;
        }
    }

    /// @notice Reports that `contributor`'s committed update of `round` could not be fetched.
    /// Once `quorum` distinct participants reported it, the update is excluded: every aggregate of a
    /// partition not yet final leaves it out (partitions already final keep it, since a quorum could
    /// fetch it). If the remaining contributors are fewer than `minContributors`, the round fails.
    /// @dev Only in the fallback phase: the assigned phase gives a slow peer time to serve its update.
    /// Fewer than `quorum` colluding participants cannot exclude anyone.
    /// @param taskId The running task.
    /// @param round The current round, in its fallback phase.
    /// @param contributor A contributor of `round` other than the caller.
    function reportUnavailable(uint256 taskId, uint256 round, address contributor) external {
        Task storage task = _runningTask(taskId);
        Round storage r = _aggregationRound(taskId, task, round);
        if (block.timestamp < r.aggregationDeadline) revert FLCoordinatorReportTooEarly(taskId, round);
        _requireAdmitted(taskId, task);
        _joinedParticipant(taskId, msg.sender);
        if (contributor == msg.sender) revert FLCoordinatorSelfReport(taskId, msg.sender);
        if (_participants[taskId][contributor].updateRound != round + 1) {
            revert FLCoordinatorNotAContributor(taskId, round, contributor);
        }
        uint256 reports = r.unavailableReports[contributor];
        if (reports >= task.config.quorum) revert FLCoordinatorAlreadyExcluded(taskId, round, contributor);
        if (r.hasReported[contributor][msg.sender]) {
            revert FLCoordinatorAlreadyReported(taskId, round, contributor, msg.sender);
        }
        r.hasReported[contributor][msg.sender] = true;
        reports += 1;
        r.unavailableReports[contributor] = reports;
        emit UnavailabilityReported(taskId, round, contributor, msg.sender, reports);
        if (reports < task.config.quorum) return;

        r.excluded.push(contributor);
        emit ContributionExcluded(taskId, round, contributor);
        if (r.contributors - r.excluded.length < task.config.minContributors) {
            _failRound(taskId, task, round, r, FailureReason.TooFewContributors);
        }
    }

    /// @notice Moves the current round past a deadline: freezes the contributor set after the
    /// update deadline, or fails an unfinished round after the fallback deadline and starts the
    /// next one. Anyone may call it.
    /// @param taskId The running task.
    function advance(uint256 taskId) external {
        Task storage task = _runningTask(taskId);
        uint32 current = task.state.currentRound;
        Round storage r = _rounds[taskId][current];
        if (r.status == RoundStatus.Update && block.timestamp >= r.updateDeadline) {
            _freeze(taskId, task, current, r);
        } else if (r.status == RoundStatus.Aggregation && block.timestamp >= _fallbackDeadline(task, r)) {
            _failRound(taskId, task, current, r, FailureReason.AggregationTimedOut);
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

    /// @notice Number of tasks created; ids run from 1 to this.
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice Whether `account` is admitted to the consortium.
    function isAdmitted(address account) external view returns (bool) {
        return _admitted[account];
    }

    /// @notice A task's configuration and state.
    function getTask(uint256 taskId) external view returns (TaskConfig memory config, TaskState memory state) {
        Task storage task = _task(taskId);
        return (task.config, task.state);
    }

    /// @notice Every participant of `taskId` with its peer addresses and last update commit.
    function getParticipants(uint256 taskId) external view returns (ParticipantView[] memory views) {
        Task storage task = _task(taskId);
        uint256 count = task.participants.length;
        views = new ParticipantView[](count);
        for (uint256 i = 0; i < count; ++i) {
            address account = task.participants[i];
            Participant storage p = _participants[taskId][account];
            views[i] = ParticipantView(account, p.updateRound, p.index, p.samples, p.multiaddrs, p.publicKey);
        }
    }

    /// @notice Whether `account` joined `taskId`.
    function hasJoined(uint256 taskId, address account) external view returns (bool) {
        return _participants[taskId][account].joined;
    }

    /// @notice One round's state, deadlines and seed.
    function getRound(uint256 taskId, uint256 round) external view returns (RoundView memory) {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        return RoundView({
            round: uint32(round),
            status: r.status,
            failure: r.failure,
            startTime: r.startTime,
            updateDeadline: r.updateDeadline,
            aggregationDeadline: r.aggregationDeadline,
            fallbackDeadline: _fallbackDeadline(task, r),
            contributors: r.contributors,
            assignmentOffset: r.assignmentOffset,
            finalizedPartitions: r.finalizedPartitions,
            totalSamples: r.totalSamples,
            seed: r.seed
        });
    }

    /// @notice The final digest of every partition of `round` (zero where not final yet).
    function getFinalDigests(uint256 taskId, uint256 round) external view returns (bytes32[] memory digests) {
        Task storage task = _task(taskId);
        uint256 partitions = task.config.partitions;
        digests = new bytes32[](partitions);
        for (uint256 p = 0; p < partitions; ++p) {
            Partition storage part = _rounds[taskId][round].partitions[p];
            if (part.isFinal) digests[p] = part.digest;
        }
    }

    /// @notice The contributors of `round` whose updates are excluded as unavailable, in order of exclusion.
    function getExcluded(uint256 taskId, uint256 round) external view returns (address[] memory) {
        _task(taskId);
        return _rounds[taskId][round].excluded;
    }

    /// @notice How many aggregators committed `digest` for `partition` of `round`.
    function getVotes(uint256 taskId, uint256 round, uint256 partition, bytes32 digest)
        external
        view
        returns (uint256)
    {
        Round storage r = _rounds[taskId][round];
        Partition storage part = r.partitions[partition];
        if (digest != bytes32(0) && digest == part.digest) return part.candidateVotes;
        return r.otherVotes[partition][digest];
    }

    /// @notice Whether `account` is an assigned aggregator of `partition` in `round`.
    /// @dev Answers for the account's latest committed round only (its index is overwritten by its next
    /// commit); for earlier rounds use the `UpdateCommitted` index with the round's assignment offset.
    function isAssigned(uint256 taskId, uint256 round, uint256 partition, address account)
        external
        view
        returns (bool)
    {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        Participant storage participant = _participants[taskId][account];
        if (r.aggregationDeadline == 0 || participant.updateRound != round + 1) return false;
        if (partition >= task.config.partitions) return false;
        (bool assigned,) = _slot(task, r, partition, participant.index);
        return assigned;
    }

    /// @notice The partitions `account` must aggregate in `round` (empty before the set freezes).
    /// @dev Answers for the account's latest committed round only, like `isAssigned`.
    function getAssignedPartitions(uint256 taskId, uint256 round, address account)
        external
        view
        returns (uint256[] memory assigned)
    {
        Task storage task = _task(taskId);
        Round storage r = _rounds[taskId][round];
        Participant storage participant = _participants[taskId][account];
        if (r.aggregationDeadline == 0 || participant.updateRound != round + 1) return new uint256[](0);
        uint256 partitions = task.config.partitions;
        uint256[] memory buffer = new uint256[](partitions);
        uint256 count = 0;
        for (uint256 p = 0; p < partitions; ++p) {
            (bool ok,) = _slot(task, r, p, participant.index);
            if (ok) buffer[count++] = p;
        }
        assigned = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            assigned[i] = buffer[i];
        }
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
        if (c.updateDuration == 0 || c.aggregationDuration == 0) {
            revert FLCoordinatorInvalidDuration(c.updateDuration, c.aggregationDuration);
        }
        if (c.rounds == 0) revert FLCoordinatorInvalidRounds(c.rounds);
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

    function _fallbackDeadline(Task storage task, Round storage r) private view returns (uint64) {
        if (r.aggregationDeadline == 0) return 0;
        return r.aggregationDeadline + task.config.aggregationDuration;
    }

    /// @dev Assignment: contributors are placed on a ring by their commit index rotated by the
    /// offset drawn at freeze time; partition p takes the r ring positions starting at p*r.
    /// Returns whether contributor `index` is assigned to `partition` and its slot j in [0, r).
    function _slot(Task storage task, Round storage r, uint256 partition, uint256 index)
        private
        view
        returns (bool assigned, uint256 slot)
    {
        uint256 n = r.contributors;
        uint256 replication = task.config.replication;
        if (replication > n) replication = n;
        uint256 position = (index + n - r.assignmentOffset) % n;
        slot = (position + n - (partition * task.config.replication) % n) % n;
        assigned = slot < replication;
    }

    function _startRound(uint256 taskId, Task storage task, uint32 round) private {
        task.state.currentRound = round;
        Round storage r = _rounds[taskId][round];
        bytes32 seed = keccak256(abi.encode(blockhash(block.number - 1), block.chainid, address(this), taskId, round));
        uint64 deadline = uint64(block.timestamp) + task.config.updateDuration;
        r.status = RoundStatus.Update;
        r.startTime = uint64(block.timestamp);
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
        // The offset is drawn only now, so a contributor cannot pick its assignment by timing its commit.
        uint32 offset = uint32(uint256(keccak256(abi.encode(r.seed, blockhash(block.number - 1)))) % n);
        uint64 aggregationDeadline = uint64(block.timestamp) + task.config.aggregationDuration;
        r.status = RoundStatus.Aggregation;
        r.assignmentOffset = offset;
        r.aggregationDeadline = aggregationDeadline;
        emit UpdatePhaseClosed(taskId, round, n, r.totalSamples, offset, aggregationDeadline);
    }

    function _failRound(uint256 taskId, Task storage task, uint256 round, Round storage r, FailureReason reason)
        private
    {
        r.status = RoundStatus.Failed;
        r.failure = reason;
        emit RoundFailed(taskId, round, reason);
        _startRound(taskId, task, uint32(round + 1));
    }

    function _commitAggregate(
        uint256 taskId,
        Task storage task,
        uint256 round,
        Round storage r,
        uint256 partition,
        bytes32 digest
    ) private {
        uint256 partitions = task.config.partitions;
        if (partition >= partitions) revert FLCoordinatorPartitionOutOfRange(partition, partitions);
        if (digest == bytes32(0)) revert FLCoordinatorZeroDigest();
        _requireAdmitted(taskId, task);
        Participant storage participant = _joinedParticipant(taskId, msg.sender);
        Partition storage part = r.partitions[partition];

        bool assigned = false;
        uint256 slot = 0;
        if (participant.updateRound == round + 1) (assigned, slot) = _slot(task, r, partition, participant.index);
        bool fallbackCommit = !assigned;
        if (assigned) {
            if (part.committedSlots & (uint64(1) << slot) != 0) {
                revert FLCoordinatorAggregateAlreadyCommitted(taskId, round, partition, msg.sender);
            }
            part.committedSlots |= uint64(1) << slot;
        } else {
            if (block.timestamp < r.aggregationDeadline) {
                revert FLCoordinatorNotAssigned(taskId, round, partition, msg.sender);
            }
            if (r.fallbackCommitted[partition][msg.sender]) {
                revert FLCoordinatorAggregateAlreadyCommitted(taskId, round, partition, msg.sender);
            }
            r.fallbackCommitted[partition][msg.sender] = true;
        }
        emit AggregateCommitted(taskId, round, partition, msg.sender, digest, fallbackCommit);

        // The first digest is stored as the candidate and counted in the partition's own slot, so the
        // common case (every aggregator agrees) writes no vote mapping at all.
        bytes32 candidate = part.digest;
        uint256 votes;
        if (candidate == bytes32(0)) {
            part.digest = digest;
            part.candidateVotes = 1;
            votes = 1;
        } else if (digest == candidate) {
            votes = part.candidateVotes + 1;
            part.candidateVotes = uint16(votes);
        } else {
            votes = r.otherVotes[partition][digest] + 1;
            r.otherVotes[partition][digest] = votes;
        }
        if (part.isFinal) {
            // Late commit for a final partition: counted, and recorded when it contradicts the result.
            if (digest != candidate) emit AggregateDisputed(taskId, round, partition, msg.sender, digest, candidate);
            return;
        }
        if (votes < task.config.quorum) return;

        part.isFinal = true;
        if (digest != candidate && candidate != bytes32(0)) {
            r.otherVotes[partition][candidate] = part.candidateVotes; // keep getVotes exact
            part.digest = digest;
            part.candidateVotes = uint16(votes);
        }
        uint32 finalized = r.finalizedPartitions + 1;
        r.finalizedPartitions = finalized;
        emit PartitionFinalized(taskId, round, partition, digest);
        if (finalized < partitions) return;

        r.status = RoundStatus.Finalized;
        task.state.finalizedRounds += 1;
        task.state.latestFinalizedRound = uint32(round);
        emit RoundFinalized(taskId, round);
        if (task.state.finalizedRounds == task.config.rounds) {
            task.state.status = TaskStatus.Completed;
            emit TaskCompleted(taskId);
        } else {
            _startRound(taskId, task, uint32(round + 1));
        }
    }
}
