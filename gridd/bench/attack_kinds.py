"""The attacks: each runs from the foreign node until told to stop, as fast as Kubo accepts.

An attack is a function of an `AttackContext` (the foreign node, the topics, a seeded rng,
a stop event) plus an optional `prepare` that builds its payloads before the measured window
opens, so payload crafting never counts against the honest nodes' figures. Attacks only use
the foreign node's raw RPC (attack_foreign) and hand-built bytes (attack_payloads).

Peers verify signatures before anything else, so the attacks that are about what comes
after (fetching parents and weights, the compute protocol's rules) sign what they send with
the foreign node's own key (`key/sign`): a stranger has a key, and its signed records and
claims are authentic, only hostile. Two cheap attacks keep the signature check itself under
fire: `unsigned` (version-1 records, plain compute envelopes) and `forged_signer` (records
and seals naming an honest peer as their author, signed with our key).
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gridd.bench import attack_payloads as pl
from gridd.bench.attack_foreign import ForeignNode, Heard, Watch, unserved_cid

GENESIS_WEIGHTS_LIMIT = 64 * 1024 * 1024


@dataclass
class AttackContext:
    """What an attack may use: its own node and what any outsider can learn from the topics."""

    node: ForeignNode
    genesis_id: str
    tree_topic: str
    compute_topic: str
    stop: threading.Event
    seed: int
    rng: random.Random
    speaker: pl.ComputeSpeaker = field(default_factory=pl.ComputeSpeaker)
    stats: collections.Counter[str] = field(default_factory=collections.Counter)
    prepared: Any = None
    tips: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=32))
    # honest authors heard: tree issuers (from records) and compute authors (from seals)
    issuers: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    authors: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    identities: set[str] = field(default_factory=set)  # ours beyond the daemon's (key/gen)
    _watches: dict[str, Watch] = field(default_factory=dict)
    _genesis: tuple[str, list[tuple[tuple[int, ...], str]]] | None = None

    @property
    def running(self) -> bool:
        return not self.stop.is_set()

    def watch(self, topic: str) -> Watch:
        """Subscribe the foreign node to a topic (once); tree heads/tx feed `tips`."""
        w = self._watches.get(topic)
        if w is None:
            w = self._watches[topic] = self.node.watch(topic)
            if topic == self.tree_topic:
                w.listen(self._learn_tips)
            else:
                w.listen(self._learn_fields)
            w.wait_open()
        return w

    def _learn_tips(self, h: Heard) -> None:
        got = pl.peek(h.data)
        if got is None:
            return
        kind, body = got
        if kind == "tree.heads" and isinstance(body.get("heads"), list):
            self.tips.extend(x for x in body["heads"][-4:] if isinstance(x, str))
        elif kind == "tree.tx" and isinstance(body.get("record"), bytes):
            rec = pl.record_fields(body["record"])
            if rec is not None:
                self.tips.append(rec["id"])
                if isinstance(rec["issuer"], str) and rec["issuer"] not in self.issuers:
                    self.issuers.append(rec["issuer"])

    def _learn_fields(self, h: Heard) -> None:
        got = pl.open_sealed(h.data)
        if got is not None:
            author, kind, body = got
            self.speaker.learn(kind, body)
            if author not in self.authors and author != self.node.peer_id:
                self.authors.append(author)

    @property
    def me(self) -> str:
        """Our identity: the foreign daemon's peer id, whose key signs what we send."""
        return self.node.peer_id

    def sign(self, data: bytes) -> bytes:
        return self.node.sign(data)

    def parents(self) -> list[str]:
        """Real parents for a forged transaction: a recently heard tip and the genesis."""
        tips = list(self.tips)
        return [tips[-1], self.genesis_id] if tips else [self.genesis_id]

    def genesis(self) -> tuple[str, list[tuple[tuple[int, ...], str]]]:
        """(weights CID, weights spec) of the genesis, fetched like any outsider would."""
        if self._genesis is None:
            record = self.node.cat(pl.record_cid(self.genesis_id), 64 * 1024)
            rec = pl.record_fields(record)
            if rec is None:
                raise RuntimeError("the genesis record does not parse")
            blob = self.node.cat(rec["weights_cid"], GENESIS_WEIGHTS_LIMIT)
            self._genesis = (rec["weights_cid"], pl.weights_spec(blob))
        return self._genesis

    def send(self, topic: str, data: bytes) -> bool:
        return self.node.pub(topic, data)

    def close(self) -> None:
        for w in self._watches.values():
            w.close()
        self._watches.clear()


