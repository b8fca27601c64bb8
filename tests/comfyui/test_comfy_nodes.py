"""The nodes in real ComfyUI (in-process PromptExecutor): registration, graphs end to end on a tiny
random-weight SD 1.5 (epsilon, v-prediction and flow parameterisations), progress, interrupt, errors."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO
from graphs import ksampler_graph, prompt_once_graph, sop_sampler_graph

NODE_IDS = {
    "RDLoadVLMVerifier",
    "RDLoadVerifier",
    "RDYesTokenScore",
    "RDBestOfNImages",
    "RDPairwiseTournament",
    "RDSearchOverPathsSampler",
    "RDSearchKSampler",
    "RDSearchPromptEncode",
}
def output(ex, node_id, index):
    return ex.caches.outputs.get(node_id).outputs[index][0]


def table_rows(text):
    """The ranking table's body rows as lists of cells (the header and the |---| line dropped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def errors(messages):
    return [d["exception_message"] for e, d in messages if e == "execution_error"]


@pytest.fixture
def progress_calls(comfy):
    import comfy.utils

    calls = []
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: calls.append((value, total, preview)))
    yield calls
    comfy.utils.set_progress_bar_global_hook(None)


def test_nodes_register(comfy):
    mappings = comfy.nodes.NODE_CLASS_MAPPINGS
    assert NODE_IDS <= set(mappings)
    for node_id in NODE_IDS:
        info = mappings[node_id].GET_NODE_INFO_V1()
        assert info["category"] == "sampling/test-time scaling" and info["description"]
        assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id]
    assert comfy.folder_paths.get_folder_paths("vlm")[0].endswith("vlm")


def test_search_ksampler_runs_end_to_end_with_progress(executor, progress_calls):
    ok, messages, ex = executor(ksampler_graph())
    assert ok, errors(messages)
    latent, image, scores, candidates = (output(ex, "5", i) for i in range(4))
    assert latent["samples"].shape == (1, 4, 8, 8) and torch.isfinite(latent["samples"]).all()
    assert image.shape == (1, 64, 64, 3) and 0 <= image.min() and image.max() <= 1
    summary = json.loads(scores)
    assert summary["config"]["strategy"] == "sop" and summary["config"]["denoiser"]["space"] == "ve"
    planned = summary["config"]["planned_nfe"]
    assert summary["counts"]["nfe"] == planned <= 6 * 6 * 2
    assert candidates.shape[0] == len(summary["candidates"]) and candidates.shape[1:] == (64, 64, 3)
    assert list(summary)[:3] == ["chosen", "counts", "candidates"]  # the config dump comes last
    rows = table_rows(output(ex, "5", 4))
    assert len(rows) == candidates.shape[0] and rows[0][2] == "final (chosen)"
    assert int(rows[0][4]) == summary["chosen"]["node"]
    # Search over Paths verifies x0-predictions of unfinished paths in its earlier rounds: they come after
    # every finished image, marked with their noise level.
    finals = [r for r in rows if r[2].startswith("final")]
    assert rows[: len(finals)] == finals and len(finals) < len(rows)
    assert all(r[2].startswith("x0 at noise ") for r in rows[len(finals):])
    assert [float(r[1]) for r in finals[1:]] == sorted((float(r[1]) for r in finals[1:]), reverse=True)
    assert torch.allclose(candidates[0], image[0], atol=1 / 255 + 1e-6)  # the batch follows the ranking
    # After the first round is verified, each step previews the best candidate so far on the node.
    ours = [(v, t) for v, t, _ in progress_calls if t == planned]
    previews = [p for v, t, p in progress_calls if t == planned and p is not None]
    assert previews and all(p[0] == "JPEG" and p[1].size == (64, 64) and p[2] == 64 for p in previews)  # not enlarged
    assert len(ours) >= planned // 8 and ours[-1][0] == planned
    assert [v for v, _ in ours] == sorted(v for v, _ in ours)
    # The last preview is the chosen image (the output), not the best verified so far.
    value, total, last = progress_calls[-1]
    assert value == total == planned and last is not None
    shown = torch.from_numpy(np.array(last[1])).float() / 255
    assert torch.allclose(shown, image[0], atol=1 / 255 + 1e-6)


