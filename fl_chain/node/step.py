"""What one step of a node achieved: the runtime and its secure-aggregation phases both return it."""

from __future__ import annotations

from enum import Enum


class Step(Enum):
    """What a step achieved."""

    IDLE = "idle"
    PROGRESS = "progress"
    DONE = "done"
    #: The task ended but this node could not finish it (its final model is not available).
    STOPPED = "stopped"