@dataclass(frozen=True)
class Attack:
    name: str
    what: str
    run: Callable[[AttackContext], None]
    prepare: Callable[[AttackContext], Any] | None = None


# -- floods and garbage ---------------------------------------------------------------------------


def _flood(ctx: AttackContext, topic: str, data: bytes) -> None:
    while ctx.running:
        ctx.send(topic, data)


def flood_tree(ctx: AttackContext) -> None:
    _flood(ctx, ctx.tree_topic, pl.padded_envelope("tree.tx", "record", pl.FLOOD_BYTES))


def flood_compute(ctx: AttackContext) -> None:
    extra = {"job": "flood", "attempt": 0, "data": {}, "fit": {}, "bytes": 0, "exclude": []}
    _flood(ctx, ctx.compute_topic,
           pl.padded_envelope("compute.offer", "model", pl.FLOOD_BYTES, extra))


def random_bytes(ctx: AttackContext) -> None:
    topics = [ctx.tree_topic, ctx.compute_topic]
    for i, data in enumerate(pl.cycle(pl.random_payloads(ctx.rng), ctx.rng)):
        if not ctx.running:
            return
        ctx.send(topics[i % 2], data)


def _prepare_wrong_schema(ctx: AttackContext) -> list[tuple[str, bytes]]:
    """The corpus with every compute envelope sealed and signed by us, so the schema (or the
    time window), not the signature, is what refuses it."""
    topics = {"tree": ctx.tree_topic, "compute": ctx.compute_topic,
              "compute_raw": ctx.compute_topic}
    out = []
    for kind, data in pl.wrong_schema_corpus(ctx.rng):
        if kind == "compute":
            data = pl.seal(data, ctx.sign(data), ctx.me)
        out.append((topics[kind], data))
    return out


def wrong_schema(ctx: AttackContext) -> None:
    for topic, data in pl.cycle(ctx.prepared, ctx.rng):
        if not ctx.running:
            return
        ctx.send(topic, data)


# -- the tangle -----------------------------------------------------------------------------------


def _prepare_genesis(ctx: AttackContext) -> None:
    ctx.watch(ctx.tree_topic)
    ctx.genesis()


def made_up_parents(ctx: AttackContext) -> None:
    """Signed records (issuer = us) approving ids nobody has: receivers go fetch the parents."""
    weights_cid, _ = ctx.genesis()
    while ctx.running:
        parents = [pl.random_id(ctx.rng), pl.random_id(ctx.rng)]
        _, record = pl.tx_record(parents, weights_cid, ctx.me, sign=ctx.sign)
        ctx.send(ctx.tree_topic, pl.tree_tx(record))


def unserved_weights(ctx: AttackContext) -> None:
    """Signed transactions on real tips whose weights nobody serves: fetches time out."""
    while ctx.running:
        cid = unserved_cid(ctx.rng.randbytes(16))
        _, record = pl.tx_record(ctx.parents(), cid, ctx.me, sign=ctx.sign)
        ctx.send(ctx.tree_topic, pl.tree_tx(record))


HEADS_SERVED = 16  # of the 64 ids in each heads message, signed records we serve


def _prepare_heads(ctx: AttackContext, pool: int = 256) -> list[str]:
    """Signed records added to the foreign node, so heads naming them get past the record
    fetch and the signature check into the parent and weight fetches: half approve made-up
    parents (genesis weights), half name weights nobody serves (real tips)."""
    _prepare_genesis(ctx)
    weights_cid, _ = ctx.genesis()
    ids = []
    for i in range(pool):
        if i % 2:
            parents, cid = [pl.random_id(ctx.rng)], weights_cid
        else:
            parents, cid = ctx.parents(), unserved_cid(ctx.rng.randbytes(16))
        tx_id, record = pl.tx_record(parents, cid, ctx.me, sign=ctx.sign)
        ctx.node.add(record)  # a small raw blob: its CID is the record CID of tx_id
        ids.append(tx_id)
    return ids


