"""The video example workflows' own nodes (Wan 2.1, LTX-Video). ``build.py`` adds what every workflow
shares (the note, the VLM verifier, the ranking display) and renders them; it loads this file by path.

Node ids are the workflow's: a description here links to the verifier (8 for Wan, 9 for LTXV) that
``build.py`` places.
"""

from __future__ import annotations

VIDEO_VLM_QUANTIZATION = "4bit"

# Socket inputs (linkable, in order) and outputs of the video node types, as in build.SOCKETS.
SOCKETS: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "EmptyHunyuanLatentVideo": ([], [("LATENT", "LATENT")]),
    "EmptyLTXVLatentVideo": ([], [("LATENT", "LATENT")]),
    "LTXVConditioning": ([("positive", "CONDITIONING"), ("negative", "CONDITIONING")],
                         [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
    "ModelSamplingLTXV": ([("model", "MODEL"), ("latent", "LATENT")], [("MODEL", "MODEL")]),
    "SaveAnimatedWEBP": ([("images", "IMAGE")], []),
}

_VERIFY = ("Each candidate is a whole video: it is decoded and the VLM is shown verify_frames evenly spaced "
           "frames of it (first and last included), all in one prompt (verify_mode 'joint'), or each frame on "
           "its own and the scores averaged ('each'); nothing between those frames is judged. The latent output "
           "is the chosen video's latent (VAE Decode, then Save Animated WEBP); the image output holds the "
           "frames the verifier scored.")


def _search(prompt: str, control: str, *, steps: int, cfg: float, max_batch: int) -> list[tuple[str, object]]:
    return [("prompt", prompt), ("strategy", "Best-of-N (bon)"), ("budget", "4x"), ("seed", 0), (control, "fixed"),
            ("steps", steps), ("cfg", cfg), ("scheduler", "simple"), ("max_batch", max_batch),
            ("max_forwards", "256x"), ("keep", 0), ("verify_frames", 4), ("verify_mode", "joint")]


def _save(prefix: str, fps: float) -> list[tuple[str, object]]:
    return [("filename_prefix", prefix), ("fps", fps), ("lossless", False), ("quality", 90), ("method", "default")]


def wan_note(vlm: str) -> str:
    return (
        "Search KSampler on Wan 2.1 text-to-video (1.3B): the search runs over whole videos.\n\n"
        "Weights:\n"
        "- ComfyUI/models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors\n"
        "- ComfyUI/models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors\n"
        "- ComfyUI/models/vae/wan_2.1_vae.safetensors\n"
        f"- ComfyUI/models/vlm/{vlm}/ (the Hugging Face folder), loaded 4-bit\n\n"
        f"{_VERIFY} Wan is a flow model: re-noising follows its own shifted flow sigmas. Use scheduler 'simple'."
    )


def wan_nodes(control: str) -> dict:
    prompt = "a red kite flying over a green hill under a blue sky"
    return {
        2: {"type": "UNETLoader", "pos": [0, 0],
            "widgets": [("unet_name", "wan2.1_t2v_1.3B_fp16.safetensors"), ("weight_dtype", "default")]},
        3: {"type": "CLIPLoader", "pos": [0, 160],
            "widgets": [("clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"), ("type", "wan"), ("device", "default")]},
        4: {"type": "VAELoader", "pos": [0, 360], "widgets": [("vae_name", "wan_2.1_vae.safetensors")]},
        5: {"type": "RDSearchPromptEncode", "pos": [400, 0], "widgets": [("text", prompt)], "links": {"clip": (3, 0)}},
        6: {"type": "CLIPTextEncode", "pos": [400, 260], "widgets": [("text", "blurry, static, low quality")],
            "links": {"clip": (3, 0)}},
        7: {"type": "EmptyHunyuanLatentVideo", "pos": [400, 480],
            "widgets": [("width", 832), ("height", 480), ("length", 33), ("batch_size", 1)]},
        9: {"type": "RDSearchKSampler", "pos": [820, 0],
            "widgets": _search(prompt, control, steps=30, cfg=6.0, max_batch=2),
            "links": {"model": (2, 0), "positive": (5, 0), "negative": (6, 0), "latent_image": (7, 0),
                      "verifier": (8, 0), "vae": (4, 0), "prompt": (5, 1)}},
        10: {"type": "VAEDecode", "pos": [1240, 0], "links": {"samples": (9, 0), "vae": (4, 0)}},
        11: {"type": "SaveAnimatedWEBP", "pos": [1640, 0], "widgets": _save("search_wan", 16.0),
             "links": {"images": (10, 0)}},
    }


LTXV_CHECKPOINT = "ltx-video-2b-v0.9.5.safetensors"


def ltxv_note(vlm: str) -> str:
    return (
        "Search KSampler on LTX-Video text-to-video (2B): the search runs over whole videos.\n\n"
        "Weights:\n"
        f"- ComfyUI/models/checkpoints/{LTXV_CHECKPOINT} (the model and its VAE)\n"
        "- ComfyUI/models/text_encoders/t5xxl_fp16.safetensors\n"
        f"- ComfyUI/models/vlm/{vlm}/ (the Hugging Face folder), loaded 4-bit\n\n"
        f"{_VERIFY} LTX-Video is a flow model whose shift grows with the video's size: ModelSamplingLTXV reads "
        "it off the latent, and the search's sigmas and re-noising follow that model (scheduler 'simple'). "
        "LTXVConditioning's frame_rate reaches the model on every call. Width and height are multiples of "
        "32, length 8k+1 frames."
    )


def ltxv_nodes(control: str) -> dict:
    prompt = "a red kite flying over a green hill under a blue sky"
    return {
        2: {"type": "CheckpointLoaderSimple", "pos": [0, 0], "widgets": [("ckpt_name", LTXV_CHECKPOINT)]},
        3: {"type": "CLIPLoader", "pos": [0, 160],
            "widgets": [("clip_name", "t5xxl_fp16.safetensors"), ("type", "ltxv"), ("device", "default")]},
        4: {"type": "RDSearchPromptEncode", "pos": [400, 0], "widgets": [("text", prompt)], "links": {"clip": (3, 0)}},
        5: {"type": "CLIPTextEncode", "pos": [400, 260],
            "widgets": [("text", "low quality, worst quality, deformed, distorted, motion smear, blurry")],
            "links": {"clip": (3, 0)}},
        6: {"type": "LTXVConditioning", "pos": [820, 260], "widgets": [("frame_rate", 24.0)],
            "links": {"positive": (4, 0), "negative": (5, 0)}},
        7: {"type": "EmptyLTXVLatentVideo", "pos": [400, 480],
            "widgets": [("width", 768), ("height", 512), ("length", 97), ("batch_size", 1)]},
        8: {"type": "ModelSamplingLTXV", "pos": [820, 480], "widgets": [("max_shift", 2.05), ("base_shift", 0.95)],
            "links": {"model": (2, 0), "latent": (7, 0)}},
        10: {"type": "RDSearchKSampler", "pos": [1240, 0],
             "widgets": _search(prompt, control, steps=30, cfg=3.0, max_batch=2),
             "links": {"model": (8, 0), "positive": (6, 0), "negative": (6, 1), "latent_image": (7, 0),
                       "verifier": (9, 0), "vae": (2, 2), "prompt": (4, 1)}},
        11: {"type": "VAEDecode", "pos": [1640, 0], "links": {"samples": (10, 0), "vae": (2, 2)}},
        12: {"type": "SaveAnimatedWEBP", "pos": [2040, 0], "widgets": _save("search_ltxv", 24.0),
             "links": {"images": (11, 0)}},
    }
