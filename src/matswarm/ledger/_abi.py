"""Calldata encoding and event decoding for the SwarmLedger ABI, without web3's per-call lookup.

web3's ``Contract.encode_abi`` and ``process_log`` search and validate the ABI on
every call (about 5 ms and 2 ms of CPU each); the ledger sends and decodes a few
transactions per round per org, so we resolve the ABI once and call ``eth_abi``
directly. The output is what web3 produces (``tests/ledger`` compares them):
addresses checksummed, ``bytes32`` as bytes, arrays as lists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from .compile import load_artifact

_cached_checksum = functools.lru_cache(maxsize=4096)(to_checksum_address)


def checksum(address: Any) -> str:
    """``eth_utils.to_checksum_address``, remembered: it hashes (keccak) on every call, and
    the ledger checksums the same few dozen addresses over and over."""
    try:
        return _cached_checksum(address)
    except TypeError:  # unhashable input (a bytearray): no caching
        return to_checksum_address(address)


def _type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_type(c) for c in item["components"])
        return f"({inner}){item['type'][len('tuple') :]}"
    return str(item["type"])


@dataclass(frozen=True)
class _Function:
    selector: bytes
    types: tuple[str, ...]
    outputs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class EventAbi:
    name: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    indexed: tuple[bool, ...]

    @property
    def data_types(self) -> list[str]:
        return [t for t, ix in zip(self.types, self.indexed, strict=True) if not ix]


def _normalise(abi_type: str, value: Any) -> Any:
    if abi_type == "address":
        return checksum(value)
    if abi_type.endswith("]"):
        inner = abi_type[: abi_type.rindex("[")]
        return [_normalise(inner, v) for v in value]
    return value


def _normalise_item(item: dict[str, Any], value: Any) -> Any:
    """As :func:`_normalise`, for an ABI item that may be a struct (``tuple``)."""
    if item["type"] == "tuple":
        return tuple(_normalise_item(c, v) for c, v in zip(item["components"], value, strict=True))
    if item["type"].startswith("tuple"):  # pragma: no cover - no arrays of structs here
        raise NotImplementedError(item["type"])
    return _normalise(item["type"], value)


class ContractAbi:
    """Selectors and argument types of every function, and every event by its topic."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self.functions: dict[str, _Function] = {}
        self.events: dict[bytes, EventAbi] = {}
        for item in abi:
            if item["type"] == "function":
                types = tuple(_type(i) for i in item["inputs"])
                sig = f"{item['name']}({','.join(types)})"
                if item["name"] in self.functions:  # pragma: no cover - Vyper has no overloads
                    raise ValueError(f"overloaded function {item['name']}")
                self.functions[item["name"]] = _Function(
                    keccak(text=sig)[:4], types, tuple(item["outputs"])
                )
            elif item["type"] == "event":
                types = tuple(_type(i) for i in item["inputs"])
                sig = f"{item['name']}({','.join(types)})"
                self.events[keccak(text=sig)] = EventAbi(
                    item["name"],
                    tuple(i["name"] for i in item["inputs"]),
                    types,
                    tuple(bool(i["indexed"]) for i in item["inputs"]),
                )

    def encode_call(self, function: str, args: tuple[Any, ...] | list[Any]) -> bytes:
        """Calldata of ``function(*args)`` (the 4-byte selector, then the ABI-encoded args)."""
        fn = self.functions[function]
        return fn.selector + abi_encode(list(fn.types), list(args))

    def decode_output(self, function: str, data: bytes) -> Any:
        """The return value of ``function`` as web3 gives it: the value itself when there is
        one output (a struct as a tuple of its fields), else a tuple of the outputs."""
        outputs = self.functions[function].outputs
        values = abi_decode([_type(o) for o in outputs], bytes(data))
        normalised = tuple(_normalise_item(o, v) for o, v in zip(outputs, values, strict=True))
        return normalised[0] if len(normalised) == 1 else normalised

    def decode_event(self, topics: list[bytes], data: bytes) -> tuple[str, dict[str, Any]] | None:
        """``(name, args)`` of a log of this contract, or None if the topic is not ours."""
        if not topics:
            return None
        event = self.events.get(bytes(topics[0]))
        if event is None:
            return None
        values = iter(abi_decode(event.data_types, bytes(data)))
        extra = iter(topics[1:])
        args: dict[str, Any] = {}
        for name, abi_type, ix in zip(event.names, event.types, event.indexed, strict=True):
            if ix:
                # Only value types are indexed in this contract: the topic is the value.
                (value,) = abi_decode([abi_type], bytes(next(extra)))
            else:
                value = next(values)
            args[name] = _normalise(abi_type, value)
        return event.name, args


@cache
def contract_abi() -> ContractAbi:
    """The shipped SwarmLedger ABI, resolved once per process."""
    return ContractAbi(load_artifact()["abi"])
