"""A bounded CPU hog: busy processes that occupy the cores while a test runs, then stop.

Each hog is a Python process spinning in a loop that ends by itself after ``max_seconds`` (so a
test killed mid-way leaves nothing spinning for long); leaving the ``with`` block ends them first,
by pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_SPIN = "import time\nend = time.monotonic() + float({seconds})\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_hog(processes: int | None = None, *, max_seconds: float = 900.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``processes`` busy loops (default: one per core) for at most ``max_seconds``."""
    count = processes if processes is not None else (os.cpu_count() or 1)
    hogs = [
        subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=max_seconds)], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


__all__ = ["cpu_hog"]
