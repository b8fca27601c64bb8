"""LAION's aesthetic predictor as ``aesthetic:PATH``: a tiny random CLIP and a random head stand in for
ViT-L/14 and ``sac+logos+ava1-l14-linearMSE.pth``; the folder is built by the converter, as a user would."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from PIL import Image
from tiny_pipelines import _clip_config, tiny_tokenizer
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig

from rd_inference import BrightnessVerifier
from rd_inference.checks import UserError
from rd_inference.cli import main
from rd_inference.verifier_loading import VERIFIER_HELP, load_verifier, parse_verifier
from rd_inference.verifiers import aesthetic, verifier_from_spec, verifier_spec
from rd_inference.verifiers.aesthetic import HEAD_FILE, AestheticHead, AestheticVerifier

WIDTH = 16  # the tiny CLIP's projection_dim; LAION's head takes ViT-L/14's 768


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(clip folder, LAION-style .pth head, converted aesthetic folder)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("aesthetic")
    vision = CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, projection_dim=WIDTH)
    model = CLIPModel(CLIPConfig(text_config=_clip_config().to_dict(), vision_config=vision.to_dict(),
                                 projection_dim=WIDTH))
    clip = root / "clip"
    model.save_pretrained(clip)
    tiny_tokenizer().save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(clip)
    pth = root / "head.pth"
    torch.save(AestheticHead(WIDTH).state_dict(), pth)  # what LAION ships: a pickled state dict
    assert aesthetic.main(["convert", str(pth), str(clip), str(root / "aesthetic")]) == 0
    return clip, pth, root / "aesthetic"


def images(n=3):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_score_is_the_laion_mlp_on_normalised_clip_embeddings(built):
    clip_dir, pth, folder = built
    verifier = load_verifier(f"aesthetic:{folder}", device="cpu")
    scores = verifier(images(), "two red circles")
    assert scores.shape == (3,) and bool(torch.isfinite(scores).all())
    assert torch.equal(scores, verifier(images(), "two red circles"))
    assert torch.equal(scores, verifier(images(), "a completely different prompt"))  # prompt-free
    model = CLIPModel.from_pretrained(clip_dir).eval()
    pil = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")) for x in images()]
    pixels = CLIPImageProcessor.from_pretrained(clip_dir)(images=pil, return_tensors="pt")["pixel_values"]
    w = torch.load(pth, weights_only=True)
    with torch.no_grad():
        v = model.get_image_features(pixel_values=pixels)
        v = v if isinstance(v, torch.Tensor) else v.pooler_output
        x = v / v.norm(dim=-1, keepdim=True)
        for i in (0, 2, 4, 6, 7):  # linear layers, no activations; dropouts are off at inference
            x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
    assert torch.allclose(scores, x[:, 0], atol=1e-5)


def test_rebuilds_from_spec_and_pickle_with_its_scale(built):
    folder = built[2]
    verifier = AestheticVerifier(str(folder), scale=0.1, device="cpu")
    expected = verifier(images(), "p")
    assert torch.allclose(expected, 0.1 * load_verifier(f"aesthetic:{folder}", device="cpu")(images(), "p"))
    assert verifier_spec(verifier) == {"name": "aesthetic", "model": str(folder), "scale": 0.1, "max_batch": 32}
    for copy in (verifier_from_spec(verifier_spec(verifier), device="cpu"), pickle.loads(pickle.dumps(verifier))):
        assert torch.allclose(copy(images(), "p"), expected, atol=1e-6)


def test_ensembles_weight_it_like_any_kind(built):
    folder = built[2]
    x = images(4)
    a = load_verifier(f"aesthetic:{folder}", device="cpu")(x, "p")
    mixed = load_verifier(f"brightness+aesthetic:{folder}@0.1", device="cpu")
    assert parse_verifier(f"brightness+aesthetic:{folder}@0.1") == [("brightness", "", 1.0),
                                                                      ("aesthetic", str(folder), 0.1)]
    assert torch.allclose(mixed(x, "p"), (BrightnessVerifier()(x, "p") + 0.1 * a) / 1.1)
    rebuilt = verifier_from_spec(verifier_spec(mixed), device="cpu")
    assert torch.allclose(rebuilt(x, "p"), mixed(x, "p"))
    assert "aesthetic:" in VERIFIER_HELP


def test_score_command_ranks_images(built, tmp_path, capsys):
    files = []
    for i, x in enumerate(images()):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(files[-1])
    assert main(["score", "--verifier", f"aesthetic:{built[2]}", "--prompt", "p", "--device", "cpu", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"verifier: aesthetic:{built[2]}" and len(lines) == 2 + len(files)
    ranked = [float(line.split()[1]) for line in lines[2:]]
    assert ranked == sorted(ranked, reverse=True)


def test_bad_folders_and_heads_fail_in_one_line_naming_the_fix(built, tmp_path):
    clip_dir, _, folder = built
    no_head = tmp_path / "no-head"
    shutil.copytree(folder, no_head)
    (no_head / HEAD_FILE).unlink()
    for spec, message in [(f"aesthetic:{no_head}", f"has no {HEAD_FILE}: build the folder"),
                          ("aesthetic:./no/such/folder", "does not exist: build one"),
                          ("aesthetic:", "empty verifier")]:
        with pytest.raises(UserError, match=message) as info:
            parse_verifier(spec)
        assert "\n" not in str(info.value)
    assert "aesthetic convert" in str(pytest.raises(UserError, parse_verifier, f"aesthetic:{no_head}").value)
    wide = tmp_path / "wide.pth"
    torch.save(AestheticHead(768).state_dict(), wide)
    with pytest.raises(UserError, match="expects 768-wide CLIP embeddings but the CLIP gives 16"):
        aesthetic.convert(wide, clip_dir, tmp_path / "out")
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(1, 16)}, junk)
    with pytest.raises(UserError, match="not an aesthetic-predictor head"):
        aesthetic.convert(junk, clip_dir, tmp_path / "out")
    code = tmp_path / "code.pth"
    torch.save({"layers": AestheticHead(WIDTH).layers}, code)  # a pickled module, not just tensors
    with pytest.raises(UserError, match="holds more than a state dict of tensors"):
        aesthetic.convert(code, clip_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
