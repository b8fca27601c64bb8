"""The V3 nodes. Each ``execute`` converts ComfyUI's types and calls rd_inference; nothing else lives here."""

from __future__ import annotations

import json

import comfy.sample
import comfy.samplers
import torch
from comfy_api.latest import io

from ..rd_inference.budget import DEFAULT_MAX_NFE, ceiling_from_text
from ..rd_inference.pairwise import tournament
from ..rd_inference.ranking import finished, ranking, scored_image
from ..rd_inference.strategies import STRATEGIES
from ..rd_inference.verifier_loading import KINDS, load_verifier, parse_verifier
from .sampling import search_sampler
from .verifier import (
    QUANTIZATIONS,
    USE_PATH,
    ComfyVerifier,
    load_comfy_verifier,
    model_folders,
    resolve_model,
)
from .video import DEFAULT_VERIFY_FRAMES, VERIFY_MODE_TIP, VERIFY_MODES, candidate_batch, decode_output

IMAGES_TIP = "A batch of images to judge."
VERIFIER_TIP = "From Load VLM Verifier: the judge that scores each image against the prompt."

# What the strategy menu shows; the id in brackets is what the command line and the API call it, and
# graphs saved with the bare ids still load.
STRATEGY_LABELS = {
    "sop": "Search over Paths (sop)", "bon": "Best-of-N (bon)", "zo": "Zero-order search (zo)",
    "beam": "Beam search with look-ahead (beam)", "fk": "Feynman-Kac particles (fk)",
    "prune": "Staged pruning (prune)", "evo": "Evolutionary search (evo)",
}
STRATEGY_TIP = (
    "Search over Paths: keep N paths, re-noise each along M branches, keep the best (Ma et al. 2025). "
    "Best-of-N: N full samples, keep the best. Zero-order: move the starting noise towards what scores "
    "better. Beam search: at each stage keep the beams whose look-ahead scores best. Feynman-Kac: "
    "particles resampled by score as they denoise. Staged pruning: Best-of-N that drops the worst paths "
    "early. Evolutionary: a population of noises and intermediate latents, mutated and selected."
)


def strategy_id(value: str) -> str:
    """A menu label or a bare id (older graphs) -> the strategy id."""
    for sid, label in STRATEGY_LABELS.items():
        if value in (sid, label):
            return sid
    raise ValueError(f"unknown strategy {value!r}; choose one of: {', '.join(STRATEGY_LABELS.values())}")


CATEGORY = "sampling/test-time scaling"
Verifier = io.Custom("VERIFIER")



def _prompt_input(default: str = "") -> io.String.Input:
    # One line, not multiline: the frontend draws a text box without its name and, once the input is linked
    # (the prompt typed once, in Text Encode (search prompt)), hides the name of a linked widget's dot too, so
    # a multiline prompt shows as an unlabelled grey box. A one-line widget keeps "prompt" beside its value.
    return io.String.Input(
        "prompt", default=default, tooltip="What the image should show: the text the verifier checks. Link Text "
        "Encode (search prompt)'s prompt output here to type it once."
    )


def _to_core(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,3] -> the core's [B,3,H,W]."""
    return images.movedim(-1, 1).float()


def _score(verifier, images: torch.Tensor, prompt: str) -> torch.Tensor:
    if not prompt.strip():
        raise ValueError("the prompt is empty: type what the image should show (the text the verifier checks)")
    return torch.as_tensor(verifier(_to_core(images), prompt), dtype=torch.float32).reshape(-1).cpu()


def _ranking(scores: torch.Tensor) -> list[int]:
    return torch.argsort(scores, descending=True, stable=True).tolist()


