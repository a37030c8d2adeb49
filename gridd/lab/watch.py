"""What a lab shows while it runs: the web view on its observer, the FedAvg baseline, the
Prometheus target list, and the accuracy PNG written next to the lab's JSON.

The observer lives in the lab's thread, so the lab calls `LabWatch.point()` after each
sample; the feed copies what is new from there (see gridd.web.feed) and the web server's
threads read only those copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gridd.lab.options import LabOptions, Point
from gridd.tree.peer import TreePeer

BASELINE_LABEL = "FedAvg, all clients, same data (this process)"


def fedavg_baseline(opts: LabOptions) -> list[tuple[int, float]]:
    """(client-epochs, test accuracy) after each FedAvg round on the lab's data split, as
    many rounds as the lab's budget pays for (a round costs one epoch per client)."""
    from gridd.bench.tree import fedavg

    rounds = max(1, opts.budget // opts.peers)
    curve = fedavg(opts.peers, opts.alpha, opts.seed, rounds)
    return [((r + 1) * opts.peers, acc) for r, acc in enumerate(curve)]


@dataclass
class LabWatch:
    """Optional parts of a lab run; each is off when its setting is None."""

    opts: LabOptions
    web_port: int | None = None
    web_host: str = "127.0.0.1"
    targets_path: Path | None = None
    say: Callable[[str], None] = print
    baseline: list[tuple[int, float]] = field(default_factory=list)
    url: str | None = None
    _feed: object = None
    _view: object = None
    _metric_ports: list[int] = field(default_factory=list)

    def start(self, observer: TreePeer, *, tree_urls: list[str] | None = None,
              registries: list[object] | None = None, kubo_urls: list[str] | None = None) -> None:
        """Start the view on `observer`; serve in-process peers' `registries` (memory lab)
        and write the target list with every metrics URL known."""
        from gridd.metrics import serve
        from gridd.web.feed import TangleFeed
        from gridd.web.server import WebView

        urls = list(tree_urls or [])
        for registry in registries or []:
            port = serve(registry, 0)  # type: ignore[arg-type]
            self._metric_ports.append(port)
            urls.append(f"http://127.0.0.1:{port}/metrics")
        if self.web_port is not None:
            feed = TangleFeed(observer)
            if self.baseline:
                feed.set_baseline(self.baseline, BASELINE_LABEL)
            feed.lab_info.update({"peers": self.opts.peers, "transport": self.opts.transport,
                                  "budget": self.opts.budget})
            feed.refresh(force=True)
            self._feed = feed
            view = WebView(feed, host=self.web_host, port=self.web_port,
                           title=f"lab · {self.opts.peers} peers ({self.opts.transport})")
            self._view = view.start()
            self.url = view.url
            self.say(f"view: {view.url}   (the tangle and accuracy, live)")
        if self.targets_path is not None:
            from gridd.dashboards.targets import write_targets

            write_targets(self.targets_path, {"tree": urls, "kubo": kubo_urls or []},
                          labels={"lab": self.opts.transport})
            self.say(f"prometheus targets: {self.targets_path} ({len(urls)} tree"
                     f"{f', {len(kubo_urls)} kubo' if kubo_urls else ''})")

    def point(self, point: Point) -> None:
        """Called from the observer's thread after each lab sample."""
        feed = self._feed
        if feed is None:
            return
        from gridd.web.feed import TangleFeed

        assert isinstance(feed, TangleFeed)
        feed.add_lab_point(point.client_epochs, point.consensus_accuracy, point.seconds,
                           point.transactions)
        feed.refresh()

    def tick(self) -> None:
        """Between samples (the Kubo lab's loop): let the feed copy what arrived."""
        if self._feed is not None:
            self._feed.refresh()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._view is not None:
            self._view.close()  # type: ignore[attr-defined]
            self._view = None


def write_accuracy_png(path: Path, timeline: list[Point], baseline: list[tuple[int, float]],
                       title: str) -> Path:
    """Consensus test accuracy against client-epochs, with the baseline, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    try:
        ax.plot([p.client_epochs for p in timeline], [p.consensus_accuracy for p in timeline],
                color="#2f6fde", lw=2.2, label="gridd tangle consensus (held-out test)")
        if baseline:
            ax.plot([e for e, _ in baseline], [a for _, a in baseline], color="#f08c00",
                    lw=1.8, ls="--", marker="o", ms=3, label=BASELINE_LABEL)
        ax.set_xlabel("client-epochs (local epochs summed over peers)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="lower right", fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
