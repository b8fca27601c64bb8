"""The Gradio demo served on a loopback port, driven by gradio_client and by a real browser (Debian's
chromium through playwright). A tiny SD pipeline and the brightness verifier are injected; a tiny LLaVA
stands in for the VLM on the Score tab."""

from __future__ import annotations

import ast
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from tiny_pipelines import tiny_sd

from gradio_app import Backend, build_demo, launch
from rd_inference import BrightnessVerifier, cli
from rd_inference.pipelines import load_pipeline
from rd_inference.verifier_loading import load_verifier

CHROMIUM = "/usr/bin/chromium"
SLOW = "slow-tiny-sd"
SLOW_CALLS = [0]  # forwards the slow model has run  # model field value that loads the tiny pipeline with a sleep per denoiser forward
HOLD: list = [None, 0]  # (event, n): when a test sets them, slow forwards after the n-th wait for the event
# A generate request: prompt, criteria, strategy, budget, seed, compare, strategy_b, N, M, σ_start, Δf, Δb,
# widen, rollover, keep_parent, steps, guidance, model, verifier, quantization, max forwards.
SOP = {"prompt": "two red circles", "criteria": "alignment", "strategy": "sop", "budget": "4x", "seed": 0,
       "compare": False, "strategy_b": "bon", "n": 2, "m": 2, "sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5,
       "widen": 1.0, "rollover": False, "keep_parent": False, "steps": 4, "guidance": None, "model": "", "verifier": "", "quantization": "none",
       "max_forwards": "256x"}


def request(**changes):
    return list({**SOP, **changes}.values())


