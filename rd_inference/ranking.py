"""The order in which every face shows a search's verified candidates.

A strategy that selects on the way (Search over Paths' rounds, pruning, particles) scores the
x0-prediction of a path still at noise level ``level_end`` (beam search a look-ahead from there): a blurrier
guess whose score does not compare with a finished image's. So the chosen image comes first, then the other
finished images by score, then the unfinished candidates, least noisy first and by score within a level.
"""

from __future__ import annotations

from typing import Any


def finished(result: Any, node_id: int) -> bool:
    """Whether the node's path reached the clean end of the grid, so its score is a finished image's."""
    return result.tree[node_id].end == len(result.config["schedule"]["level"]) - 1


def ranking(result: Any) -> list[int]:
    """Verified node ids of a :class:`~rd_inference.api.SearchResult`, chosen first, then finished images
    best first, then unfinished ones least noisy first (a top K of this list holds finished images only,
    unless fewer than K finished)."""

    def order(i: int) -> tuple:
        node = result.tree[i]
        return not finished(result, i), -node.end, -node.score, i

    return [result.node_id, *sorted((i for i in result.candidates if i != result.node_id), key=order)]


def scored_image(result: Any, node_id: int) -> str:
    """What the node's score was given to: ``"final"``, or ``"x0 at noise L"`` (L to 3 significant
    figures, so a path one step from the end does not read as 0.00)."""
    return "final" if finished(result, node_id) else f"x0 at noise {result.tree[node_id].level_end:.3g}"
