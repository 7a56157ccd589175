"""Node logs in a timestamped tree: ``logs/<session>/task-<id>/round-<r>.log`` plus ``node.log``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RoundLogs:
    """Routes the ``fl_chain`` loggers of one node to the file of the round it is working on."""

    def __init__(self, root: Path, *, session: str | None = None, logger_name: str = "fl_chain") -> None:
        self.session_dir = root / (session or time.strftime("%Y%m%d-%H%M%S"))
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(logger_name)
        self.logger.setLevel(logging.INFO)
        self._node_handler = self._handler(self.session_dir / "node.log")
        self.logger.addHandler(self._node_handler)
        self._round_handler: logging.Handler | None = None
        self._current: tuple[int, int] | None = None

    @staticmethod
    def _handler(path: Path) -> logging.Handler:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(_FORMAT))
        return handler

    def enter_round(self, task_id: int, round_: int) -> None:
        """Send records to ``task-<task_id>/round-<round_>.log`` from now on."""
        if self._current == (task_id, round_):
            return
        self._close_round()
        self._round_handler = self._handler(self.session_dir / f"task-{task_id}" / f"round-{round_}.log")
        self.logger.addHandler(self._round_handler)
        self._current = (task_id, round_)

    def _close_round(self) -> None:
        if self._round_handler is not None:
            self.logger.removeHandler(self._round_handler)
            self._round_handler.close()
            self._round_handler = None

    def close(self) -> None:
        """Detach and close every handler this object added."""
        self._close_round()
        self.logger.removeHandler(self._node_handler)
        self._node_handler.close()
