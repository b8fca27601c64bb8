"""Where a VLM verifier's weights sit while it scores: on ``device``, or offloaded to the CPU between calls.

:class:`PlacementMixin` gives :class:`rd_inference.yes_token.YesTokenVerifier` its ``on_device`` block and
timed moves, so a diffusion model and the verifier can share one GPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch


class PlacementMixin:
    """``on_device()``, timed ``_move``s and ``reset_timings`` for a verifier holding one ``model``.

    The host sets ``model``, ``device``, ``offload``, ``timings``, ``_held`` and ``last_move_seconds``, and
    has ``_ensure_loaded()`` (a pickled copy loads its weights on first use).
    """

    model: Any
    device: torch.device
    offload: bool
    timings: dict[str, float]
    last_move_seconds: float
    _held: int

    def reset_timings(self) -> None:
        self.timings = {"calls": 0, "rows": 0, "preprocess": 0.0, "forward": 0.0, "move": 0.0}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _move(self, device: torch.device) -> float:
        t0 = time.perf_counter()
        self.model.to(device)
        self._sync()
        seconds = time.perf_counter() - t0
        self.timings["move"] += seconds
        return seconds

    @contextlib.contextmanager
    def on_device(self) -> Iterator[Any]:
        """Hold the model on ``device`` for the block (with ``offload``: one move in, one move out).

        The search can wrap a whole verify phase in it so several calls share one pair of moves.
        """
        self._ensure_loaded()
        moved = 0.0
        if self.offload and self._held == 0:
            moved += self._move(self.device)
        self._held += 1
        try:
            yield self
        finally:
            self._held -= 1
            if self.offload and self._held == 0:
                moved += self._move(torch.device("cpu"))
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            self.last_move_seconds = moved
