"""YesTokenVerifier on tiny VLMs of four families (LLaVA, Qwen2.5-VL, Qwen3-VL, Idefics3), CPU, offline."""

from __future__ import annotations

import importlib.util
import json
import pickle

import pytest
import torch
from tiny_vlm import FAMILIES, build_tiny_vlm, pickle_only_copy, random_images

from rd_inference.images import to_pil
from rd_inference.verifiers import verifier_from_spec, verifier_spec
from rd_inference.yes_token import YesTokenVerifier, answer_token_ids, load_image_processor

PROMPT = "two red circles on the left of a blue square"
# Stated tolerances of quantized scores vs full precision on these tiny random models (both probabilities).
QUANT_TOLERANCE = {"8bit": 0.02, "4bit": 0.05}


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_equals_one_at_a_time(tiny_vlms, family):
    # Two criteria of different lengths in one batch force left padding; max_batch=4 forces chunking.
    v = YesTokenVerifier.from_pretrained(
        tiny_vlms[family], device="cpu", criteria="alignment,aesthetics:0.5", max_batch=4
    )
    images = random_images(3)
    batch = v.score(images, PROMPT)
    assert batch.full.shape == batch.conditional.shape == (3, 2)
    for i in range(3):
        for j, name in enumerate(["alignment", "aesthetics"]):
            one = v.score(images[i : i + 1], PROMPT, criteria=name)
            assert torch.allclose(batch.full[i, j], one.full[0, 0], atol=1e-5, rtol=0)
            assert torch.allclose(batch.conditional[i, j], one.conditional[0, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_probabilities_in_range_and_consistent(tiny_verifiers, family):
    v = tiny_verifiers[family]
    images = random_images(2)
    s = v.score(images, PROMPT)
    for p in (s.full, s.conditional):
        assert ((p >= 0) & (p <= 1)).all()
    # P(yes|{yes,no}) = P(yes) / (P(yes) + P(no)) >= P(yes), with equality only if P(no) = 0.
    assert (s.conditional >= s.full).all()
    rows = [([im], v.criteria[0].render(PROMPT)) for im in to_pil(images)]
    lp = v.yes_no_logprobs(rows)
    assert torch.allclose(s.full[:, 0], lp[:, 0].exp(), atol=1e-6)
    assert torch.allclose(s.conditional[:, 0], lp[:, 0].exp() / (lp[:, 0].exp() + lp[:, 1].exp()), atol=1e-6)
    assert (lp[:, 0].exp() + lp[:, 1].exp() <= 1 + 1e-6).all()
    reward = v(images, PROMPT)
    assert reward.dtype == torch.float32 and reward.shape == (2,)
    assert torch.allclose(reward, s.conditional[:, 0])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_different_image_changes_the_score(tiny_verifiers, family):
    v = tiny_verifiers[family]
    a, b = v(random_images(1, seed=1), PROMPT), v(random_images(1, seed=2), PROMPT)
    assert (a - b).abs().item() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_pil_and_tensor_inputs_agree(tiny_verifiers, family):
    v = tiny_verifiers[family]
    images = random_images(2)
    assert torch.allclose(v(images, PROMPT), v(to_pil(images), PROMPT), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_loading_agrees_with_full_precision(tiny_vlms, tiny_verifiers, family, quantization):
    import bitsandbytes as bnb

    images = random_images(3)
    ref = tiny_verifiers[family].score(images, PROMPT)
    v = YesTokenVerifier.from_pretrained(tiny_vlms[family], device="cpu", quantization=quantization)
    s = v.score(images, PROMPT)
    tol = QUANT_TOLERANCE[quantization]
    assert (s.full - ref.full).abs().max() <= tol
    assert (s.conditional - ref.conditional).abs().max() <= tol
    assert v.memory["weights_bytes"] < v.memory["full_precision_bytes"]
    quantized = (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)
    names = [n for n, m in v.model.named_modules() if isinstance(m, quantized)]
    assert names, "nothing was quantized"
    # The head and the vision side (tower + projector) stay in full precision.
    decoder_names = {n for n, m in v.model.named_modules() if m is v.model.get_decoder()}
    assert all(any(n.startswith(d + ".") for d in decoder_names) for n in names), names
    assert not isinstance(v.model.get_output_embeddings(), quantized)
    assert v.spec()["quantization"] == quantization


@pytest.mark.parametrize("family", FAMILIES)
def test_pairwise_swap_is_handled(tiny_verifiers, family):
    v = tiny_verifiers[family]
    a, b = random_images(2, seed=3), random_images(2, seed=4)
    rows_before = v.timings["rows"]
    ab, ba = v.compare(a, b, PROMPT), v.compare(b, a, PROMPT)
    assert v.timings["rows"] - rows_before == 2 * 2 * 2  # both orders asked for each pair
    assert torch.allclose(ab, 1 - ba, atol=1e-6)
    assert ((ab >= 0) & (ab <= 1)).all()
    same = v.compare(a, a, PROMPT)
    assert torch.allclose(same, torch.full_like(same, 0.5), atol=1e-6)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_image_only_processor_needs_no_torchvision(tiny_vlms, family):
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: this test is about machines without it")
    from transformers import AutoProcessor

    with pytest.raises(ImportError):  # what the image-only route avoids
        AutoProcessor.from_pretrained(tiny_vlms[family])
    processor = load_image_processor(tiny_vlms[family])
    assert not hasattr(processor, "video_processor")
    assert processor.image_processor is not None and processor.tokenizer is not None


def test_bad_inputs_give_clear_errors(tiny_verifiers):
    v = tiny_verifiers["qwen2_5_vl"]
    with pytest.raises(ValueError, match="no images"):
        v([], PROMPT)
    with pytest.raises(ValueError, match="no images"):
        v(torch.zeros(0, 3, 8, 8), PROMPT)
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        v(torch.zeros(2, 8, 8), PROMPT)
    with pytest.raises(ValueError, match="2 images but 3 prompts"):
        v(random_images(2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="as many first images"):
        v.compare(random_images(2), random_images(3), PROMPT)
    with pytest.raises(ValueError, match=r"must contain \{prompt\}"):
        v.score(random_images(1), PROMPT, criteria=[{"name": "bad", "template": "Is it nice?"}])
    with pytest.raises(ValueError, match="unknown pointwise criterion 'nope'"):
        v.score(random_images(1), PROMPT, criteria="nope")
    with pytest.raises(ValueError, match="quantization"):
        YesTokenVerifier.from_pretrained("unused", quantization="3bit")


def test_per_image_prompts(tiny_verifiers):
    v = tiny_verifiers["llava"]
    images = random_images(2)
    both = v(images, ["a red circle", "a blue square"])
    assert torch.allclose(both[1:], v(images[1:], "a blue square"), atol=1e-5)


def test_model_without_a_yes_token_is_refused(tmp_path):
    path = build_tiny_vlm("llava", tmp_path / "no_yes", with_yes=False)
    with pytest.raises(ValueError, match="none of .*'Yes'.* is a single token"):
        YesTokenVerifier.from_pretrained(str(path), device="cpu")


def test_pickle_only_folder_is_refused(tiny_vlms, tmp_path):
    path = pickle_only_copy(tiny_vlms["llava"], tmp_path / "pickled")
    with pytest.raises(ValueError, match="only pickle weights"):
        YesTokenVerifier.from_pretrained(str(path), device="cpu")


def test_answer_token_ids_skip_bos_and_multi_token_words():
    class Tok:  # a tokenizer that adds BOS unless told not to and splits " Yes" into two tokens
        unk_token_id = 0

        def encode(self, word, add_special_tokens=True):
            ids = {"Yes": [5], "yes": [6], " Yes": [7, 5], " yes": [6]}[word]
            return ([1] if add_special_tokens else []) + ids

    assert answer_token_ids(Tok(), ["Yes", "yes", " Yes", " yes"]) == [5, 6]


def test_spec_rebuilds_and_pickle_reloads(tiny_vlms):
    v = YesTokenVerifier.from_pretrained(
        tiny_vlms["qwen3_vl"], device="cpu", criteria="visual_quality:2,plausibility", probability="full"
    )
    images = random_images(2)
    expected = v(images, PROMPT)
    spec = verifier_spec(v)
    assert spec["name"] == "yes_token" and spec["trust_remote_code"] is False
    spec = json.loads(json.dumps(spec))  # what a run's summary.json holds
    assert torch.allclose(verifier_from_spec(spec, device="cpu")(images, PROMPT), expected, atol=1e-6)
    clone = pickle.loads(pickle.dumps(v))
    assert clone.model is None  # weights are not in the pickle; reloaded on first use
    assert torch.allclose(clone(images, PROMPT), expected, atol=1e-6)
    assert [c.weight for c in clone.criteria] == [2.0, 1.0]


def test_offload_moves_once_per_hold_and_counts_time(tiny_vlms):
    v = YesTokenVerifier.from_pretrained(tiny_vlms["qwen2_5_vl"], device="cpu", offload=True)
    moves = []
    original = v.model.to
    v.model.to = lambda *a, **k: (moves.append(a or k), original(*a, **k))[1]
    v(random_images(2), PROMPT)
    assert len(moves) == 2  # in for the call, out after it
    with v.on_device():  # a verify phase: several calls, one pair of moves
        v(random_images(2), PROMPT)
        v.compare(random_images(1), random_images(1, seed=9), PROMPT)
    assert len(moves) == 4
    assert v.timings["move"] >= v.last_move_seconds >= 0.0
    assert v.spec()["offload"] is True
    with pytest.raises(ValueError, match="device_map"):
        YesTokenVerifier.from_pretrained(tiny_vlms["qwen2_5_vl"], offload=True, device_map="auto")


def test_rationale_is_text_and_not_on_the_scoring_path(tiny_verifiers):
    v = tiny_verifiers["idefics3"]
    rows = v.timings["rows"]
    text = v.rationale(random_images(1), PROMPT, max_new_tokens=5)
    assert isinstance(text, str)
    assert v.timings["rows"] == rows
    with pytest.raises(ValueError, match="one image"):
        v.rationale(random_images(2), PROMPT)