def made_up_heads(ctx: AttackContext) -> None:
    """tree.heads of 64 ids: 16 signed records we serve (rotating through the pool) and 48
    made-up ids, each a record fetch that never ends."""
    served: list[str] = ctx.prepared
    i = 0
    while ctx.running:
        heads = [served[(i + k) % len(served)] for k in range(HEADS_SERVED)]
        heads += [pl.random_id(ctx.rng) for _ in range(64 - HEADS_SERVED)]
        i += HEADS_SERVED
        ctx.send(ctx.tree_topic, pl.tree_heads(heads))


def _bad_weights(make: Callable[[list[tuple[tuple[int, ...], str]], int], bytes],
                 pool: int | None
                 ) -> tuple[Callable[[AttackContext], Any], Callable[[AttackContext], None]]:
    """Put bad weights on the foreign node and name them in transactions on real tips.

    pool None: a fresh blob per transaction (defeats any per-CID memory of rejections);
    pool N: N blobs prepared up front (for blobs too big to add per message).
    """

    def prepare(ctx: AttackContext) -> list[str]:
        _prepare_genesis(ctx)
        _, spec = ctx.genesis()
        return [ctx.node.add(make(spec, i)) for i in range(pool or 0)]

    def run(ctx: AttackContext) -> None:
        _, spec = ctx.genesis()
        cids: list[str] = ctx.prepared
        salt = 10_000
        while ctx.running:
            salt += 1
            cid = cids[salt % len(cids)] if cids else ctx.node.add(make(spec, salt))
            _, record = pl.tx_record(ctx.parents(), cid, ctx.me, sign=ctx.sign)
            ctx.send(ctx.tree_topic, pl.tree_tx(record))
            ctx.stats["transactions"] += 1

    return prepare, run


# -- signatures -----------------------------------------------------------------------------------


def _prepare_signers(ctx: AttackContext) -> None:
    """Hear both topics first: honest tree issuers and compute authors to impersonate."""
    _prepare_genesis(ctx)
    ctx.watch(ctx.compute_topic)
    deadline = time.monotonic() + 10.0
    while (not ctx.issuers or not ctx.authors) and time.monotonic() < deadline:
        ctx.stop.wait(0.1)


def _compute_bait(ctx: AttackContext, i: int) -> bytes:
    """A well-formed compute envelope (claim or cancel of a made-up job), not yet sealed."""
    job = f"sig{i}-{ctx.rng.randbytes(3).hex()}"
    if i % 2:
        return pl.envelope("compute.cancel", {"job": job, "ts": time.time()})
    owner = ctx.authors[-1] if ctx.authors else ctx.me
    return pl.envelope("compute.claim", {"job": job, "attempt": 0, "owner": owner,
                                         "ts": time.time()})


def unsigned(ctx: AttackContext) -> None:
    """Version-1 (unsigned) records on real tips, and plain unsealed compute envelopes: each
    distinct, each refused as `unsigned` before anything it names is fetched."""
    weights_cid, _ = ctx.genesis()
    i = 0
    while ctx.running:
        i += 1
        _, record = pl.tx_record(ctx.parents(), weights_cid, ctx.me)
        ctx.send(ctx.tree_topic, pl.tree_tx(record))
        ctx.send(ctx.compute_topic, _compute_bait(ctx, i))


def forged_signer(ctx: AttackContext) -> None:
    """Records naming an honest tree peer as issuer, and compute seals naming an honest
    worker or client as author, all signed with our own key: `bad_signature`."""
    weights_cid, _ = ctx.genesis()
    i = 0
    while ctx.running:
        i += 1
        victim = ctx.issuers[i % len(ctx.issuers)] if ctx.issuers else ctx.genesis_id[:52]
        _, record = pl.tx_record(ctx.parents(), weights_cid, victim, sign=ctx.sign)
        ctx.send(ctx.tree_topic, pl.tree_tx(record))
        author = ctx.authors[i % len(ctx.authors)] if ctx.authors else ctx.me + "x"
        ctx.send(ctx.compute_topic, ctx.speaker.sealed(_compute_bait(ctx, i), author))
        ctx.stats["forged"] += 2


