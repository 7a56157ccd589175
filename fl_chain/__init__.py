"""fl-chain: aggregator-free federated learning coordinated by an Ethereum contract."""

__version__ = "0.1.0"
