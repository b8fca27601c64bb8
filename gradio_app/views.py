"""What the page shows of a result: upscaled images (or a playable video and its frames), the candidate
gallery, the summary, the strategy fields in each strategy's own terms."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from rd_inference.ranking import finished, ranking
from rd_inference.video import fps_of, is_video, preview, temp_mp4

STRATEGIES = [("One sample", "one"), ("Best-of-N", "bon"), ("Search over Paths", "sop"), ("Zero-order", "zo"),
              ("Beam search with look-ahead", "beam"), ("Feynman-Kac particles", "fk"), ("Staged pruning", "prune"),
              ("Evolutionary search", "evo")]
STRATEGY_NAMES = {value: label for label, value in STRATEGIES}
DISPLAY_SIZE = 256  # tiny toy images are upscaled (nearest) so the page shows pixels, not blur


def _display(image: Image.Image) -> Image.Image:
    factor = DISPLAY_SIZE // max(image.size)
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def strategy_params(strategy: str, n, m, sigma_start, delta_f, delta_b, widen=1.0, rollover=False,
                    keep_parent=False) -> tuple[str, dict]:
    """The page's N/M fields in each strategy's own terms. "One sample" is Best-of-N with one path."""
    if strategy == "one":
        return "bon", {"n": 1}
    if strategy == "bon":
        return "bon", {"n": int(n)}
    if strategy == "sop":
        return "sop", {"n": int(n), "m": int(m), "sigma_start": float(sigma_start), "delta_f": float(delta_f),
                       "delta_b": float(delta_b), "widen": float(widen), "rollover": bool(rollover),
                       "keep_parent": bool(keep_parent)}
    if strategy == "zo":
        return "zo", {"neighbors": int(n), "rounds": int(m)}
    if strategy == "beam":
        return "beam", {"beams": int(n), "children": int(m)}
    if strategy == "fk":
        return "fk", {"particles": int(n)}
    if strategy == "prune":
        return "prune", {"n": int(n)}
    if strategy == "evo":
        return "evo", {"population": int(n), "elites": int(m)}
    raise gr.Error(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGY_NAMES.values())}")


def video_controls(d: dict) -> tuple[gr.Row, gr.Number, gr.Number, gr.Radio]:
    """The video model's fields (made inside the page's Blocks), in a row shown only for video models."""
    with gr.Row(visible=d["video"]) as row:
        num_frames = gr.Number(d["num_frames"], precision=0, label="Frames (video: 4k+1; empty = model default)")
        verify_frames = gr.Number(d["verify_frames"], precision=0, label="Frames shown to the verifier per "
                                  "candidate (evenly spaced; empty = 4)")
        verify_mode = gr.Radio([("All in one prompt (joint)", "joint"), ("One by one, averaged (each)", "each")],
                               value=d["verify_mode"], label="How the verifier sees them (joint needs a VLM)")
    return row, num_frames, verify_frames, verify_mode


def chosen_views(result) -> list:
    """The chosen image, or the chosen video as a playable MP4 (the core's writer) and its frames captioned
    "frame j/F": values for the page's image, video and frame gallery (None for those not used)."""
    if result is None or not is_video(result.image):
        return [None if result is None else _display(result.image), None, None]
    n = len(result.image)
    frames = [(_display(f), f"frame {j + 1}/{n}") for j, f in enumerate(result.image)]
    return [None, str(temp_mp4(result.image, fps=fps_of(result.config))), frames]


def result_visibility(state) -> list:
    """Image views for an image run, video views for a video run: updates for image, video, frames
    (first strategy) and image, video (second)."""
    video = bool(state and state.get("video"))
    return [gr.update(visible=not video), gr.update(visible=video), gr.update(visible=video),
            gr.update(visible=not video), gr.update(visible=video)]


def gallery_items(result) -> list[tuple[Image.Image, str]]:
    """Every verified candidate in the core's order (:func:`rd_inference.ranking.ranking`: the chosen image,
    finished images by score, then x0-predictions of unfinished paths), captioned
    "score · r<round> · n<node id>", with "x0@L" for a score given to a path still at noise level L. A video
    shows as a strip of evenly spaced frames."""
    items = []
    for i in ranking(result):
        node = result.tree[i]
        # Short enough to fit under a thumbnail; the gallery's label spells the fields out.
        mark = " ★" if i == result.node_id else (" kept" if node.kept else "")
        early = "" if finished(result, i) else f" · x0@{node.level_end:.3g}"
        items.append((_display(preview(result.candidates[i])), f"{node.score:.3f} · r{node.round} · n{i}{early}{mark}"))
    return items


def summary_markdown(result, label: str, note: str | None = None) -> str:
    c, cfg = result.counts, result.config
    sec = c["seconds"]
    video = ""
    if "verifier_frames" in c:  # a video run: what the verifier was shown, and how
        d, mode = cfg["denoiser"], (cfg["verifier"] or {}).get("frames", "each")
        how = "all in one prompt" if mode == "joint" else "one by one, scores averaged"
        video = (f"\n\nvideo: {d['num_frames']} frames; the verifier saw {d['verify_frames']} per candidate, {how} "
                 f"({c['verifier_frames']} frames in all)" + (f". Note: {note}" if note else ""))
    params = ", ".join(f"{k}={v}" for k, v in cfg["params"].items())
    phases = " · ".join(f"{k} {sec[k]:.2f}" for k in ("encode", "denoise", "decode", "verify", "move") if k in sec)
    return (
        f"**{label}** ({params}) — chosen node {result.node_id}, score **{result.score:.4f}**\n\n"
        "| denoiser forwards: spent / planned / budget | decodes | images verified | verifier calls | paths |\n"
        "|---|---|---|---|---|\n"
        f"| {c['nfe']} / {c['planned_nfe']} / {c['budget_nfe'] or '-'} | {c['decodes']} | {c['verifier_images']} | "
        f"{c['verifier_batches']} | {c['paths']} |\n\n"
        f"seconds: {phases} · **total {sec['total']:.2f}**{video}"
    )


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


COIN_FLIP = 0.05  # a winner whose every preference is within this of 0.5 is no winner


def tournament_markdown(res, names: list[str]) -> str:
    """The win table with an honest headline: a tie or coin-flip preferences are said as such."""
    k = len(res.candidates)
    row = res.candidates.index(res.winner)
    tied = [res.candidates[r] for r in range(k) if r != row and float(res.wins[r]) == float(res.wins[row])]
    margins = [abs(float(res.preference[row, j]) - 0.5) for j in range(k) if j != row]
    if tied:
        others = ", ".join(_basename(names[c]) for c in tied)
        head = f"Tie: {_basename(names[res.winner])} and {others} have equal wins; the pointwise score breaks it."
    elif k > 1 and max(margins) < COIN_FLIP:
        head = (f"No clear winner: every preference of {_basename(names[res.winner])} is within "
                f"{COIN_FLIP:.2f} of a coin flip (largest margin {max(margins):.3f}).")
    else:
        head = f"**Tournament winner: {_basename(names[res.winner])}**"
    return (f"{head}\n\n```\n{res.table()}\n```\n"
            "Rows and columns are indices in upload order; cells are P(row beats column).")


def equal_compute_note(a, b) -> str:
    """A comparison is fair only at equal spent compute: say so when the two runs spent different amounts."""
    na, nb = a.counts["nfe"], b.counts["nfe"]
    if abs(na - nb) <= 0.05 * max(na, nb):
        return f"\n\nBoth spent about the same compute ({na} and {nb} denoiser forwards): a fair comparison."
    return (f"\n\n**Not equal compute**: the first strategy spent {na} denoiser forwards, this one {nb} (sizes "
            "come in whole paths and branches). Compare their scores with that in mind, or change the budget "
            "or steps until both spend it all.")
