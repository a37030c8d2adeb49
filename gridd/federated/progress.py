"""What a person watching federated jobs sees: a bar per round, rows in Client.jobs()."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridd.federated.coordinator import FederatedJob
    from gridd.federated.hub import FederatedHub


def show_rounds(job: FederatedJob) -> None:
    """A tqdm.auto bar over rounds until the job ends (polled from the caller's thread)."""
    from tqdm.auto import tqdm

    desc = f"federated {job.id[:8]}"
    with tqdm(total=job.settings.rounds, initial=job.round, desc=desc, unit="round") as bar:
        while True:
            ended = job.wait(0.2)
            if job.round > bar.n:
                bar.update(job.round - bar.n)
                info = job.progress()
                shown = {k: f"{info[k]:.4g}" for k in ("loss", "accuracy", "val_accuracy")
                         if isinstance(info.get(k), float)}
                shown["workers"] = str(info.get("workers"))
                bar.set_postfix(shown)
            if ended:
                break
        bar.set_description(f"{desc} [{job.status}]")
        time.sleep(0)


def federated_rows(hub: FederatedHub) -> list[dict[str, Any]]:
    """This session's federated jobs, then others' seen through their progress events."""
    rows = []
    ours = set()
    for job in hub.jobs.values():
        ours.add((hub.peer_id, job.id))
        info = job.progress()
        rows.append({"job": job.id, "kind": "federated", "status": job.status,
                     "progress": f"{job.round}/{job.settings.rounds} rounds",
                     "worker": f"{info['workers'] or 0} workers", "attempt": None,
                     "seconds": info["seconds"],
                     "error": None if job.error is None else str(job.error)[:80]})
    for (owner, job_id), event in list(hub.seen.items()):
        if (owner, job_id) in ours:
            continue
        rows.append({"job": job_id, "kind": f"federated (owner {owner[-8:]})",
                     "status": event["state"],
                     "progress": f"{event['round']}/{event['rounds']} rounds",
                     "worker": f"{event['workers']} workers", "attempt": None,
                     "seconds": None, "error": event.get("error", "")[:80] or None})
    return rows