class LoadVLMVerifier(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDLoadVLMVerifier",
            display_name="Load VLM Verifier",
            category=CATEGORY,
            description="A vision-language model that scores images by its probability of answering 'yes'.",
            inputs=[
                io.Combo.Input("model", options=[*model_folders(), USE_PATH],
                               tooltip="A Hugging Face model folder under ComfyUI/models/vlm/."),
                io.String.Input("path", default="", tooltip="Or the full path of a local Hugging Face model "
                                "folder (wins over 'model'); 'brightness' is a prompt-blind test verifier."),
                io.Combo.Input("quantization", options=list(QUANTIZATIONS), default="none",
                               tooltip="bitsandbytes 8-bit or 4-bit (nf4) weights for the language model."),
                io.String.Input("criteria", default="alignment", tooltip="Built-in criteria names with "
                                "optional weights ('alignment,aesthetics:0.5') or a criteria .json/.toml file."),
            ],
            outputs=[Verifier.Output(display_name="verifier", tooltip="The loaded VLM, read as a yes/no judge.")],
        )

    @classmethod
    def validate_inputs(cls, model: str, path: str, quantization: str, criteria: str) -> bool | str:
        """Checked when the prompt is queued, before anything runs: a misspelled folder or path fails here."""
        if quantization not in QUANTIZATIONS:
            return f"quantization must be one of {list(QUANTIZATIONS)}, got {quantization!r}"
        try:
            resolve_model(model, path or "")
        except (FileNotFoundError, ValueError) as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, model: str, path: str, quantization: str, criteria: str) -> io.NodeOutput:
        return io.NodeOutput(load_comfy_verifier(model, path, quantization, criteria))


