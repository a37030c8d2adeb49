"""The tangle as a PNG (`gridd view --png FILE`): the web view's picture without a browser.

Same layout as the page: time on x, one lane per issuer, edges to parents, colour by
accuracy (measured on the viewer's data when it has some, else the issuers' own figures),
tips outlined black, the reference set gold, vetted-out transactions as red crosses.
"""

from __future__ import annotations

from pathlib import Path

from gridd.web.feed import TangleFeed, vetted_out

MAX_LANES = 40  # issuers beyond these share the last lane ("others")


def render_tangle_png(feed: TangleFeed, path: Path, window: int = 500) -> Path:
    """Draw the newest `window` transactions of the feed to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    snap = feed.snapshot
    rows = feed.rows[max(0, snap.count - window):snap.count]
    if not rows:
        raise ValueError("the tangle has no transactions to draw")
    first = rows[0]["i"]
    lanes: dict[str, int] = {}
    for row in rows:
        if row["issuer"] not in lanes:
            lanes[row["issuer"]] = min(len(lanes), MAX_LANES)
    t0 = rows[0]["t"]
    xy = {row["i"]: (row["t"] - t0, lanes[row["issuer"]]) for row in rows}
    segments = [[xy[row["i"]], xy[p]] for row in rows for p in row["p"] if p in xy]
    measured = feed.measured
    acc = [measured.get(r["id"], r["reported"]) for r in rows]
    ratio = snap.vet_ratio
    bad = [vetted_out(r, feed.rows, measured, ratio) for r in rows]
    height = min(14.0, 2.2 + 0.35 * len(lanes))
    fig, ax = plt.subplots(figsize=(12, height), dpi=110)
    try:
        ax.add_collection(LineCollection(segments, colors="#5a647d", alpha=0.3, linewidths=0.8))
        cmap = colormaps["viridis"]
        good = [i for i, b in enumerate(bad) if not b]
        xs = [xy[rows[i]["i"]][0] for i in good]
        ys = [xy[rows[i]["i"]][1] for i in good]
        colours = [cmap(acc[i]) if acc[i] is not None else "#bbbbbb" for i in good]
        edge = ["#f5a524" if rows[i]["id"] in snap.reference else
                "#111111" if rows[i]["id"] in snap.tips else "#283246" for i in good]
        widths = [2.5 if rows[i]["id"] in snap.reference else
                  1.6 if rows[i]["id"] in snap.tips else 0.4 for i in good]
        sizes = [110 if rows[i]["id"] in snap.reference else 60 for i in good]
        ax.scatter(xs, ys, c=colours, s=sizes, edgecolors=edge, linewidths=widths, zorder=3)
        crosses = [i for i, b in enumerate(bad) if b]
        if crosses:
            ax.scatter([xy[rows[i]["i"]][0] for i in crosses],
                       [xy[rows[i]["i"]][1] for i in crosses], marker="X", s=70,
                       c="#e5484d", zorder=4, label="vetted out")
        names = sorted(lanes, key=lanes.get)  # type: ignore[arg-type]
        labels = [n[:18] for n in names[:MAX_LANES]] + (["others"] if len(names) > MAX_LANES
                                                         else [])
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.set_xlabel("seconds since the first transaction drawn")
        source = snap.accuracy_source
        ax.set_title(f"tangle {feed.genesis_id[:12]}: transactions {first}-{snap.count - 1} of "
                     f"{snap.count}, colour = accuracy ({source}); gold = reference set, "
                     "black = tips", fontsize=10)
        sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, 1))
        fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="accuracy")
        if crosses:
            ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.2)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
