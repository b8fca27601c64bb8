"""Attention kernels and torch.compile as options: the same images and scores as without them."""

from __future__ import annotations

import pytest
import torch
from tiny_pipelines import tiny_sd
from tiny_vlm import random_images

from rd_inference import BrightnessVerifier, search
from rd_inference.pipelines import load_pipeline
from rd_inference.speed_options import speed_up_pipeline
from rd_inference.yes_token import YesTokenVerifier

SMALL = {"steps": 4, "height": 16, "width": 16, "budget": "2x", "strategy": "bon"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_sd().save_pretrained(folder, safe_serialization=True)
    return folder


def test_pipeline_attention_backend_gives_the_same_search(model_dir):
    plain = search(load_pipeline(model_dir), "a cat", verifier=BrightnessVerifier(), **SMALL)
    native = search(load_pipeline(model_dir, attention="native"), "a cat", verifier=BrightnessVerifier(), **SMALL)
    assert plain.node_id == native.node_id
    a, b = (torch.tensor(list(r.image.getdata()), dtype=torch.float32) for r in (plain, native))
    assert (a - b).abs().max() <= 1  # 8-bit images: at most one level of kernel rounding


def test_compiled_denoiser_gives_the_same_search(model_dir):
    pipe = load_pipeline(model_dir)
    plain = search(pipe, "a cat", verifier=BrightnessVerifier(), **SMALL)
    speed_up_pipeline(pipe, compile=True)
    assert any(getattr(m, "_compiled_call_impl", None) is not None for m in pipe.unet.modules())
    compiled = search(pipe, "a cat", verifier=BrightnessVerifier(), **SMALL)
    a, b = (torch.tensor(list(r.image.getdata()), dtype=torch.float32) for r in (plain, compiled))
    assert plain.node_id == compiled.node_id and (a - b).abs().max() <= 1


def test_vlm_attention_implementations_agree(tiny_vlms):
    images = random_images(2)
    sdpa = YesTokenVerifier.from_pretrained(tiny_vlms["llava"], device="cpu", attn_implementation="sdpa")
    eager = YesTokenVerifier.from_pretrained(tiny_vlms["llava"], device="cpu", attn_implementation="eager")
    assert eager.spec()["attn_implementation"] == "eager"
    a, b = sdpa.score(images, "a cat"), eager.score(images, "a cat")
    assert torch.allclose(a.full, b.full, atol=1e-5, rtol=0)