class LoadVerifier(io.ComfyNode):
    """Any kind of verifier by name, and ensembles of kinds (the command line's --verifier syntax)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        kinds = "; ".join(f"{k}: {v}" for k, v in KINDS.items())
        return io.Schema(
            node_id="RDLoadVerifier",
            display_name="Load Verifier (any kind)",
            category=CATEGORY,
            description="CLIP score, PickScore, a served VLM (vLLM/SGLang), a local VLM, or an ensemble of them.",
            inputs=[
                io.String.Input("verifier", default="", tooltip="KIND:TARGET, several joined by '+' for an "
                                f"ensemble, '@W' after one to weight it. Kinds: {kinds}. A VLM loaded here is not "
                                "moved off the GPU by ComfyUI: use Load VLM Verifier for one that shares it."),
                io.Combo.Input("ensemble", options=["mean", "rank"], default="mean",
                               tooltip="How an ensemble combines scores: mean keeps each score's scale (fit for "
                               "searches that compare rounds); rank is scale-free but only meaningful within one batch."),
                io.String.Input("criteria", default="alignment", tooltip="For VLM kinds: built-in criteria names "
                                "with optional weights ('alignment,aesthetics:0.5') or a criteria .json/.toml file."),
            ],
            outputs=[Verifier.Output(display_name="verifier", tooltip="The loaded verifier (or ensemble).")],
        )

    @classmethod
    def validate_inputs(cls, verifier: str, ensemble: str, criteria: str) -> bool | str:
        """Checked when the prompt is queued: unknown kinds, bad weights and missing folders fail here."""
        if not verifier.strip():
            return "name a verifier, e.g. clip:/path/to/clip or openai:http://127.0.0.1:8000#org/vlm"
        try:
            parse_verifier(verifier)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, verifier: str, ensemble: str, criteria: str) -> io.NodeOutput:
        return io.NodeOutput(ComfyVerifier(load_verifier(verifier, aggregation=ensemble, criteria=criteria.strip() or None)))


class YesTokenScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDYesTokenScore",
            display_name="Yes-Token Score",
            category=CATEGORY,
            description="Score every image of a batch; returns the batch re-ordered best first.",
            inputs=[io.Image.Input("images", tooltip=IMAGES_TIP), Verifier.Input("verifier", tooltip=VERIFIER_TIP),
                    _prompt_input()],
            outputs=[
                io.Image.Output(display_name="images_best_first", tooltip="The batch, highest score first."),
                io.String.Output(display_name="scores_json", tooltip="Each image's score per criterion, as JSON."),
                io.Float.Output(display_name="best_score", tooltip="The highest score (P(yes), 0-1)."),
                io.Float.Output(display_name="scores", is_output_list=True,
                                tooltip="One score per image, in the input's order."),
            ],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, verifier, prompt: str) -> io.NodeOutput:
        scores = _score(verifier, images, prompt)
        order = _ranking(scores)
        table = [{"rank": r, "index": i, "score": float(scores[i])} for r, i in enumerate(order)]
        text = json.dumps({"prompt": prompt, "scores": table}, indent=1)
        return io.NodeOutput(images[order], text, float(scores[order[0]]), [float(s) for s in scores])


class BestOfNImages(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDBestOfNImages",
            display_name="Best-of-N (images)",
            category=CATEGORY,
            description="Keep the verifier's best images of a batch.",
            inputs=[
                io.Image.Input("images", tooltip=IMAGES_TIP),
                Verifier.Input("verifier", tooltip=VERIFIER_TIP),
                _prompt_input(),
                io.Int.Input("keep", default=1, min=1, max=4096, tooltip="How many of the best images to keep."),
            ],
            outputs=[io.Image.Output(display_name="best", tooltip="The keep best images, best first."),
                     io.String.Output(display_name="scores_json", tooltip="Every image's score, as JSON.")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, verifier, prompt: str, keep: int) -> io.NodeOutput:
        scores = _score(verifier, images, prompt)
        order = _ranking(scores)[:keep]
        text = json.dumps({"prompt": prompt, "kept": [{"index": i, "score": float(scores[i])} for i in order],
                           "all": [float(s) for s in scores]}, indent=1)
        return io.NodeOutput(images[order], text)


class PairwiseTournament(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDPairwiseTournament",
            display_name="Pairwise Tournament",
            category=CATEGORY,
            description="Round robin between the best images by pointwise score; each pair judged in both orders.",
            inputs=[
                io.Image.Input("images", tooltip=IMAGES_TIP),
                Verifier.Input("verifier", tooltip=VERIFIER_TIP),
                _prompt_input(),
                io.Int.Input("top_k", default=4, min=1, max=64, tooltip="How many images play (k(k-1) rows)."),
            ],
            outputs=[io.Image.Output(display_name="winner", tooltip="The image that won most pairwise comparisons."),
                     io.String.Output(display_name="table", tooltip="The win table: P(row beats column).")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, verifier, prompt: str, top_k: int) -> io.NodeOutput:
        if not prompt.strip():
            raise ValueError("the prompt is empty: type what the image should show (the text the verifier checks)")
        if not getattr(verifier, "pairwise", False):
            raise ValueError("Pairwise Tournament needs a VLM verifier that compares images: use Load VLM Verifier")
        res = tournament(verifier, _to_core(images), prompt, top_k=top_k)
        return io.NodeOutput(images[res.winner : res.winner + 1], res.table())


def _max_forwards_input():
    # Optional, so graphs saved before it existed still validate.
    return io.String.Input("max_forwards", default=DEFAULT_MAX_NFE, optional=True,
                           tooltip="Refuse a search planned above this many denoiser forwards, or a multiple of "
                           "one sample like '256x'; 'none' for no limit.")


def _search_inputs() -> list:
    return [Verifier.Input("verifier", tooltip=VERIFIER_TIP), io.Vae.Input("vae", tooltip="Decodes x0-predictions for the verifier."),
            _prompt_input()]


def _video_inputs() -> list:
    """How a candidate video is verified; optional, so graphs saved before these existed still validate."""
    return [io.Int.Input("verify_frames", default=DEFAULT_VERIFY_FRAMES, min=1, max=1024, optional=True,
                         tooltip="Video latents (Wan 2.1, LTX-Video): a candidate video is scored on this many "
                         "evenly spaced frames, first and last included (see verify_mode)."),
            io.Combo.Input("verify_mode", options=list(VERIFY_MODES), default="joint", optional=True,
                           tooltip=VERIFY_MODE_TIP)]


class SearchOverPathsSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = STRATEGIES["sop"].defaults
        return io.Schema(
            node_id="RDSearchOverPathsSampler",
            display_name="Search over Paths Sampler",
            category=CATEGORY,
            description="A SAMPLER for SamplerCustomAdvanced: keep N paths, re-noise each along M branches, "
            "denoise, verify the clean predictions, keep the best N (Ma et al. 2025). Batch size 1.",
            inputs=[
                *_search_inputs(),
                io.Int.Input("n", default=d["n"], min=1, max=256, tooltip="Paths kept each round (N)."),
                io.Int.Input("m", default=d["m"], min=1, max=64, tooltip="Branches per kept path (M)."),
                io.Float.Input("delta_f", default=d["delta_f"], min=0.001, max=1.0, step=0.01,
                               tooltip="How far to re-noise, on the noise-level axis (0 clean, 1 noise)."),
                io.Float.Input("delta_b", default=d["delta_b"], min=0.001, max=1.0, step=0.01,
                               tooltip="How far to denoise back; must exceed delta_f."),
                io.Float.Input("sigma_start", default=d["sigma_start"], min=0.0, max=1.0, step=0.01,
                               tooltip="Noise level where the search starts branching."),
                io.Int.Input("max_batch", default=8, min=1, max=256, tooltip="Paths per model call."),
                # Optional, so graphs saved before these existed still validate.
                io.Float.Input("widen", default=d["widen"], min=1.0, max=64.0, step=0.5, optional=True,
                               tooltip="Initial paths per kept path: start widen x N paths, verify them at "
                               "sigma_start and keep the best N (1 = the paper's search)."),
                io.Boolean.Input("rollover", default=d["rollover"], optional=True,
                                 tooltip="A round stops at the first branch that beats the kept paths; the "
                                 "forwards it did not use go to the next round (rollover budget forcing)."),
                io.Boolean.Input("keep_parent", default=d["keep_parent"], optional=True,
                                 tooltip="Each kept path also continues without re-noising and competes with "
                                 "its branches, so a round can keep what it had."),
                _max_forwards_input(),
                *_video_inputs(),
            ],
            outputs=[io.Sampler.Output(tooltip="Connect to SamplerCustomAdvanced's sampler input.")],
        )

    @classmethod
    def execute(cls, verifier, vae, prompt, n, m, delta_f, delta_b, sigma_start, max_batch, widen=1.0,
                rollover=False, keep_parent=False, max_forwards=DEFAULT_MAX_NFE,
                verify_frames=DEFAULT_VERIFY_FRAMES, verify_mode="joint") -> io.NodeOutput:
        params = {"n": n, "m": m, "delta_f": delta_f, "delta_b": delta_b, "sigma_start": sigma_start,
                  "widen": widen, "rollover": rollover, "keep_parent": keep_parent}
        return io.NodeOutput(search_sampler(strategy="sop", params=params, verifier=verifier, vae=vae,
                                            prompt=prompt, max_batch=max_batch, max_nfe=ceiling_from_text(max_forwards),
                                            verify_frames=verify_frames, verify_mode=verify_mode))


class SearchKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDSearchKSampler",
            display_name="Search KSampler",
            category=CATEGORY,
            description="KSampler that spends a compute budget searching for the image the verifier likes best.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model, as for KSampler."),
                io.Conditioning.Input("positive", tooltip="What the model draws (CLIP Text Encode)."),
                io.Conditioning.Input("negative", tooltip="What the model avoids."),
                io.Latent.Input("latent_image", tooltip="Batch size 1."),
                *_search_inputs(),
                io.Combo.Input("strategy", options=list(STRATEGY_LABELS.values()), default=STRATEGY_LABELS["sop"],
                               tooltip=STRATEGY_TIP),
                io.String.Input("budget", default="4x", tooltip="Denoiser forwards ('400') or a multiple of one "
                                "sample's cost ('4x'); the strategy is sized to fit."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seeds every path of the search: same seed, same result."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Denoising steps of one path."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale; above 1 each step costs two forwards."),
                io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="normal",
                               tooltip="How the noise levels are spaced, as in KSampler."),
                io.Int.Input("max_batch", default=8, min=1, max=256, tooltip="Paths per model call."),
                _max_forwards_input(),
                io.Int.Input("keep", default=0, min=0, max=4096, optional=True,
                             tooltip="How many images the candidates output holds: the first rows of the ranking, "
                             "so the chosen image and the best other finished images; x0-predictions of unfinished "
                             "paths only when fewer images finished (0 = every verified candidate)."),
                *_video_inputs(),
            ],
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The chosen path's final latent."),
                io.Image.Output(display_name="image", tooltip="The chosen image, decoded (a video: its frames)."),
                io.String.Output(display_name="scores_json", tooltip="The full record: chosen node, forwards "
                                 "spent, every candidate's score, then the configuration."),
                io.Image.Output(display_name="candidates", tooltip="Every verified candidate in the order of "
                                "the ranking output: the chosen image, the other finished images by score, then "
                                "the x0-predictions scored on unfinished paths (videos: every frame of each, "
                                "candidate after candidate)."),
                io.String.Output(display_name="ranking", tooltip="A markdown table (connect a Preview Any node): "
                                 "rank, score, what was scored (a finished image, or the x0-prediction of a path "
                                 "still at noise level L, whose score does not compare with a finished one's), "
                                 "round, node."),
            ],
        )

    @classmethod
    def validate_inputs(cls, strategy: str) -> bool | str:
        try:
            strategy_id(strategy)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, model, positive, negative, latent_image, verifier, vae, prompt, strategy, budget, seed, steps,
                cfg, scheduler, max_batch, max_forwards=DEFAULT_MAX_NFE, keep=0,
                verify_frames=DEFAULT_VERIFY_FRAMES, verify_mode="joint") -> io.NodeOutput:
        results = []
        sampler = search_sampler(strategy=strategy_id(strategy), params={}, verifier=verifier, vae=vae, prompt=prompt,
                                 budget=budget.strip() or None, max_batch=max_batch, on_result=results.append,
                                 max_nfe=ceiling_from_text(max_forwards), verify_frames=verify_frames,
                                 verify_mode=verify_mode)
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed)
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
        samples = comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent,
                                             noise_mask=latent_image.get("noise_mask"), seed=seed)
        out = {**latent_image, "samples": samples}
        result = results[-1]
        summary = result.summary()
        summary.pop("versions", None)
        # The record a reader wants first (chosen, counts, candidates), the full configuration last.
        summary = {k: summary[k] for k in ("chosen", "counts", "candidates", "config")}
        ranked = ranking(result)
        kept = ranked[:keep] if keep else ranked
        return io.NodeOutput(out, decode_output(vae, samples), json.dumps(summary, indent=1, default=str),
                             candidate_batch(result, kept), ranking_text(result, ranked))


UNFINISHED_NOTE = ("x0 at noise L: the clean image predicted from a path still at noise level L (1 pure noise, "
                   "0 clean), scored before it finished; its score does not compare with a final image's.")


def ranking_text(result, ranked: list[int]) -> str:
    """The ranking as a markdown table padded to line up as plain text too (Preview Any renders
    markdown, which runs plain lines together), and a note on unfinished candidates when there are any."""
    rows = [("rank", "score", "scored image", "round", "node")]
    for r, i in enumerate(ranked, start=1):
        node = result.tree[i]
        what = scored_image(result, i)
        rows.append((str(r), f"{node.score:.4f}", what + (" (chosen)" if i == result.node_id else ""),
                     str(node.round), str(i)))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]

    def line(cells) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"

    table = [line(rows[0]), line("-" * w for w in widths), *(line(row) for row in rows[1:])]
    if not all(finished(result, i) for i in ranked):
        table += ["", UNFINISHED_NOTE]
    return "\n".join(table)


class SearchPromptEncode(io.ComfyNode):
    """CLIP Text Encode that also passes its text on, so the verifier reads the prompt the user typed once."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RDSearchPromptEncode",
            display_name="Text Encode (search prompt)",
            category=CATEGORY,
            description="CLIP Text Encode for the search: encodes the text for the model and outputs the same "
            "text for the verifier's prompt input, so the prompt is typed once.",
            inputs=[
                io.String.Input("text", multiline=True, dynamic_prompts=True,
                                tooltip="The prompt: what the model draws and what the verifier checks."),
                io.Clip.Input("clip", tooltip="The CLIP model used for encoding the text."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="conditioning",
                                       tooltip="The encoded text, for the sampler's positive input."),
                io.String.Output(display_name="prompt",
                                 tooltip="The same text: link it to the search node's prompt input."),
            ],
        )

    @classmethod
    def execute(cls, text, clip) -> io.NodeOutput:
        if clip is None:
            raise ValueError("the clip input is empty: connect a loader's CLIP output")
        return io.NodeOutput(clip.encode_from_tokens_scheduled(clip.tokenize(text)), text)


NODES: list[type[io.ComfyNode]] = [
    SearchPromptEncode,
    LoadVLMVerifier,
    LoadVerifier,
    YesTokenScore,
    BestOfNImages,
    PairwiseTournament,
    SearchOverPathsSampler,
    SearchKSampler,
]
