"""Pairwise final pick: a round-robin tournament over the top-k images (RewardDance §3.3.1).

Every pair is judged by :meth:`YesTokenVerifier.compare` (both images in one prompt, asked in both orders
to cancel position bias); the image with the most wins is the pick.

Example:
    >>> result = tournament(verifier, images, "two red circles", top_k=4)
    >>> images[result.winner]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import torch

from .images import ImageBatch, to_pil


@dataclass
class TournamentResult:
    """``winner``: index into the images given; ``candidates``: the indices that played (best pointwise
    first); ``wins`` [k]: wins of each candidate (a 0.5/0.5 judgement counts half to each);
    ``preference`` [k, k]: P(row beats column), 0.5 on the diagonal."""

    winner: int
    candidates: list[int]
    wins: torch.Tensor
    preference: torch.Tensor

    def table(self) -> str:
        """The win table as text: one row per candidate, in play order."""
        k = len(self.candidates)
        head = "image  wins  " + " ".join(f"vs{c:<4d}" for c in self.candidates)
        lines = [head]
        for r, c in enumerate(self.candidates):
            cells = " ".join("  -   " if r == j else f"{self.preference[r, j]:.3f} " for j in range(k))
            mark = " *" if c == self.winner else ""
            lines.append(f"{c:<6d} {self.wins[r]:4.1f}  {cells}{mark}")
        return "\n".join(lines)


def tournament(
    verifier: Any,
    images: ImageBatch,
    prompt: str,
    top_k: int | None = None,
    scores: Sequence[float] | torch.Tensor | None = None,
) -> TournamentResult:
    """Round robin over the ``top_k`` best images by pointwise score; returns the winner and the win table.

    Args:
        verifier: anything with ``compare(first, second, prompt) -> P(second better)`` and, when the
            pointwise ``scores`` are not given and ``top_k`` < number of images, ``verifier(images, prompt)``.
        images: float tensor [B,3,H,W] in [0,1] or PIL images.
        top_k: how many images play (all when None); k pairs cost k(k-1) forward rows.
        scores: pointwise scores [B] already computed by the search (saves a verifier call).
    """
    pil = to_pil(images)
    n = len(pil)
    if n == 0:
        raise ValueError("no images given: pass at least one image")
    k = n if top_k is None else int(top_k)
    if not 1 <= k:
        raise ValueError(f"top_k must be >= 1, got {top_k!r}")
    k = min(k, n)
    if k < n or scores is not None:
        s = verifier(pil, prompt) if scores is None else torch.as_tensor(scores, dtype=torch.float64)
        if s.shape != (n,):
            raise ValueError(f"expected {n} pointwise scores, got shape {tuple(s.shape)}")
        candidates = [int(i) for i in torch.argsort(s.double(), descending=True, stable=True)[:k]]
    else:
        candidates = list(range(n))
    pref = torch.full((k, k), 0.5, dtype=torch.float64)
    pairs = list(combinations(range(k), 2))
    if pairs:
        firsts = [pil[candidates[i]] for i, _ in pairs]
        seconds = [pil[candidates[j]] for _, j in pairs]
        second_wins = verifier.compare(firsts, seconds, prompt).double()
        for (i, j), p in zip(pairs, second_wins):
            pref[j, i], pref[i, j] = p, 1.0 - p
    off = ~torch.eye(k, dtype=torch.bool)
    wins = torch.where(off, (pref > 0.5).double() + 0.5 * (pref == 0.5).double(), 0.0).sum(dim=1)
    mean_pref = torch.where(off, pref, 0.0).sum(dim=1) / max(k - 1, 1)
    # Most wins; ties broken by mean preference, then by pointwise order (earlier candidate first).
    best = max(range(k), key=lambda r: (float(wins[r]), float(mean_pref[r]), -r))
    return TournamentResult(winner=candidates[best], candidates=candidates, wins=wins, preference=pref)
