"""A memory lab with the web view on it, stepped by the test itself (one driver thread)."""

from __future__ import annotations

from dataclasses import dataclass

from gridd.lab.memory_lab import MemoryLab
from gridd.lab.options import LabOptions
from gridd.lab.partition import lab_data
from gridd.web.feed import TangleFeed
from gridd.web.server import WebView


@dataclass
class LabView:
    lab: MemoryLab
    feed: TangleFeed
    view: WebView

    @property
    def count(self) -> int:
        return len(self.lab.observer.tangle)

    def grow(self, transactions: int, max_rounds: int = 200) -> int:
        """Run lab rounds until the observer holds `transactions` more; refresh the feed."""
        target = self.count + transactions
        for _ in range(max_rounds):
            if self.count >= target:
                break
            point = self.lab.round(budget=10**9)
            self.feed.add_lab_point(point.client_epochs, point.consensus_accuracy,
                                    point.seconds, point.transactions)
        assert self.count >= target, f"the lab published {self.count} of {target} transactions"
        self.feed.refresh(force=True)
        return self.count

    def close(self) -> None:
        self.view.close()
        self.lab.close()


def open_lab_view(peers: int = 4, seed: int = 0, **providers: object) -> LabView:
    opts = LabOptions(peers=peers, transport="memory", seed=seed, client_epochs=10_000)
    lab = MemoryLab(opts, lab_data("digits", peers, 0.5, seed))
    lab.open()
    feed = TangleFeed(lab.observer)
    feed.refresh(force=True)
    view = WebView(feed, providers=providers, title="test lab").start()  # type: ignore[arg-type]
    return LabView(lab, feed, view)
