"""Prometheus metrics. Each worker/peer owns a registry, so many can live in one process (lab)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

TRAINING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

# Known label values, exported at 0 from the start: a dashboard's per-reason panel then
# shows 0 instead of "no data" on a healthy node (and its query can be checked).
INBOX_DROP_REASONS = ("oversized", "rate", "sender_share", "full")
PUBLISH_ERROR_REASONS = ("oversized", "queue_full", "error")
FETCH_REFUSED_REASONS = ("duplicate", "queue_full", "sender_queue_full")
TX_REJECT_REASONS = ("malformed", "unsigned", "bad_signature", "bad_issuer", "bad_record",
                     "bad_parent", "unavailable", "unavailable_parent")


def _zero(counter: Counter, reasons: tuple[str, ...]) -> Counter:
    for reason in reasons:
        counter.labels(reason=reason)
    return counter


class RuntimeMetrics:
    """The node runtime (gridd.runtime): what the network sent and what was refused.

    Lives in the same registry as the mode's metrics, so one /metrics shows both.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_handled = Counter(
            "gridd_messages_handled", "Pubsub messages handled by the node loop", registry=r
        )
        self.messages_dropped = _zero(Counter(
            "gridd_inbox_dropped", "Pubsub messages refused before queueing (oversized, rate, "
            "sender_share, full)", ["reason"], registry=r,
        ), INBOX_DROP_REASONS)
        self.inbox_bytes = Gauge("gridd_inbox_bytes", "Bytes waiting in the inbox", registry=r)
        self.handler_errors = Counter(
            "gridd_handler_errors", "Unexpected errors while handling a message", registry=r
        )
        self.reader_restarts = Counter(
            "gridd_reader_restarts", "Subscription reader threads restarted by the watchdog",
            registry=r,
        )
        self.topic_peers = Gauge(
            "gridd_topic_peers", "Peers subscribed to this node's topic", registry=r
        )
        self.redials = Counter(
            "gridd_peer_redials", "Connections re-dialled to peers seen on our topics", registry=r
        )
        self.publish_errors = _zero(Counter(
            "gridd_publish_errors", "Publishes that failed or were dropped", ["reason"],
            registry=r,
        ), PUBLISH_ERROR_REASONS)
        self.fetch_refused = _zero(Counter(
            "gridd_fetch_refused", "Fetches not queued (duplicate, queue_full, "
            "sender_queue_full)", ["reason"], registry=r,
        ), FETCH_REFUSED_REASONS)
        self.fetch_seconds = Histogram(
            "gridd_fetch_seconds", "Time of one fetch in the fetch pool",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120), registry=r,
        )
        self.senders_throttled = Counter(
            "gridd_senders_throttled", "Announcements ignored because their sender kept naming "
            "content nobody serves", registry=r,
        )


