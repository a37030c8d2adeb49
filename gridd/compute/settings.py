"""Settings of a compute worker: limits on what it accepts from the network."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridd.models.keras_budget import DEFAULT_MAX_PARAMS


@dataclass(frozen=True)
class ComputeSettings:
    api: str | None = None  # Kubo RPC address (multiaddr or URL); None = $GRIDD_IPFS_API/default
    slots: int = 1  # jobs run at once
    accept_from: tuple[str, ...] = ()  # peer ids allowed to submit jobs; empty = anyone
    metrics_port: int | None = None  # Prometheus port; None = no metrics server
    max_job_bytes: int = 256 * 1024 * 1024  # model + data fetched for one job
    max_params: int = DEFAULT_MAX_PARAMS  # parameters a job's model may declare (config.json)
    max_epochs: int = 1000
    max_wall_seconds: float = 3600.0
    heartbeat_interval: float = 2.0  # worker ads and running-job heartbeats
    result_ttl: float = 86_400.0  # seconds a result stays pinned here (advertised in ads)
    topic: str = "gridd/compute/v2"
    datasets: tuple[str, ...] = ()  # NAME=PATH.npz kept here for federated jobs, never sent
    holdout: float = 0.1  # of each dataset without x_val/y_val: kept aside for evaluation
    bootstrap: tuple[str, ...] = ()  # multiaddrs kept connected (--bootstrap, GRIDD_BOOTSTRAP)
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        if self.max_job_bytes < 1024:
            raise ValueError("max_job_bytes must be at least 1024")
        if self.max_params < 1:
            raise ValueError("max_params must be at least 1")
        if self.max_epochs < 1:
            raise ValueError("max_epochs must be at least 1")
        if self.max_wall_seconds <= 0:
            raise ValueError("max_wall_seconds must be positive")
        if self.heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        if not self.result_ttl > 0:
            raise ValueError("result_ttl must be positive")
        if not 0 <= self.holdout < 1:
            raise ValueError("holdout must be in [0, 1)")
