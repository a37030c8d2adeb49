"""The node runtime every mode runs on; see gridd/runtime/node.py and docs/architecture.md.

bounded.py  BoundedMap and TokenBucket: the only bounded-collection and rate idioms
inbox.py    BoundedInbox: byte-bounded, per-sender budgets, limits applied before queueing
fetcher.py  FetchPool: fetching off the message path, fair across senders, with deadlines
outbox.py   Outbox: best-effort publishing from a thread
node.py     Node: subscribe, pump, loop, ticks, watchdog, clean stop
"""

from gridd.runtime.bounded import BoundedMap, TokenBucket
from gridd.runtime.fetcher import FetchPool, FetchResult
from gridd.runtime.inbox import BoundedInbox, InboxLimits
from gridd.runtime.node import Node
from gridd.runtime.outbox import Outbox

__all__ = [
    "BoundedInbox",
    "BoundedMap",
    "FetchPool",
    "FetchResult",
    "InboxLimits",
    "Node",
    "Outbox",
    "TokenBucket",
]
