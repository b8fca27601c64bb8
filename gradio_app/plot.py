"""The search drawn as a figure: score per verified node per round, survivors' lineage on top of the
pruned branches. Data from :meth:`rd_inference.tree.SearchTree.plot_data`."""

from __future__ import annotations

from matplotlib.figure import Figure

# status -> (colour, marker size, line width, alpha, legend label)
STYLE = {
    "pruned": ("#9aa0a6", 18, 0.8, 0.45, "pruned"),
    "kept": ("#1a73e8", 30, 1.4, 0.9, "kept (survived its round)"),
    "lineage": ("#e8710a", 40, 2.4, 1.0, "the winner's lineage"),
    "chosen": ("#d93025", 140, 2.4, 1.0, "chosen"),
}


def search_figure(data: dict, title: str = "") -> Figure:
    """A matplotlib figure (no pyplot: no global state shared between requests)."""
    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for status in ("pruned", "kept", "lineage"):  # draw order: pruned underneath
        colour, _, width, alpha, _ = STYLE[status]
        for e in data["edges"]:
            if e["status"] == status:
                ax.plot(e["x"], e["y"], color=colour, lw=width, alpha=alpha, zorder=1)
    for status in ("pruned", "kept", "lineage", "chosen"):
        colour, size, _, alpha, label = STYLE[status]
        pts = [p for p in data["points"] if p["status"] == status]
        if pts:
            ax.scatter([p["round"] for p in pts], [p["score"] for p in pts], s=size, color=colour, alpha=alpha,
                       marker="*" if status == "chosen" else "o", label=label, zorder=2 + (status == "chosen"))
    rounds = sorted({p["round"] for p in data["points"]})
    ax.set_xticks(rounds or [0])
    ax.set_xlabel("round")
    ax.set_ylabel("verifier score")
    ax.grid(alpha=0.25)
    if title:
        ax.set_title(title, fontsize=10)
    if data["points"]:
        ax.legend(fontsize=8, loc="best")
    return fig
