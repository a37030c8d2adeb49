"""TreePeer logic on the in-memory network: convergence, catch-up, ordering, rejections,
persistence, learning. Real IPFS versions of the network tests are in test_peer_kubo.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tree_helpers import DIGITS, fast_settings, make_peer, rejected, sample, sync, tx_ids

from gridd.data import DataError, Dataset
from gridd.models import build_model
from gridd.transport import MemoryNetwork, raw_cid
from gridd.tree import messages
from gridd.tree.genesis import GenesisError, create_genesis, load_genesis, put_record
from gridd.tree.peer import TreePeer
from gridd.tree.state import LOG_FILE, STATE_FILE
from gridd.wire import encode_weights
from tangle import Transaction

Factory = Callable[..., TreePeer]


def forge(net: MemoryNetwork, peer_id: str, parents: list[str], blob: bytes,
          store_record: bool = True, send: bool = True) -> Transaction:
    """A transaction from `peer_id` with an arbitrary weights blob, announced on the topic."""
    store = net.store()
    tx = signed(net, Transaction.create(parents, store.put(blob), peer_id, time.time()))
    if store_record:
        put_record(store, tx)
    if send:
        net.broker(peer_id).publish(_topic(net), messages.tx_message(tx))
    return tx


def signed(net: MemoryNetwork, tx: Transaction) -> Transaction:
    """`tx` signed by its issuer's in-memory key, as a real peer would publish it."""
    return tx.signed(net.keyring.sign(tx.issuer, tx.signing_bytes()))


def _topic(net: MemoryNetwork) -> str:
    (topic,) = [t for t in net._subs if t.startswith(messages.TOPIC_PREFIX)]
    return topic


def good_weights(peer: TreePeer, scale: float = 1.0) -> list[np.ndarray]:
    assert peer.genesis is not None
    return [w * np.float32(scale) for w in peer.genesis.weights]


# -- genesis ---------------------------------------------------------------------------------


def test_genesis_round_trip_and_refusals(memnet: MemoryNetwork) -> None:
    store = memnet.store()
    gid = create_genesis(store, DIGITS, init_seed=7)
    g = load_genesis(store, gid)
    assert g.recipe == DIGITS and g.keras_bytes is None and g.id == gid
    expected = build_model(DIGITS, prefer="numpy", seed=7).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(g.weights, expected, strict=True))
    assert create_genesis(store, DIGITS, init_seed=7) != gid  # every genesis is a new tangle
    assert g.topic == messages.topic_for(gid)
    child = Transaction.create([gid], g.transaction.weights_cid, "p", 1.0)
    put_record(store, child)
    with pytest.raises(GenesisError, match="not a tangle genesis"):
        load_genesis(store, child.id)
    with pytest.raises(GenesisError, match="genesis id"):
        load_genesis(store, "not-an-id")


# -- network behaviour -----------------------------------------------------------------------


def test_peers_converge_on_one_tangle(peers_factory: Factory) -> None:
    peers = [peers_factory(i) for i in range(3)]
    published = 0
    for _ in range(4):
        for p in peers:
            p.process_messages()
            published += p.train_step().published
    sync(peers)
    assert published >= 3
    assert len(peers[0].tangle) == published + 1
    assert tx_ids(peers[0]) == tx_ids(peers[1]) == tx_ids(peers[2])
    assert all(p.tangle.pending_count == 0 for p in peers)
    assert sample(peers[0], "gridd_tx_received_total") == published - peers[0].counters.published


def test_late_joiner_catches_up_to_the_full_history(memnet: MemoryNetwork,
                                                    peers_factory: Factory) -> None:
    early = [peers_factory(0), peers_factory(1)]
    for _ in range(5):
        for p in early:
            p.process_messages()
            p.train_step()
    sync(early)
    history = tx_ids(early[0])
    assert len(history) >= 5
    late = peers_factory(2)  # heard none of it; its hello asks for heads
    assert len(late.tangle) == 1
    sync([*early, late])
    assert tx_ids(late) == history
    assert late.tangle.pending_count == 0