def test_the_plan_goes_to_the_console_before_the_search(executor, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="rd_inference"):
        ok, messages, ex = executor(ksampler_graph(strategy="bon", budget="4x"))
    assert ok, errors(messages)
    summary = json.loads(output(ex, "5", 2))
    plan = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plan: bon")]
    assert plan and f"{summary['counts']['nfe']} denoiser forwards, 4 decodes, 4 images verified" in plan[0]


@pytest.mark.parametrize("patch,space", [(None, "ve"), ("v_prediction", "ve"), ("flow", "flow")])
def test_search_over_paths_sampler_in_each_parameterisation(comfy, executor, monkeypatch, patch, space):
    sampling = sys.modules[f"{REPO}.comfy_nodes.sampling"]
    seen = []
    real = sampling.model_space
    monkeypatch.setattr(sampling, "model_space", lambda ms: seen.append(real(ms)) or seen[-1])
    ok, messages, ex = executor(sop_sampler_graph(patch))
    assert ok, errors(messages)
    assert seen == [space]
    samples = output(ex, "12", 0)["samples"]
    assert samples.shape == (1, 4, 8, 8) and torch.isfinite(samples).all()
    assert output(ex, "13", 0).shape == (1, 64, 64, 3)


def test_tiny_vlm_verifier_scores_ranks_and_plays_a_tournament(executor, tiny_llava):
    import comfy.model_management

    graph = ksampler_graph(strategy="bon", budget="3x", verifier_path=tiny_llava)
    graph.update({
        "20": {"class_type": "RDYesTokenScore",
               "inputs": {"images": ["5", 3], "verifier": ["4", 0], "prompt": "a red circle"}},
        "21": {"class_type": "RDBestOfNImages",
               "inputs": {"images": ["5", 3], "verifier": ["4", 0], "prompt": "a red circle", "keep": 2}},
        "22": {"class_type": "RDPairwiseTournament",
               "inputs": {"images": ["5", 3], "verifier": ["4", 0], "prompt": "a red circle", "top_k": 3}},
        "23": {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}},
        "24": {"class_type": "PreviewImage", "inputs": {"images": ["21", 0]}},
        "25": {"class_type": "PreviewImage", "inputs": {"images": ["22", 0]}},
    })
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    summary = json.loads(output(ex, "5", 2))
    assert summary["config"]["verifier"]["model"] == tiny_llava
    assert len(summary["candidates"]) == 3
    ranked, table, best = output(ex, "20", 0), json.loads(output(ex, "20", 1)), output(ex, "20", 2)
    scores = [row["score"] for row in table["scores"]]
    assert ranked.shape == (3, 64, 64, 3) and scores == sorted(scores, reverse=True) and best == scores[0]
    assert ex.caches.outputs.get("20").outputs[3] == [pytest.approx(s) for s in _by_index(table)]
    # The search's own scores of its finished candidates agree with scoring them again.
    assert sorted(c["score"] for c in summary["candidates"]) == pytest.approx(sorted(scores), abs=1e-3)
    assert output(ex, "21", 0).shape == (2, 64, 64, 3)
    # The VLM was placed by ComfyUI's model management, as a ModelPatcher.
    holder = sys.modules[f"{REPO}.comfy_nodes.verifier"]._Holder
    assert any(isinstance(m.model.model, holder) for m in comfy.model_management.current_loaded_models)
    assert output(ex, "22", 0).shape == (1, 64, 64, 3) and "wins" in output(ex, "22", 1)


def _batch_of_two(graph):
    graph["3"]["inputs"]["batch_size"] = 2
    return graph


def _by_index(table):
    return [row["score"] for row in sorted(table["scores"], key=lambda r: r["index"])]


