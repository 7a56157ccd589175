"""fl-chain: aggregator-free federated learning coordinated by an Ethereum contract.

The names below are the public surface; everything else lives in the subpackages (``fl_chain.chain``,
``fl_chain.storage``, ...). ``import fl_chain`` loads only the exception tree: every other name is
imported on first use (PEP 562), so the chain client, kubo and torch load only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fl_chain.errors import ChainError, CompilerError, ConfigError, FLChainError, StorageError

if TYPE_CHECKING:
    from fl_chain.aggregation import CoordinateMedian, FedAvg, Strategy, TrimmedMean, get_strategy
    from fl_chain.chain import Coordinator
    from fl_chain.exchange.audit import RoundAudit, audit_round
    from fl_chain.federation.simulate import SimulationOptions, run_simulation
    from fl_chain.node.runtime import Node, NodeOptions
    from fl_chain.protocol.task import TaskConfig, TaskSpec
    from fl_chain.storage import MemoryStorage, Storage
    from fl_chain.storage.kubo import KuboStorage
    from fl_chain.training import NumPyClient

__version__ = "0.1.0"

#: Where each lazily imported public name lives.
_LAZY: dict[str, str] = {
    "CoordinateMedian": "fl_chain.aggregation",
    "Coordinator": "fl_chain.chain",
    "FedAvg": "fl_chain.aggregation",
    "KuboStorage": "fl_chain.storage.kubo",
    "MemoryStorage": "fl_chain.storage",
    "Node": "fl_chain.node.runtime",
    "NodeOptions": "fl_chain.node.runtime",
    "NumPyClient": "fl_chain.training",
    "RoundAudit": "fl_chain.exchange.audit",
    "SimulationOptions": "fl_chain.federation.simulate",
    "Storage": "fl_chain.storage",
    "Strategy": "fl_chain.aggregation",
    "TaskConfig": "fl_chain.protocol.task",
    "TaskSpec": "fl_chain.protocol.task",
    "TrimmedMean": "fl_chain.aggregation",
    "audit_round": "fl_chain.exchange.audit",
    "get_strategy": "fl_chain.aggregation",
    "run_simulation": "fl_chain.federation.simulate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ChainError",
    "CompilerError",
    "ConfigError",
    "CoordinateMedian",
    "Coordinator",
    "FLChainError",
    "FedAvg",
    "KuboStorage",
    "MemoryStorage",
    "Node",
    "NodeOptions",
    "NumPyClient",
    "RoundAudit",
    "SimulationOptions",
    "Storage",
    "StorageError",
    "Strategy",
    "TaskConfig",
    "TaskSpec",
    "TrimmedMean",
    "__version__",
    "audit_round",
    "get_strategy",
    "run_simulation",
]
