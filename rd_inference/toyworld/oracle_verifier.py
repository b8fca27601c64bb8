"""The toy world's exact oracle used as the verifier: a perfect yes/no judge.

Searching with it measures what a strategy can find at a budget when the judge never errs, apart from how
good the VLM is: Best-of-N with the oracle at N samples is the generator's pass@N, the ceiling every
verifier-driven Best-of-N approaches as its verifier improves. ``rd-tts bench --verifier oracle`` uses it.
"""

from __future__ import annotations

import torch

from ..images import to_pil


class OracleVerifier:
    """Score 1.0 when the world's oracle passes an image for the prompt, else 0.0 (malformed included)."""

    def __init__(self, world):
        self.world = world
        self.name = f"oracle:{world.name}"

    def __call__(self, images, prompt: str) -> torch.Tensor:
        return torch.tensor([float(self.world.check(im, prompt).ok) for im in to_pil(images)])

    def __repr__(self) -> str:
        return f"OracleVerifier({self.world.name})"