@pytest.fixture(scope="module")
def app():
    pipe, slow = tiny_sd(), tiny_sd()
    def slow_forward(*_):  # so progress can be watched, and a cancelled search seen to stop
        SLOW_CALLS[0] += 1
        if HOLD[0] is not None and SLOW_CALLS[0] > HOLD[1]:
            HOLD[0].wait(timeout=20)
        time.sleep(0.03)

    slow.unet.register_forward_hook(slow_forward)

    def load_model(spec):
        known = {None: pipe, SLOW: slow}
        return known[spec] if spec in known else load_pipeline(spec)

    def load_vlm(spec, quantization, criteria):
        if spec is None:
            return BrightnessVerifier()
        return load_verifier(spec, device="cpu", quantization=quantization, criteria=criteria)

    backend = Backend(load_model=load_model, load_verifier=load_vlm, device="cpu")
    demo = build_demo(backend, defaults={"steps": 4, "budget": "8x", "sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5})
    _, url, _ = launch(demo, prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[1], verbose=False)


def test_generate_returns_image_gallery_plot_and_summary(client):
    image, gallery, plot, summary, image_b, *_ = client.predict(*request(), api_name="/generate")
    assert Image.open(image).size[0] >= 16
    assert len(gallery) >= 4 and all(Path(g["image"]).is_file() for g in gallery)
    caption = [g["caption"].split(" · ") for g in gallery]  # "0.435 · r2 · n11 ★": score, round, node
    assert all(c[1].startswith("r") and c[2].startswith("n") for c in caption)
    assert sum("★" in g["caption"] for g in gallery) == 1 and "★" in gallery[0]["caption"]
    # The core's order: finished images (by score) before x0-predictions scored on the way ("x0@L").
    early = ["x0@" in g["caption"] for g in gallery]
    assert early == sorted(early)
    finished = [float(c[0]) for c, e in zip(caption[1:], early[1:]) if not e]
    assert finished == sorted(finished, reverse=True)
    assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image")
    assert "Search over Paths" in summary and "denoiser forwards" in summary and "verify" in summary
    assert image_b is None


def test_compare_runs_two_strategies_at_the_same_budget(client):
    out = client.predict(*request(compare=True, strategy_b="bon"), api_name="/generate")
    summary_a, image_b, gallery_b, plot_b, summary_b = out[3:8]
    assert "Best-of-N" in summary_b and image_b is not None and gallery_b and plot_b["type"] == "matplotlib"
    # 4x of 4 steps with CFG: both show the same budget of 32 denoiser forwards beside what they spent.
    spent = {}
    for name, s in (("sop", summary_a), ("bon", summary_b)):
        row = s.split("|---|---|---|---|---|\n| ")[1].split(" |")[0]
        spent[name], planned, budget = (int(v) for v in row.split(" / "))
        assert 0 < spent[name] <= planned <= budget == 32
    assert spent["bon"] == 32
    fair = abs(spent["sop"] - spent["bon"]) <= 0.05 * 32
    assert ("a fair comparison" in summary_b) == fair and ("Not equal compute" in summary_b) == (not fair)


def test_cancel_stops_the_search_at_its_next_step(app):
    fresh = Client(app[1], verbose=False)
    before = SLOW_CALLS[0]
    # 64 paths x 12 steps in chunks of 8 = 96 slow model calls (~3 s): long enough to cancel halfway.
    job = fresh.submit(*request(strategy="bon", budget="64x", steps=12, model=SLOW), api_name="/generate")
    while SLOW_CALLS[0] - before < 5:
        time.sleep(0.01)
    fresh.predict(api_name="/cancel")
    at_cancel = SLOW_CALLS[0]
    deadline = time.time() + 10
    while not job.done() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    # The search thread stopped at its next step (one chunk may finish): far short of the 96 calls.
    assert SLOW_CALLS[0] - at_cancel <= 2 and SLOW_CALLS[0] - before < 40, (before, at_cancel, SLOW_CALLS[0])
    assert job.status().code.name in ("CANCELLED", "FINISHED") and not job.outputs()


def test_the_plan_is_shown_before_the_first_step(client):
    # The search's first forward waits until the page has been polled showing the plan, so a slow poll
    # cannot miss a plan line that the first step's progress replaces; if no plan is ever shown the forward
    # goes on after 20 s and the assertions below fail. The plan's calibration (a warm-up and a timed model
    # call, before the plan is announced) is let through.
    gate = threading.Event()
    HOLD[:] = [gate, SLOW_CALLS[0] + 2]
    try:
        job = client.submit(*request(strategy="one", steps=12, model=SLOW), api_name="/generate")
        seen = []
        while not job.done():
            seen += [p.desc for p in (job.status().progress_data or []) if p.desc and p.desc not in seen]
            if any(d.startswith("plan: ") for d in seen):
                gate.set()
            time.sleep(0.01)
        job.result()
    finally:
        HOLD[0] = None
        gate.set()
    plans = [d for d in seen if d.startswith("plan: bon, 24 denoiser forwards, 1 decodes, 1 images verified")]
    steps = [i for i, d in enumerate(seen) if d.startswith("denoiser forwards")]
    assert plans and steps and seen.index(plans[0]) < min(steps), seen


def test_progress_follows_denoiser_steps(client):
    job = client.submit(*request(strategy="one", steps=12, model=SLOW), api_name="/generate")
    seen = set()
    while not job.done():
        progress = job.status().progress_data
        if progress:
            seen.update(p.desc for p in progress if p.desc)
        time.sleep(0.02)
    job.result()
    steps = {d for d in seen if d.startswith("denoiser forwards")}
    assert len(steps) >= 2, seen


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"prompt": "  "}, "Enter a prompt"),
        ({"budget": "3"}, "too small"),
        ({"model": "/nonexistent/model"}, "model folder /nonexistent/model does not exist"),
        ({"budget": "1000x"}, "above the ceiling of"),
        ({"budget": "4x", "max_forwards": "2x"}, "raise the ceiling to at least"),
        ({"steps": 0}, "steps must be a whole number >= 1"),
        ({"seed": -4}, "seed -4 is outside the generator's range"),
        ({"strategy": "sop", "delta_b": 0.2}, "must be larger than delta_f"),
    ],
)
def test_bad_requests_show_a_readable_error(client, changes, message):
    with pytest.raises(AppError) as err:
        client.predict(*request(**changes), api_name="/generate")
    assert message in str(err.value) and "Traceback" not in str(err.value)


def test_rationale_of_the_sessions_winner(app, tiny_vlms):
    fresh = Client(app[1], verbose=False)  # its own session, so its own state
    with pytest.raises(AppError, match="Generate an image first"):
        fresh.predict("alignment", "", "none", api_name="/rationale")
    fresh.predict(*request(strategy="one"), api_name="/generate")
    assert "scores without words" in fresh.predict("alignment", "", "none", api_name="/rationale")
    text = fresh.predict("alignment", tiny_vlms["llava"], "none", api_name="/rationale")
    assert text.startswith("**Node ") and "in the verifier's own words" in text


def test_the_embedded_toy_vlm_does_not_pretend_to_explain(monkeypatch):
    backend = Backend(device="cpu")
    demo = build_demo(backend)
    explain = next(fn.fn for fn in demo.fns.values() if fn.api_name == "rationale")

    class Talkative:
        def __call__(self, images, prompt):
            return torch.zeros(len(images))

        def rationale(self, image, prompt):
            raise AssertionError("the toy VLM's text was shown")

    monkeypatch.setattr(backend, "verifier", lambda *a, **k: Talkative())
    text = explain({"image": None, "prompt": "p", "node": 0}, "alignment", "", "none")
    assert "trained to answer only yes or no" in text


