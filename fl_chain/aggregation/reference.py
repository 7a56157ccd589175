"""A plainly written second implementation of the canonical FedAvg formula, for cross-checks.

It shares no code with :class:`fl_chain.aggregation.FedAvg`: tests and auditors use it to
recompute a federation's global model from the updates and compare bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_chain.aggregation.base import AggregationError


def reference_fedavg(updates: Sequence[tuple[str, int, np.ndarray]]) -> np.ndarray:
    """FedAvg of whole update vectors by the canonical formula (see :class:`FedAvg`).

    Parameters
    ----------
    updates:
        ``(contributor address, samples, float32 vector)`` per contributor, in any order.

    Returns
    -------
    numpy.ndarray
        The float32 aggregate; equal byte for byte to concatenating ``FedAvg`` over any
        partitioning of the vectors.

    Raises
    ------
    AggregationError
        If there are no updates, an address repeats (case-insensitively), vectors differ in
        length, or a vector is not float32.
    """
    by_address: dict[str, tuple[int, np.ndarray]] = {}
    for address, samples, vector in updates:
        key = address.lower()
        if key in by_address:
            raise AggregationError(f"contributor {address} appears more than once")
        if vector.dtype != np.float32:
            raise AggregationError(f"{address}: vector must be float32, got {vector.dtype}")
        by_address[key] = (samples, vector)
    if not by_address:
        raise AggregationError("no updates to average")

    lengths = {vector.shape for _, vector in by_address.values()}
    if len(lengths) != 1:
        raise AggregationError(f"vectors differ in shape: {sorted(lengths)}")

    total_samples = 0
    accumulator = np.zeros(next(iter(lengths)), dtype=np.float64)  # starts at +0.0
    for key in sorted(by_address):
        samples, vector = by_address[key]
        weight = np.float64(float(samples))
        weighted = weight * vector.astype(np.float64)
        accumulator = accumulator + weighted
        total_samples += samples
    mean = accumulator / np.float64(float(total_samples))
    return mean.astype(np.float32)
