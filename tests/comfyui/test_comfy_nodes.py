"""The nodes in real ComfyUI: registration, a graph end to end on a tiny model, progress, interrupt, errors."""

from __future__ import annotations

import json

import pytest
import torch

NODE_IDS = {
    "RDLoadVLMVerifier",
    "RDYesTokenScore",
    "RDBestOfNImages",
    "RDPairwiseTournament",
    "RDSearchOverPathsSampler",
    "RDSearchKSampler",
}


def tiny_graph(verifier_path="brightness", strategy="sop", budget="6x", steps=6, prompt="a red circle"):
    return {
        "1": {"class_type": "RDTestTinySD15", "inputs": {}},
        "2": {"class_type": "RDTestTinyConditioning", "inputs": {"seed": 0}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "RDLoadVLMVerifier",
              "inputs": {"model": "(use path)", "path": verifier_path, "quantization": "none", "criteria": ""}},
        "5": {"class_type": "RDSearchKSampler",
              "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["3", 0],
                         "verifier": ["4", 0], "vae": ["1", 1], "prompt": prompt, "strategy": strategy,
                         "budget": budget, "seed": 0, "steps": steps, "cfg": 3.0, "scheduler": "normal",
                         "max_batch": 8}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}},
    }


def test_nodes_register(comfy):
    mappings = comfy.nodes.NODE_CLASS_MAPPINGS
    assert NODE_IDS <= set(mappings)
    for node_id in NODE_IDS:
        info = mappings[node_id].GET_NODE_INFO_V1()
        assert info["category"].startswith("sampling/test-time scaling")
        assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id]
    assert "vlm" in comfy.folder_paths.folder_names_and_paths


def test_search_ksampler_graph_end_to_end(comfy, executor):
    ok, messages, ex = executor(tiny_graph())
    events = [e for e, _ in messages]
    assert ok, [d for e, d in messages if e == "execution_error"]
    assert "execution_success" in events
    outputs = ex.caches.outputs
    print(outputs)