def test_child_arriving_before_its_parent_waits_then_enters_after_it(
        memnet: MemoryNetwork, peers_factory: Factory) -> None:
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    parent = forge(memnet, "mallory", [g.id], encode_weights(good_weights(peer, 0.9)),
                   store_record=False, send=False)
    child = forge(memnet, "mallory", [parent.id], encode_weights(good_weights(peer, 0.8)))
    peer.process_messages()
    assert child.id not in peer.tangle and peer.tangle.is_pending(child.id)
    assert sample(peer, "gridd_pending_transactions") == 1
    assert sample(peer, "gridd_ipfs_fetch_errors_total") >= 1  # it tried to fetch the parent
    memnet.broker("mallory").publish(peer.topic, messages.tx_message(parent))
    peer.process_messages()
    order = [tx.id for tx in peer.tangle.transactions()]
    assert order == [g.id, parent.id, child.id]
    assert peer.tangle.pending_count == 0 and sample(peer, "gridd_pending_transactions") == 0


@pytest.mark.parametrize(
    ("reason", "make_blob"),
    [
        ("wrong_shape", lambda w: encode_weights([w[1], w[0], *w[2:]])),
        ("wrong_shape", lambda w: encode_weights([a.astype(np.float64) for a in w])),
        ("nan", lambda w: encode_weights([np.full_like(w[0], np.nan), *w[1:]])),
        ("oversized", lambda w: encode_weights([np.zeros((4096, 64), np.float32)])),
        ("malformed_weights", lambda w: b"\x93not msgpack weights"),
    ],
)
def test_bad_weights_are_rejected_counted_and_remembered(
        memnet: MemoryNetwork, peers_factory: Factory, reason: str,
        make_blob: Callable[[list[np.ndarray]], bytes]) -> None:
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    bad = forge(memnet, "mallory", [g.id], make_blob(list(g.weights)))
    child = forge(memnet, "mallory", [bad.id], encode_weights(good_weights(peer)))
    peer.process_messages()
    assert bad.id not in peer.tangle and child.id not in peer.tangle
    assert peer.builder.rejected[bad.id] == reason
    assert rejected(peer, reason) == 1
    assert rejected(peer, "bad_parent") == 1
    # the same transaction again (e.g. in someone's heads) is not fetched or counted again
    memnet.broker("mallory").publish(peer.topic, messages.heads_message([bad.id], 2))
    peer.process_messages()
    assert rejected(peer, reason) == 1
    # and the peer keeps working
    assert peer.train_step().published


def test_malformed_messages_and_lying_senders_are_counted_not_fatal(
        memnet: MemoryNetwork, peers_factory: Factory) -> None:
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    peer.process_messages()  # its own hello
    mallory = memnet.broker("mallory")
    for junk in (b"", b"\xff" * 10, b"\x81\xa1t\xa1x"):
        mallory.publish(peer.topic, junk)
    honest = forge(memnet, "alice", [g.id], encode_weights(good_weights(peer, 0.5)), send=False)
    claim = Transaction.create([g.id], honest.weights_cid, "alice", 7.0)
    lie = claim.signed(memnet.keyring.sign("mallory", claim.signing_bytes()))
    mallory.publish(peer.topic, messages.tx_message(lie))  # "alice's", signed by mallory
    mallory.publish(peer.topic, messages.heads_message([], 0)[:-3] + b"abc")
    assert peer.process_messages() == 5
    assert rejected(peer, "malformed") == 4
    assert rejected(peer, "bad_signature") == 1
    assert lie.id not in peer.tangle
    # alice's real transaction relayed by mallory is alice's: who signed it, not who sent it
    mallory.publish(peer.topic, messages.tx_message(honest))
    peer.process_messages()
    assert honest.id in peer.tangle and peer.tangle[honest.id].issuer == "alice"


def test_observer_follows_but_never_trains(peers_factory: Factory) -> None:
    trainer, observer = peers_factory(0), peers_factory(1, dataset=None)
    assert observer.train_step().reason == "observer"
    assert trainer.train_step().published
    sync([trainer, observer])
    assert tx_ids(observer) == tx_ids(trainer)
    assert observer.counters.published == 0 and observer.client_epochs == 0


def test_data_that_does_not_fit_the_recipe_is_refused_at_open(
        memnet: MemoryNetwork, genesis_id: str) -> None:
    x = np.zeros((10, 8), np.float32)
    y = np.zeros(10, np.int64)
    with pytest.raises(DataError, match=r"input shape \(64,\)"):
        make_peer(genesis_id, memnet.broker("p"), memnet.store(), Dataset(x, y, x, y))
    x = np.zeros((10, 64), np.float32)
    y = np.full(10, 12, np.int64)
    with pytest.raises(DataError, match="labels must be in"):
        make_peer(genesis_id, memnet.broker("p"), memnet.store(), Dataset(x, y, x, y))


