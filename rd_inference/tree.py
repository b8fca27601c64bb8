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
    kind: str  # "init" (from pure noise), "branch" (re-noised parent), "neighbor" (zero-order)
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