def test_interrupt_mid_search_stops_cleanly_and_the_next_prompt_runs(executor):
    import comfy.model_management
    import comfy.utils

    calls = []

    def interrupt_on_third(value, total, preview, node_id=None):
        calls.append(value)
        if len(calls) == 3:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(interrupt_on_third)
    try:
        ok, messages, _ = executor(ksampler_graph(), prompt_id="interrupted")
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    events = [e for e, _ in messages]
    assert not ok and "execution_interrupted" in events and "execution_error" not in events
    assert len(calls) == 3  # stopped at the step where it was asked to
    assert not comfy.model_management.processing_interrupted()
    ok, messages, ex = executor(ksampler_graph(), prompt_id="next")
    assert ok, errors(messages)
    assert output(ex, "5", 1).shape == (1, 64, 64, 3)


@pytest.mark.parametrize(
    "graph,message",
    [
        (lambda: ksampler_graph(prompt="  "), "prompt is empty"),
        (lambda: ksampler_graph(budget="lots"), "is not a number of denoiser forwards"),
        (lambda: sop_sampler_graph(delta_f=0.5, delta_b=0.3), "must be larger than delta_f"),
        (lambda: _batch_of_two(ksampler_graph()), "set batch_size to 1"),
        (lambda: ksampler_graph(budget="8x", max_forwards="4x"), "above the ceiling of 48 (4x)"),
        (lambda: sop_sampler_graph(n=64, m=8, max_forwards="8x"), "raise the ceiling to at least"),
    ],
)
def test_bad_input_gives_an_actionable_error(executor, graph, message):
    ok, messages, _ = executor(graph())
    assert not ok
    assert any(message in m for m in errors(messages)), errors(messages)


def test_zero_paths_is_rejected_before_running(comfy):
    import asyncio

    valid, _, _, node_errors = asyncio.run(comfy.execution.validate_prompt("bad", sop_sampler_graph(n=0), None))
    assert not valid
    details = json.dumps(node_errors["8"])
    assert "n" in node_errors["8"]["errors"][0]["extra_info"]["input_name"] and "smaller than min of 1" in details


def test_every_input_and_output_has_a_tooltip(comfy):
    missing = []
    for node_id, cls in comfy.nodes.NODE_CLASS_MAPPINGS.items():
        if not node_id.startswith("RD") or node_id.startswith("RDTest"):
            continue  # other packs' nodes, and this test suite's own tiny model nodes
        spec = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, value in spec.get(group, {}).items():
                if not (value[1] if len(value) > 1 else {}).get("tooltip"):
                    missing.append(f"{node_id} input {name}")
        tips = list(getattr(cls, "OUTPUT_TOOLTIPS", None) or [])
        for i, name in enumerate(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES):
            if i >= len(tips) or not tips[i]:
                missing.append(f"{node_id} output {name}")
    assert not missing, missing


def test_the_prompt_is_typed_once(executor):
    ok, messages, ex = executor(prompt_once_graph("two blue squares"))
    assert ok, errors(messages)
    assert json.loads(output(ex, "5", 2))["config"]["prompt"] == "two blue squares"


def test_a_misspelled_vlm_is_refused_when_queued(comfy):
    import asyncio

    graph = ksampler_graph(verifier_path="/nonexistent/vlm")
    valid, _, _, node_errors = asyncio.run(comfy.execution.validate_prompt("bad-vlm", graph, None))
    assert not valid
    assert "no VLM folder at '/nonexistent/vlm'" in json.dumps(node_errors["4"])


def test_keep_top_k_candidates(executor):
    ok, messages, ex = executor(ksampler_graph(strategy="bon", budget="4x", keep=2))
    assert ok, errors(messages)
    assert output(ex, "5", 3).shape[0] == 2
    rows = table_rows(output(ex, "5", 4))
    assert len(rows) == 4 and rows[0][2] == "final (chosen)"  # the ranking still lists all four


def test_keep_top_k_takes_finished_images_of_search_over_paths(executor):
    ok, messages, ex = executor(ksampler_graph(keep=2))
    assert ok, errors(messages)
    candidates, rows = output(ex, "5", 3), table_rows(output(ex, "5", 4))
    assert candidates.shape[0] == 2 and len(rows) > 2
    assert [r[2] for r in rows[:2]] == ["final (chosen)", "final"]  # not the earlier rounds' x0-predictions
    assert torch.allclose(candidates[0], output(ex, "5", 1)[0], atol=1 / 255 + 1e-6)