# -- replay ---------------------------------------------------------------------------------------


def _prepare_replay(ctx: AttackContext) -> None:
    ctx.watch(ctx.tree_topic)
    ctx.watch(ctx.compute_topic)


def replay(ctx: AttackContext) -> None:
    """Re-publish real tree and compute messages heard on the topics, newest first: sealed
    compute messages as recorded (the receivers' replay memory and time window refuse
    them), tree transactions signed by their issuers (already known: nothing to do)."""
    watches = [ctx.watch(ctx.tree_topic), ctx.watch(ctx.compute_topic)]
    while ctx.running:
        heard = [h for w in watches for h in list(w.recent)]
        if not heard:
            ctx.stop.wait(0.05)
            continue
        heard.sort(key=lambda h: -h.at)
        for h in heard[:200]:
            if not ctx.running:
                return
            ctx.send(h.topic, h.data)
            ctx.stats["replayed"] += 1


# -- the compute protocol -------------------------------------------------------------------------


def _compute_queue(ctx: AttackContext) -> queue.Queue[Heard]:
    return ctx.watch(ctx.compute_topic).queue()


def _prepare_compute(ctx: AttackContext) -> queue.Queue[Heard]:
    return _compute_queue(ctx)


def _heard(h: Heard) -> tuple[str, str, dict[str, Any], str, int] | None:
    """(author, type, body, job, attempt) of a sealed compute message about a job."""
    got = pl.open_sealed(h.data)
    if got is None:
        return None
    author, kind, b = got
    job, attempt = b.get("job"), b.get("attempt")
    if not isinstance(job, str) or not isinstance(attempt, int):
        return None
    return author, kind, b, job, attempt


def _epochs(body: dict[str, Any]) -> int:
    fit = body.get("fit")
    epochs = fit.get("epochs", 1) if isinstance(fit, dict) else 1
    return epochs if isinstance(epochs, int) else 1


SYBILS = 4  # identities the forged_compute attacker claims with (its daemon key + 3 made)


def _prepare_forged(ctx: AttackContext) -> tuple[queue.Queue[Heard],
                                                  list[tuple[str, pl.ComputeSpeaker]]]:
    """The compute queue, and SYBILS identities of the foreign daemon (key/gen): a client
    excludes a worker whose result it refused, so one identity gets one try per job."""
    q = _compute_queue(ctx)
    speakers = [(ctx.me, ctx.speaker)]
    for i in range(1, SYBILS):
        name = f"gridd-attack-sybil-{i}"
        peer = ctx.node.key(name)
        ctx.identities.add(peer)
        speakers.append((peer, ctx.speaker.speaking_as(
            lambda data, name=name: ctx.node.sign(data, key=name), peer)))
    return q, speakers


def _forgeries(ready: list[pl.ComputeSpeaker], sp: pl.ComputeSpeaker, job: str, attempt: int,
               owner: str, model: str, epochs: int) -> Iterator[bytes]:
    """What forged_compute sends for a victim's offer, built lazily: each message is a
    key/sign call, and the first (a claim) races the honest workers' claims."""
    for s in ready:
        yield s.claim(job, attempt, owner)
    for s in ready:
        yield s.done(job, attempt, model, owner, epochs)
    yield sp.failed(job, attempt, "error", owner)
    yield sp.failed(job, attempt, "busy", owner)
    yield sp.cancel(job)


