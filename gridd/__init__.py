"""gridd: a peer-to-peer ML grid on IPFS (federated Tangle learning and remote Keras training)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from gridd.client import Client


def __getattr__(name: str) -> Any:
    """`from gridd import Client` without making `import gridd` pull in httpx and the rest."""
    if name == "Client":
        from gridd.client import Client

        return Client
    raise AttributeError(f"module 'gridd' has no attribute {name!r}")
