"""A learning tangle: a Merkle DAG of model updates, tip selection and the reference model.

Pure Python (msgpack for canonical ids and the log): no IO besides the optional append-only
log, no TensorFlow, no gridd, no networking. The names below are the public API.
"""

from tangle.errors import (
    DuplicateTransaction,
    InvalidTransaction,
    TangleError,
    UnknownTransaction,
)
from tangle.graph import DEFAULT_MAX_PENDING, Tangle
from tangle.persist import LoadStats, TangleLog, export_graph, rebuild
from tangle.reference import (
    DEFAULT_ROUNDS,
    DEFAULT_WINDOW,
    Candidate,
    confidence,
    frontier,
    rank,
    reference,
)
from tangle.selection import (
    DEFAULT_PARTICLE_DEPTH,
    AccuracyWalkSelector,
    RandomSource,
    RandomWalkSelector,
    Sampler,
    TipSelector,
    UniformSelector,
)
from tangle.snapshot import Horizon, take_snapshot
from tangle.transaction import Scalar, Transaction, is_transaction_id
from tangle.window import RecentWindow

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_PARTICLE_DEPTH",
    "DEFAULT_ROUNDS",
    "DEFAULT_WINDOW",
    "AccuracyWalkSelector",
    "Candidate",
    "DuplicateTransaction",
    "Horizon",
    "InvalidTransaction",
    "LoadStats",
    "RandomSource",
    "RandomWalkSelector",
    "RecentWindow",
    "Sampler",
    "Scalar",
    "Tangle",
    "TangleError",
    "TangleLog",
    "TipSelector",
    "Transaction",
    "UniformSelector",
    "UnknownTransaction",
    "confidence",
    "export_graph",
    "frontier",
    "is_transaction_id",
    "rank",
    "rebuild",
    "reference",
    "take_snapshot",
]