def forged_compute(ctx: AttackContext) -> None:
    """Someone else's jobs: claim them as each of our identities not yet excluded, forge
    done/failed/cancel for them, and re-offer their ids with a higher attempt every 2 s
    (assigning our re-offer to whoever claims it). A job assigned to one of us gets beats and
    a `done` naming the client's own untrained model with the history of a good training.
    Everything is signed with our keys: authentic, and hostile."""
    q, speakers = ctx.prepared
    by_id = dict(speakers)
    sp = ctx.speaker
    topic = ctx.compute_topic
    victims: dict[str, dict[str, Any]] = {}
    ours: dict[tuple[str, int], str | None] = {}  # our re-offers -> worker we assigned
    next_reoffer = time.monotonic() + 2.0
    while ctx.running:
        h = _next(q, ctx, until=next_reoffer)
        got = _heard(h) if h is not None else None
        if got is not None:
            author, kind, b, job, attempt = got
            if kind == "compute.offer":
                v = victims.setdefault(job, {"owner": author, "body": b, "attempt": 0})
                if author == v["owner"]:
                    v["body"], v["attempt"] = b, max(v["attempt"], attempt)
                    ctx.stats["victim_offers"] += 1
                    excluded = set(b.get("exclude") or [])
                    ready = [s for peer, s in speakers if peer not in excluded]
                    forged = _forgeries(ready, sp, job, attempt, author, b.get("model", ""),
                                        _epochs(b))
                    for i, data in enumerate(forged):
                        ctx.send(topic, data)
                        ctx.stats["forged"] += 1
                        if i == 0:  # the claim race: how long hearing + signing + sending took
                            v.setdefault("heard", {})[attempt] = h.at
                            ctx.stats["claim_ms_ours"] = round(
                                (time.monotonic() - h.at) * 1000)
            elif kind == "compute.assign" and job in victims and b.get("worker") in by_id:
                v = victims[job]
                me = by_id[b["worker"]]
                ctx.stats["won_claims"] += 1
                ctx.send(topic, me.beat(job, attempt, v["owner"]))
                ctx.send(topic, me.done(job, attempt, v["body"]["model"], v["owner"],
                                        _epochs(v["body"])))
            elif (kind == "compute.claim" and job in victims and author not in by_id
                  and attempt in victims[job].get("heard", {})):
                heard = victims[job]["heard"].pop(attempt)
                ctx.stats["claim_ms_honest"] = round((h.at - heard) * 1000)
            elif (kind == "compute.claim" and (job, attempt) in ours
                  and ours[(job, attempt)] is None):
                ours[(job, attempt)] = author
                ctx.send(topic, sp.assign(job, attempt, author))
                ctx.stats["hijacked_assignments"] += 1
        if time.monotonic() >= next_reoffer:
            next_reoffer = time.monotonic() + 2.0
            for job, v in list(victims.items())[-16:]:
                v["attempt"] = min(999, v["attempt"] + 1)
                b = v["body"]
                ours[(job, v["attempt"])] = None
                ctx.send(topic, sp.offer(job, v["attempt"], b.get("model", ""),
                                         b.get("data", {}), b.get("fit"), b.get("bytes", 0)))
                ctx.stats["reoffers"] += 1


def busy_claimer(ctx: AttackContext) -> None:
    """Advertise plenty of free slots, claim every offer, answer every assignment `busy`."""
    q: queue.Queue[Heard] = ctx.prepared
    sp = ctx.speaker
    topic = ctx.compute_topic
    me = ctx.me
    next_ad = 0.0
    while ctx.running:
        if time.monotonic() >= next_ad:
            ctx.send(topic, sp.ad())
            next_ad = time.monotonic() + 1.0
        h = _next(q, ctx, until=next_ad)
        got = _heard(h) if h is not None else None
        if got is None:
            continue
        author, kind, b, job, attempt = got
        if kind == "compute.offer":
            ctx.send(topic, sp.claim(job, attempt, author))
            ctx.stats["claims"] += 1
        elif kind == "compute.assign" and b.get("worker") == me:
            ctx.send(topic, sp.failed(job, attempt, "busy", author))
            ctx.stats["busy_answers"] += 1


def _next(q: queue.Queue[Heard], ctx: AttackContext, until: float) -> Heard | None:
    wait = max(0.0, min(0.1, until - time.monotonic()))
    try:
        return q.get(timeout=wait) if wait > 0 else q.get_nowait()
    except queue.Empty:
        return None