def _result(nodes, chosen, steps=10):
    """A search result as ranking() reads it: (round, end, level_end, score) per verified node."""
    from rd_inference.tree import SearchTree

    tree = SearchTree()
    for r, end, level, score in nodes:
        tree.add(parent=None, round=r, kind="branch", seed=0, start=0, end=end, level_start=1.0, level_end=level,
                 score=score)
    levels = [round(1 - k / steps, 6) for k in range(steps + 1)]
    return SimpleNamespace(tree=tree, node_id=chosen, candidates={n.id: None for n in tree.nodes},
                           config={"schedule": {"level": levels}})


# As in the example workflow's Search over Paths run: two round-0 paths verified at noise 0.42 and one
# round-1 path at 0.21 scored higher than the finished images of round 2, whose best (node 3) was chosen.
SOP_RUN = [(0, 6, 0.42, 0.9309), (0, 6, 0.42, 0.9008), (1, 8, 0.21, 0.8470), (2, 10, 0.0, 0.8793),
           (2, 10, 0.0, 0.8102), (2, 10, 0.0, 0.8560)]


def test_ranking_puts_finished_images_first_then_x0_predictions_least_noisy_first(comfy):
    nodes = sys.modules[f"{REPO}.comfy_nodes.nodes"]
    result = _result(SOP_RUN, chosen=3)
    assert nodes.ranking(result) == [3, 5, 4, 2, 0, 1]
    assert nodes.ranking(result)[:2] == [3, 5]  # keep=2: finished images only, as there are enough
    assert nodes.ranking(result)[:4] == [3, 5, 4, 2]  # keep=4: three finished, then the least noisy x0
    # A tournament may choose a finished image below the best score: it still comes first.
    assert nodes.ranking(_result(SOP_RUN, chosen=4)) == [4, 3, 5, 2, 0, 1]
    # Best-of-N: every image finished, by score.
    assert nodes.ranking(_result([(0, 10, 0.0, s) for s in (0.2, 0.9, 0.5)], chosen=1)) == [1, 2, 0]


def test_ranking_text_is_a_markdown_table_that_reads_as_plain_text(comfy):
    from markdown_it import MarkdownIt

    nodes = sys.modules[f"{REPO}.comfy_nodes.nodes"]
    result = _result(SOP_RUN, chosen=3)
    text = nodes.ranking_text(result, nodes.ranking(result))
    assert text.splitlines()[:8] == [
        "| rank | score  | scored image     | round | node |",
        "| ---- | ------ | ---------------- | ----- | ---- |",
        "| 1    | 0.8793 | final (chosen)   | 2     | 3    |",
        "| 2    | 0.8560 | final            | 2     | 5    |",
        "| 3    | 0.8102 | final            | 2     | 4    |",
        "| 4    | 0.8470 | x0 at noise 0.21 | 1     | 2    |",
        "| 5    | 0.9309 | x0 at noise 0.42 | 0     | 0    |",
        "| 6    | 0.9008 | x0 at noise 0.42 | 0     | 1    |",
    ]
    assert "its score does not compare with a final image's" in text.splitlines()[-1]
    # Preview Any renders markdown (markdown-it, with tables): one table, a header and six rows.
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<table>") == 1 and html.count("<th>") == 5 and html.count("<tr>") == 7
    # Only finished images: no note under the table.
    bon = _result([(0, 10, 0.0, s) for s in (0.2, 0.9)], chosen=1)
    assert nodes.ranking_text(bon, nodes.ranking(bon)).splitlines()[-1].startswith("| 2 ")


def test_the_prompt_input_is_a_one_line_widget_with_its_name_shown(comfy):
    # The frontend draws no name beside a multiline text box, nor beside the dot of a linked widget.
    for node_id in ("RDSearchKSampler", "RDSearchOverPathsSampler", "RDYesTokenScore"):
        spec = comfy.nodes.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]["prompt"]
        assert spec[0] == "STRING" and not spec[1].get("multiline"), node_id