@pytest.mark.parametrize(
    "wins, preference, headline",
    [
        ([1.0, 0.0], [[0.5, 0.9], [0.1, 0.5]], "**Tournament winner: b.png**"),
        ([1.0, 0.0], [[0.5, 0.52], [0.48, 0.5]], "No clear winner: every preference of b.png is within 0.05"),
        ([1.0, 1.0, 1.0], [[0.5, 0.8, 0.3], [0.2, 0.5, 0.8], [0.7, 0.2, 0.5]], "Tie: b.png and a.png, c.png"),
    ],
)
def test_tournament_headline_is_honest(wins, preference, headline):
    from gradio_app.views import tournament_markdown
    from rd_inference.pairwise import TournamentResult

    k = len(wins)
    res = TournamentResult(winner=1, candidates=[1, 0, 2][:k], wins=torch.tensor(wins),
                           preference=torch.tensor(preference))
    assert tournament_markdown(res, ["a.png", "b.png", "c.png"]).startswith(headline)


def test_queue_holds_one_device_job_at_a_time(app):
    demo, _ = app
    assert demo._queue.max_size == 8
    device_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == "device"]
    assert {fn.api_name for fn in device_fns} == {"generate", "rationale", "score"}
    assert all(fn.concurrency_limit == 1 for fn in device_fns)