class ComputeMetrics:
    """Compute-mode worker: jobs and the cost of running them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs_accepted = Counter("gridd_jobs_accepted", "Jobs this worker started", registry=r)
        self.jobs_completed = Counter(
            "gridd_jobs_completed", "Jobs finished and returned", registry=r
        )
        self.jobs_failed = Counter(
            "gridd_jobs_failed", "Jobs that failed while running", ["reason"], registry=r
        )
        self.jobs_refused = Counter(
            "gridd_jobs_refused", "Jobs or messages refused", ["reason"], registry=r
        )
        self.jobs_running = Gauge("gridd_jobs_running", "Jobs running now", registry=r)
        self.training_seconds = Histogram(
            "gridd_training_seconds", "Wall time of one training", buckets=TRAINING_BUCKETS,
            registry=r,
        )
        self.bytes_fetched = Counter(
            "gridd_ipfs_fetch_bytes", "Bytes fetched from IPFS", registry=r
        )
        self.fetch_errors = Counter("gridd_ipfs_fetch_errors", "Failed IPFS fetches", registry=r)
        self.fed_rounds = Counter(
            "gridd_fed_worker_rounds", "Federated rounds this worker trained or evaluated",
            registry=r,
        )
        self.fed_declined = Counter(
            "gridd_fed_worker_declined", "Federated rounds this worker declined", ["reason"],
            registry=r,
        )
        self.runtime = RuntimeMetrics(r)


class FederatedMetrics:
    """A federated job's coordinator (the notebook): rounds, updates, time per round."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rounds = Counter(
            "gridd_fed_rounds", "Federated rounds finished (completed) or run again (retried)",
            ["outcome"], registry=r,
        )
        self.updates = Counter(
            "gridd_fed_updates", "Worker updates accepted or rejected, by reason",
            ["outcome", "reason"], registry=r,
        )
        self.round_seconds = Histogram(
            "gridd_fed_round_seconds", "Wall time of one federated round",
            buckets=TRAINING_BUCKETS, registry=r,
        )
        self.round_overhead_seconds = Histogram(
            "gridd_fed_round_overhead_seconds", "Round wall time minus the slowest worker's "
            "compute time", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.runtime = RuntimeMetrics(r)


class TreeMetrics:
    """Tree-mode peer: the tangle as this peer sees it, and its training."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tx_received = Counter(
            "gridd_tx_received", "Transactions inserted from the network", registry=r
        )
        self.tx_published = Counter(
            "gridd_tx_published", "Transactions this peer published", registry=r
        )
        self.tx_rejected = _zero(Counter(
            "gridd_tx_rejected", "Transactions or messages rejected", ["reason"], registry=r
        ), TX_REJECT_REASONS)
        self.tips_vetted_out = _zero(Counter(
            "gridd_tips_vetted_out", "Candidate models this peer refused to average",
            ["reason"], registry=r
        ), ("deviation", "mix_loss", "own_accuracy"))
        self.trainings = Counter("gridd_trainings", "Local trainings run", registry=r)
        self.training_seconds = Histogram(
            "gridd_training_seconds", "Wall time of one local training", buckets=TRAINING_BUCKETS,
            registry=r,
        )
        self.consensus_accuracy = Gauge(
            "gridd_consensus_accuracy", "Reference (consensus) model accuracy on local data",
            registry=r,
        )
        self.consensus_loss = Gauge(
            "gridd_consensus_loss", "Reference model loss on local data", registry=r
        )
        self.local_accuracy = Gauge(
            "gridd_local_accuracy", "Accuracy of this peer's last trained model", registry=r
        )
        self.local_loss = Gauge("gridd_local_loss", "Loss of the last trained model", registry=r)
        self.pending = Gauge(
            "gridd_pending_transactions", "Transactions waiting for their parents", registry=r
        )
        self.tangle_size = Gauge(
            "gridd_tangle_transactions", "Transactions in the tangle", registry=r
        )
        self.bytes_fetched = Counter(
            "gridd_ipfs_fetch_bytes", "Bytes fetched from IPFS", registry=r
        )
        self.fetch_errors = Counter("gridd_ipfs_fetch_errors", "Failed IPFS fetches", registry=r)
        self.peers_seen = Gauge(
            "gridd_tree_peers_seen", "Peers heard on the tangle topic or seen as issuers",
            registry=r,
        )
        self.runtime = RuntimeMetrics(r)


METRICS_ADDR_ENV = "GRIDD_METRICS_ADDR"


def serve(registry: CollectorRegistry, port: int, addr: str | None = None) -> int:
    """Expose a registry on http://addr:port/metrics; port 0 picks a free one. Returns the port.
    addr: default $GRIDD_METRICS_ADDR, else 127.0.0.1 (containers set 0.0.0.0, so that a
    Prometheus beside them can scrape)."""
    addr = addr or os.environ.get(METRICS_ADDR_ENV) or "127.0.0.1"
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return int(server.server_address[1])
