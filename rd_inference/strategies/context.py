"""What every strategy shares: the denoiser, the verifier, one seeded generator per node, the tree, the ledger."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from ..checks import check_scores
from ..posterior import posterior_step
from ..renoise import renoise
from ..tree import Node, SearchTree
from ..verifiers import Verifier
from ..video import to_media

if TYPE_CHECKING:  # types only: importing it would load diffusers
    from ..denoisers import Denoiser

SEED_MAX = 2**62


class NodeReached(Exception):
    """Raised to stop a replay once the node being regenerated has its image."""

    def __init__(self, image: torch.Tensor):
        super().__init__("node reached")
        self.image = image


class SearchContext:
    """State of one search run. Strategies call :meth:`spawn`, :meth:`start`, :meth:`branch`,
    :meth:`denoise` and :meth:`verify`; everything random comes from per-node generators."""

    def __init__(
        self,
        denoiser: Denoiser,
        verifier: Verifier,
        prompt: str,
        *,
        seed: int = 0,
        verify_batch: int | None = None,
        on_step: Callable[[int], None] | None = None,
        stop_at_node: int | None = None,
        offload: bool = False,
        overlap: bool = False,
    ):
        self.denoiser = denoiser
        self.schedule = denoiser.schedule
        self.verifier = verifier
        self.prompt = prompt
        self.ledger = denoiser.ledger
        self.tree = SearchTree()
        self.master = torch.Generator("cpu").manual_seed(int(seed))
        self.verify_batch = verify_batch or denoiser.max_batch
        self.on_step = on_step
        self.stop_at_node = stop_at_node
        # One-GPU mode: the denoising models leave the device while the verifier is on it.
        self.offload = offload
        # Score finished chunks on a worker thread while the next chunk denoises (see denoise_verified);
        # not with offload, whose models take turns on one device.
        self.overlap = overlap and not offload
        # node id -> its verified x0-prediction: a PIL image, or a video's PIL frames
        self.images: dict[int, object] = {}

    # ---- nodes and randomness ---------------------------------------------------------------------------
    def spawn(self, parents: Sequence[Node | None], *, round: int, kind: str, start: int, end: int):
        """New nodes (one per entry of ``parents``) and their generators, each seeded from the master."""
        nodes, gens = [], []
        for parent in parents:
            seed = int(torch.randint(0, SEED_MAX, (1,), generator=self.master))
            nodes.append(
                self.tree.add(
                    parent=None if parent is None else parent.id,
                    round=round,
                    kind=kind,
                    seed=seed,
                    start=start,
                    end=end,
                    level_start=round_level(self.schedule.level[start]),
                    level_end=round_level(self.schedule.level[end]),
                )
            )
            gens.append(torch.Generator("cpu").manual_seed(seed))
        return nodes, gens

    def start(self, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """Pure noise for new root paths."""
        return self.denoiser.initial_noise(gens)

    def branch(self, x: torch.Tensor, i_from: int, i_to: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """Re-noise ``x`` (one row per new node) from grid point ``i_from`` to the noisier ``i_to``."""
        noise = self.denoiser.sample_noise(gens, x.shape)
        return renoise(self.schedule, x, i_from, i_to, noise)

    # ---- model calls ---------------------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, nodes: Sequence[Node], gens) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = nodes[0].start, nodes[0].end
        x_end, x0 = self.denoiser.denoise(x, start, end, gens, on_step=self.on_step)
        self._stop_if_reached(nodes, x0)
        return x_end, x0

    def denoise_through(self, x: torch.Tensor, nodes: Sequence[Node], gens, stops: Sequence[int]):
        """Like :meth:`denoise`, also returning the latents at each grid point of ``stops`` on the way
        ({point: latents}), for strategies that restart later from a path's intermediate state."""
        start, end = nodes[0].start, nodes[0].end
        saved = {}
        for a, b in zip([start, *stops], [*stops, end]):
            x, x0 = self.denoiser.denoise(x, a, b, gens, on_step=self.on_step)
            if b != end:
                saved[b] = x
        self._stop_if_reached(nodes, x0)
        return saved, x0

    def _stop_if_reached(self, nodes: Sequence[Node], x0: torch.Tensor) -> None:
        """In a replay for :func:`~rd_inference.regenerate`: stop once the wanted node has its prediction."""
        if self.stop_at_node is None:
            return
        for k, node in enumerate(nodes):
            if node.id == self.stop_at_node:
                # The whole batch, as verify() decodes it: a VAE's floats depend on the batch shape, and a
                # row decoded alone came back 1/255 off in one pixel of 3 of 24 nodes of a toy run.
                raise NodeReached(self.denoiser.decode(x0)[k : k + 1])

    def predict(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The x0-prediction of a batch at grid point ``i`` (one guided forward per path)."""
        return self.denoiser.predict_x0(x, i, on_step=self.on_step)

    def walk(self, x: torch.Tensor, nodes: Sequence[Node], gens, eta: float,
             x0_first: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`denoise`, but stepping with the stochastic posterior transition (``eta``), each
        node's noise from its own generator. ``x0_first``: the prediction at the first grid point when the
        caller already has it (children that share a parent's model call)."""
        start, end = nodes[0].start, nodes[0].end
        x0 = x0_first
        for i in range(start, end):
            if i > start or x0 is None:
                x0 = self.predict(x, i)
            last = i + 1 == self.schedule.num_steps  # the step to the clean end adds no noise
            noise = self.denoiser.sample_noise(gens, x.shape) if eta > 0 and not last else None
            x = posterior_step(self.schedule, x, x0, i, i + 1, noise, eta)
        if end == self.schedule.num_steps:
            x0 = x
            on_final = getattr(self.denoiser, "on_final", None)  # a host that wants the finished latents
            if on_final is not None:
                on_final(x, list(gens))
        self.ledger.paths += x.shape[0]
        self._stop_if_reached(nodes, x0)
        return x, x0

    def lookahead(self, x: torch.Tensor, i: int, evals: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A cheap deterministic estimate of where ``x`` (at grid point ``i``) ends up: ``evals`` model calls
        on an evenly thinned grid from ``i`` to clean (eta=0 transitions). Returns (the estimate, the
        prediction of the first call, at ``i``, which a caller continuing from ``x`` can reuse)."""
        n = self.schedule.num_steps
        points = lookahead_points(i, n, evals)
        first = x0 = None
        for a, b in zip(points, [*points[1:], n]):
            x0 = self.predict(x, a)
            first = x0 if first is None else first
            if b < n:
                x = posterior_step(self.schedule, x, x0, a, b, None, eta=0.0)
        return x0, first

    @staticmethod
    def keep_best(scores: torch.Tensor, nodes: Sequence[Node], k: int) -> tuple[torch.Tensor, list[Node]]:
        """The ``k`` best nodes (ties keep their order) and their row indices; marks them kept."""
        top = torch.argsort(scores, descending=True, stable=True)[:k]
        kept = [nodes[i] for i in top.tolist()]
        for node in kept:
            node.kept = True
        return top, kept

    def verify(self, x0: torch.Tensor, nodes: Sequence[Node]) -> torch.Tensor:
        """Decode the clean predictions and score them; scores are written onto the nodes."""
        images = self.denoiser.decode(x0)
        if self.offload:
            with self.ledger.phase("move"):
                self.denoiser.move_models("cpu")
        try:
            scores = self._score(images)
        finally:
            if self.offload:
                with self.ledger.phase("move"):
                    self.denoiser.move_models(self.denoiser.device)
        return self._book(scores, images, nodes)

    def denoise_verified(self, x: torch.Tensor, nodes: Sequence[Node], gens):
        """:meth:`denoise` then :meth:`verify`: (latents at the end, x0-predictions, scores).

        With ``overlap``, each chunk's predictions are decoded as the chunk finishes and the verifier scores
        them on a worker thread while the next chunk denoises (a verifier on its own GPU then costs almost
        no wall time). The verifier sees the same images in the same batches as without overlap, so the scores
        are the same up to the rounding of a CPU reduction split differently while the other thread runs."""
        if not self.overlap or self.stop_at_node is not None:
            x_end, x0 = self.denoise(x, nodes, gens)
            return x_end, x0, self.verify(x0, nodes)
        from concurrent.futures import ThreadPoolExecutor

        decoded: list[torch.Tensor] = []  # every chunk's images, in row order
        futures = []
        handed = [0]  # rows already handed to the verifier
        seconds = [0.0]

        def score(chunk: torch.Tensor) -> torch.Tensor:
            t0 = time.perf_counter()
            out = torch.as_tensor(self.verifier(chunk, self.prompt), dtype=torch.float32).reshape(-1)
            seconds[0] += time.perf_counter() - t0
            return out

        def submit(final: bool) -> None:
            # The same verifier batches as _score makes: rows [k*verify_batch, (k+1)*verify_batch).
            images = torch.cat(decoded)
            while images.shape[0] - handed[0] >= self.verify_batch or (final and handed[0] < images.shape[0]):
                futures.append(pool.submit(score, images[handed[0] : handed[0] + self.verify_batch]))
                handed[0] += self.verify_batch

        def on_chunk(lo: int, hi: int, x0_chunk: torch.Tensor) -> None:
            decoded.append(self.denoiser.decode(x0_chunk))
            submit(final=False)

        start, end = nodes[0].start, nodes[0].end
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rd-verify") as pool:
            try:
                x_end, x0 = self.denoiser.denoise(x, start, end, gens, on_step=self.on_step, on_chunk=on_chunk)
                submit(final=True)
                parts = [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()
        images = torch.cat(decoded)
        self.ledger.verifier_batches += len(parts)
        self.ledger.seconds["verify"] += seconds[0]
        return x_end, x0, self._book(torch.cat(parts), images, nodes)

    def _book(self, scores: torch.Tensor, images: torch.Tensor, nodes: Sequence[Node]) -> torch.Tensor:
        """Check the scores and write them (and the images) onto the nodes."""
        check_scores(scores, len(nodes), self.verifier)
        self.ledger.verifier_images += len(nodes)
        for node, score, image in zip(nodes, scores.tolist(), to_media(images)):
            node.score = float(score)
            self.images[node.id] = image
        return scores


    def _score(self, images: torch.Tensor) -> torch.Tensor:
        # A verifier that can hold itself on its device for a whole phase (YesTokenVerifier.on_device) pays
        # one pair of moves per phase; the moves it reports are booked as "move", not "verify".
        hold = getattr(self.verifier, "on_device", None)
        timings = getattr(self.verifier, "timings", None)
        moved_before = timings.get("move", 0.0) if isinstance(timings, dict) else 0.0
        scores = []
        with self.ledger.phase("verify"), (hold() if callable(hold) else nullcontext()):
            for lo in range(0, images.shape[0], self.verify_batch):
                chunk = images[lo : lo + self.verify_batch]
                scores.append(torch.as_tensor(self.verifier(chunk, self.prompt), dtype=torch.float32).reshape(-1))
                self.ledger.verifier_batches += 1
        if isinstance(timings, dict):
            moved = self.verifier.timings.get("move", 0.0) - moved_before
            self.ledger.seconds["verify"] -= moved
            self.ledger.seconds["move"] += moved
        return torch.cat(scores).cpu()


def lookahead_points(i: int, n: int, evals: int) -> list[int]:
    """Grid points of an ``evals``-call look-ahead from ``i`` to ``n`` (fewer near the end of the grid)."""
    return sorted({min(i + (k * (n - i)) // evals, n - 1) for k in range(evals)})


def round_level(v) -> float:
    return round(float(v), 6)
