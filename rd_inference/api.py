"""The entry points scripts call: :func:`search` and :func:`regenerate`."""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from . import __version__
from .budget import DEFAULT_MAX_NFE, size_search
from .checks import UserError, check_count, check_seed
from .denoisers import make_denoiser
from .pipelines import load_pipeline, model_name
from .plan import Plan, calibrate, dry_run
from .run_dir import check_out_dir, write_run_dir
from .strategies import NodeReached, SearchContext, get_strategy
from .tree import SearchTree
from .verifiers import Verifier, verifier_from_spec, verifier_spec


@dataclass
class SearchResult:
    image: Image.Image | list[Image.Image]  # the chosen image, or the chosen video's frames
    score: float
    node_id: int
    tree: SearchTree
    candidates: dict[int, Image.Image | list[Image.Image]]  # every verified node's image (or video frames)
    counts: dict[str, Any]  # denoiser forwards spent and planned, the budget, decodes, verifier calls, seconds
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        scored = [n for n in self.tree.nodes if n.score is not None]
        return {
            "config": self.config,
            "chosen": {"node": self.node_id, "score": self.score},
            "counts": self.counts,
            "candidates": [{"node": n.id, "round": n.round, "score": n.score} for n in scored],
            "versions": versions(),
        }

    def save(self, out: str | Path) -> Path:
        """Write the run directory (chosen.png, candidates/, summary.json, tree.jsonl) atomically. For a
        video: chosen.mp4 with its exact frames in chosen/frame-NNNN.png, and candidates/node-NNNNN.mp4."""
        from .video import fps_of, is_video, write_mp4, write_video

        def write(tmp: Path) -> None:
            (tmp / "candidates").mkdir()
            if is_video(self.image):
                fps = fps_of(self.config)
                write_video(self.image, tmp, "chosen", fps=fps)
                for node_id, frames in self.candidates.items():
                    write_mp4(frames, tmp / "candidates" / f"node-{node_id:05d}.mp4", fps=fps)
            else:
                self.image.save(tmp / "chosen.png")
                for node_id, image in self.candidates.items():
                    image.save(tmp / "candidates" / f"node-{node_id:05d}.png")
            (tmp / "tree.jsonl").write_text(self.tree.to_jsonl())
            (tmp / "summary.json").write_text(json.dumps(self.summary(), indent=2))

        return write_run_dir(out, write)


def versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {
        "rd_inference": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def search(
    pipe,
    prompt: str,
    *,
    verifier: Verifier,
    strategy: str = "sop",
    budget: int | str | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    height: int | None = None,
    width: int | None = None,
    max_batch: int = 8,
    verify_batch: int | None = None,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_at_node: int | None = None,
    offload: bool = False,
    overlap: bool | str = "auto",
    final_pick: str = "score",
    tournament_k: int = 4,
    max_nfe: int | str | None = DEFAULT_MAX_NFE,
    on_plan: Callable[[Plan], None] | None = None,
    num_frames: int | None = None,
    verify_frames: int | None = None,
    **params: Any,
) -> SearchResult:
    """Spend extra inference compute on ``pipe`` to find the image ``verifier`` likes best for ``prompt``.

    ``strategy`` is "sop" (Search over Paths), "bon" (Best-of-N) or "zo" (zero-order); ``params`` are the
    strategy's settings (e.g. ``n=4, m=2, sigma_start=0.11``). With ``budget`` (denoiser forwards, or
    "4x" = four single samples' worth) the strategy's size is chosen to fit it. ``out`` writes a run
    directory. ``progress(done, total)`` is called with denoiser forwards after every step; it may raise
    to interrupt the search (nothing is written then). ``offload=True`` is the one-GPU mode: the denoising
    models leave the GPU while the verifier scores (give the verifier ``offload=True`` too); the moves are
    timed under ``counts["seconds"]["move"]``. ``overlap`` scores each finished chunk on a worker thread
    while the next chunk denoises (same scores); ``"auto"`` turns it on when the verifier sits on another
    GPU than the diffusion model. ``final_pick="tournament"`` replaces the pointwise pick by
    a pairwise round robin over the ``tournament_k`` best finished images (needs ``verifier.compare``).
    A search planned to spend more than ``max_nfe`` forwards (default 256 single samples' worth; ``None``
    or 0 for no ceiling, as ``--max-forwards 0`` on the command line) is refused before it starts.
    ``on_plan(plan)`` is called before the search with its forwards, decodes, verified images and a rough
    time from a short calibration; it may raise to cancel.

    On a video pipeline (``WanPipeline``) the result is a video: ``result.image`` is its list of frames,
    ``num_frames`` its length and ``verify_frames`` (default 4) how many evenly spaced frames of each
    candidate the (image) verifier scores; a candidate's score is their mean
    (:class:`~rd_inference.video.FrameSampledVerifier`).

    Example:
        >>> result = search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy="bon", budget="4x")
        >>> result.image.save("best.png")
    """
    den = make_denoiser(
        pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale,
        height=height, width=width, max_batch=max_batch, num_frames=num_frames, verify_frames=verify_frames,
    )
    return run_search(
        den, verifier, strategy=strategy, budget=budget, seed=seed, verify_batch=verify_batch, out=out,
        progress=progress, stop_at_node=stop_at_node, offload=offload, overlap=overlap, final_pick=final_pick,
        tournament_k=tournament_k, max_nfe=max_nfe, on_plan=on_plan, model=model_name(pipe), **params,
    )


def resolve_overlap(overlap: bool | str, den, verifier) -> bool:
    """``"auto"``: overlap when the verifier is on a CUDA device other than the denoiser's (each then works
    while the other does); on one device the two would only take turns."""
    if overlap == "auto":
        v, d = getattr(verifier, "device", None), getattr(den, "device", None)
        return v is not None and d is not None and torch.device(v).type == "cuda" and torch.device(v) != torch.device(d)
    if not isinstance(overlap, bool):
        raise UserError(f"overlap must be True, False or 'auto', got {overlap!r}")
    return overlap


def run_search(
    den,
    verifier: Verifier,
    *,
    strategy: str = "sop",
    budget: int | str | None = None,
    seed: int = 0,
    verify_batch: int | None = None,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop_at_node: int | None = None,
    offload: bool = False,
    overlap: bool | str = "auto",
    final_pick: str = "score",
    tournament_k: int = 4,
    max_nfe: int | str | None = DEFAULT_MAX_NFE,
    on_plan: Callable[[Plan], None] | None = None,
    model: str | None = None,
    **params: Any,
) -> SearchResult:
    """:func:`search` on a ready denoiser: any object with the :class:`~rd_inference.denoisers.Denoiser`
    interface (``prompt``, ``schedule``, ``ledger``, ``forwards_per_step``, ``initial_noise``,
    ``sample_noise``, ``denoise``, ``decode``, ``config``), e.g. one over a ComfyUI model."""
    from .video import for_denoiser

    strat = get_strategy(strategy)
    video = getattr(den, "verify_frames", None) is not None
    if final_pick == "tournament" and video:
        raise UserError("final_pick='tournament' compares images, not videos: use final_pick='score' on a video "
                        "pipeline")
    if final_pick not in ("score", "tournament"):
        raise ValueError(f"final_pick must be 'score' or 'tournament', got {final_pick!r}")
    if final_pick == "tournament" and not callable(getattr(verifier, "compare", None)):
        raise ValueError("final_pick='tournament' needs a pairwise verifier with compare() (e.g. YesTokenVerifier)")
    if not callable(verifier):
        raise TypeError("verifier must be callable as verifier(images, prompt) -> scores")
    verify_batch = check_count("verify_batch", verify_batch, "images per verifier call")
    if final_pick == "tournament":
        check_count("tournament_k", tournament_k, "images that play the tournament")
    verifier = for_denoiser(verifier, den)
    prompt = den.prompt
    seed = check_seed(seed)
    overlap = resolve_overlap(overlap, den, verifier)
    if out is not None:
        check_out_dir(out)
        if video:
            from .video import check_video_writer

            check_video_writer()
    params, planned, nfe_budget = size_search(strat, den, budget, params, max_nfe)
    if on_plan is not None:
        on_plan(calibrate(den, verifier, dry_run(den, strat, params, seed=seed, verify_batch=verify_batch,
                                                  final_pick=final_pick, tournament_k=tournament_k)))
    budget_note = None
    if nfe_budget is not None and planned < 0.95 * nfe_budget:
        # Sizes come in whole paths and branches; with few steps one more does not fit.
        budget_note = (f"strategy {strat.name!r} with these settings can spend only {planned} of the {nfe_budget} "
                       "denoiser forwards (one more path or branch does not fit); a larger budget, more steps or "
                       "other levels spend it all")
        warnings.warn(budget_note, stacklevel=2)
    done = 0

    def on_step(forwards: int) -> None:
        nonlocal done
        done += forwards
        if progress is not None:
            progress(done, planned)

    ctx = SearchContext(den, verifier, prompt, seed=seed, verify_batch=verify_batch, on_step=on_step,
                        stop_at_node=stop_at_node, offload=offload, overlap=overlap)
    node_id = strat.run(ctx, **params)
    tournament_table = None
    if final_pick == "tournament":
        node_id, tournament_table = _tournament_pick(ctx, tournament_k)
    config = {
        "prompt": prompt,
        "strategy": strat.name,
        "params": params,
        "budget": budget,
        "planned_nfe": planned,
        "budget_note": budget_note,
        "seed": seed,
        "model": model,
        "denoiser": den.config(),
        "schedule": den.schedule.to_dict(),
        "verifier": verifier_spec(verifier),
        "verify_batch": ctx.verify_batch,
        "offload": offload,
        "final_pick": final_pick,
        "tournament_k": tournament_k,
    }
    if tournament_table is not None:
        config["tournament"] = tournament_table
    node = ctx.tree[node_id]
    result = SearchResult(
        image=ctx.images[node_id], score=node.score, node_id=node_id, tree=ctx.tree, candidates=ctx.images,
        counts={**den.ledger.to_dict(), "planned_nfe": planned, "budget_nfe": nfe_budget}, config=config,
    )
    if video:  # verifier_images counts candidates; each showed the verifier verify_frames frames
        result.counts["verifier_frames"] = result.counts["verifier_images"] * den.verify_frames
    if out is not None:
        result.save(out)
    return result


def _tournament_pick(ctx: SearchContext, top_k: int) -> tuple[int, dict]:
    """Round robin over the best finished images (nodes that reached the clean end of the grid)."""
    from .pairwise import tournament

    finished = [n for n in ctx.tree.nodes if n.score is not None and n.end == ctx.schedule.num_steps]
    with ctx.ledger.phase("verify"):
        res = tournament(ctx.verifier, [ctx.images[n.id] for n in finished], ctx.prompt, top_k=top_k,
                         scores=[n.score for n in finished])
    k = len(res.candidates)
    ctx.ledger.verifier_batches += 1
    ctx.ledger.verifier_images += k * (k - 1) * 2  # each pair, asked in both orders, shows two images
    table = {"candidates": [finished[c].id for c in res.candidates], "wins": res.wins.tolist(),
             "preference": res.preference.tolist()}
    return finished[res.winner].id, table


def regenerate(run_dir: str | Path, node_id: int, *, pipe=None, verifier: Verifier | None = None,
               device: str | None = None) -> Image.Image | list[Image.Image]:
    """Rebuild node ``node_id``'s image (a video's frames, for a video run) from a run directory,
    bit-exactly on the same device.

    The run is replayed with its recorded settings and seed up to the moment that node's clean prediction
    exists (nodes never run after it are skipped), so the batch shapes, and thus the floats, are the same
    as in the original run. ``pipe`` and ``verifier`` default to what ``summary.json`` names.
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no summary.json)")
    config = json.loads(summary_path.read_text())["config"]
    if not (run_dir / "tree.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} has no tree.jsonl, so its nodes cannot be rebuilt: pass the complete "
                                "run directory rd-tts generate wrote")
    tree = [json.loads(line) for line in (run_dir / "tree.jsonl").read_text().splitlines()]
    if not 0 <= node_id < len(tree):
        raise ValueError(f"node {node_id} is not in this run: its nodes are 0..{len(tree) - 1}")
    if pipe is None:
        pipe = load_pipeline(config["model"], device=device)
    if verifier is None:
        if config["verifier"] is None:
            raise ValueError("this run's verifier cannot be rebuilt from summary.json; pass verifier=…")
        verifier = verifier_from_spec(config["verifier"], **({"device": device} if device else {}))
    d = config["denoiser"]
    video = {k: d[k] for k in ("num_frames", "verify_frames") if k in d}
    try:
        search(
            pipe, config["prompt"], verifier=verifier, strategy=config["strategy"], seed=config["seed"],
            steps=d["steps"], guidance_scale=d["guidance_scale"], negative_prompt=d["negative_prompt"],
            height=d["height"], width=d["width"], max_batch=d["max_batch"], verify_batch=config["verify_batch"],
            stop_at_node=node_id, max_nfe=None, **video, **config["params"],
        )
    except NodeReached as reached:
        from .video import to_media

        return to_media(reached.image)[0]
    raise RuntimeError(f"replaying the run never reached node {node_id}; was it made by another version?")
