"""The contract's view functions, encoded and decoded here instead of through web3's contract layer.

web3 finds a function's ABI entry anew on every call (hashing the signatures of the contract's
functions) and walks its normalizers twice: about 3 ms of CPU per view call, more than the call
itself costs anvil. A node asks the same few views several times per block, so
:class:`ViewFunctions` keeps each view's selector and types from the ABI once and returns exactly
what web3 returns (lists for arrays and several outputs, tuples for structs, checksummed addresses,
the value itself for one output); ``tests/unit/test_chain_views.py`` compares the two on every view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from web3 import Web3


def abi_type(param: dict[str, Any]) -> str:
    """Canonical ABI type of a parameter, expanding tuples."""
    kind = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return str(kind)


def _normalize(param: dict[str, Any], value: Any) -> Any:
    """``value`` (as eth_abi decodes it) shaped as web3 returns it."""
    kind = param["type"]
    if kind.endswith("]"):
        element = {**param, "type": kind[: kind.rindex("[")]}
        return [_normalize(element, v) for v in value]
    if kind == "tuple":
        return tuple(_normalize(c, v) for c, v in zip(param["components"], value))
    if kind == "address":
        return Web3.to_checksum_address(value)
    return value


@dataclass(frozen=True)
class View:
    """One view function: its selector and parameter types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[dict[str, Any], ...]

    def encode(self, args: tuple[Any, ...]) -> bytes:
        """Call data for ``name(*args)``."""
        return self.selector + abi_encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> Any:
        """The call's result as web3 gives it."""
        values = abi_decode([abi_type(o) for o in self.outputs], data)
        shaped = [_normalize(o, v) for o, v in zip(self.outputs, values)]
        return shaped[0] if len(shaped) == 1 else shaped


class ViewFunctions:
    """The view and pure functions of an ABI that are not overloaded, by name."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        functions = [e for e in abi if e.get("type") == "function"]
        names = [e["name"] for e in functions]
        self._views = {
            e["name"]: View(
                name=e["name"],
                selector=function_abi_to_4byte_selector(cast(Any, e)),
                inputs=tuple(abi_type(i) for i in e["inputs"]),
                outputs=tuple(e["outputs"]),
            )
            for e in functions
            if e.get("stateMutability") in ("view", "pure") and names.count(e["name"]) == 1
        }

    def get(self, name: str) -> View | None:
        """The view ``name``; None for a write, an overloaded name or no such function."""
        return self._views.get(name)

    def __iter__(self) -> Iterator[View]:
        return iter(self._views.values())
