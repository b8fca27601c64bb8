"""Builds the example workflows: UI format (``workflows/*.json``, what the ComfyUI frontend opens) and API
format (``workflows/api/*.json``, what ``POST /prompt`` and the tests take) from one description each.

The video workflows' own nodes are in ``video_graphs.py``. Run ``python workflows/build.py`` after changing a description; the tests check the files match it and
validate every API workflow in real ComfyUI.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).parent
CONTROL = "$control_after_generate"  # a UI-only widget value that follows a seed widget

# Socket inputs (linkable, in order) and outputs of every node type used below.
SOCKETS: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "UNETLoader": ([], [("MODEL", "MODEL")]),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")]),
    "CLIPLoader": ([], [("CLIP", "CLIP")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")]),
    "CFGGuider": (
        [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING")], [("GUIDER", "GUIDER")]
    ),
    "BasicScheduler": ([("model", "MODEL")], [("SIGMAS", "SIGMAS")]),
    "RandomNoise": ([], [("NOISE", "NOISE")]),
    "SamplerCustomAdvanced": (
        [("noise", "NOISE"), ("guider", "GUIDER"), ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"),
         ("latent_image", "LATENT")],
        [("output", "LATENT"), ("denoised_output", "LATENT")],
    ),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "SaveImage": ([("images", "IMAGE")], []),
    "PreviewImage": ([("images", "IMAGE")], []),
    "PreviewAny": ([("source", "*")], []),  # "Preview Any" (the server names it "Preview as Text"): markdown
    "Note": ([], []),
    "RDLoadVLMVerifier": ([], [("verifier", "VERIFIER")]),
    "RDSearchPromptEncode": ([("clip", "CLIP")], [("conditioning", "CONDITIONING"), ("prompt", "STRING")]),
    "RDSearchKSampler": (
        [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT"),
         ("verifier", "VERIFIER"), ("vae", "VAE")],
        [("latent", "LATENT"), ("image", "IMAGE"), ("scores_json", "STRING"), ("candidates", "IMAGE"),
         ("ranking", "STRING")],
    ),
    "RDSearchOverPathsSampler": ([("verifier", "VERIFIER"), ("vae", "VAE")], [("SAMPLER", "SAMPLER")]),
    "RDYesTokenScore": (
        [("images", "IMAGE"), ("verifier", "VERIFIER")],
        [("images_best_first", "IMAGE"), ("scores_json", "STRING"), ("best_score", "FLOAT"), ("scores", "FLOAT")],
    ),
}

VLM = "Qwen2.5-VL-3B-Instruct"


def _note(text: str) -> dict:
    return {"type": "Note", "pos": [-420, 0], "size": [400, 340], "widgets": [("text", text)]}


def _verifier(quantization: str) -> dict:
    return {"type": "RDLoadVLMVerifier", "pos": [0, 620],
            "widgets": [("model", VLM), ("path", ""), ("quantization", quantization), ("criteria", "alignment")]}


def _ranking_display(pos: list[int], ranking: tuple[int, int]) -> dict:
    """ComfyUI's "Preview Any" on the Search KSampler's ranking output (a markdown table)."""
    return {"type": "PreviewAny", "pos": pos, "size": [420, 260], "links": {"source": ranking}}


def sd15() -> dict:
    prompt = "a red cube on top of a blue sphere, studio photo"
    return {
        1: _note(
            "Search KSampler on Stable Diffusion 1.5.\n\n"
            "Weights:\n"
            "- ComfyUI/models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors\n"
            f"- ComfyUI/models/vlm/{VLM}/ (the whole Hugging Face folder: config.json, *.safetensors, "
            "tokenizer and processor files)\n\n"
            "Type the prompt once, in Text Encode (search prompt): the model draws it and its text output feeds "
            "the Search KSampler's prompt (what the verifier checks). budget '4x' spends four ordinary samples' "
            "worth of model calls; 'candidates' shows every image the verifier scored, the chosen one first, "
            "and 'ranking' (in Preview Any) lists them with their scores: finished images first, then the "
            "x0-predictions scored on the way, which do not compare with them."
        ),
        2: {"type": "CheckpointLoaderSimple", "pos": [0, 0], "widgets": [("ckpt_name", "v1-5-pruned-emaonly-fp16.safetensors")]},
        3: {"type": "RDSearchPromptEncode", "pos": [400, 0], "widgets": [("text", prompt)], "links": {"clip": (2, 1)}},
        4: {"type": "CLIPTextEncode", "pos": [400, 260], "widgets": [("text", "blurry, low quality")],
            "links": {"clip": (2, 1)}},
        5: {"type": "EmptyLatentImage", "pos": [400, 480], "widgets": [("width", 512), ("height", 512), ("batch_size", 1)]},
        6: _verifier("none"),
        7: {"type": "RDSearchKSampler", "pos": [820, 0],
            "widgets": [("prompt", prompt), ("strategy", "Search over Paths (sop)"), ("budget", "4x"), ("seed", 0), (CONTROL, "fixed"),
                        ("steps", 20), ("cfg", 7.0), ("scheduler", "normal"), ("max_batch", 8), ("max_forwards", "256x"),
                        ("keep", 0), ("verify_frames", 4), ("verify_mode", "joint")],
            "links": {"model": (2, 0), "positive": (3, 0), "negative": (4, 0), "latent_image": (5, 0),
                      "verifier": (6, 0), "vae": (2, 2), "prompt": (3, 1)}},
        8: {"type": "SaveImage", "pos": [1240, 0], "widgets": [("filename_prefix", "search_sd15")],
            "links": {"images": (7, 1)}},
        9: {"type": "PreviewImage", "pos": [1240, 420], "links": {"images": (7, 3)}},
        10: _ranking_display([1240, 700], (7, 4)),
    }


def sdxl() -> dict:
    prompt = "three yellow tulips in a green glass vase on a wooden table"
    return {
        1: _note(
            "Search over Paths as a SAMPLER for SamplerCustomAdvanced, on SDXL.\n\n"
            "Weights:\n"
            "- ComfyUI/models/checkpoints/sd_xl_base_1.0.safetensors\n"
            f"- ComfyUI/models/vlm/{VLM}/ (the Hugging Face folder), loaded 4-bit\n\n"
            "n paths are kept; each round every path is re-noised along m branches by delta_f, denoised by "
            "delta_b, and the verifier keeps the best n. Levels are on the timestep/1000 axis. "
            "Batch size 1: n decides how many paths are explored."
        ),
        2: {"type": "CheckpointLoaderSimple", "pos": [0, 0], "widgets": [("ckpt_name", "sd_xl_base_1.0.safetensors")]},
        3: {"type": "RDSearchPromptEncode", "pos": [400, 0], "widgets": [("text", prompt)], "links": {"clip": (2, 1)}},
        4: {"type": "CLIPTextEncode", "pos": [400, 260], "widgets": [("text", "")], "links": {"clip": (2, 1)}},
        5: {"type": "EmptyLatentImage", "pos": [400, 480],
            "widgets": [("width", 1024), ("height", 1024), ("batch_size", 1)]},
        6: _verifier("4bit"),
        7: {"type": "RDSearchOverPathsSampler", "pos": [400, 700],
            "widgets": [("prompt", prompt), ("n", 2), ("m", 2), ("delta_f", 0.78), ("delta_b", 0.81),
                        ("sigma_start", 0.11), ("max_batch", 4), ("widen", 1.0), ("rollover", False),
                        ("keep_parent", False), ("max_forwards", "256x"), ("verify_frames", 4),
                        ("verify_mode", "joint")],
            "links": {"verifier": (6, 0), "vae": (2, 2), "prompt": (3, 1)}},
        8: {"type": "CFGGuider", "pos": [820, 0], "widgets": [("cfg", 6.0)],
            "links": {"model": (2, 0), "positive": (3, 0), "negative": (4, 0)}},
        9: {"type": "BasicScheduler", "pos": [820, 220],
            "widgets": [("scheduler", "karras"), ("steps", 25), ("denoise", 1.0)], "links": {"model": (2, 0)}},
        10: {"type": "RandomNoise", "pos": [820, 420], "widgets": [("noise_seed", 0), (CONTROL, "fixed")]},
        11: {"type": "SamplerCustomAdvanced", "pos": [1240, 0],
             "links": {"noise": (10, 0), "guider": (8, 0), "sampler": (7, 0), "sigmas": (9, 0), "latent_image": (5, 0)}},
        12: {"type": "VAEDecode", "pos": [1640, 0], "links": {"samples": (11, 0), "vae": (2, 2)}},
        13: {"type": "SaveImage", "pos": [1640, 200], "widgets": [("filename_prefix", "search_sdxl")],
             "links": {"images": (12, 0)}},
    }


def flux() -> dict:
    prompt = "a cat wearing a red scarf sitting next to a stack of three books"
    return {
        1: _note(
            "Search KSampler on FLUX.1 (dev or schnell), with a 4-bit VLM verifier beside it on one GPU.\n\n"
            "Weights:\n"
            "- ComfyUI/models/diffusion_models/flux1-dev.safetensors\n"
            "- ComfyUI/models/text_encoders/clip_l.safetensors and t5xxl_fp8_e4m3fn.safetensors\n"
            "- ComfyUI/models/vae/ae.safetensors\n"
            f"- ComfyUI/models/vlm/{VLM}/ (the Hugging Face folder)\n\n"
            "FLUX is guidance-distilled: cfg 1.0 (one model call per step; the negative prompt is unused) and "
            "the guidance goes through FluxGuidance. Re-noising follows the flow (CONST) parameterisation "
            "of the model's own sampling. Use scheduler 'simple'."
        ),
        2: {"type": "UNETLoader", "pos": [0, 0], "widgets": [("unet_name", "flux1-dev.safetensors"), ("weight_dtype", "default")]},
        3: {"type": "DualCLIPLoader", "pos": [0, 160],
            "widgets": [("clip_name1", "clip_l.safetensors"), ("clip_name2", "t5xxl_fp8_e4m3fn.safetensors"),
                        ("type", "flux"), ("device", "default")]},
        4: {"type": "VAELoader", "pos": [0, 360], "widgets": [("vae_name", "ae.safetensors")]},
        5: {"type": "RDSearchPromptEncode", "pos": [400, 0], "widgets": [("text", prompt)], "links": {"clip": (3, 0)}},
        6: {"type": "FluxGuidance", "pos": [400, 240], "widgets": [("guidance", 3.5)], "links": {"conditioning": (5, 0)}},
        7: {"type": "CLIPTextEncode", "pos": [400, 380], "widgets": [("text", "")], "links": {"clip": (3, 0)}},
        8: {"type": "EmptySD3LatentImage", "pos": [400, 560],
            "widgets": [("width", 1024), ("height", 1024), ("batch_size", 1)]},
        9: _verifier("4bit"),
        10: {"type": "RDSearchKSampler", "pos": [820, 0],
             "widgets": [("prompt", prompt), ("strategy", "Search over Paths (sop)"), ("budget", "4x"), ("seed", 0), (CONTROL, "fixed"),
                         ("steps", 20), ("cfg", 1.0), ("scheduler", "simple"), ("max_batch", 4), ("max_forwards", "256x"),
                         ("keep", 0), ("verify_frames", 4), ("verify_mode", "joint")],
             "links": {"model": (2, 0), "positive": (6, 0), "negative": (7, 0), "latent_image": (8, 0),
                       "verifier": (9, 0), "vae": (4, 0), "prompt": (5, 1)}},
        11: {"type": "SaveImage", "pos": [1240, 0], "widgets": [("filename_prefix", "search_flux")],
             "links": {"images": (10, 1)}},
        12: {"type": "RDYesTokenScore", "pos": [1240, 420], "widgets": [("prompt", prompt)],
             "links": {"images": (10, 3), "verifier": (9, 0), "prompt": (5, 1)}},
        13: {"type": "PreviewImage", "pos": [1640, 420], "links": {"images": (12, 0)}},
        14: _ranking_display([1640, 0], (10, 4)),
    }


def _sibling(name: str):
    """A module beside this file, loaded by path: build.py runs as a script and the tests load it by path, so
    workflows/ is no package to import from."""
    spec = importlib.util.spec_from_file_location(f"workflows_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VIDEO = _sibling("video_graphs")
SOCKETS.update(VIDEO.SOCKETS)


def wan_video() -> dict:
    desc = {1: _note(VIDEO.wan_note(VLM)), **VIDEO.wan_nodes(CONTROL), 8: _verifier(VIDEO.VIDEO_VLM_QUANTIZATION),
            12: _ranking_display([1240, 420], (9, 4))}
    return dict(sorted(desc.items()))


def ltxv_video() -> dict:
    desc = {1: _note(VIDEO.ltxv_note(VLM)), **VIDEO.ltxv_nodes(CONTROL), 9: _verifier(VIDEO.VIDEO_VLM_QUANTIZATION),
            13: _ranking_display([1640, 420], (10, 4))}
    return dict(sorted(desc.items()))


WORKFLOWS = {"search_ksampler_sd15": sd15, "search_over_paths_sdxl": sdxl, "search_ksampler_flux": flux,
             "search_ksampler_wan_video": wan_video, "search_ksampler_ltxv_video": ltxv_video}


def to_api(desc: dict) -> dict:
    """API format: node id -> class_type and inputs (widget values and [source id, output index] links)."""
    api = {}
    for node_id, node in desc.items():
        if node["type"] == "Note":
            continue
        inputs = {name: value for name, value in node.get("widgets", []) if name != CONTROL}
        inputs.update({name: [str(src), slot] for name, (src, slot) in node.get("links", {}).items()})
        api[str(node_id)] = {"class_type": node["type"], "inputs": inputs}
    return api


def to_ui(desc: dict) -> dict:
    """UI (LiteGraph) format: nodes with sockets and widget values in widget order, and a link table."""
    links, ui_nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    def inputs_of(node_id: int, node: dict) -> list[tuple[str, str, bool]]:
        """(name, type, is a widget) per input slot: the sockets, then widgets fed by a link (their text
        comes from another node; the UI keeps the widget's own value beside the link)."""
        sockets = [(n, t, False) for n, t in SOCKETS[node["type"]][0]]
        names = {n for n, _, _ in sockets}
        widget_links = [(n, SOCKETS[desc[src]["type"]][1][slot][1], True)
                        for n, (src, slot) in node.get("links", {}).items() if n not in names]
        return sockets + widget_links

    for node_id, node in desc.items():
        slots = [n for n, _, _ in inputs_of(node_id, node)]
        for name, (src, slot) in node.get("links", {}).items():
            link_id = len(links) + 1
            links.append([link_id, src, slot, node_id, slots.index(name), SOCKETS[desc[src]["type"]][1][slot][1]])
            outgoing.setdefault((src, slot), []).append(link_id)
    by_target = {(link[3], link[4]): link[0] for link in links}
    for order, (node_id, node) in enumerate(desc.items()):
        socket_outputs = SOCKETS[node["type"]][1]
        inputs = []
        for i, (n, t, widget) in enumerate(inputs_of(node_id, node)):
            inputs.append({"name": n, "type": t, "link": by_target.get((node_id, i)), **({"widget": {"name": n}} if widget else {})})
        ui_nodes.append({
            "id": node_id,
            "type": node["type"],
            "pos": node["pos"],
            "size": node.get("size", [380, 160]),
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": [{"name": n, "type": t, "links": outgoing.get((node_id, i), []), "slot_index": i}
                        for i, (n, t) in enumerate(socket_outputs)],
            "properties": {} if node["type"] == "Note" else {"Node name for S&R": node["type"]},
            "widgets_values": [value for _, value in node.get("widgets", [])],
        })
    return {
        "last_node_id": max(desc),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def render() -> dict[Path, str]:
    """Every workflow file's path and its text."""
    files = {}
    for name, make in WORKFLOWS.items():
        desc = make()
        files[HERE / f"{name}.json"] = json.dumps(to_ui(desc), indent=1) + "\n"
        files[HERE / "api" / f"{name}.json"] = json.dumps(to_api(desc), indent=1) + "\n"
    return files


if __name__ == "__main__":
    for path, text in render().items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        print(path)