def _hostile_jobs(model: Callable[[], bytes], x: Callable[[], bytes]
                  ) -> tuple[Callable[[AttackContext], Any], Callable[[AttackContext], None]]:
    """Act as a client offering jobs with a hostile file: a new job id every second, each
    assigned to the first worker that claims it (so the worker really fetches and loads)."""

    def prepare(ctx: AttackContext) -> tuple[queue.Queue[Heard], str, dict[str, str], int]:
        q = _compute_queue(ctx)
        m, xs = model(), x()
        _, y = pl.job_arrays(seed=ctx.seed)
        data = {"x": ctx.node.add(xs), "y": ctx.node.add(y)}
        return q, ctx.node.add(m), data, len(m) + len(xs) + len(y)

    def run(ctx: AttackContext) -> None:
        q, model_cid, data, nbytes = ctx.prepared
        sp = ctx.speaker
        topic = ctx.compute_topic
        jobs: dict[str, str | None] = {}
        next_offer = 0.0
        while ctx.running:
            if time.monotonic() >= next_offer:
                job = f"atk{len(jobs)}-{ctx.rng.randbytes(4).hex()}"
                jobs[job] = None
                ctx.send(topic, sp.offer(job, 0, model_cid, data, {"epochs": 1}, nbytes))
                ctx.stats["offers"] += 1
                next_offer = time.monotonic() + 1.0
            h = _next(q, ctx, until=next_offer)
            got = _heard(h) if h is not None else None
            if got is None or got[3] not in jobs:
                continue
            author, kind, b, job, attempt = got
            if kind == "compute.claim" and jobs[job] is None:
                jobs[job] = author
                ctx.send(topic, sp.assign(job, attempt, author))
                ctx.stats["assigned"] += 1
            elif kind in ("compute.refused", "compute.failed", "compute.done"):
                ctx.stats[kind.split(".")[1]] += 1

    return prepare, run


def _job_x() -> bytes:
    return pl.job_arrays()[0]


_lambda = _hostile_jobs(pl.lambda_keras, _job_x)
_bomb = _hostile_jobs(pl.param_bomb_keras, _job_x)
_pickle = _hostile_jobs(pl.safe_keras, pl.pickled_npy)
_huge = _bad_weights(pl.huge_weights, pool=4)
_nan = _bad_weights(pl.nan_weights, pool=None)
_shape = _bad_weights(pl.wrong_shape_weights, pool=None)

ATTACKS: dict[str, Attack] = {a.name: a for a in [
    Attack("flood_tree", "1 MiB messages on the tree topic, back to back", flood_tree),
    Attack("flood_compute", "1 MiB messages on the compute topic, back to back", flood_compute),
    Attack("random_bytes", "random bytes on both topics", random_bytes),
    Attack("wrong_schema", "right envelopes, wrong bodies (compute ones signed), both topics",
           wrong_schema, _prepare_wrong_schema),
    Attack("unsigned", "unsigned tree.tx records and unsealed compute messages", unsigned,
           _prepare_signers),
    Attack("forged_signer", "tree.tx and compute seals naming an honest author, signed by us",
           forged_signer, _prepare_signers),
    Attack("made_up_parents", "signed tree.tx approving made-up parents", made_up_parents,
           _prepare_genesis),
    Attack("unserved_weights", "signed tree.tx naming weights nobody serves", unserved_weights,
           _prepare_genesis),
    Attack("made_up_heads", "tree.heads: 16 signed records we serve + 48 made-up ids",
           made_up_heads, _prepare_heads),
    Attack("huge_weights", "signed tree.tx naming 16 MiB weights", _huge[1], _huge[0]),
    Attack("nan_weights", "signed tree.tx naming NaN/inf weights", _nan[1], _nan[0]),
    Attack("wrong_shape_weights", "signed tree.tx naming wrong-shaped weights", _shape[1],
           _shape[0]),
    Attack("replay", "recorded tree and sealed compute messages re-published", replay,
           _prepare_replay),
    Attack("forged_compute", "signed claims/done/failed/re-offers for a victim's job; a "
           "won claim returns the untrained model; 4 identities", forged_compute, _prepare_forged),
    Attack("busy_claimer", "claims every offer, answers busy", busy_claimer, _prepare_compute),
    Attack("lambda_model", "job offers with a Lambda-layer model", _lambda[1], _lambda[0]),
    Attack("param_bomb", "job offers with a 16384x8192 Dense in a tiny .keras", _bomb[1],
           _bomb[0]),
    Attack("pickled_data", "job offers whose x is a pickled .npy", _pickle[1], _pickle[0]),
]}
