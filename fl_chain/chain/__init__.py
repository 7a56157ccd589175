"""Chain access: backends, signed transactions, and the typed FLCoordinator client."""

from fl_chain.chain.artifacts import Artifact, load_artifact
from fl_chain.chain.backends import BACKENDS, Chain, connect, open_chain
from fl_chain.chain.client import ChainClient, RevertDecoder
from fl_chain.chain.coordinator import (
    AggregateCommit,
    Coordinator,
    FailureReason,
    ParticipantInfo,
    RevealCommit,
    RoundInfo,
    RoundStatus,
    SecureAggregationConfig,
    SecureMember,
    SetupCommit,
    TaskConfig,
    TaskState,
    TaskStatus,
    UpdateCommit,
)
from fl_chain.chain.keys import DEV_MNEMONIC, dev_account, dev_accounts, load_key

__all__ = [
    "BACKENDS",
    "DEV_MNEMONIC",
    "AggregateCommit",
    "Artifact",
    "Chain",
    "ChainClient",
    "Coordinator",
    "FailureReason",
    "ParticipantInfo",
    "RevealCommit",
    "RevertDecoder",
    "RoundInfo",
    "RoundStatus",
    "SecureAggregationConfig",
    "SecureMember",
    "SetupCommit",
    "TaskConfig",
    "TaskState",
    "TaskStatus",
    "UpdateCommit",
    "connect",
    "dev_account",
    "dev_accounts",
    "load_artifact",
    "load_key",
    "open_chain",
]
