"""API-format test graphs on the tiny model nodes (tests/comfyui/tiny_comfy_nodes.py)."""

from __future__ import annotations

import json

from conftest import REPO

SOP = {"n": 2, "m": 2, "delta_f": 0.3, "delta_b": 0.5, "sigma_start": 0.4, "max_batch": 8}


def base_graph(verifier_path="brightness"):
    return {
        "1": {"class_type": "RDTestTinySD15", "inputs": {}},
        "2": {"class_type": "RDTestTinyConditioning", "inputs": {"seed": 0}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {
            "class_type": "RDLoadVLMVerifier",
            "inputs": {"model": "(use path)", "path": verifier_path, "quantization": "none", "criteria": ""},
        },
    }


def ksampler_graph(prompt="a red circle", strategy="sop", budget="6x", steps=6, verifier_path="brightness", **extra):
    graph = base_graph(verifier_path)
    graph["5"] = {
        "class_type": "RDSearchKSampler",
        "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 1], "latent_image": ["3", 0],
            "verifier": ["4", 0], "vae": ["1", 1], "prompt": prompt, "strategy": strategy, "budget": budget,
            "seed": 0, "steps": steps, "cfg": 3.0, "scheduler": "normal", "max_batch": 8, **extra,
        },
    }
    graph["6"] = {"class_type": "PreviewImage", "inputs": {"images": ["5", 1]}}
    return graph


def sop_sampler_graph(model_patch=None, verifier_path="brightness", prompt="a red circle", **sop):
    """SamplerCustomAdvanced driven by the Search over Paths SAMPLER; ``model_patch`` re-parameterises the model."""
    graph = base_graph(verifier_path)
    model = ["1", 0]
    if model_patch == "v_prediction":
        graph["7"] = {"class_type": "ModelSamplingDiscrete",
                      "inputs": {"model": ["1", 0], "sampling": "v_prediction", "zsnr": False}}
        model = ["7", 0]
    elif model_patch == "flow":
        graph["7"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 3.0}}
        model = ["7", 0]
    graph.update({
        "8": {"class_type": "RDSearchOverPathsSampler",
              "inputs": {"verifier": ["4", 0], "vae": ["1", 1], "prompt": prompt, **SOP, **sop}},
        "9": {"class_type": "CFGGuider",
              "inputs": {"model": model, "positive": ["2", 0], "negative": ["2", 1], "cfg": 3.0}},
        "10": {"class_type": "BasicScheduler",
               "inputs": {"model": model, "scheduler": "simple", "steps": 6, "denoise": 1.0}},
        "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "12": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["11", 0], "guider": ["9", 0], "sampler": ["8", 0], "sigmas": ["10", 0],
                          "latent_image": ["3", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["1", 1]}},
        "14": {"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}},
    })
    return graph


def prompt_once_graph(text="a red circle"):
    """The Search KSampler reading its prompt from the encode node's text output: typed once."""
    graph = ksampler_graph(prompt="unused")
    graph["12"] = {"class_type": "RDTestTinyCLIP", "inputs": {}}
    graph["13"] = {"class_type": "RDSearchPromptEncode", "inputs": {"text": text, "clip": ["12", 0]}}
    graph["5"]["inputs"].update({"positive": ["13", 0], "prompt": ["13", 1]})
    return graph


# The example workflow's loaders and sizes -> the tiny test models (tests/comfyui/tiny_comfy_nodes.py).
TINY_LOADERS = {"UNETLoader": "RDTestTinyWan", "CLIPLoader": "RDTestTinyCLIP", "VAELoader": "RDTestTinyWanVAE"}


def _tiny_video_graph(name: str, loaders: dict, latent: tuple[str, dict], steps: int, search: dict) -> dict:
    """workflows/api/<name>.json with tiny models in place of its ``loaders``, the brightness verifier in place
    of the VLM, the latent node ``latent[0]`` given ``latent[1]``, and the Search KSampler's inputs overridden."""
    graph = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    for node in graph.values():
        kind = node["class_type"]
        if kind in loaders:
            node.update(class_type=loaders[kind], inputs={})
        elif kind == "RDLoadVLMVerifier":
            node["inputs"].update(model="(use path)", path="brightness", quantization="none")
        elif kind == latent[0]:
            node["inputs"].update(latent[1])
        elif kind == "RDSearchKSampler":
            node["inputs"].update({"steps": steps, "max_batch": 8, "verify_frames": 3, **search})
    return graph


def wan_video_graph(length=9, steps=4, **search):
    """workflows/api/search_ksampler_wan_video.json with ComfyUI's Wan 2.1 model class and VAE at tiny sizes in
    place of the loaded files, the brightness verifier in place of the VLM, and a 32x32 video of ``length``
    frames; ``search`` overrides the Search KSampler's inputs."""
    size = {"width": 32, "height": 32, "length": length}
    return _tiny_video_graph("search_ksampler_wan_video", TINY_LOADERS, ("EmptyHunyuanLatentVideo", size), steps, search)


TINY_LTXV_LOADERS = {"CheckpointLoaderSimple": "RDTestTinyLTXVCheckpoint", "CLIPLoader": "RDTestTinyLTXVT5"}


def ltxv_video_graph(length=9, size=64, steps=4, **search):
    """workflows/api/search_ksampler_ltxv_video.json with ComfyUI's LTX-Video model class and causal video VAE
    at tiny sizes in place of the checkpoint and T5 (tests/comfyui/tiny_comfy_nodes.py), the brightness verifier
    in place of the VLM, and a ``size`` x ``size`` video of ``length`` frames (64 px: the VAE's reflect padding
    needs latents of at least 2 x 2); ``search`` overrides the Search KSampler's inputs."""
    latent = ("EmptyLTXVLatentVideo", {"width": size, "height": size, "length": length})
    return _tiny_video_graph("search_ksampler_ltxv_video", TINY_LTXV_LOADERS, latent, steps, search)
