"""The verifier zoo: CLIP score and PickScore through transformers' dual encoders, ensembles of any kinds,
and one KIND:TARGET naming for every face. A tiny CLIP built from configs stands in for real checkpoints."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from PIL import Image
from tiny_pipelines import tiny_sd
from tiny_scorers import build_tiny_clip
from transformers import CLIPModel

from rd_inference import BrightnessVerifier, ColorVerifier, search
from rd_inference.checks import UserError
from rd_inference.cli import main
from rd_inference.verifier_loading import load_verifier, parse_verifier
from rd_inference.verifiers import verifier_from_spec, verifier_spec
from rd_inference.verifiers.ensemble import EnsembleVerifier, ranks

PROMPT = "two red circles"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def images(n=3):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 16, 16, generator=g)


def test_clip_score_is_the_cosine_of_the_embeddings(clip_dir):
    verifier = load_verifier(f"clip:{clip_dir}", device="cpu")
    scores = verifier(images(), PROMPT)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        pixels = verifier.image_processor(images=[Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
                                                  for x in images()], return_tensors="pt")["pixel_values"]
        out = model(input_ids=verifier.tokenizer([PROMPT], return_tensors="pt")["input_ids"], pixel_values=pixels)
    # CLIPModel's logits are logit_scale * cosine: the same numbers, rescaled.
    expected = out.logits_per_image[:, 0] / model.logit_scale.exp()
    assert scores.shape == (3,) and torch.allclose(scores, expected, atol=1e-5)
    assert bool(((scores >= -1) & (scores <= 1)).all())
    pick = load_verifier(f"pickscore:{clip_dir}", device="cpu")(images(), PROMPT)
    assert torch.allclose(pick, out.logits_per_image[:, 0], atol=1e-4)


def test_clip_scorer_rebuilds_from_spec_and_pickle(clip_dir):
    verifier = load_verifier(f"clip:{clip_dir}", device="cpu")
    expected = verifier(images(), PROMPT)
    assert verifier_spec(verifier) == {"name": "clip", "model": str(clip_dir), "max_batch": 32}
    for copy in (verifier_from_spec(verifier_spec(verifier), device="cpu"), pickle.loads(pickle.dumps(verifier))):
        assert torch.allclose(copy(images(), PROMPT), expected, atol=1e-6)


def test_ensemble_mean_and_rank():
    x = images(4)
    b, c = BrightnessVerifier()(x, PROMPT), ColorVerifier((1, 0, 0))(x, PROMPT)
    mean = load_verifier("brightness+color:1,0,0@3")
    assert torch.allclose(mean(x, PROMPT), (b + 3 * c) / 4)
    rank = load_verifier("brightness+color:1,0,0@3", aggregation="rank")
    assert torch.allclose(rank(x, PROMPT), (ranks(b) + 3 * ranks(c)) / 4)
    assert ranks(torch.tensor([0.2, 0.9, 0.2, 0.5])).tolist() == pytest.approx([1 / 6, 1.0, 1 / 6, 2 / 3])
    rebuilt = verifier_from_spec(verifier_spec(rank))
    assert isinstance(rebuilt, EnsembleVerifier) and torch.allclose(rebuilt(x, PROMPT), rank(x, PROMPT))


def test_a_search_with_a_mixed_ensemble_regenerates(clip_dir, tmp_path):
    from rd_inference import regenerate

    verifier = load_verifier(f"clip:{clip_dir}+brightness@0.5", device="cpu")
    result = search(tiny_sd(), PROMPT, verifier=verifier, strategy="bon", budget="3x", steps=4, height=16, width=16,
                    out=tmp_path / "run")
    assert result.config["verifier"]["name"] == "ensemble"
    again = regenerate(tmp_path / "run", result.node_id, pipe=tiny_sd())
    assert list(again.getdata()) == list(result.image.getdata())


@pytest.mark.parametrize("spec, message", [
    ("clip:", "empty verifier in 'clip:'"),
    ("brightness@-1", "must be a positive number"),
    ("clip:./no/such/clip", "verifier folder ./no/such/clip does not exist"),
    ("brightness+pickscore:./nope", "verifier folder ./nope does not exist"),
    ("foo:bar", ("unknown verifier kind 'foo' in 'foo:bar'; known: vlm, clip, pickscore, aesthetic, openai, color, "
                 "brightness. Write KIND:TARGET (e.g. clip:PATH, vlm:org/name), or a bare VLM folder or hub id")),
    ("brightness+CLIP:org/clip@2", "unknown verifier kind 'CLIP' in 'brightness+CLIP:org/clip@2'"),
    ("http://127.0.0.1:8000#org/vlm", "unknown verifier kind 'http'"),  # a served VLM is openai:URL#MODEL
    ("clip", "--verifier clip names a kind without its target: write clip:TARGET"),
    ("brightness+color", "--verifier color names a kind without its target: write color:TARGET"),
    ("color:red", "--verifier color:red: write a colour as color:R,G,B with three numbers in [0,1]"),
    ("brightness+color:1,0", "write a colour as color:R,G,B with three numbers"),
    ("color:255,0,0", "with three numbers in [0,1]"),
])
def test_bad_verifier_names_fail_before_loading(spec, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_verifier(spec)


def test_unknown_kind_is_a_vlm_path_and_kinds_are_listed(capsys):
    assert parse_verifier("org/some-vlm") == [("vlm", "org/some-vlm", 1.0)]
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = capsys.readouterr().out
    assert all(kind in out for kind in ("vlm:", "clip:", "pickscore:", "brightness", "--ensemble"))


def test_score_command_ranks_images_with_clip(clip_dir, tmp_path, capsys):
    files = []
    for i, x in enumerate(images()):
        path = tmp_path / f"{i}.png"
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
        files.append(str(path))
    assert main(["score", "--verifier", f"clip:{clip_dir}", "--prompt", PROMPT, "--device", "cpu", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"verifier: clip:{clip_dir}") and len(lines) == 2 + len(files)
    ranked = [float(line.split()[1]) for line in lines[2:]]
    assert ranked == sorted(ranked, reverse=True)


def test_paths_and_hub_ids_with_colons_are_still_vlms(tmp_path, monkeypatch):
    folder = tmp_path / "model:v2"  # an existing folder wins over a kind-like name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert parse_verifier("model:v2") == [("vlm", "model:v2", 1.0)]
    assert parse_verifier(f"{folder}@0.5+brightness") == [("vlm", str(folder), 0.5), ("brightness", "", 1.0)]
    assert parse_verifier("C:\\models\\vlm") == [("vlm", "C:\\models\\vlm", 1.0)]  # a Windows drive, not a kind
    assert parse_verifier("org/name:rev") == [("vlm", "org/name:rev", 1.0)]


def test_pairwise_support_comes_from_the_kind():
    from rd_inference.verifier_loading import KINDS, PAIRWISE_KINDS, check_pairwise, supports_pairwise
    from rd_inference.verifiers.aesthetic import AestheticVerifier
    from rd_inference.verifiers.clip import ClipScoreVerifier
    from rd_inference.verifiers.remote import RemoteYesTokenVerifier
    from rd_inference.yes_token import YesTokenVerifier

    # The class each kind loads: a kind is pairwise exactly when its verifier has compare(). A new kind
    # must be added here, and to PAIRWISE_KINDS if it compares.
    loads = {"vlm": YesTokenVerifier, "clip": ClipScoreVerifier, "pickscore": ClipScoreVerifier,
             "aesthetic": AestheticVerifier, "openai": RemoteYesTokenVerifier, "color": ColorVerifier,
             "brightness": BrightnessVerifier}
    assert set(loads) == set(KINDS)
    assert {k for k, cls in loads.items() if callable(getattr(cls, "compare", None))} == set(PAIRWISE_KINDS)
    assert callable(getattr(EnsembleVerifier, "compare", None)) is False
    assert supports_pairwise(None) and supports_pairwise("org/vlm") and supports_pairwise("vlm:org/vlm")
    for spec in ("brightness", "color:1,0,0", "clip:org/clip", "pickscore:org/p", "openai:http://h:1#m",
                 "org/vlm+brightness"):
        assert not supports_pairwise(spec)
        with pytest.raises(UserError, match=re.escape(f"--verifier {spec} cannot: use --final-pick score")):
            check_pairwise(spec)


class NanColor(ColorVerifier):
    def __call__(self, images, prompt):
        return super().__call__(images, prompt) * float("nan")


def nan_scores(images, prompt):
    return torch.full((len(images),), float("nan"))


def short(images, prompt):
    return torch.zeros(1)


def test_a_non_finite_ensemble_member_is_named(tmp_path):
    from rd_inference.checks import NonFiniteError
    from rd_inference.verifiers.clip import ClipScoreVerifier
    from rd_inference.verifiers.ensemble import member_label

    ensemble = EnsembleVerifier([BrightnessVerifier(), NanColor((1, 0, 0))], [1, 2])
    with pytest.raises(NonFiniteError, match=r"the verifier color:1,0,0 \(member 2 of 2 of the ensemble\) returned "
                                             r"non-finite scores \[nan, nan, nan\]: check its weights"):
        ensemble(images(), PROMPT)
    with pytest.raises(NonFiniteError, match=r"the verifier nan_scores \(member 1 of 2 of the ensemble\)"):
        EnsembleVerifier([nan_scores, BrightnessVerifier()], aggregation="rank")(images(), PROMPT)
    with pytest.raises(ValueError, match=r"the verifier short \(member 2 of 2 of the ensemble\) returned 1 scores "
                                         "for 3 images"):
        EnsembleVerifier([BrightnessVerifier(), short])(images(), PROMPT)
    assert member_label(ClipScoreVerifier("org/clip", device="cpu")) == "clip:org/clip"
    assert member_label(BrightnessVerifier()) == "brightness"
    # In a search the error surfaces as is, and nothing is written.
    with pytest.raises(NonFiniteError, match=r"the verifier color:1,0,0 \(member 2 of 2 of the ensemble\)"):
        search(tiny_sd(), PROMPT, verifier=ensemble, strategy="bon", n=2, steps=4, height=16, width=16,
               out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_score_command_ranks_images_with_pickscore(tiny_clip, tmp_path, capsys):
    files = []
    for i, x in enumerate(images()):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(files[-1])
    assert main(["score", "--verifier", f"pickscore:{tiny_clip}", "--prompt", PROMPT, "--device", "cpu", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"verifier: pickscore:{tiny_clip}") and len(lines) == 2 + len(files)
    ranked = [float(line.split()[1]) for line in lines[2:]]
    assert ranked == sorted(ranked, reverse=True)
    # PickScore is CLIP's logit: the command prints the library's scores, best first.
    expected = load_verifier(f"pickscore:{tiny_clip}", device="cpu")(images(), PROMPT)
    assert ranked == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-3)


def test_generate_command_with_a_clip_verifier_on_the_embedded_model(tiny_clip, tmp_path, capsys):
    import json

    run = tmp_path / "run"
    assert main(["generate", PROMPT, "--verifier", f"clip:{tiny_clip}", "--strategy", "bon", "--budget", "2x", "--seed", "3",
                 "--out", str(run), "--device", "cpu"]) == 0
    assert "chosen: node" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["verifier"] == {"name": "clip", "model": tiny_clip, "max_batch": 32}
    assert len(summary["candidates"]) == 2 and all(-1 <= c["score"] <= 1 for c in summary["candidates"])
