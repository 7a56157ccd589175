"""Weighted federated averaging (FedAvg) with one canonical, bit-reproducible formula."""

from __future__ import annotations

import numpy as np

from fl_chain.aggregation.base import Contribution, Strategy

#: Coordinates per block (32768 float64 = 256 KiB per buffer).
_BLOCK = 1 << 15


class FedAvg(Strategy):
    """Coordinate-wise mean of the contributions weighted by their sample counts.

    The canonical formula
    ---------------------
    This is THE definition of a FedAvg aggregate in fl-chain; every implementation (this class,
    :func:`fl_chain.aggregation.reference.reference_fedavg`, the tests, anyone auditing the chain)
    must reproduce it bit for bit. For contributions ``(address_i, samples_i, x_i)``:

    1. order the contributions by ``address_i.lower()`` (Python string order);
    2. ``w_i = float64(samples_i)`` (round to nearest; exact below 2**53);
    3. ``acc = +0.0`` (float64, per coordinate); for each contribution in that order:
       ``term = w_i * float64(x_i)`` then ``acc = acc + term`` -- two separately rounded
       IEEE-754 float64 operations, no fused multiply-add, no reordering (no ``np.sum`` over a
       stacked axis, no ``einsum``/``matmul``/BLAS);
    4. ``total = float64(sum_i samples_i)``: the exact integer sum, rounded once;
    5. ``result = float32(acc / total)``: one float64 division, one round-to-nearest-even to float32.

    Every step is elementwise, so aggregating a contiguous slice gives exactly that slice of the
    whole-vector aggregate.
    """

    name = "fedavg"

    def _aggregate_canonical(self, ordered: list[Contribution]) -> np.ndarray:
        length = ordered[0].values.size
        weights = [np.float64(float(item.samples)) for item in ordered]
        acc = np.zeros(length, dtype=np.float64)
        term = np.empty(min(length, _BLOCK), dtype=np.float64)
        # Blocks keep acc and term in cache across contributors; each coordinate still sees
        # exactly the canonical sequence of operations.
        for start in range(0, length, _BLOCK):
            stop = min(start + _BLOCK, length)
            block_acc, block_term = acc[start:stop], term[: stop - start]
            for item, weight in zip(ordered, weights):
                block_term[...] = item.values[start:stop]  # float32 -> float64: exact
                np.multiply(block_term, weight, out=block_term)
                np.add(block_acc, block_term, out=block_acc)
        total = np.float64(float(sum(item.samples for item in ordered)))
        np.divide(acc, total, out=acc)
        return acc.astype(np.float32)
