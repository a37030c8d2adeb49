"""Who wrote a record: Ed25519 signatures checked offline against libp2p peer ids.

Kubo signs with the node's own libp2p key (`key/sign`, see gridd/ipfs/client.py), over
"libp2p-key signed message:" + data. An Ed25519 peer id (12D3KooW...) is an identity
multihash of the protobuf PublicKey{Type: Ed25519, Data: 32 bytes}, so a signature is
verified here with no network: base58-decode the id, unwrap the multihash and the protobuf,
and check with `cryptography`. That makes history fetched later from IPFS attributable to
its issuer, not to whoever relayed it.

`Keyring` gives the in-memory network the same thing: Ed25519 keys derived from each peer's
name, so the lab and unit tests sign and verify for real.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGN_PREFIX = b"libp2p-key signed message:"
_IDENTITY_MH = b"\x00\x24"  # multihash: identity function, 36 bytes
_ED25519_PROTO = b"\x08\x01\x12\x20"  # PublicKey{Type: Ed25519 (1), Data: 32 bytes}
MAX_SIGNATURE = 128


@lru_cache(maxsize=4096)
def public_key_of(peer_id: str) -> Ed25519PublicKey | None:
    """The Ed25519 key embedded in a peer id, or None if it embeds none (RSA ids, names)."""
    if not isinstance(peer_id, str) or not peer_id.startswith("12D3KooW") or len(peer_id) > 64:
        return None
    try:
        raw = base58.b58decode(peer_id)
    except ValueError:
        return None
    if len(raw) != 38 or not raw.startswith(_IDENTITY_MH + _ED25519_PROTO):
        return None
    return Ed25519PublicKey.from_public_bytes(raw[6:])


def peer_id_of(key: Ed25519PublicKey) -> str:
    """The libp2p peer id (12D3KooW...) of an Ed25519 public key."""
    data = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base58.b58encode(_IDENTITY_MH + _ED25519_PROTO + data).decode()


def verify_with(key: Ed25519PublicKey | None, data: bytes, signature: bytes) -> bool:
    if key is None or not isinstance(signature, bytes) or len(signature) > MAX_SIGNATURE:
        return False
    try:
        key.verify(signature, SIGN_PREFIX + data)
    except InvalidSignature:
        return False
    return True


def verify(author: str, data: bytes, signature: bytes) -> bool:
    """True if `signature` is `author`'s (an Ed25519 peer id) over `data`, as Kubo signs."""
    return verify_with(public_key_of(author), data, signature)


class Keyring:
    """Ed25519 keys for named in-memory peers, derived from the name (reproducible)."""

    def __init__(self) -> None:
        self._keys: dict[str, Ed25519PrivateKey] = {}

    def key(self, name: str) -> Ed25519PrivateKey:
        k = self._keys.get(name)
        if k is None:
            seed = hashlib.sha256(b"gridd memory peer:" + name.encode()).digest()
            k = self._keys[name] = Ed25519PrivateKey.from_private_bytes(seed)
        return k

    def sign(self, name: str, data: bytes) -> bytes:
        return self.key(name).sign(SIGN_PREFIX + data)

    def verify(self, author: str, data: bytes, signature: bytes) -> bool:
        """A named peer's signature; real peer ids are checked as on Kubo."""
        if public_key_of(author) is not None:
            return verify(author, data, signature)
        return verify_with(self.key(author).public_key(), data, signature)