def test_strategy_menu_shows_names_and_takes_old_ids(comfy, executor):
    import asyncio
    import sys

    from rd_inference.strategies import STRATEGIES

    cls = comfy.nodes.NODE_CLASS_MAPPINGS["RDSearchKSampler"]
    labels = sys.modules[cls.__module__].STRATEGY_LABELS
    assert set(labels) == set(STRATEGIES)  # a new strategy gets a menu entry
    ok, messages, ex = executor(ksampler_graph(strategy="Best-of-N (bon)", budget="2x"))
    assert ok, errors(messages)
    assert json.loads(output(ex, "5", 2))["config"]["strategy"] == "bon"
    valid, _, _, node_errors = asyncio.run(comfy.execution.validate_prompt("x", ksampler_graph(strategy="astar"), None))
    assert not valid and "unknown strategy 'astar'" in json.dumps(node_errors["5"])


def test_any_kind_loader_scores_with_an_ensemble_and_refuses_bad_names(executor, comfy):
    graph = ksampler_graph(strategy="bon", budget="2x")
    graph["4"] = {"class_type": "RDLoadVerifier",
                  "inputs": {"verifier": "brightness+color:1,0,0@3", "ensemble": "mean", "criteria": ""}}
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    summary = json.loads(output(ex, "5", 2))
    assert summary["config"]["verifier"]["name"] == "ensemble" and summary["config"]["verifier"]["weights"] == [0.25, 0.75]
    cls = comfy.nodes.NODE_CLASS_MAPPINGS["RDLoadVerifier"]
    assert "does not exist" in cls.validate_inputs("clip:/no/such/clip", "mean", "")
    assert "openai:URL#MODEL" in cls.validate_inputs("openai:http://127.0.0.1:1", "mean", "")
    assert cls.validate_inputs("brightness", "rank", "") is True


def test_any_kind_loader_takes_tiny_clip_pickscore_and_aesthetic_scorers(executor, tiny_clip, tiny_aesthetic):
    from rd_inference.verifier_loading import load_verifier

    specs = {"4": f"clip:{tiny_clip}", "30": f"pickscore:{tiny_clip}", "31": f"aesthetic:{tiny_aesthetic}"}
    graph = ksampler_graph(strategy="bon", budget="2x")  # the search itself verifies with the tiny CLIP
    for node, spec in specs.items():
        # The node's default criteria stay: a scorer that asks no questions ignores them.
        graph[node] = {"class_type": "RDLoadVerifier",
                       "inputs": {"verifier": spec, "ensemble": "mean", "criteria": "alignment"}}
        graph[f"4{node}"] = {"class_type": "RDYesTokenScore",
                             "inputs": {"images": ["5", 3], "verifier": [node, 0], "prompt": "a red circle"}}
        graph[f"6{node}"] = {"class_type": "PreviewImage", "inputs": {"images": [f"4{node}", 0]}}
    graph["50"] = {"class_type": "RDBestOfNImages",
                   "inputs": {"images": ["5", 3], "verifier": ["31", 0], "prompt": "a red circle", "keep": 1}}
    graph["51"] = {"class_type": "PreviewImage", "inputs": {"images": ["50", 0]}}
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    summary = json.loads(output(ex, "5", 2))
    assert summary["config"]["verifier"] == {"name": "clip", "model": tiny_clip, "max_batch": 32}
    candidates = output(ex, "5", 3)
    assert candidates.shape == (2, 64, 64, 3)
    for node, spec in specs.items():
        expected = load_verifier(spec, device="cpu")(candidates.movedim(-1, 1), "a red circle")
        scores = ex.caches.outputs.get(f"4{node}").outputs[3]
        assert scores == pytest.approx(expected.tolist(), abs=1e-5), spec
        assert output(ex, f"4{node}", 2) == pytest.approx(max(scores))
    clip = load_verifier(specs["4"], device="cpu")(candidates.movedim(-1, 1), "a red circle")
    assert sorted(c["score"] for c in summary["candidates"]) == pytest.approx(sorted(clip.tolist()), abs=1e-3)
    kept = json.loads(output(ex, "50", 1))["kept"]
    assert output(ex, "50", 0).shape == (1, 64, 64, 3) and kept[0]["score"] == pytest.approx(output(ex, "431", 2))
