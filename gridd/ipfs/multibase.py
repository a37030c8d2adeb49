"""Kubo's pubsub RPC wants topics, and returns data/seqno, as multibase base64url ('u' prefix)."""

from __future__ import annotations

import base64


def encode(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "u" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> bytes:
    """Decode the multibase forms Kubo emits (u = base64url, m = base64, b = base32)."""
    if not text:
        return b""
    prefix, body = text[0], text[1:]
    pad = "=" * (-len(body) % 4)
    if prefix == "u":
        return base64.urlsafe_b64decode(body + pad)
    if prefix == "m":
        return base64.b64decode(body + pad)
    if prefix == "b":
        return base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    raise ValueError(f"unsupported multibase prefix {prefix!r}")
