"""The example workflows: the files match their description in workflows/build.py, every API workflow
validates in real ComfyUI (with placeholder model files), and the UI workflows' sockets and widget values
line up with the nodes' own input definitions (what the frontend needs to open them)."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest
from conftest import REPO

WORKFLOWS = REPO / "workflows"
# Loader input -> ComfyUI model folder that must list the file the workflow names.
MODEL_INPUTS = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "vae_name": "vae",
}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def load_build():
    spec = importlib.util.spec_from_file_location("workflows_build", WORKFLOWS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_build()
NAMES = sorted(BUILD.WORKFLOWS)


def test_workflow_files_match_their_description():
    for path, text in BUILD.render().items():
        assert path.read_text() == text, f"{path} is stale: run python workflows/build.py"
    assert {p.stem for p in WORKFLOWS.glob("*.json")} == set(NAMES) == {p.stem for p in (WORKFLOWS / "api").glob("*.json")}


@pytest.fixture(scope="module")
def placeholder_models(comfy, tmp_path_factory):
    """Empty files / folders with the names the workflows use, in model folders registered with ComfyUI."""
    root = tmp_path_factory.mktemp("models")
    for name in NAMES:
        for node in json.loads((WORKFLOWS / "api" / f"{name}.json").read_text()).values():
            for key, folder in MODEL_INPUTS.items():
                if key in node["inputs"]:
                    (root / folder).mkdir(exist_ok=True)
                    (root / folder / node["inputs"][key]).write_bytes(b"")
            if node["class_type"] == "RDLoadVLMVerifier":
                (root / "vlm" / node["inputs"]["model"]).mkdir(parents=True, exist_ok=True)
                (root / "vlm" / node["inputs"]["model"] / "config.json").write_text("{}")
    for folder in {*MODEL_INPUTS.values(), "vlm"}:
        comfy.folder_paths.add_model_folder_path(folder, str(root / folder))
    return root


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_validates(comfy, placeholder_models, name):
    graph = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    valid, error, outputs, node_errors = asyncio.run(comfy.execution.validate_prompt(name, graph, None))
    assert valid, (error, node_errors)
    assert outputs


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_sockets_and_widgets_match_the_nodes(comfy, name):
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    desc = BUILD.WORKFLOWS[name]()
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(notes) == 1 and "ComfyUI/models/" in notes[0]["widgets_values"][0]
    link_ids = {link[0] for link in ui["links"]}
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        cls = comfy.nodes.NODE_CLASS_MAPPINGS[node["type"]]
        spec = cls.INPUT_TYPES()
        defined = {**spec.get("required", {}), **spec.get("optional", {})}
        kinds = {k: (v[0] if isinstance(v[0], str) else "COMBO", v[1] if len(v) > 1 else {}) for k, v in defined.items()}
        sockets = [k for k, (t, _) in kinds.items() if t not in WIDGET_TYPES]
        widgets = []
        for k, (t, opts) in kinds.items():
            if t in WIDGET_TYPES:
                widgets.append(k)
                if opts.get("control_after_generate"):
                    widgets.append(BUILD.CONTROL)
        assert [i["name"] for i in node["inputs"] if "widget" not in i] == sockets, node["type"]
        # A widget fed by a link (the prompt typed once, in the encode node) is one of the node's widgets.
        assert all(i["widget"]["name"] in widgets for i in node["inputs"] if "widget" in i), node["type"]
        assert [o["type"] for o in node["outputs"]] == [str(t) for t in cls.RETURN_TYPES], node["type"]
        assert [w for w, _ in desc[node["id"]].get("widgets", [])] == widgets, node["type"]
        assert len(node["widgets_values"]) == len(widgets)
        for i in node["inputs"]:
            assert i["link"] in link_ids, f"{node['type']}.{i['name']} is not connected"


@pytest.mark.parametrize("name", NAMES)
def test_search_ksampler_ranking_is_displayed(comfy, name):
    """Every Search KSampler's ranking output feeds ComfyUI's Preview Any (PreviewAny, "Preview as Text"), in both formats."""
    assert "PreviewAny" in comfy.nodes.NODE_CLASS_MAPPINGS
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    shown = {tuple(node["inputs"]["source"]) for node in api.values() if node["class_type"] == "PreviewAny"}
    searches = [i for i, node in api.items() if node["class_type"] == "RDSearchKSampler"]
    assert {(i, 4) for i in searches} <= {(src, slot) for src, slot in shown}
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    types = {node["id"]: node["type"] for node in ui["nodes"]}
    ranking_links = [link for link in ui["links"] if types[link[1]] == "RDSearchKSampler" and link[2] == 4]
    assert len(ranking_links) == len(searches)
    assert all(types[link[3]] == "PreviewAny" and link[5] == "STRING" for link in ranking_links)
