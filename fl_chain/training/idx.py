"""Reading IDX files, the array format of MNIST and Fashion-MNIST, plain or gzipped.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in C order, big-endian. Every check names the file, so a truncated
download or a wrong file gives a one-line :class:`~fl_chain.errors.ConfigError`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fl_chain.errors import ConfigError

__all__ = ["IDX_DTYPES", "read_idx"]

#: Element types by IDX dtype code (all big-endian on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, *, dtype: npt.DTypeLike | None = None, ndim: int | None = None) -> np.ndarray:
    """Decode an IDX file into a native-endian array of its stored shape.

    Parameters
    ----------
    path:
        The file, gzipped (recognized by its content, not its name) or plain.
    dtype, ndim:
        If given, the element type and number of dimensions the file must have.

    Returns
    -------
    numpy.ndarray
        A writable array owned by the caller.

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, not gzip-decodable, has a bad magic number, an unknown
        dtype code, a size that does not match its dimensions, or not the expected dtype or ``ndim``.
    """
    source = Path(path)
    data = _read_bytes(source)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{source} is not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    code, rank = data[2], data[3]
    element = IDX_DTYPES.get(code)
    if element is None:
        raise ConfigError(f"{source} has unknown IDX dtype code 0x{code:02x}")
    if rank == 0:
        raise ConfigError(f"{source} is an IDX file with 0 dimensions")
    header = 4 + 4 * rank
    if len(data) < header:
        raise ConfigError(f"{source} is truncated: {len(data)} bytes, its IDX header alone needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=rank, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * element.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its dimensions say"
        need = f"dimensions {shape} of {element.name} need {expected}"
        raise ConfigError(f"{source} is {problem}: {len(data)} bytes, {need}")
    if dtype is not None and element.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise ConfigError(f"{source} holds {element.name} values, expected {np.dtype(dtype).name}")
    if ndim is not None and rank != ndim:
        raise ConfigError(f"{source} has {rank} dimension(s) {shape}, expected {ndim}")
    values = np.frombuffer(data, dtype=element, offset=header).reshape(shape)
    return values.astype(element.newbyteorder("="), copy=True)


def _read_bytes(source: Path) -> bytes:
    """The file's bytes, decompressed if they are gzip."""
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ConfigError(f"{source} is truncated: the gzip stream ends early") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise ConfigError(f"{source} is a corrupt gzip file: {exc}") from None
