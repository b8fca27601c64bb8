"""The demo's video view (issue 21): a tiny random WanPipeline saved to a folder is loaded through the page's
Model field; the Generate tab shows the chosen video as an MP4, its frames, the ranked candidates, and the
video fields only for a video model. Driven by gradio_client against a loopback server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image
from tiny_pipelines import tiny_sd
from tiny_video import tiny_wan, wan_unipc_scheduler

from gradio_app import Backend, build_demo, launch
from rd_inference import BrightnessVerifier, search
from rd_inference.pipelines import load_pipeline
from rd_inference.verifier_loading import load_verifier
from rd_inference.video import read_mp4

PROMPT = "two red circles"
# prompt, criteria, strategy, budget, seed, compare, strategy_b, N, M, σ_start, Δf, Δb, widen, rollover,
# keep_parent, steps, guidance, model, verifier, quantization, max forwards, frames, verify frames, verify mode
BASE = {"prompt": PROMPT, "criteria": "video_alignment,motion", "strategy": "bon", "budget": "2x", "seed": 0,
        "compare": False, "strategy_b": "bon", "n": 2, "m": 2, "sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5,
        "widen": 1.0, "rollover": False, "keep_parent": False, "steps": None, "guidance": None, "model": "",
        "verifier": "", "quantization": "none", "max_forwards": "256x", "num_frames": 9, "verify_frames": 3,
        "verify_mode": "joint"}


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan") / "tiny-wan"
    tiny_wan(wan_unipc_scheduler()).save_pretrained(folder, safe_serialization=True)
    # The page has no size fields: a model folder's recommended settings give them, as on the command line.
    (folder / "rd_inference_defaults.json").write_text(json.dumps({"steps": 4, "height": 16, "width": 16}))
    return str(folder)


@pytest.fixture(scope="module")
def app():
    def load_model(spec):
        return tiny_sd() if spec is None else load_pipeline(spec, device="cpu")

    def load_vlm(spec, quantization, criteria):
        return BrightnessVerifier() if spec is None else load_verifier(spec, device="cpu", criteria=criteria)

    demo = build_demo(Backend(load_model=load_model, load_verifier=load_vlm, device="cpu"), defaults={"steps": 4})
    _, url, _ = launch(demo, prevent_thread_lock=True, quiet=True)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    return Client(app[1], verbose=False)


def request(**changes):
    return list({**BASE, **changes}.values())


def pixels(path, factor: int = 1) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))[::factor, ::factor]


def test_a_video_model_shows_a_playable_video_its_frames_and_ranked_candidates(client, wan_folder, tiny_vlms):
    out = client.predict(*request(model=wan_folder, verifier=tiny_vlms["llava"]), api_name="/generate")
    image, gallery, plot, summary, image_b, _, _, _, video, frames, video_b = out
    assert image is None and image_b is None and video_b is None
    decoded = read_mp4(video)  # the MP4 the core writes (lossy H.264), every frame
    assert video.endswith(".mp4") and len(decoded) == 9 and decoded[0].size == (16, 16)
    assert len(frames) == 9 and [f["caption"] for f in frames] == [f"frame {j}/9" for j in range(1, 10)]
    # The same search outside the page picks the same video; the page shows its exact frames (upscaled 16x).
    verifier = load_verifier(tiny_vlms["llava"], device="cpu", criteria="video_alignment,motion")
    result = search(load_pipeline(wan_folder, device="cpu"), PROMPT, verifier=verifier, strategy="bon", budget="2x",
                    steps=4, height=16, width=16, num_frames=9, verify_frames=3, seed=0)
    assert all(np.array_equal(pixels(f["image"], 16), np.asarray(r)) for f, r in zip(frames, result.image))
    assert np.abs(np.asarray(decoded[4], dtype=float) - np.asarray(result.image[4], dtype=float)).mean() < 12
    # Candidates ranked as for images: the chosen one first (★), each a strip of 4 evenly spaced frames.
    scores = sorted((n.score for n in result.tree.nodes), reverse=True)
    assert [float(g["caption"].split(" · ")[0]) for g in gallery] == pytest.approx(scores, abs=1e-3)
    assert "★" in gallery[0]["caption"] and Image.open(gallery[0]["image"]).size == (256, 64)
    assert "video: 9 frames; the verifier saw 3 per candidate, all in one prompt (6 frames in all)" in summary
    assert plot["type"] == "matplotlib"


@pytest.mark.filterwarnings("ignore:BrightnessVerifier scores single images")  # warned in the server thread
def test_the_per_frame_fallback_is_said_on_the_page(client, wan_folder):
    out = client.predict(*request(model=wan_folder, criteria="alignment", strategy="one", verify_frames=2),
                         api_name="/generate")
    summary, video, frames = out[3], out[8], out[9]
    assert "one by one, scores averaged (2 frames in all)" in summary
    assert "Note: BrightnessVerifier scores single images" in summary
    assert len(read_mp4(video)) == 9 and len(frames) == 9


def test_an_image_model_still_shows_an_image(client):
    out = client.predict(*request(criteria="alignment", strategy="one"), api_name="/generate")
    image, video, frames = out[0], out[8], out[9]
    assert Image.open(image).size[0] >= 16 and video is None and not frames
    assert "video:" not in out[3]


def test_video_fields_show_for_video_models_only(app, wan_folder, tmp_path):
    demo, _ = app
    show = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "show_video_fields")
    assert show(wan_folder)["visible"] is True
    assert show("")["visible"] is False and show(str(tmp_path))["visible"] is False
    tiny_sd().save_pretrained(tmp_path / "sd", safe_serialization=True)
    assert show(str(tmp_path / "sd"))["visible"] is False
    page = build_demo(Backend(load_model=lambda spec: None, device="cpu"), defaults={"model": wan_folder})
    rows = [b for b in page.blocks.values() if getattr(b, "label", "") and str(b.label).startswith("Frames (video")]
    assert len(rows) == 1 and page.blocks[rows[0]._id].parent.visible is True  # a video model given at start
