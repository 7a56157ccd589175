"""Privacy: secure aggregation (masked fixed-point updates, key agreement, Shamir shares) and differential privacy.

Pure functions over numpy arrays and bytes; nothing here touches the chain, storage or the network.
It sits below ``aggregation`` so that the contribution rule can unmask and add noise.
"""
