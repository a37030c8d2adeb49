"""Signed history on real Kubo: transactions are signed with the daemon's libp2p key
(`key/sign`) and verified offline from the issuer's peer id, whoever relays the record."""

from __future__ import annotations

import time

import pytest
from tree_helpers import DIGITS, fast_settings, make_peer, rejected

from gridd import identity
from gridd.data import Dataset
from gridd.ipfs.cluster import LocalCluster
from gridd.transport import IpfsBroker, IpfsStore
from gridd.tree import messages
from gridd.tree.genesis import create_genesis, put_record
from gridd.wire import encode_weights
from tangle import Transaction

pytestmark = pytest.mark.kubo


def test_forged_issuer_named_in_heads_is_rejected(kubo3: LocalCluster,
                                                  shards: list[Dataset]) -> None:
    alice_client, bob_client, mallory_client = kubo3.clients
    genesis_id = create_genesis(IpfsStore(alice_client), DIGITS, init_seed=11)
    alice = make_peer(genesis_id, IpfsBroker(alice_client), IpfsStore(alice_client),
                      shards[0], settings=fast_settings(), seed=1)
    bob = make_peer(genesis_id, IpfsBroker(bob_client), IpfsStore(bob_client), None,
                    settings=fast_settings(), seed=2)
    try:
        step = alice.train_step()
        assert step.published and step.tx_id is not None
        real = alice.tangle[step.tx_id]
        assert identity.verify(alice.peer_id, real.signing_bytes(), real.signature)

        # mallory writes records in alice's name into IPFS: one signed with mallory's own
        # daemon key, one unsigned, and names them in a heads message
        assert alice.genesis is not None
        store = IpfsStore(mallory_client)
        cid = store.put(encode_weights(list(alice.genesis.weights)))
        claim = Transaction.create([genesis_id], cid, alice.peer_id, time.time(),
                                   metadata={"accuracy": 1.0})
        forged = claim.signed(mallory_client.key_sign(claim.signing_bytes()))
        unsigned = Transaction.create([genesis_id], cid, alice.peer_id, time.time() + 1)
        for tx in (forged, unsigned):
            put_record(store, tx)
        heads = messages.heads_message([forged.id, unsigned.id, real.id], 3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                real.id in bob.tangle and rejected(bob, "bad_signature") >= 1
                and rejected(bob, "unsigned") >= 1):
            mallory_client.pubsub_pub(bob.topic, heads)
            for p in (alice, bob):
                p.process_messages(timeout=0.2)
        assert real.id in bob.tangle  # alice's real, signed history is accepted
        assert forged.id not in bob.tangle and unsigned.id not in bob.tangle
        assert rejected(bob, "bad_signature") >= 1 and rejected(bob, "unsigned") >= 1
        issuers = {tx.issuer for tx in bob.tangle.transactions() if tx.parents}
        assert issuers == {alice.peer_id}
    finally:
        alice.close()
        bob.close()
