"""Which weights a tree peer keeps pinned: the retention policy (pure decisions, no IO).

Without a policy every peer pins every accepted weights blob for ever: a tangle with a 1 MB
model grows by 1 MB per transaction on every peer (the IPFS Learning Tangle saw ~10 GB an
hour per peer). With automatic GC and nothing kept on purpose, the opposite happens: tips'
weights vanish and training stops. So the policy keeps exactly what the peer reads:

* the weights of every transaction within RETENTION_WINDOW of the tips. A peer reads
  weights only there: its walks start at particles at most `WALK_DEPTH` deep and move
  towards the tips, and its reference model is chosen within REFERENCE_WINDOW. Depth only
  grows as the tangle grows, so a transaction that left the window never comes back (a
  window at least as deep as those two never needs an unpinned blob again; a shallower one
  makes the peer fetch such blobs again, or skip them when nobody serves them);
* the weights of the RETENTION_OWN newest transactions this peer issued (a peer is the
  first provider of its own work, for peers that catch up on recent history). Keeping all
  of them (RETENTION_OWN all) would grow by one model per own transaction for ever;
* the genesis (pinned under its own name, never touched here).

Records are small and stay pinned: they are how late joiners walk the history. A peer's
tangle.log keeps every transaction it issued (see tangle.snapshot), whatever the policy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from tangle import DEFAULT_PARTICLE_DEPTH, Tangle

WALK_DEPTH = DEFAULT_PARTICLE_DEPTH[1]
"""Walks start at most this deep below the tips (tangle.selection)."""
ALL = -1


@dataclass(frozen=True)
class Policy:
    window: int
    """Depth below the tips whose weights stay pinned; 0 = keep everything (policy off)."""
    own: int = 10
    """Newest own transactions whose weights stay pinned beyond the window; ALL = all."""
    reference_window: int = 25

    @property
    def enabled(self) -> bool:
        return self.window > 0

    @property
    def needed(self) -> int:
        """The deepest level whose weights the peer reads (walk particles, reference)."""
        return max(self.reference_window, WALK_DEPTH)

    @property
    def log_depth(self) -> int:
        """How deep a compacted log keeps records: twice what the peer reads (cheap)."""
        return 2 * max(self.window, self.needed)


def keep_weights(tangle: Tangle, own_ids: Sequence[str], policy: Policy) -> set[str]:
    """Weights CIDs to keep pinned. `own_ids`: this peer's transactions, oldest first."""
    keep = {tangle.genesis.weights_cid}
    if not policy.enabled:
        return keep | {tx.weights_cid for tx in tangle.transactions()}
    window = tangle.window(policy.window)
    keep.update(tangle.tx_at(node).weights_cid for node in window.order)
    mine = [i for i in own_ids if i in tangle]
    if policy.own != ALL:
        mine = mine[len(mine) - policy.own:] if policy.own > 0 else []
    keep.update(tangle[i].weights_cid for i in mine)
    return keep


def to_unpin(pinned: Mapping[str, str], keep: Collection[str], names: Collection[str],
             known: Collection[str] | None = None) -> list[str]:
    """CIDs pinned under one of `names` ({cid: pin name}) that the policy does not keep.

    In the peer, only pins listed before the decision may be passed here: a pin is made
    after its transaction entered the tangle, so whatever was listed is judged with its
    transaction known, and a blob pinned after the listing waits for the next round. From
    another process (`gridd storage --prune`), which cannot order its view with the peer's,
    pass `known` (weights CIDs of the transactions it read): other pins are left alone.
    """
    return sorted(cid for cid, name in pinned.items()
                  if name in names and cid not in keep and (known is None or cid in known))
