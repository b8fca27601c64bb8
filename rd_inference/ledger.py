"""Ledger: what a run spent — denoiser forwards, VAE decodes, verifier calls — and the wall time per phase."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Ledger:
    nfe: int = 0  # denoiser forwards per path, a CFG pair counted as the forwards actually run
    decodes: int = 0  # images decoded by the VAE
    verifier_images: int = 0  # images scored
    verifier_batches: int = 0  # verifier forward calls
    paths: int = 0  # denoising segments run, one per node
    chunk_retries: int = 0  # chunks redone at half size after an out-of-memory error
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def phase(self, name: str):
        """Time a block under ``name``; nested phases are not double counted by callers."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def to_dict(self) -> dict:
        wall = time.perf_counter() - self._started
        seconds = {k: round(v, 4) for k, v in self.seconds.items()}
        seconds["total"] = round(wall, 4)
        return {
            "nfe": self.nfe,
            "decodes": self.decodes,
            "verifier_images": self.verifier_images,
            "verifier_batches": self.verifier_batches,
            "paths": self.paths,
            "chunk_retries": self.chunk_retries,
            "seconds": seconds,
        }
