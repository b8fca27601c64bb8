"""The page: a Generate tab (search, compare two strategies, see the tree) and a Score tab (rank your own
images). Every handler calls :mod:`rd_inference`; no search logic lives here."""

from __future__ import annotations

from typing import Any

import gradio as gr

from rd_inference import search
from rd_inference.budget import ceiling_from_text
from rd_inference.checks import check_guidance, check_image_file, check_seed, check_steps
from rd_inference.criteria import builtin_criteria
from rd_inference.pairwise import tournament
from rd_inference.video import FrameSampledVerifier, folder_makes_video, makes_video

from .backend import SOP_FIELDS, Backend, Cancelled, _blank, embedded_sop_settings, readable_errors  # noqa: F401
from .plot import search_figure
from .views import (
    STRATEGIES,
    STRATEGY_NAMES,
    _basename,
    _display,
    chosen_views,
    equal_compute_note,
    gallery_items,
    result_visibility,
    strategy_params,
    summary_markdown,
    tournament_markdown,
    video_controls,
)

QUANTIZATIONS = ["none", "8bit", "4bit"]

# Field defaults; build_demo(defaults=...) overrides them (tests use few steps).
DEFAULTS: dict[str, Any] = {
    "prompt": "two red circles", "criteria": "alignment", "strategy": "sop", "strategy_b": "bon", "budget": "8x", "seed": 0,
    "n": 2, "m": 2, "sigma_start": 0.11, "delta_f": 0.78, "delta_b": 0.81, "widen": 1.0, "rollover": False,
    "keep_parent": False, "steps": None, "guidance": None,
    "model": "", "verifier": "", "quantization": "none", "max_forwards": "256x",
    "num_frames": None, "verify_frames": None, "verify_mode": "joint",  # shown for video models only
}
def build_demo(backend: Backend | None = None, *, defaults: dict[str, Any] | None = None,
               max_queue: int = 8) -> gr.Blocks:
    """The Blocks app, queued: one device job at a time (generate, score, rationale share the device), at
    most ``max_queue`` waiting; a full queue answers "Queue is full" in the page."""
    backend = backend or Backend()
    d = {**DEFAULTS, **embedded_sop_settings(backend), **(defaults or {})}
    d["video"] = folder_makes_video(_blank(d["model"]))
    criteria_names = list(builtin_criteria())

    def run_one(pipe, verifier, prompt, strategy, budget, seed, steps, guidance, params, progress, part,
                max_nfe, cancel, sizes):
        name, kw = strategy_params(strategy, *params)
        first, span = part
        label = f"{STRATEGY_NAMES[strategy]}: " if span < 1 else ""

        def on_plan(plan) -> None:
            gr.Info(f"{label}{plan.line()}")
            progress(first, desc=f"{label}{plan.line()}")

        def on_step(done: int, total: int) -> None:
            if cancel.is_set():
                raise Cancelled(f"Cancelled after {done} of {total} denoiser forwards; nothing was kept.",
                                print_exception=False)
            progress(first + span * done / total, desc=f"{label}denoiser forwards {done}/{total}")

        result = search(
            pipe, prompt, verifier=verifier, strategy=name, budget=None if strategy == "one" else budget,
            seed=int(seed), steps=None if steps is None else int(steps),
            guidance_scale=None if guidance is None else float(guidance), progress=on_step, on_plan=on_plan,
            max_nfe=max_nfe, **sizes, **kw,
        )
        label = STRATEGY_NAMES[strategy]
        title = f"{label}: score per node per round"
        image, video, frames = chosen_views(result)
        return result, [image, gallery_items(result), search_figure(result.tree.plot_data(result.node_id), title),
                        summary_markdown(result, label, getattr(verifier, "note", None))], [video, frames]

    def generate(prompt, criteria, strategy, budget, seed, compare, strategy_b, n, m, sigma_start, delta_f,
                 delta_b, widen, rollover, keep_parent, steps, guidance, model, verifier_spec, quantization,
                 max_forwards, num_frames=None, verify_frames=None, verify_mode="joint", request: gr.Request = None,
                 progress=gr.Progress()):  # noqa: B008 (Gradio finds its tracker by this default)
        cancel = backend.start_job(request.session_hash if request else None)
        if not prompt or not prompt.strip():
            raise gr.Error("Enter a prompt first.", print_exception=False)
        max_nfe = ceiling_from_text(max_forwards)
        budget = budget.strip() if isinstance(budget, str) and budget.strip() else None
        params = (n, m, sigma_start, delta_f, delta_b, widen, rollover, keep_parent)
        with readable_errors("Generate"):
            # The numbers are checked before any model loads (the search checks them again, with the model).
            check_seed(int(seed) if isinstance(seed, float) and seed.is_integer() else seed)
            check_steps(None if steps is None else int(steps) if float(steps).is_integer() else steps)
            check_guidance(guidance)
            progress(0.0, desc="loading models")
            pipe = backend.model(model)
            verifier = backend.verifier(verifier_spec, quantization, criteria)
            # Empty steps/guidance fields (and the size) take the model folder's recommended settings, as the
            # command line does.
            recommended = backend.recommended(model)
            steps = steps if steps is not None else recommended.get("steps")
            guidance = guidance if guidance is not None else recommended.get("guidance_scale")
            sizes = {k: recommended.get(k) for k in ("height", "width")}
            if makes_video(pipe):  # the video fields count only for a video model (they are hidden otherwise)
                sizes.update(num_frames=None if num_frames is None else int(num_frames),
                             verify_frames=None if verify_frames is None else int(verify_frames))
                verifier = FrameSampledVerifier(verifier, frames=verify_mode or None)
            parts = [(strategy, (0.0, 0.5 if compare else 1.0))]
            if compare:
                parts.append((strategy_b, (0.5, 0.5)))
            outputs, results, videos = [], [], []
            for strat, part in parts:
                result, out, video = run_one(pipe, verifier, prompt.strip(), strat, budget, seed, steps, guidance,
                                             params, progress, part, max_nfe, cancel, sizes)
                results.append(result)
                outputs += out
                videos += video
            if compare:
                outputs[7] += equal_compute_note(*results)
        first = results[0]
        if not compare:  # the second strategy's image, gallery, plot, summary and video stay empty
            outputs += [None] * 4
            videos.append(None)
        state = {"image": first.image, "prompt": prompt.strip(), "node": first.node_id,
                 "video": isinstance(first.image, list)}
        return [*outputs, state, *videos[:3]]

    def explain(state, criteria, verifier_spec, quantization):
        if not state:
            raise gr.Error("Generate an image first; then ask why it won.", print_exception=False)
        if state.get("video"):
            return "The rationale explains a single image; this run chose a video."
        with readable_errors("Rationale"):
            verifier = backend.verifier(verifier_spec, quantization, criteria)
            if not callable(getattr(verifier, "rationale", None)):
                return (f"This verifier ({type(verifier).__name__}) scores without words; a VLM verifier "
                        "(Models → Verifier) can explain its answer.")
            if _blank(verifier_spec) is None and backend.uses_embedded_loaders:
                return ("The embedded toy VLM was trained to answer only yes or no, so it cannot explain its "
                        "answer; a real VLM (Models → Verifier) can.")
            text = verifier.rationale(state["image"], state["prompt"])
        return (f"**Node {state['node']}**, in the verifier's own words (text it generates when asked why; the "
                f"score came from its yes-probability, not from this text): {text}")

    def score(files, prompt, criteria, pairwise, top_k, verifier_spec, quantization):
        if not files:
            raise gr.Error("Upload at least one image.", print_exception=False)
        if not prompt or not prompt.strip():
            raise gr.Error("Enter the prompt the images were made for.", print_exception=False)
        with readable_errors("Score"):
            names = [str(f) for f in files]
            images = [check_image_file(path) for path in names]
            crit = ",".join(criteria) if criteria else None
            verifier = backend.verifier(verifier_spec, quantization, crit)
            if callable(getattr(verifier, "score", None)):  # a yes-token VLM: one column per criterion
                s = verifier.score(images, prompt.strip())
                probs = s.conditional if s.probability == "conditional" else s.full
                columns = [c.name for c in s.criteria]
                reward, per = s.reward, probs.tolist()
            else:
                reward = verifier(images, prompt.strip())
                columns, per = [], [[] for _ in images]
            order = sorted(range(len(images)), key=lambda i: -float(reward[i]))
            rows = [[rank, _basename(names[i]), round(float(reward[i]), 4), *(round(v, 4) for v in per[i])]
                    for rank, i in enumerate(order, start=1)]
            table = {"headers": ["rank", "image", "score", *columns], "data": rows}
            ranked = [(_display(images[i]), f"#{r} · {float(reward[i]):.3f} · {_basename(names[i])}")
                      for r, i in enumerate(order, start=1)]
            text = ""
            if pairwise:
                if not callable(getattr(verifier, "compare", None)):
                    raise gr.Error("The pairwise tournament needs a VLM verifier (Models → Verifier).",
                                   print_exception=False)
                res = tournament(verifier, images, prompt.strip(), top_k=int(top_k) if top_k else None,
                                 scores=reward)
                text = tournament_markdown(res, names)
        return table, ranked, text

    with gr.Blocks(title="rd_inference: test-time scaling", analytics_enabled=False) as demo:
        gr.Markdown("# Test-time scaling for diffusion models\nSpend more inference compute to find the image "
                    "a verifier likes best, and see how the search got there.")
        notice = backend.notice()
        if notice:
            gr.Markdown(notice, elem_id="notice")
        with gr.Accordion("Models", open=bool(notice)), gr.Row():
            model = gr.Textbox(d["model"], label="Model: diffusers folder or hub id (empty = embedded toy model)")
            verifier_spec = gr.Textbox(d["verifier"], label="Verifier: VLM folder or hub id, or KIND:TARGET — "
                                       "clip:PATH, pickscore:PATH, aesthetic:PATH, openai:URL#MODEL, brightness, "
                                       "color:R,G,B; join with + for an ensemble, @W to weight (empty = embedded "
                                       "toy VLM)")
            quantization = gr.Radio(QUANTIZATIONS, value=d["quantization"], label="VLM quantization")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    prompt = gr.Textbox(d["prompt"], label="Prompt", placeholder="describe the image", elem_id="prompt")
                    criteria = gr.Dropdown(criteria_names, value=d["criteria"], allow_custom_value=True,
                                           label="Criteria template (a name, name:weight list, or a .json file)")
                    strategy = gr.Dropdown(STRATEGIES, value=d["strategy"], label="Strategy")
                    with gr.Row():
                        budget = gr.Textbox(d["budget"], label="Budget: denoiser forwards (400) or samples' worth "
                                            "(4x); empty = N/M below")
                        seed = gr.Number(d["seed"], precision=0, label="Seed")
                    with gr.Row():
                        compare = gr.Checkbox(False, label="Compare with a second strategy at the same budget")
                        strategy_b = gr.Dropdown(STRATEGIES, value=d["strategy_b"], label="Second strategy",
                                                 visible=False)
                    with gr.Accordion("Advanced", open=False):
                        n = gr.Number(d["n"], precision=0, label="N: paths kept (SoP), samples (BoN), "
                                      "neighbours per round (zero-order), beams, particles (FK), "
                                      "starting paths (pruning), population (evolutionary)")
                        m = gr.Number(d["m"], precision=0, label="M: branches per path (SoP), rounds (zero-order), "
                                      "children per beam, elites (evolutionary)")
                        sigma_start = gr.Slider(0.0, 1.0, d["sigma_start"], step=0.01, label="σ_start (SoP)")
                        delta_f = gr.Slider(0.01, 1.0, d["delta_f"], step=0.01, label="Δf: re-noise forward (SoP)")
                        delta_b = gr.Slider(0.01, 1.0, d["delta_b"], step=0.01, label="Δb: denoise back (SoP)")
                        widen = gr.Number(d["widen"], label="Widen (SoP): initial paths per kept path, selected "
                                          "at σ_start (1 = the paper)")
                        rollover = gr.Checkbox(d["rollover"], label="Rollover (SoP): a round stops at the first "
                                               "improving branch; its unused forwards go to the next round")
                        keep_parent = gr.Checkbox(d["keep_parent"], label="Keep parent (SoP): each kept path also "
                                                  "continues without re-noising and competes with its branches")
                        steps = gr.Number(d["steps"], precision=0, label="Steps (empty = model default)")
                        guidance = gr.Number(d["guidance"], label="Guidance scale (empty = model default)")
                        max_forwards = gr.Textbox(d["max_forwards"], label="Max forwards: refuse a search planned "
                                                  "above this (forwards, or 256x = 256 samples' worth; none = no limit)")
                    video_row, num_frames, verify_frames, verify_mode = video_controls(d)
                    with gr.Row():
                        run = gr.Button("Generate", variant="primary", elem_id="generate")
                        stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Column(scale=2):
                    with gr.Row():
                        with gr.Column():
                            image_a = gr.Image(label="Chosen image", type="pil", elem_id="chosen")
                            video_a = gr.Video(label="Chosen video", visible=False, elem_id="chosen_video")
                            summary_a = gr.Markdown(elem_id="summary")
                        with gr.Column(visible=False) as column_b:
                            image_b = gr.Image(label="Chosen image (second strategy)", type="pil")
                            video_b = gr.Video(label="Chosen video (second strategy)", visible=False)
                            summary_b = gr.Markdown()
                    frames_a = gr.Gallery(label="Frames of the chosen video", columns=8, height=200, visible=False,
                                          format="png", elem_id="frames")  # png: the exact frames
                    gallery_a = gr.Gallery(label="Verified candidates: ★ chosen, then finished images best first, then x0@L (scored at noise level L before the path finished; not comparable): score · r round · n node", columns=4,
                                           height=320,
                                           elem_id="gallery")
                    plot_a = gr.Plot(label="The search", show_label=False, elem_id="plot")
                    with gr.Column(visible=False) as column_b2:
                        gallery_b = gr.Gallery(label="Verified candidates (second strategy)", columns=4, height=320)
                        plot_b = gr.Plot(label="The search (second strategy)", show_label=False)
                    why = gr.Button("Why did it win? (verifier's rationale)")
                    rationale = gr.Markdown()
            state = gr.State(None)
            compare.change(lambda on: [gr.update(visible=on)] * 3, compare, [strategy_b, column_b, column_b2],
                           queue=False, api_visibility="private")

            def show_video_fields(spec: str):  # from model_index.json: a hub id keeps them hidden (defaults apply)
                return gr.update(visible=folder_makes_video(_blank(spec)))

            model.change(show_video_fields, model, video_row, queue=False, api_visibility="private")
            job = run.click(generate, [prompt, criteria, strategy, budget, seed, compare, strategy_b, n, m,
                                       sigma_start, delta_f, delta_b, widen, rollover, keep_parent, steps, guidance,
                                       model, verifier_spec, quantization, max_forwards, num_frames, verify_frames,
                                       verify_mode],
                            [image_a, gallery_a, plot_a, summary_a, image_b, gallery_b, plot_b, summary_b, state,
                             video_a, frames_a, video_b],
                            api_name="generate", concurrency_id="device", concurrency_limit=1,
                            show_progress_on=[image_a, video_a])  # progress shows on the chosen image or video
            job.success(result_visibility, state, [image_a, video_a, frames_a, image_b, video_b], queue=False,
                        api_visibility="private")

            def cancel(request: gr.Request) -> None:
                # The flag stops the search thread at its next step; Gradio's cancel frees the page at once.
                backend.cancel(request.session_hash if request else None)

            stop.click(cancel, None, None, cancels=[job], queue=False, api_name="cancel")
            why.click(explain, [state, criteria, verifier_spec, quantization], rationale, api_name="rationale",
                      concurrency_id="device", concurrency_limit=1)
        with gr.Tab("Score"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(file_count="multiple", file_types=["image"], label="Images")
                    score_prompt = gr.Textbox(label="Prompt the images were made for")
                    score_criteria = gr.Dropdown(criteria_names, value=["alignment"], multiselect=True,
                                                 allow_custom_value=True, label="Criteria (one column each)")
                    with gr.Row():
                        pairwise = gr.Checkbox(False, label="Pairwise tournament")
                        top_k = gr.Number(4, precision=0, label="Tournament: top k")
                    score_run = gr.Button("Score", variant="primary")
                with gr.Column():
                    table = gr.Dataframe(label="Scores (yes-token probability per criterion)", interactive=False)
                    ranked = gr.Gallery(label="Ranking", columns=4, height=320)
                    tourney = gr.Markdown()
            score_run.click(score, [files, score_prompt, score_criteria, pairwise, top_k, verifier_spec,
                                    quantization], [table, ranked, tourney], api_name="score",
                            concurrency_id="device", concurrency_limit=1)
        gr.Markdown(f"One job runs at a time on this device; up to {max_queue} wait in line (beyond that the "
                    "page says the queue is full: try again in a moment).")
    demo.queue(max_size=max_queue, default_concurrency_limit=1)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serve on ``host`` (loopback unless you choose otherwise); never a public share link."""
    return demo.launch(server_name=host, server_port=port, share=False, theme=gr.themes.Soft(),
                       footer_links=["api"], **kwargs)