def test_score_tab_with_a_vlm(client, tiny_vlms, tmp_path):
    paths = []
    for i, colour in enumerate([(250, 20, 20), (20, 20, 250), (240, 240, 240)]):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    files = [handle_file(str(p)) for p in paths]
    table, ranked, text = client.predict(files, "two red circles", ["alignment", "aesthetics"], True, 3,
                                         tiny_vlms["llava"], "none", api_name="/score")
    assert table["headers"] == ["rank", "image", "score", "alignment", "aesthetics"]
    assert [row[0] for row in table["data"]] == [1, 2, 3]
    scores = [row[2] for row in table["data"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    # A random tiny VLM prefers at coin-flip odds: the page must not crown a winner then.
    assert len(ranked) == 3 and text.startswith(("No clear winner", "Tie", "**Tournament winner"))
    assert "P(row beats column)" in text


def test_score_tab_with_a_simple_verifier(client, tmp_path):
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    Image.new("RGB", (8, 8), (10, 10, 10)).save(dark)
    Image.new("RGB", (8, 8), (240, 240, 240)).save(bright)
    table, _, _ = client.predict([handle_file(str(dark)), handle_file(str(bright))], "x", [], False, 4, "",
                                 "none", api_name="/score")
    assert [row[1] for row in table["data"]] == ["bright.png", "dark.png"]


def test_missing_embedded_models_are_announced(monkeypatch):
    import rd_inference.pipelines
    import rd_inference.verifier_loading

    def missing():
        raise FileNotFoundError("no embedded model")

    monkeypatch.setattr(rd_inference.pipelines, "default_model_path", missing)
    monkeypatch.setattr(rd_inference.verifier_loading, "default_verifier_path", missing)
    backend = Backend(device="cpu")
    notice = backend.notice()
    assert "embedded toy model is not installed" in notice and "**Model** field" in notice
    assert "**Verifier** field" in notice
    with pytest.raises(FileNotFoundError, match="fill in the Model field"):
        backend.model("")
    with pytest.raises(FileNotFoundError, match="fill in the Verifier field"):
        backend.verifier(None)


def test_core_never_imports_gradio_at_import_time():
    # Module-level imports only: gradio_app may be imported inside a function (rd-tts demo does).
    for path in (Path(__file__).resolve().parents[1] / "rd_inference").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("gradio", "gradio_app") for n in names), path
    args = cli.build_parser().parse_args(["demo", "--port", "7999"])
    assert args.host == "127.0.0.1" and args.port == 7999


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
def test_browser_generate(app, tmp_path):
    from playwright.sync_api import sync_playwright

    _, url = app
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            # The prompt box holds a real default prompt: the first click generates.
            assert page.locator("#prompt textarea").input_value() == "two red circles"
            page.locator("#generate").click()
            page.locator("#gallery img").first.wait_for(timeout=60_000)
            page.locator("#plot img").first.wait_for(timeout=30_000)
            assert page.locator("#gallery img").count() >= 4
            assert page.locator("#plot img").first.evaluate("img => img.naturalWidth") > 100
            assert "denoiser forwards" in page.locator("#summary").inner_text()
            shot = tmp_path / "gradio_demo.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("RD_DEMO_SCREENSHOT"):  # how docs/gradio_demo.png is refreshed
        shutil.copy(shot, os.environ["RD_DEMO_SCREENSHOT"])


def test_changing_criteria_reuses_the_loaded_vlm(tiny_vlms):
    loads = []

    def load_vlm(spec, quantization, criteria):
        loads.append((spec, criteria))
        return load_verifier(spec, device="cpu", quantization=quantization, criteria=criteria)

    backend = Backend(load_model=lambda spec: None, load_verifier=load_vlm, device="cpu")
    first = backend.verifier(tiny_vlms["llava"], None, "alignment")
    second = backend.verifier(tiny_vlms["llava"], None, "object_consistency")
    assert len(loads) == 1 and second.model is first.model
    assert [c.name for c in second.criteria] == ["object_consistency"]
    assert [c.name for c in first.criteria] == ["alignment"]
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    fresh = load_verifier(tiny_vlms["llava"], device="cpu", criteria="object_consistency")
    assert second.score([image], "a red square").reward.tolist() == fresh.score([image], "a red square").reward.tolist()
    backend.verifier(tiny_vlms["llava"], None, "alignment")
    assert len(loads) == 1
    backend.verifier(tiny_vlms["qwen2_5_vl"], None, "alignment")  # other weights: a real load
    assert len(loads) == 2


def test_the_embedded_model_brings_its_tuned_search_settings():
    from gradio_app.app import SOP_FIELDS, embedded_sop_settings
    from rd_inference.pipelines import EMBEDDED_PIPELINE, model_defaults

    tuned = model_defaults(EMBEDDED_PIPELINE)["strategies"]["sop"]
    assert embedded_sop_settings(Backend(device="cpu")) == {k: tuned[k] for k in SOP_FIELDS if k in tuned}
    assert embedded_sop_settings(Backend(load_model=lambda spec: None, device="cpu")) == {}


def test_score_tab_with_a_clip_scorer(client, tiny_clip, tmp_path):
    colours = [(250, 20, 20), (20, 20, 250), (240, 240, 240)]
    paths = []
    for i, colour in enumerate(colours):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    table, _, _ = client.predict([handle_file(str(p)) for p in paths], "two red circles", [], False, 3,
                                 f"clip:{tiny_clip}", "none", api_name="/score")
    assert table["headers"][:3] == ["rank", "image", "score"] and len(table["data"]) == 3
    shown = {row[1]: row[2] for row in table["data"]}
    # The page shows the tiny CLIP's own cosines, best first.
    pixels = torch.tensor([c for c in colours], dtype=torch.float32)[:, :, None, None].expand(3, 3, 32, 32) / 255
    expected = load_verifier(f"clip:{tiny_clip}", device="cpu")(pixels, "two red circles")
    assert [shown[p.name] for p in paths] == pytest.approx(expected.tolist(), abs=1e-3)
    assert [row[2] for row in table["data"]] == sorted(shown.values(), reverse=True)


def test_generate_with_a_vlm_and_aesthetic_ensemble(client, tiny_vlms, tiny_aesthetic):
    spec = f"vlm:{tiny_vlms['llava']}+aesthetic:{tiny_aesthetic}@0.1"
    image, gallery, _, summary, *_ = client.predict(*request(strategy="bon", budget="2x", verifier=spec),
                                                    api_name="/generate")
    assert Image.open(image).size[0] >= 16 and len(gallery) == 2 and "Best-of-N" in summary
    shown = [float(g["caption"].split(" · ")[0]) for g in gallery]
    # The captions are the ensemble's scores: the same search outside the demo (the page's images are
    # re-encoded, so they are not scored again) gives them, and they mix both members, weighted 1 : 0.1.
    from rd_inference import search

    ensemble = load_verifier(spec, device="cpu", criteria="alignment")
    result = search(tiny_sd(), SOP["prompt"], verifier=ensemble, strategy="bon", budget="2x", steps=4, seed=0)
    scores = sorted((n.score for n in result.tree.nodes), reverse=True)
    assert shown == pytest.approx(scores, abs=6e-4)
    pixels = torch.stack([torch.from_numpy(np.array(result.candidates[n.id])).permute(2, 0, 1)
                          for n in sorted(result.tree.nodes, key=lambda n: -n.score)]).float() / 255
    vlm = load_verifier(f"vlm:{tiny_vlms['llava']}", device="cpu", criteria="alignment")(pixels, SOP["prompt"])
    aesthetic = load_verifier(f"aesthetic:{tiny_aesthetic}", device="cpu")(pixels, SOP["prompt"])
    assert shown == pytest.approx(((vlm + 0.1 * aesthetic) / 1.1).tolist(), abs=6e-4)
    assert not torch.allclose(vlm, aesthetic, atol=1e-2)
