"""The exceptions of fl-chain: one root, one branch per area.

::

    FLChainError                      every error fl-chain raises on purpose
    ├── ConfigError                   bad user input: options, files, task specs
    │   ├── KeyFileError              key file or keystore missing, malformed, wrong password
    │   ├── NumPyClientError          a user's NumPyClient broke its contract (arrays, counts, returns)
    │   ├── RingOverflowError         a value or a sum the fixed-point ring of secure aggregation cannot hold
    │   └── NotFoundError             a task, round or participant the chain does not have
    ├── CompilerError                 the pinned Solidity compiler is missing or failed
    ├── AggregationError              contributions that cannot be aggregated (none, mismatched, bad values)
    ├── ChainError                    anything between us and an Ethereum node
    │   ├── ChainUnreachableError     no JSON-RPC answer at the URL
    │   ├── ChainLaunchError          a local chain process (ganache, anvil) did not start
    │   ├── ContractNotFoundError     no FLCoordinator at the address, or a different contract
    │   ├── InsufficientFundsError    the sending account cannot pay for gas
    │   ├── TransactionFailedError    a transaction was mined but reverted, or timed out
    │   └── ContractRevertError       the contract rejected the call with a custom error
    ├── StorageError                  anything between us and the content-addressed store
    │   ├── StorageStartError         an IPFS peer could not start (port in use, bad repo)
    │   ├── BlobNotFoundError         no connected peer delivered the CID within the timeout
    │   └── BlobInvalidError          bytes that do not verify: never used
    │       ├── BlobIntegrityError    content does not hash to its CID or its payload hash
    │       ├── BlobFormatError       truncated, unknown version or dtype, malformed header
    │       ├── BlobMismatchError     a valid blob, but not the one the chain says (task, round, ...)
    │       └── BlobTooLargeError     content larger than the bound its use allows (not read past it)
    ├── PrivacyError                  secure-aggregation material from a peer that cannot be used
    │   ├── InvalidPublicKeyError     a public key of the wrong size, of low order, or not on its curve
    │   ├── InvalidCommitmentError    a Feldman commitment (secp256k1 point) that does not parse
    │   ├── InvalidShareError         a secret share that does not decrypt, parse or verify
    │   └── NotEnoughSharesError      fewer distinct shares than the threshold: the secret stays hidden
    ├── ExportCheckError              an exported model, loaded back, predicts unlike the torch model it came from
    ├── FederationStalledError        the nodes of an in-process federation (simulate) stopped making progress
    └── NodeStopError                 a node process ignored SIGTERM and had to be killed

Each message is one line that says what to fix; the CLI prints it and exits non-zero.
``ValueError`` is left to programming errors in pure code (a caller passing arguments no user input
can produce), as numpy and the standard library do.
"""

from __future__ import annotations

from typing import Any


class FLChainError(Exception):
    """Root of every error fl-chain raises on purpose."""


class ConfigError(FLChainError):
    """Bad user input: a command-line option, a file or a task specification."""


class NotFoundError(ConfigError):
    """A task, round or participant asked for that the chain does not have (the dashboard answers 404)."""


class KeyFileError(ConfigError):
    """A key file or keystore is missing, malformed, or its password is wrong."""


class NumPyClientError(ConfigError):
    """A client broke the :class:`~fl_chain.training.NumPyClient` contract (wrong arrays, counts or return values)."""


class RingOverflowError(ConfigError):
    """A value or a sum the fixed-point ring of secure aggregation cannot hold: clip, or lower the scale."""


class CompilerError(FLChainError):
    """The pinned Solidity compiler is missing or rejected the sources."""


class AggregationError(FLChainError):
    """Contributions that cannot be aggregated: none, mismatched lengths, duplicates, bad values."""


class ChainError(FLChainError):
    """A failure talking to an Ethereum node or executing a transaction."""


class ChainUnreachableError(ChainError):
    """No JSON-RPC endpoint answered at the given URL."""


class ChainLaunchError(ChainError):
    """A local chain process (ganache or anvil) could not be started."""


class ContractNotFoundError(ChainError):
    """The address holds no FLCoordinator (no code, or different code)."""


class InsufficientFundsError(ChainError):
    """The sending account has not enough ether to pay for gas."""


class TransactionFailedError(ChainError):
    """A transaction reverted without a decodable error, or was not mined in time."""


class ContractRevertError(ChainError):
    """The contract rejected a call with one of its custom errors.

    Attributes
    ----------
    name:
        The custom error's name, for example ``FLCoordinatorNotAssigned``.
    args:
        The error's decoded arguments, by parameter name.
    """

    def __init__(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        self.name = name
        self.arguments: dict[str, Any] = dict(arguments or {})
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in self.arguments.items())
        super().__init__(f"contract rejected the call: {name}({rendered})")


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class StorageError(FLChainError):
    """A failure storing or fetching content-addressed blobs."""


class StorageStartError(StorageError):
    """An IPFS peer could not be started."""


class BlobNotFoundError(StorageError):
    """No connected peer delivered the requested CID within the timeout."""


class BlobInvalidError(StorageError):
    """Bytes that do not verify; they are never used."""


class BlobIntegrityError(BlobInvalidError):
    """Content does not hash to its CID, or a payload does not match its header's hash."""


class BlobFormatError(BlobInvalidError):
    """A blob is truncated or has an unknown version, dtype or malformed header."""


class BlobMismatchError(BlobInvalidError):
    """A well-formed blob whose header is not what the chain says it must be."""


class BlobTooLargeError(BlobInvalidError):
    """Content larger than the size bound known before it was fetched; the rest is never read.

    Content addressed, so every honest node sees the same size: invalid, not unavailable.
    """


class PrivacyError(FLChainError):
    """Secure-aggregation material (a key, a share) that cannot be used; it is never used."""


class InvalidPublicKeyError(PrivacyError):
    """A long-term X25519 public key that is not 32 bytes or of low order (all-zero shared secret), or a
    secp256k1 mask public key that is not a canonical compressed point of the curve."""


class InvalidCommitmentError(PrivacyError):
    """A Feldman commitment that is not a canonical compressed secp256k1 point, or a set of them of the
    wrong number."""


class InvalidShareError(PrivacyError):
    """A secret share that does not decrypt, parse, lie in range, or verify against its dealer's commitments."""


class NotEnoughSharesError(PrivacyError):
    """Fewer distinct shares than the threshold: the secret cannot be reconstructed."""


class ExportCheckError(FLChainError):
    """An exported model file, loaded back, does not predict what the torch model it was written from predicts."""


class FederationStalledError(FLChainError):
    """The nodes of a federation run in one process stopped making progress (no step changed anything)."""


class NodeStopError(FLChainError):
    """A node process did not exit on SIGTERM within its time and was killed (SIGKILL)."""