# -- persistence -----------------------------------------------------------------------------


def test_restart_resumes_tangle_identity_and_counters(
        memnet: MemoryNetwork, genesis_id: str, shards: list[Dataset], tmp_path: Path) -> None:
    a = make_peer(genesis_id, memnet.broker("A"), memnet.store(), shards[0], state_dir=tmp_path)
    other = make_peer(genesis_id, memnet.broker("B"), memnet.store(), shards[1], seed=1)
    for _ in range(3):
        a.train_step()
        other.process_messages()
        other.train_step()
        a.process_messages()
    seen, epochs = tx_ids(a), a.client_epochs
    assert len(seen) >= 4 and epochs == 3
    # a crash mid-append leaves a torn record; a crash mid-rename never leaves a torn
    # state.json, but a damaged one must not stop the peer either
    with open(tmp_path / LOG_FILE, "ab") as f:
        f.write(b"\x00\x00\x01\x00\xde\xad")
    a.close()
    b = make_peer(genesis_id, memnet.broker("A"), memnet.store(), shards[0], state_dir=tmp_path)
    assert tx_ids(b) == seen and b.client_epochs == epochs
    assert b.published and set(b.published) <= seen
    b.train_step()  # appends after cutting the torn tail
    b.close()
    (tmp_path / STATE_FILE).write_text('{"genesis_id": "')
    c = make_peer(genesis_id, memnet.broker("A"), memnet.store(), shards[0], state_dir=tmp_path)
    assert seen <= tx_ids(c) and c.client_epochs == 0  # counters lost, history not
    c.close()
    other.close()


def test_state_dir_of_another_tangle_is_refused(memnet: MemoryNetwork, genesis_id: str,
                                                tmp_path: Path) -> None:
    make_peer(genesis_id, memnet.broker("A"), memnet.store(), None, state_dir=tmp_path).close()
    other = create_genesis(memnet.store(), DIGITS, init_seed=99)
    with pytest.raises(ValueError, match="belongs to tangle"):
        make_peer(other, memnet.broker("A"), memnet.store(), None, state_dir=tmp_path)


# -- training --------------------------------------------------------------------------------


def test_numpy_peers_learn_digits_well_above_chance(
        memnet: MemoryNetwork, peers_factory: Factory,
        digits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    peers = [peers_factory(i) for i in range(4)]
    start = peers[0].consensus_weights()
    for _ in range(8):
        for p in peers:
            p.process_messages()
            p.train_step()
    sync(peers)
    x_test, y_test = digits[2], digits[3]
    model = build_model(DIGITS, start, prefer="numpy")
    before = model.evaluate(x_test, y_test)["accuracy"]
    model.set_weights(peers[0].consensus_weights())
    after = model.evaluate(x_test, y_test)["accuracy"]
    assert before < 0.3 and after > 0.85, (before, after)
    assert sample(peers[0], "gridd_consensus_accuracy") > 0.7
    assert sample(peers[0], "gridd_trainings_total") == 8
    assert peers[0].client_epochs == 8 * DIGITS.local_epochs


def test_never_publishes_a_model_worse_than_the_reference(peers_factory: Factory) -> None:
    peer = peers_factory(0, settings=fast_settings(min_improvement=1.0))  # unbeatable
    result = peer.train_step()
    assert not result.published and result.reason == "not_better"
    assert result.local is not None and result.reference is not None
    assert len(peer.tangle) == 1 and sample(peer, "gridd_tx_published_total") == 0


def test_run_loop_honours_interval_and_quota(peers_factory: Factory) -> None:
    busy = peers_factory(0, settings=fast_settings(training_interval=0.0))
    idle = peers_factory(1, settings=fast_settings(training_interval=0.05, active_quota=0.0))
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,)) for p in (busy, idle)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert sample(busy, "gridd_trainings_total") >= 3
    assert sample(idle, "gridd_trainings_total") == 0
    assert busy.counters.messages > 0  # it kept reading while training back to back
    sync([busy, idle])
    assert tx_ids(idle) == tx_ids(busy) and len(tx_ids(idle)) > 1


