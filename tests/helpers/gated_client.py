"""A client that trains only as many rounds as a test allows: a simulation the test can pace.

``flchain simulate --client tests.helpers.gated_client:make_client`` with ``FLCHAIN_TEST_GATE`` naming a
file that holds an integer k: each node's k-th ``fit`` waits until the file says more than k - 1
(checked every 50 ms, at most ``MAX_WAIT_SECONDS``, then it trains anyway so nothing hangs). The test
then sees every state of a running federation, whatever the machine's load, and moves it on itself.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from examples.numpy_client import make_client as softmax_client
from fl_chain.protocol.task import TaskSpec
from fl_chain.training import ArrayDataset

#: Environment variable naming the gate file.
GATE_ENV = "FLCHAIN_TEST_GATE"
#: Longest wait of one ``fit`` for the gate (a test that died must not leave a simulation hanging).
MAX_WAIT_SECONDS = 300.0


def allow(gate: Path, fits: int) -> None:
    """Let every node run ``fits`` fits in all (written atomically)."""
    tmp = gate.with_suffix(".tmp")
    tmp.write_text(str(fits))
    tmp.replace(gate)


def _allowed(gate: Path) -> int:
    try:
        return int(gate.read_text())
    except (OSError, ValueError):
        return 0


class GatedClient:
    """``inner`` (a NumPyClient) whose ``fit`` waits for the gate file."""

    def __init__(self, inner: Any, gate: Path) -> None:
        self.inner, self.gate, self.fits = inner, gate, 0

    def get_parameters(self, config: dict[str, Any]) -> Any:
        return self.inner.get_parameters(config)

    def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while _allowed(self.gate) <= self.fits and time.monotonic() < deadline:
            time.sleep(0.05)
        self.fits += 1
        return self.inner.fit(parameters, config)

    def evaluate(self, parameters: Any, config: dict[str, Any]) -> Any:
        return self.inner.evaluate(parameters, config)


def make_client(spec: TaskSpec, train: ArrayDataset, test: ArrayDataset | None) -> GatedClient:
    """The example's softmax-regression client behind the gate named by ``FLCHAIN_TEST_GATE``."""
    return GatedClient(softmax_client(spec, train, test), Path(os.environ[GATE_ENV]))
