"""Everything that talks to Kubo lives here; nothing else in gridd imports httpx for IPFS."""

from gridd.ipfs.address import DEFAULT_API, ApiAddress, parse_api_address
from gridd.ipfs.client import KuboClient, NodeId, PubsubMessage
from gridd.ipfs.daemon import KuboDaemon, KuboNotInstalled, find_ipfs
from gridd.ipfs.errors import (
    ContentTooLarge,
    ContentUnavailable,
    IPFSApiError,
    IPFSError,
    IPFSUnreachable,
    NoTopicPeers,
    PubsubDisabled,
)
from gridd.ipfs.peering import PeeringStatus, TopicPeering
from gridd.ipfs.subscription import Subscription

__all__ = [
    "DEFAULT_API", "ApiAddress", "ContentTooLarge", "ContentUnavailable", "IPFSApiError",
    "IPFSError", "IPFSUnreachable", "KuboClient", "KuboDaemon", "KuboNotInstalled", "NodeId",
    "NoTopicPeers", "PeeringStatus", "PubsubDisabled", "PubsubMessage", "Subscription",
    "TopicPeering", "find_ipfs", "parse_api_address",
]