def test_hellos_do_not_flood_a_large_topic(memnet: MemoryNetwork, peers_factory: Factory
                                           ) -> None:
    crowd = [peers_factory(i, dataset=None) for i in range(30)]
    sync(crowd, rounds=2)
    assert sum(p.counters.hello_answered for p in crowd) == 0  # nobody knows more than genesis
    trainer = peers_factory(30)
    assert trainer.train_step().published
    sync([*crowd, trainer], rounds=2)
    before = sum(p.counters.hello_answered for p in crowd)
    late = peers_factory(31, dataset=None)
    deadline = time.monotonic() + 10  # an unanswered hello is repeated after 2 s
    while tx_ids(late) != tx_ids(trainer) and time.monotonic() < deadline:
        sync([*crowd, trainer, late], rounds=1)
        time.sleep(0.05)
    assert tx_ids(late) == tx_ids(trainer)
    answers = sum(p.counters.hello_answered for p in [*crowd, trainer]) - before
    assert 1 <= answers <= 15, answers  # a few per hello, not 31


def test_made_up_heads_and_parents_are_given_up_and_forgotten(
        memnet: MemoryNetwork, peers_factory: Factory) -> None:
    """Unavailable content costs a bounded number of fetches, then nothing is kept."""
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    now = [0.0]
    peer.builder.clock = lambda: now[0]
    invented = "e" * 64
    orphan = forge(memnet, "mallory", ["f" * 64], encode_weights(good_weights(peer)))
    memnet.broker("mallory").publish(peer.topic, messages.heads_message([invented], 9))
    peer.process_messages()
    assert peer.tangle.is_pending(orphan.id) and peer.builder.wanted_count == 2
    for _ in range(20):
        if not peer.builder.outstanding:
            break
        now[0] += 61.0  # past any backoff
        peer.process_messages()
    assert not peer.tangle.is_pending(orphan.id) and orphan.id not in peer.tangle
    assert rejected(peer, "unavailable_parent") == 1
    assert peer.builder.outstanding == 0 and peer.tangle.pending_count == 0
    assert orphan.id not in peer.builder.rejected  # not remembered: it may come back
    errors = sample(peer, "gridd_ipfs_fetch_errors_total")
    memnet.broker("mallory").publish(peer.topic, messages.heads_message([invented], 9))
    peer.process_messages()  # given up: naming it again costs no fetch
    assert sample(peer, "gridd_ipfs_fetch_errors_total") == errors
    assert peer.builder.outstanding == 0


def test_wanted_ids_are_capped_and_pruned(memnet: MemoryNetwork, peers_factory: Factory
                                          ) -> None:
    """Heads naming thousands of ids cannot grow what the peer remembers to fetch."""
    from gridd.tree import builder as b

    peer = peers_factory(0)
    rng = np.random.default_rng(0)

    def made_up() -> list[str]:
        return ["".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(64)]

    for i in range(40):  # many senders, so no single-sender budget is what stops them
        peer.builder.want(made_up(), rumour=True, origin=f"sybil-{i}")
    assert peer.builder.wanted_count == b.MAX_RUMOURS
    for i in range(40):  # the same through the network: fetches are bounded too
        memnet.broker(f"sybil-{i}").publish(peer.topic, messages.heads_message(made_up(), 9))
    peer.process_messages()
    assert peer.builder.wanted_count <= b.MAX_RUMOURS
    assert sample(peer, "gridd_ipfs_fetch_errors_total") <= b.MAX_RUMOURS
    # parents that no pending transaction needs any more are dropped
    g = peer.genesis
    assert g is not None
    orphan = forge(memnet, "mallory", ["d" * 64], encode_weights(good_weights(peer)))
    peer.process_messages()
    assert peer.tangle.is_pending(orphan.id)
    peer.tangle.discard_waiting_on("d" * 64)
    peer.process_messages()
    assert "d" * 64 not in peer.builder._wanted


