"""The search tree: one record per node (a denoised path segment), enough to regenerate any of them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class Node:
    """One path segment. Its generator, seeded with ``seed``, drew every random number the segment used:
    the initial or re-noising noise (or the neighbour direction) and any stochastic scheduler steps."""

    id: int
    parent: int | None
    round: int
    # "init" (from pure noise), "branch" (re-noised parent), "continue" (a kept path denoised on),
    # "neighbor" (zero-order), "mutant" (evolutionary), "particle", "continue" (pruning)
    kind: str
    seed: int
    start: int  # grid index the segment starts at (after re-noising)
    end: int  # grid index it reaches
    level_start: float
    level_end: float
    score: float | None = None
    kept: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class SearchTree:
    def __init__(self):
        self.nodes: list[Node] = []

    def add(self, **fields) -> Node:
        node = Node(id=len(self.nodes), **fields)
        self.nodes.append(node)
        return node

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def __len__(self) -> int:
        return len(self.nodes)

    def lineage(self, node_id: int) -> list[Node]:
        """The node and its ancestors, root first."""
        chain = []
        node: Node | None = self.nodes[node_id]
        while node is not None:
            chain.append(node)
            node = self.nodes[node.parent] if node.parent is not None else None
        return chain[::-1]

    def to_jsonl(self) -> str:
        return "".join(n.to_json() + "\n" for n in self.nodes)

    def plot_data(self, chosen: int | None = None) -> dict[str, list[dict]]:
        """What a picture of the search needs: one point per verified node and the edges between them.

        Points: ``id``, ``round``, ``score``, ``kind`` and ``status``, one of "chosen", "lineage" (an
        ancestor of ``chosen``), "kept" (survived its round's pruning), "pruned". Edges join a verified
        node to its nearest verified ancestor (Search over Paths does not verify its initial paths), with
        ``status`` "lineage" on the chosen node's path, "kept" into a survivor, else "pruned".

        Example:
            >>> data = result.tree.plot_data(result.node_id)
            >>> [(p["round"], p["score"]) for p in data["points"] if p["status"] == "pruned"]
        """
        on_path = {n.id for n in self.lineage(chosen)} if chosen is not None else set()

        def status(node: Node) -> str:
            if node.id == chosen:
                return "chosen"
            if node.id in on_path:
                return "lineage"
            return "kept" if node.kept else "pruned"

        points, edges = [], []
        for node in self.nodes:
            if node.score is None:
                continue
            points.append({"id": node.id, "round": node.round, "score": node.score, "kind": node.kind,
                           "status": status(node)})
            parent = self.nodes[node.parent] if node.parent is not None else None
            while parent is not None and parent.score is None:
                parent = self.nodes[parent.parent] if parent.parent is not None else None
            if parent is not None:
                s = status(node)
                edges.append({"parent": parent.id, "child": node.id, "x": (parent.round, node.round),
                              "y": (parent.score, node.score),
                              "status": "lineage" if s in ("chosen", "lineage") else s})
        return {"points": points, "edges": edges}
