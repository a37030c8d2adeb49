"""What signed history costs: signing through Kubo's `key/sign`, verifying offline.

    python -m gridd.bench.signing [--n 300]

Signing: one real Kubo daemon signs a transaction's signing bytes (as a tree peer does for
every transaction it publishes, and the outbox for every compute message); we time the RPC.
Verifying: gridd.identity.verify checks those signatures from the issuer's peer id alone,
in this process, as a peer does for every record it fetches. Also the end-to-end cost of
`TangleBuilder`-style checks: decode a record from bytes, then verify.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from gridd import identity
from gridd.bench import save, table
from gridd.ipfs.cluster import LocalCluster
from gridd.tree.messages import decode_record, encode_record
from tangle import Transaction


def run(n: int) -> dict[str, Any]:
    with LocalCluster(1) as cluster:
        client = cluster.clients[0]
        issuer = client.id().peer_id
        txs = [Transaction.create(["a" * 64, "b" * 64], f"bafkrei{i:052d}", issuer, float(i),
                                  metadata={"accuracy": 0.9, "samples": 120}) for i in range(n)]
        sign_ms: list[float] = []
        signed: list[Transaction] = []
        for tx in txs:
            t0 = time.perf_counter()
            sig = client.key_sign(tx.signing_bytes())
            sign_ms.append((time.perf_counter() - t0) * 1000)
            signed.append(tx.signed(sig))
    records = [encode_record(t) for t in signed]
    identity.public_key_of.cache_clear()
    t0 = time.perf_counter()
    ok = sum(identity.verify(t.issuer, t.signing_bytes(), t.signature) for t in signed)
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in records:
        t = decode_record(r)
        identity.verify(t.issuer, t.signing_bytes(), t.signature)
    full_s = time.perf_counter() - t0
    assert ok == n
    return {
        "n": n,
        "sign_ms_p50": statistics.median(sign_ms),
        "sign_ms_p95": sorted(sign_ms)[int(0.95 * (n - 1))],
        "verify_per_s": n / verify_s,
        "decode_and_verify_per_s": n / full_s,
        "record_bytes": statistics.mean(len(r) for r in records),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="transactions to sign and verify")
    args = ap.parse_args()
    r = run(args.n)
    print(table([r], ["n", "sign_ms_p50", "sign_ms_p95", "verify_per_s",
                      "decode_and_verify_per_s", "record_bytes"]))
    print(f"saved {save('signing', r)}")


if __name__ == "__main__":
    main()