def test_sender_naming_unavailable_content_is_throttled(memnet: MemoryNetwork,
                                                        peers_factory: Factory) -> None:
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    now = [0.0]
    peer.builder.clock = lambda: now[0]
    mallory = memnet.broker("mallory")
    for i in range(6):
        tx = signed(memnet, Transaction.create([g.id], raw_cid(b"nobody has %d" % i),
                                               "mallory", float(i)))
        mallory.publish(peer.topic, messages.tx_message(tx))
    for _ in range(4):
        peer.process_messages()
        now[0] += 2.0  # past the first backoffs, well within the strikes' half-life
    assert peer.builder.throttled("mallory")
    throttled = sample(peer, "gridd_senders_throttled_total")
    late = signed(memnet, Transaction.create([g.id], raw_cid(b"more junk"), "mallory", 99.0))
    mallory.publish(peer.topic, messages.tx_message(late))
    peer.process_messages()
    assert sample(peer, "gridd_senders_throttled_total") == throttled + 1
    assert late.id not in peer.builder._awaiting
    # honest peers are not affected, and strikes decay
    honest = forge(memnet, "alice", [g.id], encode_weights(good_weights(peer, 0.5)))
    peer.process_messages()
    assert honest.id in peer.tangle
    now[0] += 3600.0
    assert not peer.builder.throttled("mallory")


def test_weights_that_arrive_late_are_retried_then_accepted(memnet: MemoryNetwork,
                                                            peers_factory: Factory) -> None:
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    now = [0.0]
    peer.builder.clock = lambda: now[0]
    blob = encode_weights(good_weights(peer, 0.7))
    tx = signed(memnet, Transaction.create([g.id], raw_cid(blob), "mallory", 1.0))  # no weights yet
    memnet.broker("mallory").publish(peer.topic, messages.tx_message(tx))
    peer.process_messages()
    assert tx.id not in peer.tangle and peer.builder.outstanding == 1
    memnet.store().put(blob)  # the provider comes back
    now[0] += 120.0
    peer.process_messages()
    assert tx.id in peer.tangle and peer.builder.outstanding == 0
    # one that never arrives is counted as unavailable after a few tries, not remembered
    lost = signed(memnet, Transaction.create([g.id], raw_cid(b"never stored"), "mallory", 2.0))
    memnet.broker("mallory").publish(peer.topic, messages.tx_message(lost))
    for _ in range(8):
        peer.process_messages()
        now[0] += 120.0
    assert rejected(peer, "unavailable") == 1 and lost.id not in peer.builder.rejected
    assert peer.builder.outstanding == 0


def test_history_in_someone_elses_name_is_rejected(memnet: MemoryNetwork,
                                                  peers_factory: Factory) -> None:
    """A record claiming issuer=alice but signed by mallory (or by nobody), put into the
    store and named in a heads message, never enters the tangle as alice's."""
    peer = peers_factory(0)
    g = peer.genesis
    assert g is not None
    store = memnet.store()
    cid = store.put(encode_weights(good_weights(peer, 0.9)))
    claim = Transaction.create([g.id], cid, "alice", 1.0, metadata={"accuracy": 0.99})
    forged = claim.signed(memnet.keyring.sign("mallory", claim.signing_bytes()))
    unsigned = Transaction.create([g.id], cid, "alice", 2.0)
    honest = signed(memnet, Transaction.create([g.id], cid, "alice", 3.0))
    for tx in (forged, unsigned, honest):
        put_record(store, tx)
    memnet.broker("mallory").publish(
        peer.topic, messages.heads_message([forged.id, unsigned.id, honest.id], 9))
    peer.process_messages()
    assert forged.id not in peer.tangle and unsigned.id not in peer.tangle
    assert honest.id in peer.tangle
    assert rejected(peer, "bad_signature") == 1 and rejected(peer, "unsigned") == 1
    assert peer.builder.rejected[forged.id] == "bad_signature"


def test_published_transactions_are_signed_by_their_issuer(memnet: MemoryNetwork,
                                                           peers_factory: Factory) -> None:
    from gridd import identity

    peer = peers_factory(0)
    step = peer.train_step()
    assert step.published and step.tx_id is not None
    tx = peer.tangle[step.tx_id]
    assert tx.signature and memnet.keyring.verify(peer.peer_id, tx.signing_bytes(),
                                                  tx.signature)
    assert not memnet.keyring.verify("someone-else", tx.signing_bytes(), tx.signature)
    assert not identity.verify(peer.peer_id, tx.signing_bytes(), tx.signature)  # not an id
