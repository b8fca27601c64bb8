"""The search driven by the yes-token VLM verifier: the same code path a real Qwen/LLaVA verifier takes."""

import json

import numpy as np
import pytest
from tiny_pipelines import tiny_sd

from rd_inference import regenerate, search
from rd_inference.yes_token import YesTokenVerifier

SMALL = {"steps": 4, "height": 16, "width": 16}


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


def test_search_with_yes_token_verifier_tournament_and_offload(pipe, tiny_vlms, tmp_path):
    verifier = YesTokenVerifier.from_pretrained(tiny_vlms["llava"], device="cpu", offload=True)
    result = search(pipe, "two red circles", verifier=verifier, strategy="bon", n=4, final_pick="tournament",
                    tournament_k=3, offload=True, out=tmp_path / "run", **SMALL)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    table = summary["config"]["tournament"]
    assert len(table["candidates"]) == 3 and result.node_id in table["candidates"]
    assert summary["config"]["verifier"]["name"] == "yes_token"
    assert "move" in result.counts["seconds"]
    assert 0.0 <= result.score <= 1.0
    # The verifier is rebuilt from the run's summary for regeneration.
    image = regenerate(tmp_path / "run", result.node_id, pipe=pipe)
    assert (np.asarray(image) == np.asarray(result.image)).all()


def test_tournament_needs_a_pairwise_verifier(pipe):
    from rd_inference import BrightnessVerifier

    with pytest.raises(ValueError, match="needs a pairwise verifier"):
        search(pipe, "a cat", verifier=BrightnessVerifier(), strategy="bon", final_pick="tournament", **SMALL)
