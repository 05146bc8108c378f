"""JSON-RPC messages as MessagePack maps: encoding, bounded decoding, shape check."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import msgpack

__all__ = ["InvalidMessage", "decode_payload", "encode_payload", "is_jsonrpc", "pack"]

_local = threading.local()


#: A packer keeps a buffer as large as the largest thing it packed: past this size it is
#: dropped with it, so a thread that once sent a 64 MiB result does not hold 64 MiB.
PACKER_KEEP = 1024 * 1024


def pack(obj: object) -> bytes:
    """MessagePack bytes of ``obj`` (``bytes`` as ``bin``), with a packer reused per thread
    (``msgpack.packb`` builds a new one for every call)."""
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    data: bytes = packer.pack(obj)
    if len(data) > PACKER_KEEP:
        del _local.packer
    return data


class InvalidMessage(ValueError):
    """A reassembled payload is not a JSON-RPC message (a stream error, not a connection one)."""


def encode_payload(message: Mapping[str, Any]) -> bytes:
    """MessagePack bytes of one JSON-RPC message (``bytes`` values become ``bin``)."""
    try:
        return pack(message)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"message cannot be encoded as MessagePack: {exc}") from None


def _reject_ext(code: int, data: bytes) -> object:
    raise ValueError(f"MessagePack extension type {code} is not allowed in a message")


def decode_payload(payload: bytes) -> dict[str, Any]:
    """Decode one reassembled payload and check that it is a JSON-RPC 2.0 message.

    ``msgpack.unpackb`` bounds every declared length by the payload's own length (which
    the connection already bounded by ``max_message_size``) and nesting by the decoder's stack
    (1024 levels). Raises ``InvalidMessage``.
    """
    try:
        obj = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            ext_hook=_reject_ext,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidMessage(
            f"payload is not valid MessagePack: {exc or type(exc).__name__}"
        ) from None
    if not is_jsonrpc(obj):
        raise InvalidMessage("payload is not a JSON-RPC 2.0 message")
    return obj  # type: ignore[no-any-return]


def is_jsonrpc(obj: object) -> bool:
    """A request, notification, result or error response of JSON-RPC 2.0."""
    if type(obj) is not dict or obj.get("jsonrpc") != "2.0":
        return False
    if "method" in obj:
        return type(obj["method"]) is str
    return "id" in obj and ("result" in obj or "error" in obj)
